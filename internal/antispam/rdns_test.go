package antispam

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/policy"
)

func TestReverseDNS(t *testing.T) {
	srv := dnstest.Start(t)
	ptr := func(ip, name string) string {
		rev, err := dns.ReverseAddr(ip)
		if err != nil {
			t.Fatal(err)
		}
		return rev + " 60 IN PTR " + name
	}
	if err := srv.AddPTR("192.0.2.10", "mail.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddPTR("2001:db8::25", "v6.example.org"); err != nil {
		t.Fatal(err)
	}
	srv.MustAdd(t,
		ptr("192.0.2.11", "nohost.example.org."),
		ptr("192.0.2.12", "elsewhere.example.org."),
		"elsewhere.example.org. 60 IN A 192.0.2.99",
		ptr("192.0.2.13", "first.example.org."),
		ptr("192.0.2.13", "second.example.org."),
		"first.example.org. 60 IN A 192.0.2.98",
		"second.example.org. 60 IN A 192.0.2.13",
		// The address among several.
		ptr("192.0.2.14", "pool.example.org."),
		"pool.example.org. 60 IN A 192.0.2.1",
		"pool.example.org. 60 IN A 192.0.2.14",
	)
	// 20 names, of which only the 15th leads back: past the bound.
	for i := 1; i <= 20; i++ {
		srv.MustAdd(t, ptr("192.0.2.15", fmt.Sprintf("n%d.example.org.", i)))
		a := "192.0.2.200"
		if i == 15 {
			a = "192.0.2.15"
		}
		srv.MustAdd(t, fmt.Sprintf("n%d.example.org. 60 IN A %s", i, a))
	}
	r := dnsutil.New(srv.Addr)

	tests := []struct {
		ip     string
		status RDNSStatus
		name   string
		code   int
		says   string
	}{
		{"192.0.2.10", RDNSOK, "mail.example.org", 0, ""},
		{"::ffff:192.0.2.10", RDNSOK, "mail.example.org", 0, ""},
		{"2001:db8::25", RDNSOK, "v6.example.org", 0, ""},
		{"192.0.2.13", RDNSOK, "second.example.org", 0, ""},
		{"192.0.2.14", RDNSOK, "pool.example.org", 0, ""},
		{"192.0.2.11", RDNSFail, "nohost.example.org", 550, "nohost.example.org does not resolve to [192.0.2.11]"},
		{"192.0.2.12", RDNSFail, "elsewhere.example.org", 550, "elsewhere.example.org does not resolve"},
		{"192.0.2.77", RDNSFail, "", 550, "[192.0.2.77] has no name"},
		{"2001:db8::77", RDNSFail, "", 550, "has no name"},
		{"192.0.2.15", RDNSFail, "n1.example.org", 550, "n1.example.org does not resolve"},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.ip)
			res := ReverseDNS(context.Background(), r, ip, 5*time.Second)
			if res.Status != tt.status || res.Name != tt.name {
				t.Fatalf("ReverseDNS(%s) = %v %q (%v), want %v %q", tt.ip, res.Status, res.Name, res.Err, tt.status, tt.name)
			}
			d := res.Decision(ip)
			if tt.code == 0 {
				if d.Verdict != policy.Accept || !strings.Contains(d.Reason, tt.name) {
					t.Errorf("decision %+v, want accept naming %s", d, tt.name)
				}
				return
			}
			if d.Verdict != policy.Reject || d.Code != tt.code || d.Enhanced != "5.7.25" || !strings.Contains(d.Text, tt.says) {
				t.Errorf("decision %+v, want %d 5.7.25 saying %q", d, tt.code, tt.says)
			}
		})
	}
}

func TestReverseDNSTemporaryFailure(t *testing.T) {
	r := dnsutil.New(silentDNS(t))
	ip := netip.MustParseAddr("192.0.2.10")
	start := time.Now()
	res := ReverseDNS(context.Background(), r, ip, 300*time.Millisecond)
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v with a 300ms timeout", el)
	}
	if res.Status != RDNSTemp || res.Err == nil {
		t.Fatalf("ReverseDNS with a silent server = %+v, want temp with an error", res)
	}
	d := res.Decision(ip)
	if d.Verdict != policy.Reject || d.Code != 450 || d.Enhanced != "4.7.25" {
		t.Errorf("decision %+v, want 450 4.7.25", d)
	}

	// A name whose forward lookup fails temporarily, while another name
	// does not lead back: temporary, not a failure.
	fr := &fakeRDNS{ptr: []string{"a.example", "b.example"}, a: map[string][]netip.Addr{"b.example": {netip.MustParseAddr("192.0.2.99")}}}
	if res := ReverseDNS(context.Background(), fr, ip, time.Second); res.Status != RDNSTemp || res.Name != "a.example" {
		t.Errorf("= %+v, want temp", res)
	}
	// But a confirmed name wins over another's failure.
	fr.a["a.example"] = []netip.Addr{ip}
	fr.ptr = []string{"b.example", "c.example", "a.example"}
	if res := ReverseDNS(context.Background(), fr, ip, time.Second); res.Status != RDNSOK || res.Name != "a.example" {
		t.Errorf("= %+v, want ok a.example", res)
	}
}

// fakeRDNS answers PTR with ptr and A with a; a name not in a fails
// temporarily.
type fakeRDNS struct {
	slowResolver
	ptr []string
	a   map[string][]netip.Addr
}

func (f *fakeRDNS) LookupPTR(context.Context, netip.Addr) ([]string, error) { return f.ptr, nil }
func (f *fakeRDNS) LookupIP(_ context.Context, name string) ([]netip.Addr, error) {
	if a, ok := f.a[name]; ok {
		return a, nil
	}
	return nil, &dnsError{name}
}

type dnsError struct{ name string }

func (e *dnsError) Error() string { return "server failure looking up " + e.name }

func TestRDNSStatusString(t *testing.T) {
	for s, want := range map[RDNSStatus]string{RDNSOK: "ok", RDNSFail: "fail", RDNSTemp: "temp", 0: "?"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", s, s.String(), want)
		}
	}
}
