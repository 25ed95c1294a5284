package antispam

import (
	"net/netip"
	"strings"

	"github.com/posthorn/posthorn/internal/policy"
)

// HELOCheck says which checks CheckHELO makes of the HELO/EHLO argument and
// what it knows of this host. DefaultHELOCheck turns them all on.
type HELOCheck struct {
	// Syntax: the argument is a fully qualified domain name or an address
	// literal (RFC 5321 section 4.1.1.1, "EHLO SP ( Domain /
	// address-literal )"; section 2.3.5: a name in HELO is fully
	// qualified).
	Syntax bool
	// Literal: an address literal is the client's own address (RFC 5321
	// section 4.1.4 lets the server check; a client that knows no name for
	// itself says where it connects from).
	Literal bool
	// Impersonation: a client that is not local does not claim one of
	// Hostnames or Addrs, a name or address of this host — a tell of
	// spamware.
	Impersonation bool

	Hostnames []string       // this host's names
	Addrs     []netip.Addr   // this host's addresses
	Local     []netip.Prefix // clients that may claim to be this host; nil means 127.0.0.0/8 and ::1
}

// DefaultHELOCheck turns every check on for a host of those names and
// addresses.
func DefaultHELOCheck(hostnames []string, addrs []netip.Addr) HELOCheck {
	return HELOCheck{Syntax: true, Literal: true, Impersonation: true, Hostnames: hostnames, Addrs: addrs}
}

var defaultLocal = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Check judges helo, the argument of HELO or EHLO from client. It accepts
// what it does not check; a refusal says which check failed.
func (h HELOCheck) Check(helo string, client netip.Addr) policy.Decision {
	client = client.Unmap()
	shown := clean(helo, 80)
	lit, isLit, err := parseHELO(helo)
	if err != "" {
		if !h.Syntax {
			return accept("")
		}
		// 501: a syntax error in the parameters (RFC 5321 section 4.2.3).
		return refuse(501, "5.5.2", "Invalid HELO name "+shown+": "+err, "helo "+shown+": "+err)
	}
	if isLit && h.Literal && client.IsValid() && lit != client {
		return refuse(550, "5.7.1", "HELO ["+lit.String()+"] is not your address ["+client.String()+"]",
			"helo "+shown+" from "+client.String()+": address literal is not the client's")
	}
	if h.Impersonation && client.IsValid() && !h.isLocal(client) {
		claimed := false
		if isLit {
			for _, a := range h.Addrs {
				claimed = claimed || a.Unmap() == lit
			}
		} else {
			name := strings.TrimSuffix(helo, ".")
			for _, n := range h.Hostnames {
				claimed = claimed || strings.EqualFold(strings.TrimSuffix(n, "."), name)
			}
		}
		if claimed {
			return refuse(550, "5.7.1", "HELO "+shown+" is this host, and you are not",
				"helo "+shown+" from "+client.String()+": claims to be this host")
		}
	}
	return accept("")
}

func (h HELOCheck) isLocal(ip netip.Addr) bool {
	for _, a := range h.Addrs {
		if a.Unmap() == ip {
			return true
		}
	}
	local := h.Local
	if local == nil {
		local = defaultLocal
	}
	return Exempt(ip, local)
}

// parseHELO parses a HELO argument: an address literal gives its address and
// isLit; a name gives neither. problem says what is wrong, "" when nothing.
func parseHELO(s string) (addr netip.Addr, isLit bool, problem string) {
	if s == "" {
		return addr, false, "empty"
	}
	if s[0] == '[' {
		return parseLiteral(s)
	}
	return addr, false, checkFQDN(s)
}

// parseLiteral parses an address literal (RFC 5321 section 4.1.3):
// "[192.0.2.1]" or "[IPv6:2001:db8::1]". The general form "[tag:...]" has no
// registered tag besides IPv6, so it is refused.
func parseLiteral(s string) (netip.Addr, bool, string) {
	if len(s) < 3 || s[len(s)-1] != ']' {
		return netip.Addr{}, true, "unterminated address literal"
	}
	inner := s[1 : len(s)-1]
	if v6, ok := cutPrefixFold(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, true, "bad IPv6 address literal"
		}
		// A mapped IPv4 address in IPv6 form names that IPv4 address.
		return a.Unmap(), true, ""
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return netip.Addr{}, true, "bad address literal"
	}
	return a, true, ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// checkFQDN checks a domain as RFC 5321 section 4.1.2 (Domain = sub-domain
// *("." sub-domain); sub-domain = Let-dig [Ldh-str]) and section 2.3.5 (fully
// qualified: at least two labels) with RFC 1035's lengths (63 per label, 255
// in all). One final dot is tolerated. A bare address is refused: RFC 5321
// wants it in brackets, and no top-level domain is all digits (RFC 3696
// section 2).
func checkFQDN(s string) string {
	s = strings.TrimSuffix(s, ".")
	if len(s) > 253 {
		return "name too long"
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "an address must be in brackets, [" + clean(s, 64) + "]"
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return "not a fully qualified domain name"
	}
	for _, l := range labels {
		switch {
		case l == "":
			return "empty label"
		case len(l) > 63:
			return "label too long"
		case l[0] == '-' || l[len(l)-1] == '-':
			return "label begins or ends with a hyphen"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "character not allowed in a domain name"
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return "all-numeric top-level domain"
	}
	return ""
}
