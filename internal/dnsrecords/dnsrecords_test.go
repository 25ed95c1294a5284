package dnsrecords

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/mailauth"
)

func testDomain(t *testing.T) Domain {
	t.Helper()
	dir := t.TempDir()
	if err := mailauth.GenerateKeys(dir, "example.org", "s1"); err != nil {
		t.Fatal(err)
	}
	s, err := mailauth.LoadSigner(dir, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	return Domain{Name: "example.org", Hostname: "mx.example.org", Keys: keys, Submission: 587, IMAPS: 993, HostRecords: true, Autoconfig: true}
}

// The records printed, published in a zone, check as ok; each one removed
// or changed is named missing or wrong.
func TestRecordsAndCheck(t *testing.T) {
	d := testDomain(t)
	rs := Records(d)
	byWhat := map[string]Record{}
	for _, r := range rs {
		byWhat[r.What] = r
	}
	for _, w := range []string{"MX", "SPF", "SPF for the HELO name", "DKIM ed25519", "DKIM rsa", "DMARC", "SRV submission", "SRV imaps", "SRV pop3s", "autoconfig (Thunderbird and others)"} {
		if _, ok := byWhat[w]; !ok {
			t.Errorf("no %s record in %v", w, rs)
		}
	}
	if v := byWhat["SRV pop3s"].Value; v != "0 0 0 ." {
		t.Errorf("POP3S not offered: SRV %q, want RFC 6186's \"0 0 0 .\"", v)
	}
	zone := Zone(rs)
	if !strings.Contains(zone, "s1-rsa._domainkey.example.org.") || !strings.Contains(zone, "( \"v=DKIM1; k=rsa;") {
		t.Errorf("zone:\n%s", zone)
	}

	publish := func(srv *dnstest.Server, skip, replace string) {
		srv.MustAdd(t, "mx.example.org. 60 IN A 192.0.2.25")
		for _, line := range strings.Split(strings.TrimSpace(zone), "\n") {
			if skip != "" && strings.Contains(line, skip) {
				continue
			}
			if replace != "" && strings.Contains(line, replace) {
				line = strings.Replace(line, "-all", "ip4:198.51.100.1 -all", 1)
			}
			srv.MustAdd(t, line)
		}
	}
	check := func(srv *dnstest.Server) map[string]Finding {
		r := dnsutil.New(srv.Addr)
		nr := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Addr)
		}}
		c := &Checker{Resolver: r, SRV: nr.LookupSRV}
		out := map[string]Finding{}
		for _, f := range c.Check(context.Background(), d, rs) {
			out[f.Record.What] = f
		}
		return out
	}
	// A multi-string TXT record in zone syntax over several lines is not
	// one line for dnstest: publish the RSA key on one line.
	zone = strings.ReplaceAll(strings.ReplaceAll(zone, "(", ""), ")", "")
	zone = strings.ReplaceAll(zone, "\n\t", " ")

	full := dnstest.Start(t)
	publish(full, "", "")
	for w, f := range check(full) {
		if f.Status != OK {
			t.Errorf("all published: %s is %s (%s)", w, f.Status, f.Detail)
		}
	}

	partial := dnstest.Start(t)
	publish(partial, "_dmarc", "v=spf1 mx")
	partial.MustAdd(t, "s1-ed25519._domainkey.example.org. 60 IN TXT \"v=DKIM1; k=ed25519; p=AAAA\"")
	got := check(partial)
	for w, want := range map[string]Status{"DMARC": Missing, "MX": OK, "DKIM rsa": OK, "SRV imaps": OK} {
		if got[w].Status != want {
			t.Errorf("%s: %s (%s), want %s", w, got[w].Status, got[w].Detail, want)
		}
	}
	// The SPF record still passes the MX's address (ip4: was added to it):
	// a different text that does the job is ok.
	if got["SPF"].Status != OK {
		t.Errorf("SPF with an extra mechanism: %s (%s)", got["SPF"].Status, got["SPF"].Detail)
	}

	wrong := dnstest.Start(t)
	wrong.MustAdd(t, "example.org. 60 IN MX 10 mx.other.example.",
		"example.org. 60 IN TXT \"v=spf1 -all\"",
		"mx.other.example. 60 IN A 192.0.2.26",
		"_dmarc.example.org. 60 IN TXT \"v=DMARC1; p=bogus\"",
		"s1-ed25519._domainkey.example.org. 60 IN TXT \"v=DKIM1; k=ed25519; p=AAAA\"")
	wrong.MustAdd(t, "autoconfig.example.org. 60 IN A 192.0.2.99", "mx.example.org. 60 IN A 192.0.2.25")
	got = check(wrong)
	for w, want := range map[string]Status{"MX": Wrong, "SPF": Wrong, "DMARC": Wrong, "DKIM ed25519": Wrong, "DKIM rsa": Missing, "SRV submission": Missing, "autoconfig (Thunderbird and others)": Wrong} {
		if got[w].Status != want {
			t.Errorf("wrong zone: %s is %s (%s), want %s", w, got[w].Status, got[w].Detail, want)
		}
	}
}
