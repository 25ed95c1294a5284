package dnsutil_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
)

func TestLookupsGoToTheConfiguredServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.MustAdd(t,
		"example.test. 60 IN MX 10 mx1.example.test.",
		"example.test. 60 IN MX 20 mx2.example.test.",
		"example.test. 60 IN TXT \"v=spf1 -all\"",
		"mx1.example.test. 60 IN A 127.0.0.5",
	)
	r := dnsutil.New(srv.Addr)
	ctx := context.Background()

	mx, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.example.test." || mx[0].Pref != 10 {
		t.Errorf("MX = %v, %v", mx, err)
	}
	txt, err := r.LookupTXT(ctx, "example.test")
	if err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
		t.Errorf("TXT = %q, %v", txt, err)
	}
	ips, err := r.LookupIP(ctx, "mx1.example.test")
	if err != nil || len(ips) != 1 || ips[0] != netip.MustParseAddr("127.0.0.5") {
		t.Errorf("IP = %v, %v", ips, err)
	}
	if _, err := r.LookupMX(ctx, "nowhere.test"); !dnsutil.IsNotFound(err) {
		t.Errorf("missing name: err = %v, want not found", err)
	}
}

func TestVerifiedHostname(t *testing.T) {
	srv := dnstest.Start(t)
	if err := srv.AddPTR("127.0.0.2", "client.example.test"); err != nil {
		t.Fatal(err)
	}
	// 127.0.0.3 claims a name whose address is somebody else's: forged.
	srv.MustAdd(t, "3.0.0.127.in-addr.arpa. 60 IN PTR liar.example.test.", "liar.example.test. 60 IN A 127.0.0.99")
	r := dnsutil.New(srv.Addr)
	ctx := context.Background()
	for ip, want := range map[string]dnsutil.PTRResult{"127.0.0.2": dnsutil.PTRConfirmed, "127.0.0.3": dnsutil.PTRForged, "127.0.0.4": dnsutil.PTRNone} {
		if _, got := dnsutil.LookupClient(ctx, r, netip.MustParseAddr(ip), 2*time.Second); got != want {
			t.Errorf("LookupClient(%s) = %v, want %v", ip, got, want)
		}
	}
	// A resolver that does not answer is a temporary failure.
	dead := dnsutil.New("127.0.0.1:9") // discard port: nothing answers
	if _, got := dnsutil.LookupClient(ctx, dead, netip.MustParseAddr("127.0.0.2"), 300*time.Millisecond); got != dnsutil.PTRTempFail {
		t.Errorf("unanswered lookup = %v, want PTRTempFail", got)
	}
	for ip, want := range map[string]string{
		"127.0.0.2": "client.example.test",
		"127.0.0.3": "",
		"127.0.0.4": "", // no PTR at all
	} {
		got, err := dnsutil.VerifiedHostname(ctx, r, netip.MustParseAddr(ip), 2*time.Second)
		if err != nil || got != want {
			t.Errorf("VerifiedHostname(%s) = %q, %v; want %q", ip, got, err, want)
		}
	}
}
