package maps

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/addr"
)

func mustAccess(t *testing.T, text string) *Access {
	t.Helper()
	a, err := ParseAccess("access", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ad(s string) addr.Address {
	a, err := addr.ParsePath(s, false)
	if err != nil {
		panic(err)
	}
	return a
}

func TestAccessValues(t *testing.T) {
	for _, tc := range []struct {
		value    string
		action   Action
		code     int
		enhanced string
		text     string
	}{
		{"OK", ActionOK, 0, "", ""},
		{"ok", ActionOK, 0, "", ""},
		{"RELAY", ActionRelay, 0, "", ""},
		{"RELAY RELAY", ActionRelay, 0, "", ""}, // the guide's "localhost RELAY RELAY"
		{"REJECT", ActionReject, 0, "", ""},
		{"DISCARD", ActionDiscard, 0, "", ""},
		{"SKIP", ActionSkip, 0, "", ""},
		// README:2608-2700: ERROR:### text and ERROR:D.S.N:### text; quotes keep spacing.
		{`ERROR:"550 We don't accept mail from spammers"`, ActionError, 550, "5.0.0", "We don't accept mail from spammers"},
		{`ERROR:550 We don't accept mail from spammers`, ActionError, 550, "5.0.0", "We don't accept mail from spammers"},
		{`ERROR:5.7.1:550 Relaying to this domain is refused`, ActionError, 550, "5.7.1", "Relaying to this domain is refused"},
		{`ERROR:"5.7.1:550   spaced   text"`, ActionError, 550, "5.7.1", "spaced   text"},
		{`ERROR:4.2.2:450 mailbox full`, ActionError, 450, "4.2.2", "mailbox full"},
		// The README's "ERROR:450 mailbox full" gives "450 5.0.0" in Sendmail; we
		// keep the class of the reply (RFC 3463 section 2): 4.0.0.
		{`ERROR:450 mailbox full`, ActionError, 450, "4.0.0", "mailbox full"},
		// The legacy form without ERROR: (README: deprecated, still read).
		{`"550 go away"`, ActionError, 550, "5.0.0", "go away"},
		{`550 go away`, ActionError, 550, "5.0.0", "go away"},
		{`QUARANTINE:held for review`, ActionQuarantine, 0, "", "held for review"},
	} {
		a, err := ParseAccess("access", strings.NewReader("example.com\t"+tc.value+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.value, err)
			continue
		}
		r, ok := a.LookupFrom(ad("x@example.com"))
		if tc.action == ActionSkip {
			// SKIP ends the search with no entry: the default applies.
			if ok {
				t.Errorf("SKIP: lookup found %+v", r)
			}
			continue
		}
		if !ok || r.Action != tc.action || r.Code != tc.code || r.Enhanced != tc.enhanced || r.Text != tc.text {
			t.Errorf("%s: got %+v", tc.value, r)
		}
	}
}

func TestAccessParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"# c\n192.168.69\n", "access:2: \"192.168.69\" has no value"},
		{"192.168.69 RELAYY\n", "access:1: unknown action"},
		{"192.168.69 ERROR:hello\n", "access:1: ERROR: needs a reply code"},
		{"192.168.69 ERROR:5.7.1:450 mixed\n", "does not match reply code 450"},
		{"192.168.69 ERROR:250 fine\n", "access:1:"},
		{"Conect:192.168.69 RELAY\n", "access:1: unknown tag"},
		{"To: RELAY\n", "access:1:"},
	} {
		_, err := ParseAccess("access", strings.NewReader(tc.text))
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestAccessConnectLookups(t *testing.T) {
	a := mustAccess(t, `# the guide
localhost	RELAY
192.168.69	RELAY
# README: relay for 128.32/16 except 128.32.2/24
Connect:128.32	RELAY
Connect:128.32.2	SKIP
Connect:10.1.2.3	REJECT
Connect:10.1.2	OK
Connect:cyberspammer.com	REJECT
Connect:good.cyberspammer.com	OK
Connect:[203.0.113.9]	REJECT
IPv6:2001:DB8::1	RELAY
Connect:IPv6:2001:db8:ff	REJECT
From:10.9.9	REJECT
`)
	for _, tc := range []struct {
		ip, name string
		want     Action // 0 = no entry
		key      string
	}{
		{"127.0.0.1", "localhost", ActionRelay, "localhost"},
		{"192.168.69.5", "", ActionRelay, "192.168.69"},                                      // octet prefix
		{"192.168.6.9", "", 0, ""},                                                           // not an octet-boundary match
		{"192.168.690.1", "", 0, ""},                                                         // (not an address at all)
		{"128.32.7.1", "", ActionRelay, "Connect:128.32"},                                    // prefix
		{"128.32.2.1", "", 0, ""},                                                            // SKIP ends the search
		{"10.1.2.3", "", ActionReject, "Connect:10.1.2.3"},                                   // full address before prefix
		{"10.1.2.4", "", ActionOK, "Connect:10.1.2"},                                         // prefix
		{"10.9.9.9", "", 0, ""},                                                              // From: entries do not apply
		{"198.51.100.7", "mail.cyberspammer.com", ActionReject, "Connect:cyberspammer.com"},  // parents
		{"198.51.100.7", "good.cyberspammer.com", ActionOK, "Connect:good.cyberspammer.com"}, // longer name first
		{"198.51.100.7", "x.good.cyberspammer.com", ActionOK, "Connect:good.cyberspammer.com"},
		{"203.0.113.9", "", ActionReject, "Connect:[203.0.113.9]"}, // an unnamed client is [ip]
		{"203.0.113.9", "named.example", 0, ""},                    // a named client is not [ip]
		{"2001:db8::1", "", ActionRelay, "IPv6:2001:DB8::1"},
		{"2001:db8:ff::5", "", ActionReject, "Connect:IPv6:2001:db8:ff"}, // IPv6 groups prefix
		{"2001:db8:fe::5", "", 0, ""},
		{"::ffff:192.168.69.1", "", ActionRelay, "192.168.69"}, // v4-mapped is v4
	} {
		ip, err := netip.ParseAddr(tc.ip)
		if err != nil {
			continue
		}
		r, ok := a.LookupConnect(ip, tc.name)
		if tc.want == 0 {
			if ok {
				t.Errorf("%s %q: got %v (%s), want no entry", tc.ip, tc.name, r.Action, r.Key)
			}
			continue
		}
		if !ok || r.Action != tc.want || r.Key != tc.key {
			t.Errorf("%s %q: got %v %q, want %v %q", tc.ip, tc.name, r.Action, r.Key, tc.want, tc.key)
		}
	}
}

func TestAccessFromAndToLookups(t *testing.T) {
	a := mustAccess(t, `From:cyberspammer.com	ERROR:"550 We don't accept mail from spammers"
From:okay.cyberspammer.com	OK
From:sendmail.org	DISCARD
From:spammer@aol.com	REJECT
From:postmaster@	OK
From:<>	ERROR:550 no bounces here
To:user@example.com	ERROR:4.2.2:450 mailbox full
To:partner.example	RELAY
To:blocked@	REJECT
example.net	REJECT
`)
	for _, tc := range []struct {
		from string // "" = the null sender
		to   bool   // look up as To: instead of From:
		want Action
		key  string
	}{
		// proto.m4:1955-1962: user@dom, then user@, then dom and its parents.
		{"a@cyberspammer.com", false, ActionError, "From:cyberspammer.com"},
		{"a@mail.cyberspammer.com", false, ActionError, "From:cyberspammer.com"},
		{"a@okay.cyberspammer.com", false, ActionOK, "From:okay.cyberspammer.com"}, // README example
		{"x@sendmail.org", false, ActionDiscard, "From:sendmail.org"},
		{"spammer@aol.com", false, ActionReject, "From:spammer@aol.com"},
		{"other@aol.com", false, 0, ""},
		{"postmaster@cyberspammer.com", false, ActionOK, "From:postmaster@"}, // user@ before the domain
		{"", false, ActionError, "From:<>"},
		{"a@example.net", false, ActionReject, "example.net"}, // untagged fallback
		{"user@example.com", true, ActionError, "To:user@example.com"},
		{"other@example.com", true, 0, ""},
		{"x@mx.partner.example", true, ActionRelay, "To:partner.example"},
		{"blocked@anywhere.example", true, ActionReject, "To:blocked@"},
		{"a@cyberspammer.com", true, 0, ""}, // From: entries are not To: entries
	} {
		var r AccessResult
		var ok bool
		switch {
		case tc.to:
			r, ok = a.LookupTo(ad(tc.from))
		case tc.from == "":
			r, ok = a.LookupFrom(addr.Address{})
		default:
			r, ok = a.LookupFrom(ad(tc.from))
		}
		if tc.want == 0 {
			if ok {
				t.Errorf("%q to=%v: got %v %q, want none", tc.from, tc.to, r.Action, r.Key)
			}
			continue
		}
		if !ok || r.Action != tc.want || r.Key != tc.key {
			t.Errorf("%q to=%v: got %v %q, want %v %q", tc.from, tc.to, r.Action, r.Key, tc.want, tc.key)
		}
	}
	if r, ok := a.LookupToDomain("mx.partner.example"); !ok || r.Action != ActionRelay {
		t.Errorf("LookupToDomain: %+v %v", r, ok)
	}
	if _, ok := a.LookupToDomain("example.com"); ok {
		t.Error("LookupToDomain matched a To:user@domain entry")
	}
}

func FuzzParseAccess(f *testing.F) {
	f.Add("192.168.69 RELAY\nFrom:a@b ERROR:5.7.1:550 x\n")
	f.Add("IPv6:2001:db8::1 OK\n")
	f.Fuzz(func(t *testing.T, text string) {
		a, err := ParseAccess("access", strings.NewReader(text))
		if err != nil {
			return
		}
		a.LookupConnect(netip.MustParseAddr("192.0.2.1"), "host.example")
		a.LookupFrom(addr.Address{Local: "a", Domain: "b.example"})
		a.LookupTo(addr.Address{Local: "a", Domain: "b.example"})
	})
}
