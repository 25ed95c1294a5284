package policy

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
)

func load(t *testing.T, files map[string]string) *maps.Tables {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := maps.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func client(ip, name string) Client {
	return Client{IP: netip.MustParseAddr(ip), Hostname: name}
}

func ad(s string) addr.Address {
	a, err := addr.ParsePath(s, false)
	if err != nil {
		panic(err)
	}
	return a
}

var guideTables = map[string]string{
	"access": "localhost\tRELAY\n192.168.69\tRELAY\n" +
		"Connect:128.32\tRELAY\nConnect:128.32.2\tSKIP\n" +
		"Connect:spammer.example\tREJECT\n" +
		"Connect:10.6.6\tERROR:4.7.1:421 come back later\n" +
		"Connect:10.7.7\tDISCARD\n" +
		"From:cyberspammer.com\tERROR:\"550 We don't accept mail from spammers\"\n" +
		"From:okay.cyberspammer.com\tOK\n" +
		"From:relaysender.example\tRELAY\n" +
		"From:<>\tOK\n" +
		"To:partner.example\tRELAY\n" +
		"To:ok-but-not-relay.example\tOK\n" +
		"To:user@example.org\tERROR:4.2.2:450 mailbox full\n" +
		"To:gone@\tREJECT\n" +
		"To:drop@example.org\tDISCARD\n",
	"relay-domains": "relayed.example\n172.16\nfriends.example\n",
}

func TestCheckConnect(t *testing.T) {
	tb := load(t, guideTables)
	for _, tc := range []struct {
		ip, name string
		want     Verdict
		code     int
	}{
		{"127.0.0.1", "localhost", Relay, 0},
		{"192.168.69.20", "", Relay, 0},
		{"128.32.9.9", "", Relay, 0},
		{"128.32.2.9", "", Accept, 0}, // SKIP: the default
		{"198.51.100.1", "mx.spammer.example", Reject, 550},
		{"10.6.6.6", "", Reject, 421},
		{"10.7.7.7", "", Discard, 0},
		{"198.51.100.1", "", Accept, 0},
	} {
		d := CheckConnect(tb, client(tc.ip, tc.name))
		if d.Verdict != tc.want || d.Code != tc.code {
			t.Errorf("%s %s: %+v, want %v %d", tc.ip, tc.name, d, tc.want, tc.code)
		}
	}
}

func TestCheckMail(t *testing.T) {
	tb := load(t, guideTables)
	c := client("198.51.100.1", "")
	for _, tc := range []struct {
		from string
		null bool
		want Verdict
		text string
	}{
		{"a@cyberspammer.com", false, Reject, "We don't accept mail from spammers"},
		{"a@mail.cyberspammer.com", false, Reject, "We don't accept mail from spammers"},
		{"a@okay.cyberspammer.com", false, Accept, ""},
		{"a@relaysender.example", false, Accept, ""}, // RELAY on From: is only OK
		{"a@elsewhere.example", false, Accept, ""},
		{"", true, Accept, ""},
	} {
		var from addr.Address
		if !tc.null {
			from = ad(tc.from)
		}
		d := CheckMail(tb, c, from, tc.null)
		if d.Verdict != tc.want || d.Text != tc.text {
			t.Errorf("%q: %+v", tc.from, d)
		}
	}
	// A From:<> REJECT refuses bounces.
	tb2 := load(t, map[string]string{"access": "From:<>\tREJECT\n"})
	if d := CheckMail(tb2, c, addr.Address{}, true); d.Verdict != Reject || d.Code != 550 || d.Enhanced != "5.7.1" {
		t.Errorf("From:<> REJECT: %+v", d)
	}
}

func TestCheckRcptRelayRules(t *testing.T) {
	tb := load(t, guideTables)
	outside := client("198.51.100.1", "")
	for _, tc := range []struct {
		name  string
		c     Client
		rcpt  string
		local bool
		want  Verdict
		code  int
	}{
		{"local recipient from anywhere", outside, "pp@example.org", true, Accept, 0},
		{"remote from outside", outside, "x@remote.example", false, Reject, 550},
		{"127.0.0.1 relays", client("127.0.0.1", ""), "x@remote.example", false, Relay, 0},
		{"::1 relays", client("::1", ""), "x@remote.example", false, Relay, 0},
		{"127.0.0.2 does not", client("127.0.0.2", ""), "x@remote.example", false, Reject, 550},
		{"::ffff:127.0.0.1 is 127.0.0.1", client("::ffff:127.0.0.1", ""), "x@remote.example", false, Relay, 0},
		{"authenticated", Client{IP: netip.MustParseAddr("198.51.100.1"), Authenticated: true}, "x@remote.example", false, Relay, 0},
		{"access 192.168.69 RELAY", client("192.168.69.7", ""), "x@remote.example", false, Relay, 0},
		{"access localhost RELAY by name", client("198.51.100.9", "localhost"), "x@remote.example", false, Relay, 0},
		{"Connect:128.32 RELAY", client("128.32.1.1", ""), "x@remote.example", false, Relay, 0},
		{"Connect:128.32.2 SKIP", client("128.32.2.1", ""), "x@remote.example", false, Reject, 550},
		{"client address in relay-domains", client("172.16.5.5", ""), "x@remote.example", false, Relay, 0},
		{"client name in relay-domains", client("198.51.100.3", "mx.friends.example"), "x@remote.example", false, Relay, 0},
		{"recipient domain in relay-domains", outside, "x@relayed.example", false, Relay, 0},
		{"subdomain of relay-domains", outside, "x@a.relayed.example", false, Relay, 0},
		{"To: RELAY", outside, "x@mx.partner.example", false, Relay, 0},
		{"To: OK does not relay", outside, "x@ok-but-not-relay.example", false, Reject, 550},
		{"To:user@ ERROR", outside, "user@example.org", true, Reject, 450},
		{"To:user@ REJECT", outside, "gone@example.org", true, Reject, 550},
		{"To: DISCARD", outside, "drop@example.org", true, Discard, 0},
		{"address literal", outside, "x@[192.0.2.1]", false, Reject, 550},
	} {
		d := CheckRcpt(tb, tc.c, ad(tc.rcpt), tc.local)
		if d.Verdict != tc.want || d.Code != tc.code {
			t.Errorf("%s: %+v, want %v %d", tc.name, d, tc.want, tc.code)
		}
		if tc.want == Reject && tc.code == 550 && !tc.local && (d.Enhanced != "5.7.1" || d.Text != "Relaying denied") {
			t.Errorf("%s: reply %d %s %s, want 550 5.7.1 Relaying denied", tc.name, d.Code, d.Enhanced, d.Text)
		}
	}
}

type accounts map[string]bool

func (a accounts) AccountExists(_ context.Context, n string) (bool, error) { return a[n], nil }

// Addresses that try to get past the relay check, judged the way the SMTP
// server judges them: route says whether the domain is local, then policy.
// None may end at a remote target for an outside client.
func TestSneakyAddressesDoNotRelay(t *testing.T) {
	tb := load(t, map[string]string{"local-host-names": "example.org\n"})
	r := route.New(route.Config{Hostname: "mx.example.org", Tables: func() *maps.Tables { return tb }, Accounts: accounts{"pp": true}})
	outside := client("198.51.100.1", "")
	for _, rcpt := range []string{
		"user%remote.example@example.org",  // the percent hack
		"@example.org:user@remote.example", // a source route
		"@mx.example.org,@example.org:user@remote.example",
		"remote.example!user@example.org", // UUCP
		`"user@remote.example"@example.org`,
		`"user%remote.example"@example.org`,
		"user@[192.0.2.1]", // address literal
		"user@[IPv6:2001:db8::1]",
		"user@remote.example.",
	} {
		a, err := addr.ParsePath(rcpt, true)
		if err != nil {
			continue // refused at the syntax level: fine
		}
		local := r.IsLocalDomain(a.Domain)
		d := CheckRcpt(tb, outside, a, local)
		if d.Verdict == Relay {
			t.Errorf("%s: relay permitted", rcpt)
			continue
		}
		if d.Verdict == Reject {
			continue
		}
		res, err := r.Resolve(context.Background(), a)
		if err != nil {
			continue // refused (user unknown)
		}
		for _, tg := range res.Targets {
			if tg.Kind == route.TargetRemote {
				t.Errorf("%s: resolved to remote %s for an outside client", rcpt, tg.Address)
			}
		}
	}
}

func BenchmarkCheckRcpt(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "access"), []byte(guideTables["access"]), 0o644)
	tb, _ := maps.Load(dir)
	c := client("198.51.100.1", "mx.example.net")
	rcpt := ad("someone@remote.example")
	for b.Loop() {
		CheckRcpt(tb, c, rcpt, false)
	}
}
