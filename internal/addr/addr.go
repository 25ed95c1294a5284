// Package addr parses mail addresses as SMTP carries them (RFC 5321 section
// 4.1.2 paths, with RFC 6531 internationalised local parts and domains): the
// local part, the domain, +detail. It is the bottom layer that the tables,
// routing and policy share, so that they all agree on what an address is.
package addr

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 5321 section 4.5.3.1.
const (
	MaxLocalPart = 64
	MaxDomain    = 255
	MaxPath      = 256
)

// Address is a parsed mailbox. Local is the local part in its unquoted form
// with its case kept (local parts are case-sensitive in principle; lookups fold
// case, as Sendmail's do). Domain is lower-case without a trailing dot, "" for
// an unqualified name such as "postmaster", or an address literal in brackets
// ("[192.0.2.1]", "[IPv6:2001:db8::1]").
type Address struct {
	Local  string
	Domain string
}

// String returns local@domain, quoting the local part when it is not a
// dot-atom (RFC 5321 section 4.1.2).
func (a Address) String() string {
	if a.Local == "" && a.Domain == "" {
		return ""
	}
	local := a.Local
	if !isDotAtom(local) {
		local = quote(local)
	}
	if a.Domain == "" {
		return local
	}
	return local + "@" + a.Domain
}

// IsZero reports whether a is the empty address (the null reverse-path).
func (a Address) IsZero() bool { return a.Local == "" && a.Domain == "" }

// IsLiteral reports whether the domain is an address literal.
func (a Address) IsLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// User returns the local part before any "+detail".
func (a Address) User() string {
	u, _, _ := SplitDetail(a.Local)
	return u
}

// Inner returns the address hidden in the local part, the way Sendmail's
// canonify and Parse0 rulesets read it (proto.m4 ruleset 0: "...@here ->
// ..."): a local part holding '@' (only possible quoted: "user@remote"@here)
// or '%' (the percent hack: user%remote@here) names another host. The
// rightmost '@', else the rightmost '%', separates it: user%a%b@here is
// user%a@b. ok is false when the local part names no host or the host is not
// a valid domain or address literal. Callers use it to judge relaying; it is
// never a reason to deliver elsewhere by itself.
func (a Address) Inner() (Address, bool) {
	local := a.Local
	i := strings.LastIndexByte(local, '@')
	if i < 0 {
		i = strings.LastIndexByte(local, '%')
	}
	if i <= 0 || i == len(local)-1 {
		return Address{}, false
	}
	d, err := normaliseDomain(local[i+1:])
	if err != nil {
		return Address{}, false
	}
	return Address{Local: local[:i], Domain: d}, true
}

// SplitDetail splits "user+detail" at the first '+' (Sendmail's +detail
// convention): ("user", "detail", true). Without '+': (local, "", false).
func SplitDetail(local string) (user, detail string, hasPlus bool) {
	i := strings.IndexByte(local, '+')
	if i < 0 {
		return local, "", false
	}
	return local[:i], local[i+1:], true
}

// Errors from ParsePath.
var (
	ErrEmpty    = errors.New("addr: empty address")
	ErrSyntax   = errors.New("addr: bad address syntax")
	ErrTooLong  = errors.New("addr: address too long")
	ErrNoDomain = errors.New("addr: address has no domain")
)

// ParsePath parses the inside of an SMTP path (what stands between < and > in
// MAIL FROM and RCPT TO). A source route ("@a,@b:user@dom") is dropped, as RFC
// 5321 section 3.3 and appendix C allow. With requireDomain an unqualified name
// is refused.
func ParsePath(s string, requireDomain bool) (Address, error) {
	if s == "" {
		return Address{}, ErrEmpty
	}
	if len(s) > MaxPath {
		return Address{}, ErrTooLong
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return Address{}, ErrSyntax
		}
	}
	if !utf8.ValidString(s) {
		return Address{}, ErrSyntax
	}
	// A-d-l ":" Mailbox: each route hop is "@" domain, separated by commas.
	if strings.HasPrefix(s, "@") {
		colon := strings.IndexByte(s, ':')
		if colon < 0 {
			return Address{}, ErrSyntax
		}
		for _, hop := range strings.Split(s[:colon], ",") {
			if !strings.HasPrefix(hop, "@") || !validDomain(strings.ToLower(hop[1:])) {
				return Address{}, ErrSyntax
			}
		}
		s = s[colon+1:]
	}
	local, rest, err := parseLocalPart(s)
	if err != nil {
		return Address{}, err
	}
	a := Address{Local: local}
	switch {
	case rest == "":
		if requireDomain {
			return Address{}, ErrNoDomain
		}
	case rest[0] == '@':
		d, err := normaliseDomain(rest[1:])
		if err != nil {
			return Address{}, err
		}
		a.Domain = d
	default:
		return Address{}, ErrSyntax
	}
	if len(a.Local) > MaxLocalPart {
		return Address{}, ErrTooLong
	}
	return a, nil
}

// parseLocalPart reads a dot-string or quoted-string local part (RFC 5321
// section 4.1.2) and returns it unquoted with the rest of s.
func parseLocalPart(s string) (local, rest string, err error) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\':
				if i+1 >= len(s) {
					return "", "", ErrSyntax
				}
				i++
				b.WriteByte(s[i])
			case c == '"':
				if i > MaxLocalPart+1 {
					return "", "", ErrTooLong
				}
				if b.Len() == 0 {
					return "", "", ErrSyntax
				}
				return b.String(), s[i+1:], nil
			default:
				b.WriteByte(c)
			}
		}
		return "", "", ErrSyntax
	}
	end := strings.IndexByte(s, '@')
	if end < 0 {
		end = len(s)
	}
	local = s[:end]
	if !isDotAtom(local) {
		return "", "", ErrSyntax
	}
	return local, s[end:], nil
}

// atext of RFC 5322 section 3.2.3, plus UTF-8 (RFC 6531 section 3.3).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if !isAtext(c) {
			return false
		}
	}
	return true
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// normaliseDomain checks a domain or address literal and returns it lower-case
// without a trailing dot.
func normaliseDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return "", ErrSyntax
		}
		inner := d[1 : len(d)-1]
		if v6, ok := cutPrefixFold(inner, "IPv6:"); ok {
			ip, err := netip.ParseAddr(v6)
			if err != nil || !ip.Is6() || ip.Zone() != "" {
				return "", ErrSyntax
			}
			return "[IPv6:" + ip.String() + "]", nil
		}
		ip, err := netip.ParseAddr(inner)
		if err != nil || !ip.Is4() {
			return "", ErrSyntax
		}
		return "[" + ip.String() + "]", nil
	}
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if len(d) > MaxDomain {
		return "", ErrTooLong
	}
	if !validDomain(d) {
		return "", ErrSyntax
	}
	return d, nil
}

// validDomain checks a lower-case domain: labels of letters, digits and
// hyphens (or UTF-8, RFC 6531), not starting or ending with a hyphen, 63 octets
// at most.
func validDomain(d string) bool {
	if d == "" || len(d) > MaxDomain {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// ValidDomain reports whether d is a syntactically valid domain name.
func ValidDomain(d string) bool { return validDomain(strings.ToLower(strings.TrimSuffix(d, "."))) }

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}
