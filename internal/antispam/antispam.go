// Package antispam holds the SMTP server's defences against unwanted clients,
// each small and usable on its own:
//
//   - DNSBL: DNS blocklist lookups (RFC 5782), several zones at once;
//   - Greylist: the (sender, recipient, client network) triplet delay, kept in
//     a small SQLite file of its own;
//   - Limiter: token buckets per client address (/64 for IPv6), bounded in
//     memory;
//   - HELOCheck: the HELO/EHLO argument's syntax (RFC 5321 section 4.1.1.1)
//     and the claims it makes;
//   - ReverseDNS: forward-confirmed reverse DNS of the client;
//   - EarlyTalker: a client speaking before the greeting (RFC 5321 section
//     4.3.1: the client waits for it).
//
// Every check answers with a policy.Decision, the type the SMTP server already
// turns into replies and log lines: Accept, or Reject with the reply (4xx for
// a temporary refusal) and a Reason for the log. Which checks apply to whom
// (local networks, authenticated users) is the caller's choice; Exempt helps.
//
// Out of the box posthorn has no greylisting and no DNSBL (ARCHITECTURE.md);
// the limiter's defaults let one address send more than 10,000 messages a
// minute (a benchmark).
package antispam

import (
	"net/netip"
	"strings"

	"github.com/posthorn/posthorn/internal/policy"
)

// Exempt reports whether ip lies in one of nets (an IPv4-mapped IPv6 address
// counts as IPv4): the networks to which greylisting and the other checks do
// not apply, typically the local ones.
func Exempt(ip netip.Addr, nets []netip.Prefix) bool {
	ip = ip.Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientNetwork is the network a client address stands for: its /24 for IPv4
// and its /64 for IPv6, since a sender's retries and its neighbours commonly
// come from other addresses of one pool, and an IPv6 host usually has a whole
// /64 to pick addresses from. An invalid address gives the zero Prefix.
func ClientNetwork(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

func accept(reason string) policy.Decision {
	return policy.Decision{Verdict: policy.Accept, Reason: reason}
}

func refuse(code int, enhanced, text, reason string) policy.Decision {
	return policy.Decision{Verdict: policy.Reject, Code: code, Enhanced: enhanced, Text: text, Reason: reason}
}

// clean makes text from the network (a TXT record, a HELO argument) fit for a
// reply line and a log line: printable ASCII only, other bytes as '?', at most
// max bytes. A CR or LF in it would otherwise end the reply early and let the
// rest be read as another reply.
func clean(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b.WriteByte(c)
	}
	if len(s) > max {
		return b.String() + "..."
	}
	return b.String()
}
