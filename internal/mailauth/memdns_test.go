package mailauth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// memDNS is an in-memory dnsutil.Resolver for tests. It answers the way Go's
// own resolver (behind dnsutil.New) does: a name with no record of the type
// asked for, or no records at all, is a "not found" *net.DNSError; CNAMEs
// are followed; a name marked with a failure gives a temporary error.
type memDNS struct {
	mu    sync.Mutex
	zones map[string]*memName
}

type memName struct {
	a, aaaa  []netip.Addr
	mx       []*net.MX
	txt      []string
	ptr      []string
	cname    string
	timeout  bool
	servfail bool
}

func newMemDNS() *memDNS { return &memDNS{zones: map[string]*memName{}} }

func canonName(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func (m *memDNS) name(n string) *memName {
	m.mu.Lock()
	defer m.mu.Unlock()
	n = canonName(n)
	z := m.zones[n]
	if z == nil {
		z = &memName{}
		m.zones[n] = z
	}
	return z
}

func (m *memDNS) TXT(name string, txt ...string) *memDNS {
	z := m.name(name)
	z.txt = append(z.txt, txt...)
	return m
}

func (m *memDNS) A(name string, ips ...string) *memDNS {
	z := m.name(name)
	for _, s := range ips {
		ip := netip.MustParseAddr(s)
		if ip.Is4() {
			z.a = append(z.a, ip)
		} else {
			z.aaaa = append(z.aaaa, ip)
		}
	}
	return m
}

// validName reports whether Go's resolver would send a query for name at all:
// it answers "no such host" for names with empty or over-long labels.
func validName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// resolve follows CNAMEs from name and returns the final name's records.
func (m *memDNS) resolve(name string) (*memName, error) {
	if !validName(name) {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := canonName(name)
	for range 10 {
		z, ok := m.zones[n]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
		}
		if z.servfail {
			return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
		}
		if z.cname == "" {
			return z, nil
		}
		n = canonName(z.cname)
	}
	// A CNAME chain that does not end: Go reports the resolver's failure.
	return nil, &net.DNSError{Err: "CNAME loop", Name: name, IsTemporary: true}
}

// empty is the error for a name without records of the type asked for: "not
// found", or a timeout for a name marked so. A mark only affects the types the
// name has no records of, as the OpenSPF suite's "spftimeout" scenario needs
// (its TXT answers while its type SPF query would time out).
func (z *memName) empty(name string) error {
	if z.timeout {
		return &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true, IsTemporary: true}
	}
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (m *memDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	z, err := m.resolve(name)
	if err != nil {
		return nil, err
	}
	if len(z.txt) == 0 {
		return nil, z.empty(name)
	}
	return append([]string(nil), z.txt...), nil
}

func (m *memDNS) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	z, err := m.resolve(name)
	if err != nil {
		return nil, err
	}
	if len(z.mx) == 0 {
		return nil, z.empty(name)
	}
	return append([]*net.MX(nil), z.mx...), nil
}

func (m *memDNS) LookupIP(_ context.Context, host string) ([]netip.Addr, error) {
	z, err := m.resolve(host)
	if err != nil {
		return nil, err
	}
	ips := append(append([]netip.Addr(nil), z.a...), z.aaaa...)
	if len(ips) == 0 {
		return nil, z.empty(host)
	}
	return ips, nil
}

func (m *memDNS) LookupPTR(_ context.Context, ip netip.Addr) ([]string, error) {
	name := reverseName(ip)
	z, err := m.resolve(name)
	if err != nil {
		return nil, err
	}
	if len(z.ptr) == 0 {
		return nil, z.empty(name)
	}
	out := make([]string, len(z.ptr))
	for i, p := range z.ptr {
		out[i] = canonName(p)
	}
	return out, nil
}

// reverseName is ip's name under in-addr.arpa or ip6.arpa (RFC 1035 3.5,
// RFC 3596 2.5).
func reverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	var b strings.Builder
	s := ip.AsSlice()
	if ip.Is4() {
		for i := len(s) - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "%d.", s[i])
		}
		return b.String() + "in-addr.arpa"
	}
	for i := len(s) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "%x.%x.", s[i]&0xf, s[i]>>4)
	}
	return b.String() + "ip6.arpa"
}
