package antispam

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/policy"
)

func TestQueryName(t *testing.T) {
	tests := []struct {
		ip, zone, want string
	}{
		// RFC 5782 section 2.1's example.
		{"192.0.2.99", "bl.example", "99.2.0.192.bl.example."},
		{"192.0.2.99", "BL.Example.", "99.2.0.192.bl.example."},
		{"::ffff:192.0.2.99", "bl.example", "99.2.0.192.bl.example."},
		{"10.0.0.255", "bl.example", "255.0.0.10.bl.example."},
		// RFC 5782 section 2.4's example.
		{"2001:db8:1:2:3:4:567:89ab", "ugly.example", "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example."},
		{"192.0.2.99", "", ""},
		{"192.0.2.99", ".", ""},
	}
	for _, tt := range tests {
		if got := QueryName(netip.MustParseAddr(tt.ip), tt.zone); got != tt.want {
			t.Errorf("QueryName(%s, %q) = %q, want %q", tt.ip, tt.zone, got, tt.want)
		}
	}
	if got := QueryName(netip.Addr{}, "bl.example"); got != "" {
		t.Errorf("QueryName(invalid) = %q", got)
	}
}

// silentDNS returns the address of a UDP socket on 127.0.0.1 that never
// answers, and TCP connections to which are refused: a DNS server that
// has gone away.
func silentDNS(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestDNSBLLookup(t *testing.T) {
	srv := dnstest.Start(t)
	srv.MustAdd(t,
		`99.2.0.192.a.test. 60 IN A 127.0.0.2`,
		`99.2.0.192.a.test. 60 IN TXT "Listed by A, see https://a.test/lookup?ip=192.0.2.99"`,
		`99.2.0.192.notxt.test. 60 IN A 127.0.0.4`,
		`99.2.0.192.err.test. 60 IN A 127.255.255.254`,
		`99.2.0.192.wild.test. 60 IN A 192.0.2.1`,
		`99.2.0.192.mixed.test. 60 IN A 127.255.255.252`,
		`99.2.0.192.mixed.test. 60 IN A 127.0.0.10`,
		`99.2.0.192.mixed.test. 60 IN A 127.0.0.11`,
		`99.2.0.192.evil.test. 60 IN A 127.0.0.3`,
		`99.2.0.192.evil.test. 60 IN TXT "first\013\010550 injected"`,
		`99.2.0.192.evil.test. 60 IN TXT "second"`,
		`b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.v6.test. 60 IN A 127.0.0.2`,
		`b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.v6.test. 60 IN TXT "v6 listed"`,
		// Another address is listed in b.test, not 192.0.2.99.
		`98.2.0.192.b.test. 60 IN A 127.0.0.2`,
	)
	d := &DNSBL{Resolver: dnsutil.New(srv.Addr), Timeout: 5 * time.Second}

	type want struct {
		listed  bool
		answers []string
		text    string
		err     string // a substring of Err; "" for none
	}
	tests := []struct {
		name string
		ip   string
		zone string
		want want
	}{
		{"listed with reason", "192.0.2.99", "a.test", want{true, []string{"127.0.0.2"}, "Listed by A, see https://a.test/lookup?ip=192.0.2.99", ""}},
		{"zone written with a dot and capitals", "192.0.2.99", "A.Test.", want{true, []string{"127.0.0.2"}, "Listed by A, see https://a.test/lookup?ip=192.0.2.99", ""}},
		{"mapped address asked as IPv4", "::ffff:192.0.2.99", "a.test", want{true, []string{"127.0.0.2"}, "Listed by A, see https://a.test/lookup?ip=192.0.2.99", ""}},
		{"listed without TXT", "192.0.2.99", "notxt.test", want{true, []string{"127.0.0.4"}, "", ""}},
		{"not listed (NXDOMAIN)", "192.0.2.99", "b.test", want{false, nil, "", ""}},
		{"neighbour listed, not this one", "192.0.2.98", "a.test", want{false, nil, "", ""}},
		{"Spamhaus error code", "192.0.2.99", "err.test", want{false, nil, "", "127.255.255.254 (an error code)"}},
		{"answer outside 127/8", "192.0.2.99", "wild.test", want{false, nil, "", "192.0.2.1 (outside 127.0.0.0/8"}},
		{"error code among real answers", "192.0.2.99", "mixed.test", want{true, []string{"127.0.0.10", "127.0.0.11"}, "", ""}},
		{"TXT with CR LF cleaned and strings joined", "192.0.2.99", "evil.test", want{true, []string{"127.0.0.3"}, "first??550 injected second", ""}},
		{"IPv6 nibbles", "2001:db8:1:2:3:4:567:89ab", "v6.test", want{true, []string{"127.0.0.2"}, "v6 listed", ""}},
		{"IPv6 not listed", "2001:db8::1", "v6.test", want{false, nil, "", ""}},
		{"empty zone", "192.0.2.99", "", want{false, nil, "", "no query"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := d.Lookup(context.Background(), netip.MustParseAddr(tt.ip), []string{tt.zone})
			if len(ls) != 1 {
				t.Fatalf("got %d listings, want 1", len(ls))
			}
			l := ls[0]
			if l.Listed != tt.want.listed {
				t.Errorf("Listed = %v, want %v (err %v)", l.Listed, tt.want.listed, l.Err)
			}
			var answers []string
			for _, a := range l.Answers {
				answers = append(answers, a.String())
			}
			slices.Sort(answers)
			if !slices.Equal(answers, tt.want.answers) {
				t.Errorf("Answers = %v, want %v", answers, tt.want.answers)
			}
			if l.Text != tt.want.text {
				t.Errorf("Text = %q, want %q", l.Text, tt.want.text)
			}
			switch {
			case tt.want.err == "" && l.Err != nil:
				t.Errorf("Err = %v, want none", l.Err)
			case tt.want.err != "" && (l.Err == nil || !strings.Contains(l.Err.Error(), tt.want.err)):
				t.Errorf("Err = %v, want one saying %q", l.Err, tt.want.err)
			}
		})
	}

	// Several zones at once: the answers come in the zones' order.
	zones := []string{"b.test", "err.test", "a.test", "v6.test"}
	ls := d.Lookup(context.Background(), netip.MustParseAddr("192.0.2.99"), zones)
	for i, l := range ls {
		if l.Zone != zones[i] {
			t.Errorf("listing %d is of %q, want %q", i, l.Zone, zones[i])
		}
	}
	first, ok := FirstListed(ls)
	if !ok || first.Zone != "a.test" {
		t.Errorf("FirstListed = %q %v, want a.test", first.Zone, ok)
	}
	if err := ListingErrors(ls); err == nil || !strings.Contains(err.Error(), "err.test") {
		t.Errorf("ListingErrors = %v, want err.test's", err)
	}
	dec := DNSBLDecision(netip.MustParseAddr("192.0.2.99"), ls)
	if dec.Verdict != policy.Reject || dec.Code != 554 || dec.Enhanced != "5.7.1" {
		t.Errorf("decision %+v, want a 554 5.7.1 refusal", dec)
	}
	for _, s := range []string{"[192.0.2.99]", "a.test", "Listed by A"} {
		if !strings.Contains(dec.Text, s) {
			t.Errorf("reply %q does not say %q", dec.Text, s)
		}
	}
	if !strings.Contains(dec.Reason, "a.test") || !strings.Contains(dec.Reason, "127.0.0.2") {
		t.Errorf("reason %q names neither the zone nor the answer", dec.Reason)
	}

	dec = DNSBLDecision(netip.MustParseAddr("192.0.2.99"), d.Lookup(context.Background(), netip.MustParseAddr("192.0.2.99"), []string{"b.test", "err.test"}))
	if dec.Verdict != policy.Accept || !strings.Contains(dec.Reason, "err.test") {
		t.Errorf("decision %+v, want accept with err.test's failure in the reason", dec)
	}
	if dec := DNSBLDecision(netip.MustParseAddr("192.0.2.99"), nil); dec.Verdict != policy.Accept {
		t.Errorf("no zones: %+v", dec)
	}
}

func TestDNSBLTemporaryFailure(t *testing.T) {
	d := &DNSBL{Resolver: dnsutil.New(silentDNS(t)), Timeout: 300 * time.Millisecond}
	start := time.Now()
	ls := d.Lookup(context.Background(), netip.MustParseAddr("192.0.2.99"), []string{"a.test", "b.test"})
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("lookup took %v with a 300ms timeout", el)
	}
	for _, l := range ls {
		if l.Listed || l.Err == nil {
			t.Errorf("%s: Listed %v, Err %v; want not listed, with the failure", l.Zone, l.Listed, l.Err)
		}
	}
	if dec := DNSBLDecision(netip.MustParseAddr("192.0.2.99"), ls); dec.Verdict != policy.Accept {
		t.Errorf("a failing list refused the client: %+v", dec)
	}
}

// slowResolver answers every A query with 127.0.0.2 after a delay, and
// counts the queries in flight at once.
type slowResolver struct {
	delay          time.Duration
	inFlight, peak atomic.Int32
}

func (s *slowResolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-time.After(s.delay):
		return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (s *slowResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return []string{"because " + name}, nil
}
func (s *slowResolver) LookupPTR(context.Context, netip.Addr) ([]string, error) { return nil, nil }
func (s *slowResolver) LookupMX(context.Context, string) ([]*net.MX, error)     { return nil, nil }

func TestDNSBLConcurrent(t *testing.T) {
	r := &slowResolver{delay: 200 * time.Millisecond}
	d := &DNSBL{Resolver: r}
	zones := []string{"z1.test", "z2.test", "z3.test", "z4.test", "z5.test", "z6.test"}
	ls := d.Lookup(context.Background(), netip.MustParseAddr("192.0.2.1"), zones)
	if p := r.peak.Load(); p != int32(len(zones)) {
		t.Errorf("at most %d queries in flight, want all %d at once", p, len(zones))
	}
	for i, l := range ls {
		if !l.Listed || l.Text != "because 1.2.0.192."+zones[i]+"." {
			t.Errorf("%s: %+v", zones[i], l)
		}
	}

	// The timeout covers the whole lookup, and a zone that did not answer
	// in time is not listed.
	r = &slowResolver{delay: time.Hour}
	d = &DNSBL{Resolver: r, Timeout: 100 * time.Millisecond}
	start := time.Now()
	ls = d.Lookup(context.Background(), netip.MustParseAddr("192.0.2.1"), zones)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("lookup took %v with a 100ms timeout", el)
	}
	for _, l := range ls {
		if l.Listed || l.Err == nil {
			t.Errorf("%s: %+v, want not listed with an error", l.Zone, l)
		}
	}
}
