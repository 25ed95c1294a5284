package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
)

func load(t testing.TB, files map[string]string) *maps.Tables {
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

// The guide's access lines and the examples of cf/README "The access
// database", with a few more.
var guideTables = map[string]string{
	"access": "localhost\tRELAY RELAY\n192.168.69\tRELAY\n" +
		"Connect:128.32\tRELAY\nConnect:128.32.2\tSKIP\n" +
		"Connect:spammer.example\tREJECT\n" +
		"Connect:10.6.6\tERROR:4.7.1:421 come back later\n" +
		"Connect:10.7.7\tDISCARD\n" +
		"Connect:10.8.8\tOK\n" +
		"Connect:ok.example\tOK\n" +
		"Connect:suspicious.example.com\tQUARANTINE:Mail from suspicious host\n" +
		"From:cyberspammer.com\tERROR:\"550 We don't accept mail from spammers\"\n" +
		"From:okay.cyberspammer.com\tOK\n" +
		"From:relaysender.example\tRELAY\n" +
		"From:spammer@aol.com\tREJECT\n" +
		"From:FREE.STEALTH.MAILER@\tERROR:550 Spam not accepted\n" +
		"From:drop.example\tDISCARD\n" +
		"From:localuser@\tOK\n" +
		"From:<>\tREJECT\n" +
		"To:partner.example\tRELAY\n" +
		"To:ok-but-not-relay.example\tOK\n" +
		"To:user@example.org\tERROR:4.2.2:450 mailbox full\n" +
		"To:full@example.org\tERROR:450 mailbox full\n" +
		"To:gone@\tREJECT\n" +
		"To:drop@example.org\tDISCARD\n" +
		"To:sendmail.org\tRELAY\n" +
		"To:blocked.example\tREJECT\n" +
		"To:nope@partner.example\tREJECT\n" +
		"To:only@remote.example\tRELAY\n" +
		"Connect:[192.0.2.99]\tRELAY\n",
	"relay-domains":    "relayed.example\n172.16\nfriends.example\nIPv6:2001:db8:77\n",
	"local-host-names": "example.org\n[198.51.100.200]\nlocal-relay.example\n",
}

// check_relay (proto.m4 Basic_check_relay; README:2608-2712).
func TestCheckConnect(t *testing.T) {
	tb := load(t, guideTables)
	for _, tc := range []struct {
		why      string
		ip, name string
		want     Verdict
		code     int
		enhanced string
	}{
		{"the guide: localhost RELAY RELAY", "127.0.0.1", "localhost", Relay, 0, ""},
		{"the guide: 192.168.69 RELAY", "192.168.69.20", "", Relay, 0, ""},
		{"README: Connect:128.32 RELAY", "128.32.9.9", "", Relay, 0, ""},
		{"README: Connect:128.32.2 SKIP, the default", "128.32.2.9", "", Accept, 0, ""},
		{"REJECT: 554 5.7.1 Access denied in place of the greeting", "198.51.100.1", "mx.spammer.example", Reject, 554, "5.7.1"},
		{"ERROR: its own reply", "10.6.6.6", "", Reject, 421, "4.7.1"},
		{"DISCARD", "10.7.7.7", "", Discard, 0, ""},
		{"OK", "10.8.8.8", "", Accept, 0, ""},
		{"OK by name", "198.51.100.1", "mail.ok.example", Accept, 0, ""},
		{"README: QUARANTINE (not held: accepted)", "198.51.100.1", "suspicious.example.com", Accept, 0, ""},
		{"README: [ip] is the name of a client without one", "192.0.2.99", "", Relay, 0, ""},
		{"no entry", "198.51.100.1", "", Accept, 0, ""},
	} {
		d := CheckConnect(tb, client(tc.ip, tc.name))
		if d.Verdict != tc.want || d.Code != tc.code || d.Enhanced != tc.enhanced {
			t.Errorf("%s: %s %s: %+v, want %v %d %s", tc.why, tc.ip, tc.name, d, tc.want, tc.code, tc.enhanced)
		}
		if tc.want == Reject && tc.code == 554 && d.Text != "Access denied" {
			t.Errorf("%s: text %q", tc.why, d.Text)
		}
		if tc.want != Accept || tc.code != 0 {
			if !strings.HasPrefix(d.Reason, "access ") {
				t.Errorf("%s: reason %q does not name the entry", tc.why, d.Reason)
			}
		}
	}
}

// check_mail (proto.m4 Basic_check_mail).
func TestCheckMail(t *testing.T) {
	tb := load(t, guideTables)
	outside := client("198.51.100.1", "")
	for _, tc := range []struct {
		why  string
		c    Client
		from string // "" = the null sender
		want Verdict
		code int
		enh  string
		text string
	}{
		{"README: From:cyberspammer.com ERROR", outside, "a@cyberspammer.com", Reject, 550, "5.0.0", "We don't accept mail from spammers"},
		{"README: and hosts under it", outside, "a@mail.cyberspammer.com", Reject, 550, "5.0.0", "We don't accept mail from spammers"},
		{"README: From:okay.cyberspammer.com OK overrides", outside, "a@okay.cyberspammer.com", Accept, 0, "", ""},
		{"RELAY on From: is only an OK (no relay_mail_from)", outside, "a@relaysender.example", Accept, 0, "", ""},
		{"README: From:spammer@aol.com REJECT: 550 5.7.1 Access denied", outside, "spammer@aol.com", Reject, 550, "5.7.1", "Access denied"},
		{"README: From:FREE.STEALTH.MAILER@", outside, "free.stealth.mailer@isp.example", Reject, 550, "5.0.0", "Spam not accepted"},
		{"DISCARD", outside, "x@drop.example", Discard, 0, "", ""},
		{"no entry", outside, "a@elsewhere.example", Accept, 0, "", ""},
		{"RFC 1123: <> is always accepted, From:<> is not read", outside, "", Accept, 0, "", ""},
		{"@localhost from outside: 553 5.5.4", outside, "root@localhost", Reject, 553, "5.5.4", "Real domain name required for sender address"},
		{"@[127.0.0.1] from outside", outside, "root@[127.0.0.1]", Reject, 553, "5.5.4", "Real domain name required for sender address"},
		{"@[IPv6:::1] from outside", outside, "root@[IPv6:::1]", Reject, 553, "5.5.4", "Real domain name required for sender address"},
		{"@localhost from 127.0.0.1", client("127.0.0.1", ""), "root@localhost", Accept, 0, "", ""},
		{"@localhost from a client named in local-host-names", client("198.51.100.3", "local-relay.example"), "root@localhost", Accept, 0, "", ""},
		{"unqualified sender: 553 5.5.4", outside, "someone", Reject, 553, "5.5.4", "Domain name required for sender address someone"},
		{"an unqualified sender with a user@ entry", outside, "localuser", Accept, 0, "", ""},
		{"an unqualified sender from a local submission (no address)", Client{}, "someone", Accept, 0, "", ""},
	} {
		var from addr.Address
		if tc.from != "" {
			from = ad(tc.from)
		}
		d := CheckMail(tb, tc.c, from, tc.from == "")
		if d.Verdict != tc.want || d.Code != tc.code || d.Enhanced != tc.enh || d.Text != tc.text {
			t.Errorf("%s: %q: %+v", tc.why, tc.from, d)
		}
	}
}

// check_rcpt (proto.m4 Basic_check_rcpt, Rcpt_ok, Relay_ok; README:2404-2510,
// 2735-2760; the relaying rules).
func TestCheckRcpt(t *testing.T) {
	tb := load(t, guideTables)
	outside := client("198.51.100.1", "")
	auth := client("198.51.100.1", "")
	auth.Authenticated = true
	ptr := func(s PTRStatus) Client { c := client("198.51.100.1", ""); c.PTR = s; return c }
	for _, tc := range []struct {
		why   string
		c     Client
		rcpt  string
		local bool
		want  Verdict
		code  int
		enh   string
		text  string
	}{
		{"a local recipient is no relay", outside, "pp@example.org", true, Accept, 0, "", ""},
		{"an unqualified recipient is local", outside, "postmaster", false, Accept, 0, "", ""},
		{"relaying is denied by default", outside, "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"127.0.0.1 relays", client("127.0.0.1", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"::1 relays", client("::1", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"::ffff:127.0.0.1 is 127.0.0.1", client("::ffff:127.0.0.1", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"127.0.0.2 does not (the rest of 127/8 plays outside clients)", client("127.0.0.2", ""), "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"no address is no permission", Client{}, "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"an authenticated session relays", auth, "x@remote.example", false, Relay, 0, "", ""},
		{"the guide: 192.168.69 RELAY", client("192.168.69.7", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"the guide: localhost RELAY, by verified name", client("198.51.100.9", "localhost"), "x@remote.example", false, Relay, 0, "", ""},
		{"README: Connect:128.32 RELAY", client("128.32.1.1", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"README: Connect:128.32.2 SKIP", client("128.32.2.1", ""), "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"Connect: OK is no relay permission", client("10.8.8.8", ""), "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"client address in relay-domains (README:2404)", client("172.16.5.5", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"IPv6 client in relay-domains", client("2001:db8:77::5", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"client name in relay-domains, subdomains too", client("198.51.100.3", "mx.friends.example"), "x@remote.example", false, Relay, 0, "", ""},
		{"client name in local-host-names (class {w})", client("198.51.100.3", "local-relay.example"), "x@remote.example", false, Relay, 0, "", ""},
		{"client [address] in local-host-names", client("198.51.100.200", ""), "x@remote.example", false, Relay, 0, "", ""},
		{"an unnamed client's [ip] Connect: RELAY counts only at connect", client("192.0.2.99", ""), "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"recipient domain in relay-domains", outside, "x@relayed.example", false, Relay, 0, "", ""},
		{"and its subdomains", outside, "x@a.relayed.example", false, Relay, 0, "", ""},
		{"To: RELAY, subdomains too", outside, "x@mx.partner.example", false, Relay, 0, "", ""},
		{"README: To:sendmail.org RELAY", outside, "x@sendmail.org", false, Relay, 0, "", ""},
		{"To: OK does not relay (README: OK allows less than RELAY)", outside, "x@ok-but-not-relay.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"To:user@domain RELAY needs relaytofulladdress", outside, "only@remote.example", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"README: To:user@domain ERROR:4.2.2:450", outside, "user@example.org", true, Reject, 450, "4.2.2", "mailbox full"},
		{"README: ERROR:450 without a DSN: 4.0.0 (err.c)", outside, "full@example.org", true, Reject, 450, "4.0.0", "mailbox full"},
		{"To:user@ REJECT: 550 5.2.1 (confRCPTREJ_MSG)", outside, "gone@example.org", true, Reject, 550, "5.2.1", "Mailbox disabled for this recipient"},
		{"user@ only for local domains", client("127.0.0.1", ""), "gone@remote.example", false, Relay, 0, "", ""},
		{"To:domain REJECT refuses even a relay client", client("127.0.0.1", ""), "x@blocked.example", false, Reject, 550, "5.2.1", "Mailbox disabled for this recipient"},
		{"To:user@domain REJECT inside a RELAY domain", outside, "nope@partner.example", false, Reject, 550, "5.2.1", "Mailbox disabled for this recipient"},
		{"To: DISCARD", outside, "drop@example.org", true, Discard, 0, "", ""},
		{"reverse DNS failed temporarily: 450 4.4.0", ptr(PTRTemp), "x@remote.example", false, Reject, 450, "4.4.0", "Relaying temporarily denied. Cannot resolve PTR record for 198.51.100.1"},
		{"reverse DNS forged: 550 5.7.1", ptr(PTRForged), "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied. IP name possibly forged 198.51.100.1"},
		{"reverse DNS missing: 550 5.7.1", ptr(PTRFail), "x@remote.example", false, Reject, 550, "5.7.1", "Relaying denied. IP name lookup failed 198.51.100.1"},
		{"a PTR failure does not matter when the address may relay", func() Client { c := client("192.168.69.7", ""); c.PTR = PTRForged; return c }(), "x@remote.example", false, Relay, 0, "", ""},
		{"nor for a local recipient", ptr(PTRTemp), "pp@example.org", true, Accept, 0, "", ""},
		{"an address literal is not local", outside, "x@[192.0.2.1]", false, Reject, 550, "5.7.1", "Relaying denied"},
		{"an address literal from a relay client", client("127.0.0.1", ""), "x@[192.0.2.1]", false, Relay, 0, "", ""},
	} {
		d := CheckRcpt(tb, tc.c, ad(tc.rcpt), tc.local)
		if d.Verdict != tc.want || d.Code != tc.code || d.Enhanced != tc.enh || d.Text != tc.text {
			t.Errorf("%s: %s: %+v", tc.why, tc.rcpt, d)
		}
		if d.Verdict != Accept && d.Reason == "" {
			t.Errorf("%s: no reason for the log", tc.why)
		}
	}
}

type accounts map[string]bool

func (a accounts) AccountExists(_ context.Context, n string) (bool, error) { return a[n], nil }

// Addresses that try to get past the relay check (the issue, "Relaying: never
// an open relay"), judged as the SMTP server judges them: route says whether
// the domain is local, policy decides, route resolves. For an outside client
// none may be relayed or end at a remote target; each form gets the answer
// Sendmail gives it.
func TestSneakyAddressesDoNotRelay(t *testing.T) {
	tb := load(t, map[string]string{
		"local-host-names": "example.org\n",
		"relay-domains":    "relayed.example\n",
		"access":           "To:partner.example\tRELAY\n",
	})
	r := route.New(route.Config{Hostname: "mx.example.org", Tables: func() *maps.Tables { return tb }, Accounts: accounts{"pp": true}})
	outside := client("198.51.100.1", "")
	relayer := client("127.0.0.1", "")
	const denied, unknown, relayed, delivered = "550 5.7.1", "550 5.1.1", "relay", "local"
	for _, tc := range []struct {
		why     string
		rcpt    string
		outside string // what an outside client gets
		trusted string // what 127.0.0.1 gets
	}{
		// README:2483-2510: the local host is stripped and user@site judged.
		{"the percent hack", "user%remote.example@example.org", denied, unknown},
		{"the percent hack, twice", "user%remote.example%example.org@example.org", denied, unknown},
		// The relay check passes for a site we relay to, but posthorn does not
		// forward by the percent hack: the local part is then an unknown name.
		{"the percent hack to a relay-domains site", "user%relayed.example@example.org", unknown, unknown},
		// Through a domain we relay to, the hidden host is judged (ParseRecipient);
		// a relay client sends it on to that domain unchanged.
		{"the percent hack through a relay domain", "user%remote.example@relayed.example", denied, relayed},
		{"the percent hack to a local domain is local", "pp%example.org@example.org", unknown, unknown},
		{"the percent hack at a remote domain is that remote domain's", "user%example.org@remote.example", denied, relayed},
		{"the percent hack, unqualified", "user%remote.example", denied, unknown},
		// RFC 5321 section 3.3 and appendix C: the route is dropped.
		{"a source route", "@example.org:user@remote.example", denied, relayed},
		{"a source route of two hops", "@mx.example.org,@example.org:user@remote.example", denied, relayed},
		{"a source route to a local user", "@remote.example:pp@example.org", delivered, delivered},
		// UUCP: '!' is an ordinary character (FEATURE(nouucp)): an unknown user.
		{"a UUCP path at a local domain", "remote.example!user@example.org", unknown, unknown},
		{"a UUCP path, unqualified", "remote.example!user", unknown, unknown},
		{"a UUCP path at a remote domain", "remote.example!user@remote2.example", denied, relayed},
		// A quoted @ or % hides a host like the percent hack (Parse0 dequotes).
		{"a quoted @", `"user@remote.example"@example.org`, denied, unknown},
		{"a quoted %", `"user%remote.example"@example.org`, denied, unknown},
		{"a quoted @ naming a relay domain", `"user@partner.example"@example.org`, unknown, unknown},
		// Address literals are not local.
		{"an IPv4 literal", "user@[192.0.2.1]", denied, relayed},
		{"an IPv6 literal", "user@[IPv6:2001:db8::1]", denied, relayed},
		{"a literal hidden by the percent hack", `"user%[192.0.2.1]"@example.org`, denied, unknown},
		// A trailing dot is the same domain.
		{"a trailing dot", "user@remote.example.", denied, relayed},
		{"a trailing dot on a local domain", "pp@example.org.", delivered, delivered},
		{"case", "PP@EXAMPLE.ORG", delivered, delivered},
	} {
		a, err := addr.ParsePath(tc.rcpt, false)
		if err != nil {
			t.Fatalf("%s: %s: %v", tc.why, tc.rcpt, err)
		}
		for _, side := range []struct {
			c    Client
			want string
		}{{outside, tc.outside}, {relayer, tc.trusted}} {
			got := judge(t, r, tb, side.c, a)
			if got != side.want {
				t.Errorf("%s: %s from %s: %s, want %s", tc.why, tc.rcpt, side.c.IP, got, side.want)
			}
		}
	}
}

// judge runs a recipient through policy and route as the SMTP server does, and
// says what became of it: "550 5.7.1" (refused), "relay" (accepted to a remote
// target), "local" (accepted to accounts).
func judge(t *testing.T, r *route.Resolver, tb *maps.Tables, c Client, a addr.Address) string {
	t.Helper()
	local := a.Domain == "" || r.IsLocalDomain(a.Domain)
	d := CheckRcpt(tb, c, a, local)
	if d.Verdict == Reject {
		return fmt.Sprintf("%d %s", d.Code, d.Enhanced)
	}
	res, err := r.Resolve(context.Background(), a)
	var rej *route.Rejection
	if errors.As(err, &rej) {
		return fmt.Sprintf("%d %s", rej.Code, rej.Enhanced)
	}
	if err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	remote := false
	for _, tg := range res.Targets {
		if tg.Kind == route.TargetRemote {
			remote = true
		}
	}
	switch {
	case remote && d.Verdict != Relay && !res.Local:
		t.Errorf("%s: a remote target without relay permission: %+v", a, d)
		return "OPEN RELAY"
	case remote && res.Local:
		// Forwarding by the tables is allowed; these tests have none.
		t.Errorf("%s: forwarded by tables that forward nothing: %v", a, res.Trace)
		return "forwarded"
	case remote:
		return "relay"
	}
	return "local"
}

func BenchmarkCheckRcpt(b *testing.B) {
	tb := load(b, guideTables)
	for _, bc := range []struct {
		name  string
		c     Client
		rcpt  string
		local bool
	}{
		{"local", client("198.51.100.1", "mx.example.net"), "pp+tag@example.org", true},
		{"relay-denied", client("198.51.100.1", "mx.example.net"), "someone@remote.example", false},
		{"relay-by-ip", client("192.168.69.7", ""), "someone@remote.example", false},
	} {
		rcpt := ad(bc.rcpt)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				CheckRcpt(tb, bc.c, rcpt, bc.local)
			}
		})
	}
}

func BenchmarkCheckConnectAndMail(b *testing.B) {
	tb := load(b, guideTables)
	c := client("198.51.100.1", "mx.example.net")
	from := ad("someone@sender.example")
	b.ReportAllocs()
	for b.Loop() {
		CheckConnect(tb, c)
		CheckMail(tb, c, from, false)
	}
}
