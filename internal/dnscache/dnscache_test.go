package dnscache

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// counting answers from a table and counts the questions it gets.
type counting struct {
	txt   map[string][]string
	fail  bool // answer with a temporary failure
	asked int
}

var notFound = &net.DNSError{Err: "no such host", IsNotFound: true}

func (c *counting) LookupTXT(_ context.Context, name string) ([]string, error) {
	c.asked++
	if c.fail {
		return nil, &net.DNSError{Err: "server misbehaving", IsTemporary: true}
	}
	if v, ok := c.txt[name]; ok {
		return v, nil
	}
	return nil, notFound
}
func (c *counting) LookupIP(context.Context, string) ([]netip.Addr, error) {
	c.asked++
	return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
}
func (c *counting) LookupMX(context.Context, string) ([]*net.MX, error) {
	c.asked++
	return nil, notFound
}
func (c *counting) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	c.asked++
	return []string{"x.example"}, nil
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1e9, 0)
	next := &counting{txt: map[string][]string{"a.example": {"v=spf1 -all"}}}
	r := &Resolver{Next: next, TTL: time.Minute, MaxEntries: 3, Now: func() time.Time { return now }}
	for _, tc := range []struct {
		name      string
		do        func() error
		wantAsked int
	}{
		{"first TXT asks", func() error { _, err := r.LookupTXT(ctx, "a.example"); return err }, 1},
		{"second is kept", func() error { _, err := r.LookupTXT(ctx, "a.example"); return err }, 1},
		{"not found asks", func() error { _, err := r.LookupTXT(ctx, "b.example"); return ignoreNF(err) }, 2},
		{"not found is kept", func() error { _, err := r.LookupTXT(ctx, "b.example"); return ignoreNF(err) }, 2},
		{"IP is a separate kind", func() error { _, err := r.LookupIP(ctx, "a.example"); return err }, 3},
		{"PTR is never kept", func() error { r.LookupPTR(ctx, netip.Addr{}); _, err := r.LookupPTR(ctx, netip.Addr{}); return err }, 5},
		{"after the TTL it asks again", func() error {
			now = now.Add(time.Minute)
			_, err := r.LookupTXT(ctx, "a.example")
			return err
		}, 6},
		{"a temporary failure is not kept", func() error {
			next.fail = true
			r.LookupTXT(ctx, "c.example")
			r.LookupTXT(ctx, "c.example")
			next.fail = false
			return nil
		}, 8},
	} {
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if next.asked != tc.wantAsked {
			t.Fatalf("%s: %d questions so far, want %d", tc.name, next.asked, tc.wantAsked)
		}
	}
	// The bound: never more than MaxEntries kept.
	for _, n := range []string{"1", "2", "3", "4", "5"} {
		r.LookupTXT(ctx, n)
	}
	r.mu.Lock()
	n := len(r.m)
	r.mu.Unlock()
	if n > 3 {
		t.Errorf("%d entries kept, bound 3", n)
	}
	// What is returned for a kept not-found is still a not-found.
	_, err := r.LookupTXT(ctx, "5")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("kept not-found: %v", err)
	}
}

func ignoreNF(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return nil
	}
	return err
}
