// Package policy decides, from the access table and the relay rules, what the
// SMTP server does with a client, a sender and a recipient: accept, relay,
// refuse (with which reply) or silently discard. The rules and replies are
// Sendmail's check_relay, check_mail and check_rcpt (cf/m4/proto.m4, cf/README;
// shared/conformance/sendmail-semantics.md), with one difference kept on
// purpose: implicit relay permission goes only to 127.0.0.1 and ::1, never to
// the rest of 127.0.0.0/8 nor to a client without an address.
//
// It knows no DNS: the SMTP server looks the client's name up and says how
// that went (Client.Hostname, Client.PTR).
package policy

import (
	"net/netip"
	"strings"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
)

// PTRStatus is how the reverse lookup of the client's address went, as
// Sendmail's ${client_resolve}.
type PTRStatus int

const (
	PTRUnknown PTRStatus = iota // not looked up, or not said: no reply of its own
	PTROK                       // a name whose forward lookup confirms the address
	PTRFail                     // no name (NXDOMAIN)
	PTRForged                   // a name whose forward lookup does not give the address back
	PTRTemp                     // the lookup failed temporarily
)

// Client is what policy knows of the connected client.
type Client struct {
	IP            netip.Addr
	Hostname      string    // forward-confirmed reverse DNS name, "" when none
	PTR           PTRStatus // how the reverse lookup went; the zero value says nothing
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
	switch v {
	case Accept:
		return "accept"
	case Relay:
		return "relay"
	case Reject:
		return "reject"
	case Discard:
		return "discard"
	}
	return "?"
}

// Decision is a verdict with the reply to give when refusing, and the reason
// for the log line.
type Decision struct {
	Verdict  Verdict
	Code     int
	Enhanced string
	Text     string
	Reason   string // "access Connect:10.0.0 REJECT", "relaying to example.net denied"
}

// Replies, as proto.m4 words them.
const (
	textAccessDenied   = "Access denied"                           // confREJECT_MSG
	textRcptRejected   = "Mailbox disabled for this recipient"     // confRCPTREJ_MSG
	textRelayDenied    = "Relaying denied"                         // confRELAY_MSG
	textDomainRequired = "Domain name required for sender address" // check_mail, unqualified sender
	textRealDomain     = "Real domain name required for sender address"
)

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

func reject(code int, enhanced, text, reason string) Decision {
	return Decision{Verdict: Reject, Code: code, Enhanced: enhanced, Text: text, Reason: reason}
}

// fromEntry turns an access entry into a decision. relayMeans is what RELAY
// means at this point: relay permission (Connect:) or only OK (From:, and To:
// in the recipient check, where relaying is decided apart). rejected is the
// reply to REJECT here.
func fromEntry(r maps.AccessResult, relayMeans Verdict, rejected Decision) Decision {
	reason := "access " + r.Key + " " + r.Action.String()
	switch r.Action {
	case maps.ActionRelay:
		return Decision{Verdict: relayMeans, Reason: reason}
	case maps.ActionReject:
		rejected.Reason = reason
		return rejected
	case maps.ActionError:
		return reject(r.Code, r.Enhanced, r.Text, reason)
	case maps.ActionDiscard:
		return Decision{Verdict: Discard, Reason: reason}
	case maps.ActionQuarantine:
		// Sendmail holds the message in its queue; posthorn has no such hold
		// yet and accepts it, saying why in the log.
		return Decision{Verdict: Accept, Reason: reason + " (not held: accepted)"}
	}
	return Decision{Verdict: Accept, Reason: reason} // OK
}

// CheckConnect judges a client as it connects (proto.m4 Basic_check_relay):
// the access table's Connect: (and untagged) entries for its verified name and
// the name's parents — an unnamed client is named "[ip]" — then for its
// address and the address's prefixes. REJECT gives 554 5.7.1 "Access denied"
// (RFC 5321 section 3.1: 554 in place of the greeting), ERROR: its own reply,
// DISCARD drops every message of the session, RELAY permits relaying, OK
// accepts.
func CheckConnect(t *maps.Tables, c Client) Decision {
	r, ok := t.Access.LookupConnect(c.IP, c.Hostname)
	if !ok {
		return Decision{Verdict: Accept}
	}
	return fromEntry(r, Relay, reject(554, "5.7.1", textAccessDenied, ""))
}

// CheckMail judges the sender of MAIL FROM as proto.m4's Basic_check_mail does:
//
//   - the null sender <> is always accepted (RFC 1123 section 5.2.9), before
//     any table is read;
//   - user@localhost (or @[127.0.0.1], @[IPv6:::1]) is refused with "553 5.5.4
//     Real domain name required for sender address" unless the client is
//     local (127.0.0.1, ::1, or named in local-host-names);
//   - the access table's From: entries: user@domain (and user+*@domain,
//     user@domain for user+detail), user@, the domain and its parents. REJECT
//     gives "550 5.7.1 Access denied"; RELAY is only an OK here (as without
//     FEATURE(relay_mail_from));
//   - an unqualified sender without an entry is refused with "553 5.5.4
//     Domain name required for sender address" (unless the client has no
//     address: a local submission).
//
// The sender domain's DNS check (Sendmail's 553 5.1.8 / 451 4.1.8) is the
// SMTP server's, which has the resolver.
func CheckMail(t *maps.Tables, c Client, from addr.Address, null bool) Decision {
	if null || from.IsZero() {
		return Decision{Verdict: Accept, Reason: "null sender"}
	}
	if isLocalhostDomain(from.Domain) && !isLocalClient(t, c) {
		return reject(553, "5.5.4", textRealDomain, "sender @"+from.Domain+" from a client that is not local")
	}
	if r, ok := t.Access.LookupFrom(from); ok {
		return fromEntry(r, Accept, reject(550, "5.7.1", textAccessDenied, ""))
	}
	if from.Domain == "" && c.IP.IsValid() {
		return reject(553, "5.5.4", textDomainRequired+" "+from.String(), "unqualified sender")
	}
	return Decision{Verdict: Accept}
}

// isLocalhostDomain reports whether domain names this very host in a way only
// a local client may use in MAIL FROM (proto.m4 Basic_check_mail).
func isLocalhostDomain(d string) bool {
	d = strings.ToLower(d)
	switch d {
	case "localhost", "[127.0.0.1]", "[ipv6:::1]":
		return true
	}
	return strings.HasPrefix(d, "localhost.")
}

// isLocalClient: Sendmail's test is "${client_name} is in class {w}"; the
// client named localhost is 127.0.0.1.
func isLocalClient(t *maps.Tables, c Client) bool {
	return !c.IP.IsValid() || IsLoopback(c.IP) || c.Hostname != "" && (strings.EqualFold(c.Hostname, "localhost") || t.LocalHostNames.Has(c.Hostname))
}

// maxInnerHops bounds how many hosts a local part may hide (user%a%b@c).
const maxInnerHops = 8

// CheckRcpt judges a recipient as proto.m4's Basic_check_rcpt does. local says
// whether the domain is one of ours (route.Resolver.IsLocalDomain; an
// unqualified recipient is local).
//
//  1. Hidden hosts (ParseRecipient, Parse0): when the domain is local, in
//     relay-domains or To: RELAY, and the local part names another host —
//     user%host@domain (the percent hack) or "user@host"@domain (a quoted
//     @) — that host is what is judged: Sendmail strips the local host and
//     checks user@host for relay permission. A source route
//     (@local:user@remote) is already gone (addr.ParsePath), leaving
//     user@remote. A UUCP path (host!user@domain) is not one: posthorn has no
//     UUCP, and '!' is an ordinary character of a local part, as with
//     FEATURE(nouucp); such a name is unknown to route.
//  2. The access table's To: entries that refuse a recipient
//     (FEATURE(blocklist_recipients)): user@domain, user@ (local domains only),
//     the domain and its parents. REJECT: "550 5.2.1 Mailbox disabled for
//     this recipient"; ERROR: its reply; DISCARD: the message is dropped. OK
//     and RELAY are no objection here.
//  3. A local recipient is accepted: it is no relay.
//  4. Relaying, permitted by the recipient: its domain (or a parent) is in
//     relay-domains, or To:domain (or a parent) is RELAY in access.
//  5. Relaying, permitted by the client: 127.0.0.1 or ::1; an authenticated
//     session; the client address in relay-domains; Connect: RELAY for the
//     address or a prefix; its [address] in local-host-names; then, if its
//     reverse lookup failed, the refusal of proto.m4 (450 4.4.0 on a temporary
//     failure, 550 5.7.1 for a forged or missing name); then its verified name
//     in local-host-names, ending in a relay-domains entry, or Connect: RELAY
//     for the name or a parent.
//  6. Otherwise "550 5.7.1 Relaying denied".
//
// An address literal (user@[192.0.2.1]) is never local: relaying to it needs
// permission like any remote domain.
func CheckRcpt(t *maps.Tables, c Client, rcpt addr.Address, local bool) Decision {
	eff, effLocal := rcpt, local || rcpt.Domain == ""
	for range maxInnerHops {
		if !effLocal && !relayToDomain(t, eff.Domain) {
			break
		}
		inner, ok := eff.Inner()
		if !ok {
			break
		}
		eff, effLocal = inner, isListedLocal(t, inner.Domain)
	}
	if r, ok := t.Access.LookupRcpt(eff, effLocal); ok {
		switch r.Action {
		case maps.ActionReject, maps.ActionError, maps.ActionDiscard, maps.ActionQuarantine:
			return fromEntry(r, Accept, reject(550, "5.2.1", textRcptRejected, ""))
		}
	}
	if effLocal {
		return Decision{Verdict: Accept}
	}
	if reason, ok := relayForRecipient(t, eff.Domain); ok {
		return Decision{Verdict: Relay, Reason: reason}
	}
	if d, decided := relayForClient(t, c); decided {
		if d.Verdict == Reject && d.Reason == "" {
			d.Reason = "relaying to " + eff.Domain + " denied"
		}
		return d
	}
	return reject(550, "5.7.1", textRelayDenied, "relaying to "+eff.Domain+" denied")
}

// isListedLocal reports whether the tables make domain local (local-host-names
// or virtusertable). policy does not know the server's hostname: a hidden host
// that is only the hostname counts as remote here, which errs on the side of
// refusing.
func isListedLocal(t *maps.Tables, domain string) bool {
	return domain == "localhost" || t.LocalHostNames.Has(domain) || t.Virtusertable.HasDomain(domain)
}

// relayToDomain reports whether mail to domain may be relayed whoever sends it.
func relayToDomain(t *maps.Tables, domain string) bool {
	_, ok := relayForRecipient(t, domain)
	return ok
}

// relayForRecipient is the recipient half of proto.m4 Rcpt_ok: the domain or
// a parent in relay-domains (class {R}), or To: RELAY for the domain or a
// parent.
func relayForRecipient(t *maps.Tables, domain string) (string, bool) {
	if domain == "" {
		return "", false
	}
	if !strings.HasPrefix(domain, "[") && t.RelayDomains.HasOrParent(domain) {
		return "recipient domain " + domain + " in relay-domains", true
	}
	if r, ok := t.Access.LookupToDomain(domain); ok && r.Action == maps.ActionRelay {
		return "access " + r.Key + " RELAY", true
	}
	return "", false
}

// relayForClient is proto.m4's Relay_ok, with the authenticated session of
// Rcpt_ok's TrustAuthMech check. decided is false when nothing permits or
// refuses: the caller answers "Relaying denied".
func relayForClient(t *maps.Tables, c Client) (Decision, bool) {
	relay := func(reason string) (Decision, bool) { return Decision{Verdict: Relay, Reason: reason}, true }
	switch {
	case IsLoopback(c.IP):
		return relay("loopback client")
	case c.Authenticated:
		return relay("authenticated client")
	}
	if c.IP.IsValid() {
		if t.RelayDomains.HasIP(c.IP) {
			return relay("client address in relay-domains")
		}
		if r, ok := t.Access.LookupConnectAddr(c.IP); ok && r.Action == maps.ActionRelay {
			return relay("access " + r.Key + " RELAY")
		}
		if t.LocalHostNames.HasLiteral(c.IP) {
			return relay("client [address] in local-host-names")
		}
	}
	ip := c.IP.String()
	switch c.PTR {
	case PTRTemp:
		return reject(450, "4.4.0", "Relaying temporarily denied. Cannot resolve PTR record for "+ip, "reverse DNS failed temporarily"), true
	case PTRForged:
		return reject(550, "5.7.1", "Relaying denied. IP name possibly forged "+ip, "reverse DNS possibly forged"), true
	case PTRFail:
		return reject(550, "5.7.1", "Relaying denied. IP name lookup failed "+ip, "reverse DNS lookup failed"), true
	}
	if name := strings.ToLower(strings.TrimSuffix(c.Hostname, ".")); name != "" {
		if t.LocalHostNames.Has(name) {
			return relay("client name in local-host-names")
		}
		if t.RelayDomains.HasOrParent(name) {
			return relay("client name in relay-domains")
		}
		if r, ok := t.Access.LookupConnectName(name); ok && r.Action == maps.ActionRelay {
			return relay("access " + r.Key + " RELAY")
		}
	}
	return Decision{}, false
}
