package maps

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAliases(t *testing.T) {
	text := `# the guide's lines
root:	pp
webmaster:	root
www:		webmaster
staff: pp, bob,
	alice@elsewhere.example
list: a, \
b
prog: "|/usr/bin/vacation -a, b", /var/mail/archive
inc: :include:/etc/posthorn/list
Postmaster: root
pp+shop: shopper
bob+*: bobs-plus
`
	a, err := ParseAliases("aliases", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"root", []string{"pp"}},
		{"ROOT", []string{"pp"}}, // case-insensitive
		{"www", []string{"webmaster"}},
		{"staff", []string{"pp", "bob", "alice@elsewhere.example"}}, // continuation by whitespace
		{"list", []string{"a", "b"}},                                // continuation by backslash
		{"prog", []string{"|/usr/bin/vacation -a, b", "/var/mail/archive"}},
		{"inc", []string{":include:/etc/posthorn/list"}},
		{"postmaster", []string{"root"}},
		// +detail: user+detail, then user+*, then user (README:1439).
		{"pp+shop", []string{"shopper"}},
		{"pp+other", nil},
		{"root+x", []string{"pp"}},
		{"bob+anything", []string{"bobs-plus"}},
		{"bob+", []string{"bobs-plus"}},
		{"nobody", nil},
	} {
		got, ok := a.Lookup(tc.name)
		if tc.want == nil {
			if ok {
				t.Errorf("Lookup(%q) = %q, want none", tc.name, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Lookup(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// newaliases prints "N aliases, longest L bytes, T bytes total": T counts the
// name and the right-hand side of every entry (Sendmail's readaliases), L the
// longest right-hand side.
func TestAliasesStats(t *testing.T) {
	text := "root:\tpp\nMAILER-DAEMON: postmaster\nstaff: a,\n b\nroot: bob \n"
	a, err := ParseAliases("aliases", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	n, longest, total := a.Stats()
	// alias.c readaliases(): naliases++ and bytes += lhssize + rhssize for every
	// entry read, a repeated name too; the rhs starts after the colon's blanks,
	// keeps trailing blanks and joins continuation lines without the newline:
	// root(4)+pp(2) + MAILER-DAEMON(13)+postmaster(10) + staff(5)+"a, b"(4) + root(4)+"bob "(4)
	if n != 4 || longest != 10 || total != 4+2+13+10+5+4+4+4 {
		t.Errorf("Stats = %d, %d, %d", n, longest, total)
	}
	if got, _ := a.Lookup("root"); !reflect.DeepEqual(got, []string{"bob"}) || a.Len() != 3 {
		t.Errorf("the later root entry is not in force: %q, %d names", got, a.Len())
	}
}

func TestAliasesErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"root:\n", "aliases:1: missing value for alias \"root\""},
		{"root pp\n", "aliases:1:"},
		{"ok: a\nbroken:   \n", "aliases:2: missing value"},
		{"  pp\n", "aliases:1: continuation line without an entry"},
		{"a b: c\n", "aliases:1:"},
	} {
		_, err := ParseAliases("aliases", strings.NewReader(tc.text))
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestVirtusertableOrder(t *testing.T) {
	// One table per case, so that each rule of proto.m4:1125-1151 is seen alone.
	for _, tc := range []struct {
		table, addr string
		want, key   string // "" = no entry
	}{
		{"pp@example.org pp\n", "pp@example.org", "pp", "pp@example.org"},
		{"pp@example.org pp\n", "PP@Example.org", "pp", "pp@example.org"},
		{"pp@example.org pp\n", "bob@example.org", "", ""},
		// 1. the exact user+detail, %1 = user+detail
		{"pp+shop@example.org x-%1\npp@example.org pp\n", "pp+shop@example.org", "x-pp+shop", "pp+shop@example.org"},
		// 2. user++ (non-empty detail): %1 user %2 detail %3 +detail
		{"pp++@example.org %1-%2-%3\npp+*@example.org star\n", "pp+shop@example.org", "pp-shop-+shop", "pp++@example.org"},
		{"pp++@example.org plusplus\npp+*@example.org star\n", "pp+@example.org", "star", "pp+*@example.org"},
		// 3. user+* matches an empty detail too
		{"pp+*@example.org star-%2\n", "pp+@example.org", "star-", "pp+*@example.org"},
		{"pp+*@example.org star-%2\n", "pp+x@example.org", "star-x", "pp+*@example.org"},
		// 4. user@ for user+detail
		{"pp@example.org pp%3\n", "pp+x@example.org", "pp+x", "pp@example.org"},
		// 5. ++@domain, non-empty detail only ("user+@foo.org" matches +*@ but not ++@)
		{"++@example.org pp\n+*@example.org star\n", "bob+x@example.org", "pp", "++@example.org"},
		{"++@example.org pp\n+*@example.org star\n", "bob+@example.org", "star", "+*@example.org"},
		{"++@example.org pp\n", "bob+@example.org", "", ""},
		// 6. +*@domain
		{"+*@example.org %1\n", "bob+x@example.org", "bob", "+*@example.org"},
		// 7. the catch-all: %1 = user; %1%3 keeps the detail
		{"@example.org %1@other.example\n", "someone@example.org", "someone@other.example", "@example.org"},
		{"@example.org %1%3@other.example\n", "someone+x@example.org", "someone+x@other.example", "@example.org"},
		{"@example.org %1@other.example\n", "someone+x@example.org", "someone@other.example", "@example.org"},
		// user@ before the catch-all
		{"@example.org catchall\npp@example.org pp\n", "pp@example.org", "pp", "pp@example.org"},
		// the guide's lines
		{"leaked@example.org error:nouser No such user here\n", "leaked@example.org", "error:nouser No such user here", "leaked@example.org"},
		{"info@example.org me@some.other.domain\n", "info@example.org", "me@some.other.domain", "info@example.org"},
		// another domain does not match
		{"@example.org catchall\n", "pp@example.net", "", ""},
		// the +detail rules need a user before the '+' (proto.m4: $+ + $*)
		{"+*@example.org star\n@example.org all-%1\n", "+x@example.org", "all-+x", "@example.org"},
		// %% is a literal percent sign; other %x are kept
		{"pp@example.org 100%%-%9\n", "pp@example.org", "100%-%9", "pp@example.org"},
	} {
		v, err := ParseVirtusertable("virtusertable", strings.NewReader(tc.table))
		if err != nil {
			t.Fatalf("%q: %v", tc.table, err)
		}
		got, key, ok := v.Lookup(ad(tc.addr))
		if tc.want == "" {
			if ok {
				t.Errorf("%q / %s: got %q (%s), want none", tc.table, tc.addr, got, key)
			}
			continue
		}
		if !ok || got != tc.want || key != tc.key {
			t.Errorf("%q / %s: got %q via %q, want %q via %q", tc.table, tc.addr, got, key, tc.want, tc.key)
		}
	}
}

func TestVirtusertableDomainsAndErrors(t *testing.T) {
	v, err := ParseVirtusertable("v", strings.NewReader("a@example.org x\n@example.net y\nb@Example.ORG. z\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Domains(); !reflect.DeepEqual(got, []string{"example.net", "example.org"}) {
		t.Errorf("Domains = %q", got)
	}
	for _, text := range []string{"a@example.org\n", "noatsign pp\n", "a@bad_domain pp\n"} {
		if _, err := ParseVirtusertable("v", strings.NewReader(text)); err == nil || !strings.HasPrefix(err.Error(), "v:1:") {
			t.Errorf("%q: %v", text, err)
		}
	}
}

func TestDomainLists(t *testing.T) {
	d, err := ParseDomainList("relay-domains", strings.NewReader("# comment\nexample.org\nrelayed.example # trailing\n128.32\nIPv6:2001:db8\n[192.0.2.1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain           string
		has, hasOrParent bool
	}{
		{"example.org", true, true},
		{"EXAMPLE.ORG.", true, true},
		{"mail.example.org", false, true}, // README:2404: subdomains too
		{"relayed.example", true, true},
		{"example", false, false},
		{"xexample.org", false, false},
	} {
		if d.Has(tc.domain) != tc.has || d.HasOrParent(tc.domain) != tc.hasOrParent {
			t.Errorf("%s: Has=%v HasOrParent=%v", tc.domain, d.Has(tc.domain), d.HasOrParent(tc.domain))
		}
	}
	for ip, want := range map[string]bool{"128.32.1.2": true, "128.33.1.2": false, "2001:db8::5": true, "2001:db9::5": false, "192.0.2.1": false} {
		if d.HasIP(netip.MustParseAddr(ip)) != want {
			t.Errorf("HasIP(%s) != %v", ip, want)
		}
	}
	// "[192.0.2.1]" is a name: our own address literal (class {w} holds them).
	if !d.Has("[192.0.2.1]") || !d.HasLiteral(netip.MustParseAddr("192.0.2.1")) || d.HasLiteral(netip.MustParseAddr("192.0.2.2")) {
		t.Error("address literal entries")
	}
	v6, err := ParseDomainList("local-host-names", strings.NewReader("[IPv6:2001:DB8::1]\n[UNIX:localhost]\n"))
	if err != nil || !v6.HasLiteral(netip.MustParseAddr("2001:db8:0::1")) || !v6.Has("[unix:localhost]") {
		t.Errorf("IPv6 literal entries: %v", err)
	}
	if _, err := ParseDomainList("local-host-names", strings.NewReader("ok.example\nbad_name!\n")); err == nil || !strings.HasPrefix(err.Error(), "local-host-names:2:") {
		t.Errorf("bad entry: %v", err)
	}
}

// README:3553-3610: the exact host first, then .parent keys from the most to
// the least specific; %1 is the part before the matched .parent; [host] means
// no MX lookup.
func TestMailertable(t *testing.T) {
	m, err := ParseMailertable("mailertable", strings.NewReader(`example.com	smtp:mx.example.com
.example.com	relay:[gateway.example.com]:2525
.org	esmtp:%1.mail.example
sub.example.net	error:5.7.1:550 no mail for you
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain string
		want   Route
		ok     bool
	}{
		{"example.com", Route{Mailer: "smtp", Host: "mx.example.com"}, true},                                   // exact first
		{"a.b.example.com", Route{Mailer: "relay", Host: "gateway.example.com", Port: 2525, NoMX: true}, true}, // .parent
		{"a.example.org", Route{Mailer: "esmtp", Host: "a.example.mail.example"}, true},                        // %1 = the part before the dot key
		{"sub.example.net", Route{Mailer: "error", Host: "5.7.1:550 no mail for you"}, true},
		{"example.net", Route{}, false},
		{"org", Route{}, false}, // ".org" does not match org itself
	} {
		got, ok := m.Lookup(tc.domain)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", tc.domain, got, ok, tc.want)
		}
	}
	for _, text := range []string{"example.com\n", "example.com nocolon\n", "example.com smtp:[host\n", "example.com smtp:host:99999\n"} {
		if _, err := ParseMailertable("mailertable", strings.NewReader(text)); err == nil {
			t.Errorf("%q accepted", text)
		}
	}
}

func TestLoadReportsEveryBrokenTable(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, FileAccess, "192.168.69 RELAY\n")
	write(t, dir, FileAliases, "root: pp\nbroken:\n")
	write(t, dir, FileVirtusertable, "x@example.org\n")
	tables, err := Load(dir)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{filepath.Join(dir, "aliases") + ":2:", filepath.Join(dir, "virtusertable") + ":1:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if tables.Access.Len() != 1 || tables.Aliases.Len() != 0 || tables.LocalHostNames.Len() != 0 {
		t.Errorf("tables: access %d aliases %d", tables.Access.Len(), tables.Aliases.Len())
	}
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWatcherReloadsAndKeepsGoodTables(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, FileVirtusertable, "a@example.org pp\n")
	write(t, dir, FileAccess, "192.168.69 RELAY\n")
	logs := &logBuf{}
	w, err := NewWatcher(dir, 10*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	lookup := func(s string) string {
		r, _, _ := w.Current().Virtusertable.Lookup(ad(s))
		return r
	}
	write(t, dir, FileVirtusertable, "a@example.org pp\nb@example.org bob\n")
	waitUntil(t, func() bool { return lookup("b@example.org") == "bob" })

	// A broken version is refused; the previous one stays, other tables still reload.
	write(t, dir, FileVirtusertable, "a@example.org pp\nbroken@example.org\n")
	write(t, dir, FileAccess, "192.168.69 RELAY\n10.0.0 RELAY\n")
	waitUntil(t, func() bool { return w.Current().Access.Len() == 2 })
	waitUntil(t, func() bool { return strings.Contains(logs.String(), filepath.Join(dir, "virtusertable")+":2:") })
	if !strings.Contains(logs.String(), "table=virtusertable") || !strings.Contains(logs.String(), "line=2") {
		t.Errorf("the log line lacks the table or line: %s", logs)
	}
	if lookup("b@example.org") != "bob" || lookup("a@example.org") != "pp" {
		t.Error("the previous virtusertable is not in force after a broken edit")
	}
	if n := strings.Count(logs.String(), "table not reloaded"); n != 1 {
		t.Errorf("the error was logged %d times, want once", n)
	}
	// Fixed again: loaded.
	write(t, dir, FileVirtusertable, "c@example.org carol\n")
	waitUntil(t, func() bool { return lookup("c@example.org") == "carol" })
	if lookup("b@example.org") != "" {
		t.Error("old entry still present")
	}
	// A removed file is an empty table.
	os.Remove(filepath.Join(dir, FileVirtusertable))
	waitUntil(t, func() bool { return w.Current().Virtusertable.Len() == 0 })
}

func TestNewWatcherRefusesBrokenTables(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, FileAccess, "10.0.0 BOGUS\n")
	if _, err := NewWatcher(dir, time.Second, nil); err == nil || !strings.Contains(err.Error(), "access:1:") {
		t.Errorf("NewWatcher on a broken table: %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func FuzzParseAliases(f *testing.F) {
	f.Add("root: pp\nstaff: a,\n b\nlist: \"|x, y\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		a, err := ParseAliases("aliases", strings.NewReader(text))
		if err != nil {
			return
		}
		for _, n := range a.Names() {
			if targets, ok := a.Lookup(n); !ok || len(targets) == 0 {
				t.Fatalf("%q has no targets", n)
			}
		}
	})
}

// An editor may write a file twice within one timestamp granule, leaving the
// same size, mtime and inode: a table loaded while its mtime was recent is read
// again on the next check and reloaded if its bytes differ.
func TestWatcherSeesARewriteUnderTheSameStat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileAliases)
	os.WriteFile(path, []byte("root: pp\n"), 0o644)
	w, err := NewWatcher(dir, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	os.WriteFile(path, []byte("root: bb\n"), 0o644) // same length
	os.Chtimes(path, st.ModTime(), st.ModTime())    // same mtime
	w.reload(true)
	if got, _ := w.Current().Aliases.Lookup("root"); !reflect.DeepEqual(got, []string{"bb"}) {
		t.Errorf("root = %q after a rewrite under the same stat", got)
	}
	// Once the mtime is old, the file is no longer read on every check.
	old := time.Now().Add(-3 * time.Hour) // older than the interval (1h) and a second
	os.Chtimes(path, old, old)
	w.Reload()
	w.reload(true)
	if w.recheck[FileAliases] {
		t.Error("an old file is still read again on every check")
	}
}

func FuzzParseDomainList(f *testing.F) {
	f.Add("example.org\n128.32 # net\nIPv6:2001:db8\n[192.0.2.1]\n")
	f.Fuzz(func(t *testing.T, text string) {
		d, err := ParseDomainList("relay-domains", strings.NewReader(text))
		if err != nil {
			return
		}
		for _, n := range d.Names() {
			if !d.Has(n) || !d.HasOrParent(n) {
				t.Fatalf("listed name %q not found", n)
			}
		}
		d.HasIP(netip.MustParseAddr("192.0.2.1"))
		d.HasIP(netip.MustParseAddr("2001:db8::1"))
	})
}

func FuzzParseMailertable(f *testing.F) {
	f.Add(".example.com relay:[gw.example]:2525\nexample.org esmtp:%1.mx\n")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := ParseMailertable("mailertable", strings.NewReader(text))
		if err != nil {
			return
		}
		for _, d := range []string{"a.example.com", "example.org", "x.y.z"} {
			if r, ok := m.Lookup(d); ok && r.Mailer == "" {
				t.Fatalf("%s: route without a mailer", d)
			}
		}
	})
}

func FuzzParseVirtusertable(f *testing.F) {
	f.Add("@example.org %1%3@x\npp+*@example.org y\n")
	f.Fuzz(func(t *testing.T, text string) {
		v, err := ParseVirtusertable("v", strings.NewReader(text))
		if err != nil {
			return
		}
		v.Lookup(ad("a+b@example.org"))
	})
}

// A file rewritten in place is loaded only once it stops changing: a reader
// must never put half a table in force.
func TestWatcherWaitsForAFileToSettle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileAliases)
	os.WriteFile(path, []byte("root: pp\nwebmaster: root\n"), 0o644)
	w, err := NewWatcher(dir, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An editor truncates and has written only the first line so far.
	os.WriteFile(path, []byte("webmaster: root\n"), 0o644)
	w.reload(true)
	if _, ok := w.Current().Aliases.Lookup("root"); !ok {
		t.Fatal("a table seen changed once was put in force at once")
	}
	// It then finishes; one more check without change loads the final text.
	os.WriteFile(path, []byte("webmaster: root\nroot: pp\nwww: webmaster\n"), 0o644)
	os.Chtimes(path, time.Now().Add(time.Second), time.Now().Add(time.Second))
	w.reload(true)
	if _, ok := w.Current().Aliases.Lookup("www"); ok {
		t.Fatal("loaded while still changing")
	}
	w.reload(true)
	if _, ok := w.Current().Aliases.Lookup("www"); !ok {
		t.Fatal("the settled table was not loaded")
	}
	if _, ok := w.Current().Aliases.Lookup("root"); !ok {
		t.Fatal("root lost")
	}
}
