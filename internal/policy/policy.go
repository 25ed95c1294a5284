// Package policy decides, from the access table and the relay rules, what the
// SMTP server does with a client, a sender and a recipient: accept, relay,
// refuse (with which reply) or silently discard. The rules are Sendmail's
// (shared/conformance/sendmail-semantics.md, from cf/README and proto.m4), with
// one difference kept on purpose: implicit relay permission goes only to
// 127.0.0.1 and ::1, never to the rest of 127.0.0.0/8.
package policy

import (
	"net/netip"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
)

// Client is what policy knows of the connected client.
type Client struct {
	IP            netip.Addr
	Hostname      string // forward-confirmed reverse DNS name, "" when none
	Authenticated bool
}

// Verdict is the outcome of a check.
type Verdict int

const (
	Accept  Verdict = iota // no objection
	Relay                  // accept, and relaying is permitted
	Reject                 // refuse with Decision's reply
	Discard                // accept, then drop the message silently
)

func (v Verdict) String() string {
	return [...]string{"accept", "relay", "reject", "discard"}[v]
}

// Decision is a verdict with the reply to give when refusing, and the reason
// for the log line.
type Decision struct {
	Verdict  Verdict
	Code     int
	Enhanced string
	Text     string
	Reason   string
}

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	loopback6 = netip.IPv6Loopback()
)

// IsLoopback reports whether ip is 127.0.0.1 or ::1 — only those: the rest of
// 127.0.0.0/8 is an ordinary address (how tests play outside clients).
func IsLoopback(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip == loopback4 || ip == loopback6
}

// accessDenied is Sendmail's reply to a REJECT entry (proto.m4: 5.7.1, "550
// Access denied").
func accessDenied(reason string) Decision {
	return Decision{Verdict: Reject, Code: 550, Enhanced: "5.7.1", Text: "Access denied", Reason: reason}
}

// fromEntry turns an access entry into a decision. relayMeans says what RELAY
// means at this point: relay permission (Connect:, To:) or just OK (From:).
func fromEntry(r maps.AccessResult, relayMeans Verdict) Decision {
	reason := "access " + r.Key + " " + r.Action.String()
	switch r.Action {
	case maps.ActionRelay:
		return Decision{Verdict: relayMeans, Reason: reason}
	case maps.ActionReject:
		return accessDenied(reason)
	case maps.ActionError:
		return Decision{Verdict: Reject, Code: r.Code, Enhanced: r.Enhanced, Text: r.Text, Reason: reason}
	case maps.ActionDiscard:
		return Decision{Verdict: Discard, Reason: reason}
	}
	// OK, and QUARANTINE (not held yet: accepted).
	return Decision{Verdict: Accept, Reason: reason}
}

// CheckConnect judges a client as it connects, by its name and address in the
// access table (Connect: and untagged keys).
func CheckConnect(t *maps.Tables, c Client) Decision {
	r, ok := t.Access.LookupConnect(c.IP, c.Hostname)
	if !ok {
		return Decision{Verdict: Accept}
	}
	return fromEntry(r, Relay)
}

// CheckMail judges the sender of MAIL FROM (From: keys: user@domain, user@,
// the domain and its parents). The null sender is looked up as "<>" and
// otherwise always accepted (RFC 1123 section 5.2.9). RELAY on a From: entry
// is an OK, as in Sendmail without FEATURE(relay_mail_from).
func CheckMail(t *maps.Tables, c Client, from addr.Address, null bool) Decision {
	if null {
		from = addr.Address{}
	}
	r, ok := t.Access.LookupFrom(from)
	if !ok {
		return Decision{Verdict: Accept}
	}
	return fromEntry(r, Accept)
}

// CheckRcpt judges a recipient: first its To: entries (user@domain, user@,
// the domain and parents), then, for a domain that is not local, whether this
// client may relay. local says whether the domain is one of ours.
func CheckRcpt(t *maps.Tables, c Client, rcpt addr.Address, local bool) Decision {
	if r, ok := t.Access.LookupTo(rcpt); ok {
		d := fromEntry(r, Relay)
		// OK does not permit relaying (cf/README): go on to the relay check.
		if d.Verdict != Accept || local {
			return d
		}
	}
	if local {
		return Decision{Verdict: Accept}
	}
	if reason, ok := mayRelay(t, c, rcpt); ok {
		return Decision{Verdict: Relay, Reason: reason}
	}
	return Decision{Verdict: Reject, Code: 550, Enhanced: "5.7.1", Text: "Relaying denied",
		Reason: "relaying to " + rcpt.Domain + " not permitted for this client"}
}

// mayRelay applies the relay rules of proto.m4 (2048-2340): the client is
// 127.0.0.1/::1, authenticated, has Connect: RELAY for its address or verified
// name, or is in relay-domains; or the recipient's domain is in relay-domains.
func mayRelay(t *maps.Tables, c Client, rcpt addr.Address) (string, bool) {
	switch {
	case IsLoopback(c.IP):
		return "loopback client", true
	case c.Authenticated:
		return "authenticated client", true
	}
	if r, ok := t.Access.LookupConnect(c.IP, c.Hostname); ok && r.Action == maps.ActionRelay {
		return "access " + r.Key + " RELAY", true
	}
	if t.RelayDomains.HasIP(c.IP) {
		return "client address in relay-domains", true
	}
	if c.Hostname != "" && t.RelayDomains.HasOrParent(c.Hostname) {
		return "client name in relay-domains", true
	}
	if !rcpt.IsLiteral() && rcpt.Domain != "" && t.RelayDomains.HasOrParent(rcpt.Domain) {
		return "recipient domain in relay-domains", true
	}
	return "", false
}
