package mailauth

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// The SPF library evaluates a record term by term and stops at the first
// match, so a syntax error after a matching term goes unnoticed. RFC 7208
// section 4.6 says otherwise: "If there are any syntax errors anywhere in the
// record, check_host() returns immediately with the result "permerror",
// without further interpretation or evaluation." checkSPFSyntax checks a whole
// record against the ABNF of RFC 7208 section 12 before the library sees it.

// isSPFRecord reports whether a TXT string is an SPF record: "v=spf1" alone
// or followed by a space (RFC 7208 section 4.5).
func isSPFRecord(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

var spfModifierName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*=`)

// checkSPFSyntax returns nil when record (which isSPFRecord) follows the
// grammar, or an error naming the first offending term.
func checkSPFSyntax(record string) error {
	var redirects, exps int
	for _, term := range strings.Split(record[6:], " ") {
		if term == "" { // terms are separated by 1*SP, and *SP may end the record
			continue
		}
		if err := checkSPFTerm(term, &redirects, &exps); err != nil {
			return fmt.Errorf("%q: %w", term, err)
		}
	}
	// RFC 7208 section 6: redirect and exp each appear at most once.
	if redirects > 1 || exps > 1 {
		return errors.New("redirect= or exp= given more than once")
	}
	return nil
}

func checkSPFTerm(term string, redirects, exps *int) error {
	if m := spfModifierName.FindString(term); m != "" {
		name, val := strings.ToLower(m[:len(m)-1]), term[len(m):]
		switch name {
		case "redirect":
			*redirects++
			return checkDomainSpec(val)
		case "exp":
			*exps++
			return checkDomainSpec(val)
		}
		return checkMacroString(val)
	}
	if strings.ContainsRune("+-?~", rune(term[0])) {
		term = term[1:]
	}
	name, arg := term, ""
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg = term[:i], term[i:]
	}
	switch strings.ToLower(name) {
	case "all":
		if arg != "" {
			return errors.New("all takes no argument")
		}
		return nil
	case "include", "exists":
		d, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("a domain is required")
		}
		return checkDomainSpec(d)
	case "ptr":
		if arg == "" {
			return nil
		}
		d, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("ptr takes no CIDR length")
		}
		return checkDomainSpec(d)
	case "a", "mx":
		d, cidr := splitDualCIDR(arg)
		if err := checkDualCIDR(cidr); err != nil {
			return err
		}
		if d == "" {
			return nil
		}
		d, ok := strings.CutPrefix(d, ":")
		if !ok {
			return errors.New("bad argument")
		}
		return checkDomainSpec(d)
	case "ip4":
		net, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("an address is required")
		}
		addr, cidr, hasCIDR := strings.Cut(net, "/")
		if !ip4Network.MatchString(addr) {
			return errors.New("bad IPv4 address")
		}
		if hasCIDR && !cidrLength(cidr, 32) {
			return errors.New("bad IPv4 CIDR length")
		}
		return nil
	case "ip6":
		net, ok := strings.CutPrefix(arg, ":")
		if !ok {
			return errors.New("an address is required")
		}
		addr, cidr, hasCIDR := strings.Cut(net, "/")
		ip, err := netip.ParseAddr(addr)
		if err != nil || !strings.Contains(addr, ":") || ip.Zone() != "" {
			return errors.New("bad IPv6 address")
		}
		if hasCIDR && !cidrLength(cidr, 128) {
			return errors.New("bad IPv6 CIDR length")
		}
		return nil
	}
	return errors.New("unknown mechanism")
}

// ip4-network: four qnum, each 0-255 without leading zeros.
var ip4Network = regexp.MustCompile(`^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$`)

// dualCIDRSuffix finds a trailing dual-cidr-length ("/24", "//64", "/24//64").
var dualCIDRSuffix = regexp.MustCompile(`(/[0-9]*)?(//[0-9]*)?$`)

func splitDualCIDR(arg string) (string, string) {
	loc := dualCIDRSuffix.FindStringIndex(arg)
	return arg[:loc[0]], arg[loc[0]:]
}

func checkDualCIDR(s string) error {
	if s == "" {
		return nil
	}
	v4, v6, _ := strings.Cut(s, "//")
	if v4 != "" && !cidrLength(strings.TrimPrefix(v4, "/"), 32) {
		return errors.New("bad IPv4 CIDR length")
	}
	if strings.Contains(s, "//") && !cidrLength(v6, 128) {
		return errors.New("bad IPv6 CIDR length")
	}
	return nil
}

// cidrLength: "0" or a number without a leading zero, at most max.
func cidrLength(s string, max int) bool {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= max
}

// checkMacroString checks macro-string: macro-literal characters (visible
// ASCII but "%") and macro-expands. It returns the kind of the last item
// for domain-spec's check of its end.
func checkMacroString(s string) error {
	_, err := scanMacroString(s)
	return err
}

// scanMacroString returns the literal text after the last macro-expand.
func scanMacroString(s string) (tail string, err error) {
	tailStart := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e {
				return "", fmt.Errorf("character %#x not allowed", c)
			}
			i++
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("% at the end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i += 2
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", errors.New("unterminated macro")
			}
			if err := checkMacroBody(s[i+2 : i+end]); err != nil {
				return "", err
			}
			i += end + 1
		default:
			return "", fmt.Errorf("%%%c is not a macro", s[i+1])
		}
		tailStart = i
	}
	return s[tailStart:], nil
}

// checkMacroBody checks macro-letter transformers *delimiter (RFC 7208
// section 7.1). The letters c, r and t are allowed only in exp text, which
// is not part of a record.
func checkMacroBody(b string) error {
	if b == "" {
		return errors.New("empty macro")
	}
	if !strings.ContainsRune("slodiphvSLODIPHV", rune(b[0])) {
		return fmt.Errorf("macro letter %q not allowed here", b[0])
	}
	b = b[1:]
	for b != "" && b[0] >= '0' && b[0] <= '9' {
		b = b[1:]
	}
	if b != "" && (b[0] == 'r' || b[0] == 'R') {
		b = b[1:]
	}
	for _, c := range b {
		if !strings.ContainsRune(".-+,/_=", c) {
			return fmt.Errorf("bad macro delimiter %q", c)
		}
	}
	return nil
}

// checkDomainSpec checks domain-spec = macro-string domain-end, where
// domain-end is "." toplabel ["."] or a macro-expand.
func checkDomainSpec(s string) error {
	if s == "" {
		return errors.New("empty domain")
	}
	tail, err := scanMacroString(s)
	if err != nil {
		return err
	}
	if tail == "" { // ends with a macro-expand
		return nil
	}
	tail = strings.TrimSuffix(tail, ".")
	i := strings.LastIndexByte(tail, '.')
	if i < 0 {
		return errors.New("domain does not end in a dot and a top label")
	}
	if !isTopLabel(tail[i+1:]) {
		return fmt.Errorf("bad top label %q", tail[i+1:])
	}
	return nil
}

// isTopLabel: letters, digits and inner hyphens, not all digits.
func isTopLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	alpha := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			alpha = true
		case c >= '0' && c <= '9':
		case c == '-':
			alpha = true // the second form of toplabel allows digits around a hyphen
		default:
			return false
		}
	}
	return alpha
}
