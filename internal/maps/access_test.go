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

// The right-hand sides of cf/README "The access database" (README:2608-2700).
func TestAccessValues(t *testing.T) {
	for _, tc := range []struct {
		value    string
		action   Action
		code     int
		enhanced string
		text     string
	}{
		{"OK", ActionOK, 0, "", ""},                             // README: OK, accept despite other checks
		{"ok", ActionOK, 0, "", ""},                             // values are case-insensitive (makemap folds keys; sendmail compares RHS case-blind)
		{"RELAY", ActionRelay, 0, "", ""},                       // README: RELAY
		{"RELAY RELAY", ActionRelay, 0, "", ""},                 // the guide's "localhost RELAY RELAY": Sendmail acts on the first word
		{"REJECT", ActionReject, 0, "", ""},                     // README: REJECT
		{"DISCARD", ActionDiscard, 0, "", ""},                   // README: DISCARD
		{"SKIP", ActionSkip, 0, "", ""},                         // README: SKIP
		{`"550 go away"`, ActionError, 550, "5.0.0", "go away"}, // README: "### any text", quoted, deprecated
		{`550 go away`, ActionError, 550, "5.0.0", "go away"},   // README: ### any text
		{`ERROR:550 We don't accept mail from spammers`, ActionError, 550, "5.0.0", "We don't accept mail from spammers"},       // README: ERROR:### any text
		{`ERROR:"550 We don't accept mail from spammers"`, ActionError, 550, "5.0.0", "We don't accept mail from spammers"},     // README example: ERROR:"### any text"
		{`ERROR:"550   keep   spacing"`, ActionError, 550, "5.0.0", "keep   spacing"},                                           // README: quotes avoid modifications
		{`ERROR:5.7.1:550 Relaying to this domain is refused`, ActionError, 550, "5.7.1", "Relaying to this domain is refused"}, // README: ERROR:D.S.N:### any text
		{`ERROR:5.7.1:"550   spaced   text"`, ActionError, 550, "5.7.1", "spaced   text"},                                       // README: ERROR:D.S.N:"### any text"
		{`ERROR:"5.7.1:550 whole quoted"`, ActionError, 550, "5.7.1", "whole quoted"},
		{`ERROR:4.2.2:450 mailbox full`, ActionError, 450, "4.2.2", "mailbox full"}, // README: "Use ERROR:4.2.2:450 mailbox full instead"
		// README: "To:user@example.com ERROR:450 mailbox full" would give "450
		// 5.0.0 mailbox full", which it calls wrong; Sendmail's err.c usrerr()
		// derives the class from the reply's first digit, and so do we: 4.0.0.
		{`ERROR:450 mailbox full`, ActionError, 450, "4.0.0", "mailbox full"},
		{`ERROR:550`, ActionError, 550, "5.0.0", "Access denied"},
		{`QUARANTINE:Mail from suspicious host`, ActionQuarantine, 0, "", "Mail from suspicious host"}, // README: QUARANTINE:any text
	} {
		a, err := ParseAccess("access", strings.NewReader("From:example.com\t"+tc.value+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.value, err)
			continue
		}
		r, ok := a.byTag["From"]["example.com"]
		if !ok || r.Action != tc.action || r.Code != tc.code || r.Enhanced != tc.enhanced || r.Text != tc.text {
			t.Errorf("%s: got %+v", tc.value, r)
		}
		if r.Key != "From:example.com" {
			t.Errorf("%s: key %q", tc.value, r.Key)
		}
	}
}

// A line with a key and no value, or an unknown action, is an error that
// names the file and line (ARCHITECTURE.md "Contract details").
func TestAccessParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"# c\n192.168.69\n", `access:2: "192.168.69" has no value`},
		{"192.168.69 RELAYY\n", "access:1: unknown action"},
		{"192.168.69 ERROR:hello\n", "access:1: ERROR: needs a 4xx or 5xx reply code"},
		{"192.168.69 ERROR:5.7.1:450 mixed\n", "access:1: enhanced code 5.7.1 does not match reply code 450"},
		{"192.168.69 ERROR:250 fine\n", "access:1: ERROR: needs a 4xx or 5xx reply code"},
		{"192.168.69 250 fine\n", "access:1: ERROR: needs a 4xx or 5xx reply code"},
		{"Conect:192.168.69 RELAY\n", `access:1: unknown tag "Conect:"`},
		{"ok.example OK\nTo: RELAY\n", "access:2: empty key after To:"},
		{"a.example OK\n" + strings.Repeat("x", maxLineLength+1) + " OK\n", "access:2: line longer than"},
	} {
		_, err := ParseAccess("access", strings.NewReader(tc.text))
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: error %v, want %q", tc.text, err, tc.want)
		}
	}
}

// Connect: lookups (proto.m4 Basic_check_relay: ruleset D on the client name,
// then ruleset A on its address).
func TestAccessConnectLookups(t *testing.T) {
	a := mustAccess(t, `# the guide
localhost	RELAY
192.168.69	RELAY
# README example: relay for 128.32/16 except 128.32.2/24
Connect:128.32	RELAY
Connect:128.32.2	SKIP
Connect:10.1.2.3	REJECT
Connect:10.1.2	OK
# README examples
Connect:cyberspammer.com	REJECT
Connect:TLD	REJECT
Connect:192.168.212	REJECT
Connect:IPv6:2002:c0a8:02c7	RELAY
Connect:IPv6:2002:c0a8:51d2::23f4	REJECT
Connect:IPv6:1:2:3:4:5:6:7	RELAY
Connect:[127.0.0.3]	OK
Connect:[IPv6:1:2:3:4:5:6:7:8]	OK
Connect:good.cyberspammer.com	OK
Connect:skipped.cyberspammer.com	SKIP
Connect:198.51.100	DISCARD
Connect:.dotted.example	REJECT
From:10.9.9	REJECT
`)
	for _, tc := range []struct {
		why      string
		ip, name string
		want     Action // 0 = no entry
		key      string
	}{
		{"the guide: localhost RELAY (untagged, by name)", "127.0.0.1", "localhost", ActionRelay, "localhost"},
		{"the guide: 192.168.69 RELAY, octet prefix (proto.m4 ruleset A)", "192.168.69.5", "", ActionRelay, "192.168.69"},
		{"prefixes are whole octets, no CIDR (README:2700)", "192.168.6.9", "", 0, ""},
		{"README: Connect:128.32 RELAY", "128.32.7.1", "", ActionRelay, "Connect:128.32"},
		{"README: Connect:128.32.2 SKIP ends the search: the default", "128.32.2.1", "", 0, ""},
		{"full address before its prefix (ruleset A)", "10.1.2.3", "", ActionReject, "Connect:10.1.2.3"},
		{"a shorter prefix", "10.1.2.4", "", ActionOK, "Connect:10.1.2"},
		{"README: Connect:192.168.212 REJECT means 192.168.212.*", "192.168.212.77", "", ActionReject, "Connect:192.168.212"},
		{"From: entries are not Connect: entries", "10.9.9.9", "", 0, ""},
		{"README: Connect:cyberspammer.com covers every host in it (ruleset D)", "203.0.113.7", "mail.cyberspammer.com", ActionReject, "Connect:cyberspammer.com"},
		{"the longer name is tried first", "203.0.113.7", "good.cyberspammer.com", ActionOK, "Connect:good.cyberspammer.com"},
		{"and covers its own subdomains", "203.0.113.7", "x.good.cyberspammer.com", ActionOK, "Connect:good.cyberspammer.com"},
		{"SKIP on the name goes on with the address", "192.168.69.8", "skipped.cyberspammer.com", ActionRelay, "192.168.69"},
		{"README: Connect:TLD REJECT, the whole top-level domain", "203.0.113.7", "host.tld", ActionReject, "Connect:TLD"},
		{"the name decides before the address (check_relay)", "192.168.212.1", "good.cyberspammer.com", ActionOK, "Connect:good.cyberspammer.com"},
		{"no name: the address decides", "198.51.100.4", "", ActionDiscard, "Connect:198.51.100"},
		{"README: [127.0.0.3] matches the unresolved client named [127.0.0.3]", "127.0.0.3", "", ActionOK, "Connect:[127.0.0.3]"},
		{"README: brackets are a name, not a network: a named client is not [ip]", "127.0.0.3", "named.example", 0, ""},
		{"README: [IPv6:1:2:3:4:5:6:7:8] for an unresolved IPv6 client", "1:2:3:4:5:6:7:8", "", ActionOK, "Connect:[IPv6:1:2:3:4:5:6:7:8]"},
		{"README: IPv6:2002:c0a8:02c7 RELAY covers 2002:c0a8:02c7::/48", "2002:c0a8:2c7::9", "", ActionRelay, "Connect:IPv6:2002:c0a8:02c7"},
		{"README: IPv6:2002:c0a8:51d2::23f4, the one address", "2002:c0a8:51d2::23f4", "", ActionReject, "Connect:IPv6:2002:c0a8:51d2::23f4"},
		{"an IPv6 key is a whole-group prefix", "2002:c0a8:51d2::23f5", "", 0, ""},
		{"README: IPv6:1:2:3:4:5:6:7 RELAY covers 1:2:3:4:5:6:7:*", "1:2:3:4:5:6:7:9", "", ActionRelay, "Connect:IPv6:1:2:3:4:5:6:7"},
		{"an IPv4-mapped address is IPv4", "::ffff:192.168.69.1", "", ActionRelay, "192.168.69"},
		{".domain keys need FEATURE(lookupdotdomain): never matched", "203.0.113.7", "a.dotted.example", 0, ""},
		{"a trailing dot in the name is ignored", "203.0.113.7", "mail.cyberspammer.com.", ActionReject, "Connect:cyberspammer.com"},
	} {
		r, ok := a.LookupConnect(netip.MustParseAddr(tc.ip), tc.name)
		if tc.want == 0 {
			if ok {
				t.Errorf("%s: %s %q: got %v (%s), want no entry", tc.why, tc.ip, tc.name, r.Action, r.Key)
			}
			continue
		}
		if !ok || r.Action != tc.want || r.Key != tc.key {
			t.Errorf("%s: %s %q: got %v %q, want %v %q", tc.why, tc.ip, tc.name, r.Action, r.Key, tc.want, tc.key)
		}
	}
	// The two halves alone, as the relay check uses them (proto.m4 Relay_ok).
	if r, ok := a.LookupConnectAddr(netip.MustParseAddr("192.168.69.1")); !ok || r.Action != ActionRelay {
		t.Errorf("LookupConnectAddr: %+v %v", r, ok)
	}
	if _, ok := a.LookupConnectAddr(netip.MustParseAddr("127.0.0.3")); ok {
		t.Error("LookupConnectAddr matched a [name] key")
	}
	if r, ok := a.LookupConnectName("a.good.cyberspammer.com"); !ok || r.Action != ActionOK {
		t.Errorf("LookupConnectName: %+v %v", r, ok)
	}
}

// From: lookups (proto.m4 Basic_check_mail, SearchList <F:user@dom> <U:user@>
// <D:dom>; rulesets F and U try +detail variants).
func TestAccessFromLookups(t *testing.T) {
	a := mustAccess(t, `# README examples
From:cyberspammer.com	ERROR:"550 We don't accept mail from spammers"
From:okay.cyberspammer.com	OK
From:spammer@aol.com	REJECT
From:FREE.STEALTH.MAILER@	ERROR:550 Spam not accepted
From:spammer@some.dom	REJECT
From:good@another.dom	OK
From:another.dom	REJECT
# +detail variants
From:list+*@lists.example	OK
From:list@lists.example	REJECT
From:bulk+*@	DISCARD
From:skipme@	SKIP
From:skipper.example	REJECT
example.net	REJECT
To:cyberspammer.com	OK
`)
	for _, tc := range []struct {
		why  string
		from string
		want Action // 0 = no entry
		key  string
	}{
		{"README: From:cyberspammer.com", "a@cyberspammer.com", ActionError, "From:cyberspammer.com"},
		{"README: and every host under it (ruleset D)", "a@mail.cyberspammer.com", ActionError, "From:cyberspammer.com"},
		{"README: From:okay.cyberspammer.com OK overrides: the longer name is tried first", "a@okay.cyberspammer.com", ActionOK, "From:okay.cyberspammer.com"},
		{"README: From:spammer@aol.com, one address", "spammer@aol.com", ActionReject, "From:spammer@aol.com"},
		{"an address entry is only that address", "other@aol.com", 0, ""},
		{"README: From:FREE.STEALTH.MAILER@ matches the user at any domain", "free.stealth.mailer@anywhere.example", ActionError, "From:FREE.STEALTH.MAILER@"},
		{"README: good@another.dom OK before another.dom REJECT (proto.m4:1955-1962)", "good@another.dom", ActionOK, "From:good@another.dom"},
		{"README: the rest of another.dom is refused", "bad@another.dom", ActionReject, "From:another.dom"},
		{"case does not matter", "SPAMMER@AOL.COM", ActionReject, "From:spammer@aol.com"},
		{"ruleset F: user+detail@dom, then user+*@dom", "list+news@lists.example", ActionOK, "From:list+*@lists.example"},
		{"ruleset F: +* matches an empty detail too", "list+@lists.example", ActionOK, "From:list+*@lists.example"},
		{"ruleset F: without +detail, user@dom", "list@lists.example", ActionReject, "From:list@lists.example"},
		{"ruleset U: user+*@", "bulk+x@somewhere.example", ActionDiscard, "From:bulk+*@"},
		{"ruleset U: user+*@ does not match plain user@", "bulk@somewhere.example", 0, ""},
		{"SKIP on user@ goes on with the domain (SearchList)", "skipme@skipper.example", ActionReject, "From:skipper.example"},
		{"the untagged key is the fallback (README: deprecated)", "a@example.net", ActionReject, "example.net"},
		{"To: entries are not From: entries", "a@cyberspammer.com", ActionError, "From:cyberspammer.com"},
		{"an unqualified sender has only the user@ item", "free.stealth.mailer", ActionError, "From:FREE.STEALTH.MAILER@"},
		{"nothing for anyone else", "x@elsewhere.example", 0, ""},
	} {
		r, ok := a.LookupFrom(ad(tc.from))
		if tc.want == 0 {
			if ok {
				t.Errorf("%s: %q: got %v %q, want none", tc.why, tc.from, r.Action, r.Key)
			}
			continue
		}
		if !ok || r.Action != tc.want || r.Key != tc.key {
			t.Errorf("%s: %q: got %v %q, want %v %q", tc.why, tc.from, r.Action, r.Key, tc.want, tc.key)
		}
	}
	// The null sender has no entry: Sendmail accepts <> before looking.
	if r, ok := mustAccess(t, "From:<> REJECT\n").LookupFrom(addr.Address{}); ok {
		t.Errorf("null sender: %+v", r)
	}
}

// To: lookups: FEATURE(blocklist_recipients) (README:2735-2760, proto.m4
// Rcpt_ok) and the relay check's To:domain (proto.m4 Rcpt_ok, ruleset D).
func TestAccessRcptLookups(t *testing.T) {
	a := mustAccess(t, `# README blocklist_recipients examples
To:badlocaluser@	ERROR:550 Mailbox disabled for badlocaluser
To:host.my.TLD	ERROR:550 That host does not accept mail
To:user@other.my.TLD	ERROR:550 Mailbox disabled for this recipient
# README example
To:sendmail.org	RELAY
To:user@example.com	ERROR:450 mailbox full
To:[192.0.2]	RELAY
From:x@example.com	REJECT
`)
	for _, tc := range []struct {
		why   string
		rcpt  string
		local bool
		want  Action
		key   string
	}{
		{"README: To:badlocaluser@ in any local domain", "badlocaluser@my.tld", true, ActionError, "To:badlocaluser@"},
		{"README: user@ is for local domains only (proto.m4 Rcpt_ok: U: with $=w)", "badlocaluser@remote.example", false, 0, ""},
		{"an unqualified recipient is local", "badlocaluser", false, ActionError, "To:badlocaluser@"},
		{"README: To:host.my.TLD, any user at that host", "anyone@host.my.tld", true, ActionError, "To:host.my.TLD"},
		{"README: To:user@other.my.TLD, the single address", "user@other.my.tld", true, ActionError, "To:user@other.my.TLD"},
		{"the single address only", "other@other.my.tld", true, 0, ""},
		{"README: To:sendmail.org RELAY, and its subdomains", "x@mail.sendmail.org", false, ActionRelay, "To:sendmail.org"},
		{"README: To:user@example.com ERROR:450 mailbox full", "user@example.com", true, ActionError, "To:user@example.com"},
		{"ruleset F: user+detail@ falls back to user@", "user+x@example.com", true, ActionError, "To:user@example.com"},
		{"From: entries are not To: entries", "x@example.com", true, 0, ""},
		{"an address literal loses octets like a name loses labels (ruleset D)", "x@[192.0.2.9]", false, ActionRelay, "To:[192.0.2]"},
	} {
		r, ok := a.LookupRcpt(ad(tc.rcpt), tc.local)
		if tc.want == 0 {
			if ok {
				t.Errorf("%s: %q: got %v %q, want none", tc.why, tc.rcpt, r.Action, r.Key)
			}
			continue
		}
		if !ok || r.Action != tc.want || r.Key != tc.key {
			t.Errorf("%s: %q: got %v %q, want %v %q", tc.why, tc.rcpt, r.Action, r.Key, tc.want, tc.key)
		}
	}
	// LookupTo is LookupRcpt for a local domain: user@ included.
	if r, ok := a.LookupTo(ad("badlocaluser@anywhere.example")); !ok || r.Key != "To:badlocaluser@" {
		t.Errorf("LookupTo: %+v %v", r, ok)
	}
	// The relay check reads only domains (To:user@domain RELAY would need
	// relaytofulladdress).
	if r, ok := a.LookupToDomain("mx.sendmail.org"); !ok || r.Action != ActionRelay {
		t.Errorf("LookupToDomain: %+v %v", r, ok)
	}
	if _, ok := a.LookupToDomain("example.com"); ok {
		t.Error("LookupToDomain matched a To:user@domain entry")
	}
}

// The other tags of cf/README (Spam: with delay_checks, GreetPause:,
// Srv_Features:, TLS_Clt: ...) have values of their own: a Sendmail file that
// has them loads, and they decide nothing here.
func TestAccessOtherTags(t *testing.T) {
	a := mustAccess(t, "Spam:abuse@\tFRIEND\nGreetPause:localhost\t0\nSrv_Features:10.1\tV\nTLS_Clt:host.example\tVERIFY\nClientRate:127.0.0.1\t0\n10.1.2.3\tOK\n")
	if a.Len() != 6 {
		t.Errorf("Len = %d", a.Len())
	}
	if r, ok := a.LookupConnect(netip.MustParseAddr("10.1.2.3"), ""); !ok || r.Action != ActionOK {
		t.Errorf("untagged entry: %+v %v", r, ok)
	}
	if _, ok := a.LookupRcpt(ad("abuse@example.org"), true); ok {
		t.Error("a Spam: entry was taken for a To: entry")
	}
}

func TestAccessEmptyTable(t *testing.T) {
	var a *Access
	if _, ok := a.LookupConnect(netip.MustParseAddr("192.0.2.1"), "x.example"); ok {
		t.Error("nil table matched")
	}
	if a.Len() != 0 || mustAccess(t, "# nothing\n\n").Len() != 0 {
		t.Error("empty table has entries")
	}
}

func FuzzParseAccess(f *testing.F) {
	f.Add("192.168.69 RELAY\nFrom:a@b ERROR:5.7.1:550 x\n")
	f.Add("IPv6:2001:db8::1 OK\nConnect:[IPv6:1:2:3:4:5:6:7:8] OK\n")
	f.Add("To:user+*@example.org ERROR:\"450 full\"\nConnect:[127.0.0.3] SKIP\n")
	f.Fuzz(func(t *testing.T, text string) {
		a, err := ParseAccess("access", strings.NewReader(text))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		for _, m := range a.byTag {
			for _, r := range m {
				if r.Action == ActionError && (r.Code < 400 || r.Code > 599 || r.Enhanced[0] != byte('0'+r.Code/100)) {
					t.Fatalf("bad error entry %+v", r)
				}
			}
		}
		a.LookupConnect(netip.MustParseAddr("192.0.2.1"), "host.example")
		a.LookupConnect(netip.MustParseAddr("2001:db8::1"), "")
		a.LookupFrom(addr.Address{Local: "a+b", Domain: "b.example"})
		a.LookupRcpt(addr.Address{Local: "a", Domain: "[192.0.2.1]"}, true)
	})
}
