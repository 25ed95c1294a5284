package maps

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/addr"
)

// DomainList is a Sendmail class file: local-host-names (class {w}) or
// relay-domains (class {R}). Entries are domain names, IPv4 prefixes of whole
// octets ("128.32"), or "IPv6:" addresses and prefixes.
type DomainList struct {
	names map[string]bool
	ips   map[string]bool // keys as ipKeys makes them
}

// ParseDomainList reads a class file: words separated by whitespace, '#' to the
// end of the line a comment.
func ParseDomainList(file string, r io.Reader) (*DomainList, error) {
	d := &DomainList{names: map[string]bool{}, ips: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLength)
	n := 1
	for ; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		for _, w := range strings.Fields(line) {
			if len(d.names)+len(d.ips) >= maxEntries {
				return nil, &ParseError{file, n, "too many entries"}
			}
			lw := strings.ToLower(strings.TrimSuffix(w, "."))
			switch {
			case strings.HasPrefix(lw, "ipv6:"):
				d.ips[normaliseAccessKey(lw)] = true
			case isIPv4Prefix(lw):
				d.ips[lw] = true
			case strings.HasPrefix(lw, "[") && strings.HasSuffix(lw, "]"):
				// "[192.0.2.1]" (an address literal of our own) or "[UNIX:localhost]".
				d.names[normaliseAccessKey(lw)] = true
			case !strings.HasSuffix(lw, ".") && addr.ValidDomain(lw):
				d.names[lw] = true
			default:
				return nil, &ParseError{file, n, fmt.Sprintf("%q is not a domain name or an address prefix", w)}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, scanError(file, n, err)
	}
	return d, nil
}

// isIPv4Prefix reports whether s is 1 to 4 decimal octets: "192", "192.168.69".
func isIPv4Prefix(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 || p != strconv.Itoa(n) {
			return false
		}
	}
	return true
}

// Has reports whether domain is listed exactly (local-host-names). An address
// literal ("[192.0.2.1]") is compared in its normal form.
func (d *DomainList) Has(domain string) bool {
	if d == nil || len(d.names) == 0 {
		return false
	}
	return d.names[normaliseAccessKey(domain)]
}

// HasLiteral reports whether the address literal of ip ("[192.0.2.1]",
// "[IPv6:2001:db8::1]") is listed: Sendmail relays for a client whose [ip] is
// in class {w} (proto.m4 Relay_ok).
func (d *DomainList) HasLiteral(ip netip.Addr) bool {
	return d != nil && ip.IsValid() && len(d.names) > 0 && d.names[literalName(ip)]
}

// HasOrParent reports whether domain or one of its parents is listed
// (relay-domains covers subdomains unless FEATURE(relay_hosts_only), README:2404).
func (d *DomainList) HasOrParent(domain string) bool {
	if d == nil {
		return false
	}
	for _, p := range parentDomains(strings.ToLower(strings.TrimSuffix(domain, "."))) {
		if d.names[p] {
			return true
		}
	}
	return false
}

// HasIP reports whether ip falls under a listed prefix.
func (d *DomainList) HasIP(ip netip.Addr) bool {
	if d == nil || !ip.IsValid() || len(d.ips) == 0 {
		return false
	}
	for _, k := range ipKeys(ip) {
		if d.ips[k] {
			return true
		}
	}
	return false
}

// Names returns the listed names, sorted.
func (d *DomainList) Names() []string {
	if d == nil {
		return nil
	}
	out := make([]string, 0, len(d.names))
	for n := range d.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Len is the number of entries.
func (d *DomainList) Len() int {
	if d == nil {
		return 0
	}
	return len(d.names) + len(d.ips)
}
