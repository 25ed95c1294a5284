package route

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/srs"
)

type fakeAccounts map[string]bool

func (f fakeAccounts) AccountExists(_ context.Context, name string) (bool, error) {
	if name == "broken-db" {
		return false, errors.New("database is locked")
	}
	return f[name], nil
}

func tables(t *testing.T, files map[string]string) *maps.Tables {
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

func a(s string) addr.Address {
	v, err := addr.ParsePath(s, false)
	if err != nil {
		panic(s + ": " + err.Error())
	}
	return v
}

// describe writes targets as short strings, sorted: "acct:pp", "remote:x@y".
func describe(ts []Target) string {
	var out []string
	for _, t := range ts {
		switch t.Kind {
		case TargetAccount:
			out = append(out, "acct:"+t.Account)
		case TargetRemote:
			out = append(out, "remote:"+t.Address.String())
		case TargetFile:
			out = append(out, "file:"+t.Path)
		case TargetProgram:
			out = append(out, "prog:"+t.Command)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	include := filepath.Join(dir, "list")
	os.WriteFile(include, []byte("# members\nbob, carol@elsewhere.example\npp\n"), 0o644)
	huge := filepath.Join(dir, "huge")
	os.WriteFile(huge, []byte(strings.Repeat("pp\n", maxIncludeSize/3+1)), 0o644)
	var deep strings.Builder
	for i := 0; i < maxDepth+5; i++ {
		deep.WriteString("deep" + strconv.Itoa(i) + ": deep" + strconv.Itoa(i+1) + "\n")
	}
	deep.WriteString("deep" + strconv.Itoa(maxDepth+5) + ": pp\n")
	tb := tables(t, map[string]string{
		"local-host-names": "example.org\nexample.net\n",
		"aliases": "root: pp\nwebmaster: root\nwww: webmaster\npostmaster: root\n" +
			"staff: pp, bob, alice@elsewhere.example\n" +
			"announce: :include:" + include + "\nowner-announce: pp\n" +
			"loop1: loop2\nloop2: loop1\n" +
			"self: self, bob\n" +
			"mixed: pp, nosuchuser\n" +
			"allbad: nosuchuser, other-nosuch\n" +
			"prog: |/bin/cat\nfile: /tmp/x.mbox\n" +
			"viaaddr: info@example.org\n" +
			"tmp: broken-db\n" +
			"dup: pp, PP, root, pp@example.org\n" +
			"hugeinc: :include:" + huge + "\n" +
			"missinginc: :include:" + filepath.Join(dir, "nonexistent") + "\n" +
			"errlist: error:nouser 550 Left the company\n" +
			deep.String(),
		"virtusertable": "info@example.org\tpp\n" +
			"sales@example.org\tstaff\n" +
			"fwd@example.org\tsomeone@remote.example\n" +
			"leaked@example.org\terror:nouser No such user here\n" +
			"blocked@example.org\terror:5.7.1:550 Go away\n" +
			"chain@example.org\tinfo@example.org\n" +
			"vloop1@example.org\tvloop2@example.org\n" +
			"vloop2@example.org\tvloop1@example.org\n" +
			"@catchall.example\t%1%3@example.org\n" +
			"pp+*@example.org\tbob\n" +
			"noprog@example.org\t|/bin/cat\n" +
			"gone@example.org\terror:nouser 550 Gone for good\n" +
			"dsn@example.org\terror:5.7.0:550 Refused here\n" +
			"tmpfail@example.org\terror:tempfail Try again later\n" +
			"@catchall.example\t%1%3@example.org\n" +
			"@forward.example\t%1@remote.example\n",
	})
	r := New(Config{
		Hostname: "mx.example.org",
		Tables:   func() *maps.Tables { return tb },
		Accounts: fakeAccounts{"pp": true, "bob": true},
	})
	for _, tc := range []struct {
		rcpt  string
		want  string // targets
		code  int    // rejection code when no targets
		text  string // substring of the rejection text
		local bool
	}{
		{"pp@example.org", "acct:pp", 0, "", true},
		{"PP@EXAMPLE.ORG", "acct:pp", 0, "", true},
		{"pp@mx.example.org", "acct:pp", 0, "", true},     // the hostname is local
		{"pp@localhost", "acct:pp", 0, "", true},          // and localhost
		{"pp@example.net", "acct:pp", 0, "", true},        // README:3535: a local-host-names name is local
		{"postmaster", "acct:pp", 0, "", true},            // unqualified
		{"www@example.org", "acct:pp", 0, "", true},       // the guide's chain www -> webmaster -> root -> pp (aliases(5): recursive)
		{"root+test@example.org", "acct:pp", 0, "", true}, // README:1439: user+detail, user+*, then user
		{"bob+anything@example.org", "acct:bob", 0, "", true},
		{"staff@example.org", "acct:bob acct:pp remote:alice@elsewhere.example", 0, "", true},
		{"info@example.org", "acct:pp", 0, "", true},
		{"sales@example.org", "acct:bob acct:pp remote:alice@elsewhere.example", 0, "", true}, // README:997-1050: the virtusertable result is resolved again (aliases)
		{"fwd@example.org", "remote:someone@remote.example", 0, "", true},                     // README:997-1050: a remote address; forwarding is not relaying
		{"chain@example.org", "acct:pp", 0, "", true},                                         // README:997-1050: re-resolved through another virtuser entry
		{"viaaddr@example.org", "acct:pp", 0, "", true},                                       // alias to a local address
		{"bob+x@catchall.example", "acct:bob", 0, "", true},                                   // proto.m4:1125-1151: @dom with %1%3 keeps the detail
		{"pp+shop@example.org", "acct:bob", 0, "", true},                                      // proto.m4:1125-1151: user+*@dom before user@dom
		{"announce@example.org", "acct:bob acct:pp remote:carol@elsewhere.example", 0, "", true},
		{"self@example.org", "acct:bob", 0, "", true}, // aliases(5): duplicates suppressed; "self" is no account, its loop branch is dropped
		{"mixed@example.org", "acct:pp", 0, "", true}, // one bad member does not refuse the list
		{"leaked@example.org", "", 550, "No such user here", true},
		{"blocked@example.org", "", 550, "Go away", true},
		{"nobody@example.org", "", 550, "user unknown", true},
		{"allbad@example.org", "", 550, "user unknown", true},
		{"loop1@example.org", "", 554, "loop", true},  // a loop and nothing else: 554 5.4.6
		{"vloop1@example.org", "", 554, "loop", true}, // through virtusertable too
		{"prog@example.org", "", 550, "not allowed", true},
		{"file@example.org", "", 550, "not allowed", true},
		{"noprog@example.org", "", 550, "not allowed", true},
		{"someone@remote.example", "remote:someone@remote.example", 0, "", false},
		{"user@[192.0.2.1]", "remote:user@[192.0.2.1]", 0, "", false}, // address literals are not local: relay rules apply
		// The percent hack is no forwarding: the local part is a plain name
		// (policy refuses it as a relay for outside clients first).
		{"user%remote.example@example.org", "", 550, "user unknown", true},
		{"remote.example!user@example.org", "", 550, "user unknown", true},
		{`"user@remote.example"@example.org`, "", 550, "user unknown", true},
		// Programs and files only from aliases, never from RCPT (aliases(5)).
		{`"|/bin/sh -c reboot"@example.org`, "", 550, "user unknown", true},
		{`"/etc/passwd"@example.org`, "", 550, "user unknown", true},
		{`":include:/etc/passwd"@example.org`, "", 550, "user unknown", true},
		// Duplicates are suppressed (aliases(5)).
		{"dup@example.org", "acct:pp", 0, "", true},
		// The guide's virtusertable lines: error:nouser with the text given back.
		{"gone@example.org", "", 550, "Gone for good", true},
		{"dsn@example.org", "", 550, "Refused here", true},
		{"tmpfail@example.org", "", 450, "Try again later", true},
		{"errlist@example.org", "", 550, "Left the company", true}, // error: in aliases too
		// A catch-all to another domain: %1 is the user.
		{"anyone+tag@forward.example", "remote:anyone@remote.example", 0, "", true},
		// Bounds: 20 levels of aliases, :include: files of 1 MiB.
		{"deep0@example.org", "", 554, "Too many levels", true},
		{"deep10@example.org", "acct:pp", 0, "", true},
		{"hugeinc@example.org", "", 550, "at most", true},
		{"missinginc@example.org", "", 550, "Cannot open", true},
	} {
		res, err := r.Resolve(context.Background(), a(tc.rcpt))
		if tc.code != 0 {
			var rej *Rejection
			if !errors.As(err, &rej) || rej.Code != tc.code || !strings.Contains(rej.Text, tc.text) {
				t.Errorf("%s: got %v %v, want %d %q", tc.rcpt, describe(res.Targets), err, tc.code, tc.text)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.rcpt, err)
			continue
		}
		if got := describe(res.Targets); got != tc.want || res.Local != tc.local {
			t.Errorf("%s: got %q local=%v, want %q local=%v (trace %v)", tc.rcpt, got, res.Local, tc.want, tc.local, res.Trace)
		}
	}
}

// aliases(5) and alias.c: errors for a list go to owner-list; when owner-list
// is exactly one plain address, that address is the owner (the envelope
// sender), else "owner-list"; the owner of an owner- alias is owner-owner.
func TestResolveOwners(t *testing.T) {
	tb := tables(t, map[string]string{
		"aliases": "list: pp, bob\nowner-list: pp\n" +
			"big: pp, inner\nowner-big: pp, bob\n" +
			"inner: bob, carol@remote.example\nowner-inner: list-request@remote.example\n" +
			"owner-x: pp\nowner-owner: bob\n" +
			"plain: pp\n",
	})
	r := New(Config{Hostname: "mx.example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true, "bob": true}})
	for _, tc := range []struct {
		rcpt string
		want map[string]string // target -> owner
	}{
		{"list@mx.example.org", map[string]string{"acct:pp": "pp@mx.example.org", "acct:bob": "pp@mx.example.org"}},
		// owner-big has two addresses: the owner is owner-big itself.
		{"big@mx.example.org", map[string]string{"acct:pp": "owner-big@mx.example.org", "acct:bob": "list-request@remote.example",
			"remote:carol@remote.example": "list-request@remote.example"}}, // the inner list's owner wins for its members
		{"owner-x@mx.example.org", map[string]string{"acct:pp": "bob@mx.example.org"}}, // owner-owner
		{"plain@mx.example.org", map[string]string{"acct:pp": ""}},
		{"pp@mx.example.org", map[string]string{"acct:pp": ""}},
	} {
		res, err := r.Resolve(context.Background(), a(tc.rcpt))
		if err != nil {
			t.Errorf("%s: %v", tc.rcpt, err)
			continue
		}
		got := map[string]string{}
		for _, tg := range res.Targets {
			got[describe([]Target{tg})] = tg.Owner
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: owners %v, want %v", tc.rcpt, got, tc.want)
		}
	}
}

// The trace says how an address was resolved, for the log line.
func TestResolveTrace(t *testing.T) {
	tb := tables(t, map[string]string{
		"virtusertable": "pp+*@example.org\tpp\n",
		"aliases":       "pp: \\pp, webmaster\nwebmaster: root\nroot: bob\n",
	})
	r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true, "bob": true}})
	res, err := r.Resolve(context.Background(), a("pp+x@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pp+x@example.org", "virtusertable:pp+*@example.org", "alias:pp", "account:pp", "alias:webmaster", "alias:root", "account:bob"}
	if !reflect.DeepEqual(res.Trace, want) {
		t.Errorf("trace %q, want %q", res.Trace, want)
	}
}

// A failing account lookup is temporary, not "user unknown": the SMTP server
// answers 451 4.3.0.
func TestResolveTemporaryErrors(t *testing.T) {
	tb := tables(t, map[string]string{"aliases": "tmp: broken-db\nhalf: pp, broken-db\n"})
	r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true}})
	for _, rcpt := range []string{"tmp@example.org", "half@example.org", "broken-db@example.org"} {
		_, err := r.Resolve(context.Background(), a(rcpt))
		var rej *Rejection
		if err == nil || errors.As(err, &rej) {
			t.Errorf("%s: temporary failure reported as %v", rcpt, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Resolve(ctx, a("pp@example.org")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestResolveAllowsProgramsAndFilesWhenConfigured(t *testing.T) {
	tb := tables(t, map[string]string{"aliases": "prog: \"|/usr/bin/procmail -a x\"\nfile: /var/mail/archive, pp\n"})
	r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true},
		AllowPrograms: true, AllowFiles: true})
	res, err := r.Resolve(context.Background(), a("prog@example.org"))
	if err != nil || describe(res.Targets) != "prog:/usr/bin/procmail -a x" {
		t.Errorf("prog: %q %v", describe(res.Targets), err)
	}
	res, err = r.Resolve(context.Background(), a("file@example.org"))
	if err != nil || describe(res.Targets) != "acct:pp file:/var/mail/archive" {
		t.Errorf("file: %q %v", describe(res.Targets), err)
	}
}

func TestResolveBoundsFanOut(t *testing.T) {
	var b strings.Builder
	b.WriteString("big:")
	for i := 0; i < 1500; i++ {
		b.WriteString("\n\tu" + strconv.Itoa(i) + "@remote.example,")
	}
	b.WriteString(" pp\n")
	tb := tables(t, map[string]string{"aliases": b.String()})
	r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true}})
	res, err := r.Resolve(context.Background(), a("big@example.org"))
	if err != nil || len(res.Targets) > maxTargets {
		t.Errorf("fan-out: %d targets, %v", len(res.Targets), err)
	}
}

// error: right-hand sides (cf/README FEATURE(virtusertable) README:997-1050;
// proto.m4 "error : $-.$-.$- : $+" and "error : $- $+"; parseaddr.c
// ErrorCodes; sysexits.c SysExMsg for the replies of the names).
func TestParseErrorTarget(t *testing.T) {
	for _, tc := range []struct {
		in       string
		code     int
		enhanced string
		text     string
	}{
		{"error:nouser No such user here", 550, "5.1.1", "No such user here"},                                                             // the guide
		{"error:nouser You can put any offensive message you like here", 550, "5.1.1", "You can put any offensive message you like here"}, // the guide
		{"error:nouser 550 Gone for good", 550, "5.1.1", "Gone for good"},                                                                 // the issue: error:nouser 550 text
		{"ERROR:5.7.0:550 Not here", 550, "5.7.0", "Not here"},                                                                            // README: error:5.7.0:550 text
		{"error:4.2.2:450 Mailbox full", 450, "4.2.2", "Mailbox full"},
		{"error:5.2.2:450 Classes disagree", 450, "4.2.2", "Classes disagree"}, // RFC 3463: the reply's class
		{"error:550 Plain", 550, "5.0.0", "Plain"},                             // usrerr(): x.0.0 from the reply
		{"error:450 Later", 450, "4.0.0", "Later"},
		{"error:550 5.7.1 Enhanced in the text", 550, "5.7.1", "Enhanced in the text"},
		{"error:nouser 450 4.2.1 Try later", 450, "4.2.1", "Try later"},
		{"error:tempfail Try later", 450, "4.0.0", "Try later"}, // EX_TEMPFAIL: 450 4.0.0
		{"error:unavailable Closed", 554, "5.0.0", "Closed"},    // EX_UNAVAILABLE
		{"error:nohost No such host", 550, "5.1.2", "No such host"},
		{"error:usage Bad", 500, "5.0.0", "Bad"},
		{"error:software Oops", 554, "5.3.0", "Oops"},
		{"error:protocol Huh", 554, "5.5.0", "Huh"},
		{"error:config Misconfigured", 554, "5.3.5", "Misconfigured"},
		{"error:NOUSER Case", 550, "5.1.1", "Case"},
		{"error:nouser", 550, "5.1.1", "User unknown"},                             // the name's own text
		{"error:Mailbox closed for good", 554, "5.0.0", "Mailbox closed for good"}, // not a name: EX_UNAVAILABLE, all of it text
		{`error:nouser "spaced   text"`, 550, "5.1.1", "spaced   text"},
	} {
		rej, ok := ParseErrorTarget(tc.in)
		if !ok || rej.Code != tc.code || rej.Enhanced != tc.enhanced || rej.Text != tc.text {
			t.Errorf("%q: %+v", tc.in, rej)
		}
	}
	for _, notError := range []string{"pp", "errors@example.org", "error", ""} {
		if _, ok := ParseErrorTarget(notError); ok {
			t.Errorf("%q parsed as an error", notError)
		}
	}
	if got := (&Rejection{550, "5.1.1", "No such user here"}).Error(); got != "550 5.1.1 No such user here" {
		t.Errorf("Error() = %q", got)
	}
}

func TestRunProgram(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "got")
	if err := RunProgram(ctx, "cat > "+out+"; test \"$SENDER\" = a@b", strings.NewReader("hello\r\n"), []string{"SENDER=a@b"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "hello\r\n" {
		t.Errorf("program got %q", b)
	}
	for _, tc := range []struct {
		cmd      string
		code     int
		enhanced string
		text     string
	}{
		{"echo no such user; exit 67", 550, "5.1.1", "no such user"}, // EX_NOUSER; the program's first line is the text
		{"exit 75", 450, "4.0.0", "EX_TEMPFAIL"},                     // sysexits.c: 450 4.0.0 Deferred
		{"exit 71", 451, "4.0.0", "EX_OSERR"},
		{"exit 74", 451, "4.0.0", "EX_IOERR"},
		{"exit 69", 554, "5.0.0", "EX_UNAVAILABLE"},
		{"exit 1", 554, "5.3.0", "unknown mailer error"}, // not a sysexits status: permanent
		{"kill -9 $$", 554, "5.3.0", "unknown mailer error"},
		{"printf 'two\\nlines\\033x'; exit 77", 550, "5.0.0", "two"},
		{"sleep 10", 451, "4.4.7", "timed out"},
		{"sleep 10 & exit 0", 0, "", ""}, // a child left behind does not hold the delivery up
	} {
		start := time.Now()
		err := RunProgram(ctx, tc.cmd, strings.NewReader("x"), nil, 300*time.Millisecond)
		if time.Since(start) > 5*time.Second {
			t.Errorf("%q: took %v", tc.cmd, time.Since(start))
		}
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%q: %v", tc.cmd, err)
			}
			continue
		}
		var rej *Rejection
		if !errors.As(err, &rej) || rej.Code != tc.code || rej.Enhanced != tc.enhanced || !strings.Contains(rej.Text, tc.text) {
			t.Errorf("%q: %v", tc.cmd, err)
		}
	}
}

func TestAppendFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	msg := "Subject: x\r\n\r\nFrom the start\r\n>From quoted\r\nend\r\n"
	for i := 0; i < 2; i++ {
		if err := AppendFile(path, "From a@b Tue Nov 24 04:00:00 2026", strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	one := "From a@b Tue Nov 24 04:00:00 2026\nSubject: x\n\n>From the start\n>>From quoted\nend\n\n"
	if string(b) != one+one {
		t.Errorf("mbox:\n%q\nwant\n%q", b, one+one)
	}
	if err := AppendFile(filepath.Join(t.TempDir(), "no/such/dir"), "From x", strings.NewReader("x")); err == nil {
		t.Error("appending to a missing directory succeeded")
	}
}

func BenchmarkResolve(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "aliases"), []byte("root: pp\nwebmaster: root\nwww: webmaster\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "virtusertable"), []byte("info@example.org www\n"), 0o644)
	tb, _ := maps.Load(dir)
	r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true}})
	rcpt := a("info@example.org")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(context.Background(), rcpt); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseErrorTarget(f *testing.F) {
	for _, s := range []string{"error:nouser No such user here", "error:5.7.0:550 x", "error:550", "error:tempfail", `error:nouser "a  b"`, "error:4.2.2:450"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rej, ok := ParseErrorTarget(s)
		if !ok {
			return
		}
		if rej.Code < 400 || rej.Code > 599 || len(rej.Enhanced) < 5 || rej.Enhanced[0] != byte('0'+rej.Code/100) || rej.Text == "" {
			t.Fatalf("%q: %+v", s, rej)
		}
	})
}

// Resolution of any aliases and virtusertable stays within its bounds.
func FuzzResolve(f *testing.F) {
	f.Add("a: b, c\nb: a, pp\nc: x@remote.example\n", "@example.org %1%3@example.org\n", "a+z")
	f.Add("a: a\n", "a@example.org b@example.org\nb@example.org a@example.org\n", "a")
	f.Fuzz(func(t *testing.T, aliases, virtuser, local string) {
		al, err := maps.ParseAliases("aliases", strings.NewReader(aliases))
		if err != nil {
			return
		}
		vt, err := maps.ParseVirtusertable("virtusertable", strings.NewReader(virtuser))
		if err != nil {
			return
		}
		tb := &maps.Tables{Aliases: al, Virtusertable: vt}
		r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: onlyPP{}})
		a, err := addr.ParsePath(local+"@example.org", true)
		if err != nil {
			return
		}
		res, err := r.Resolve(context.Background(), a)
		var rej *Rejection
		if err != nil && !errors.As(err, &rej) {
			t.Fatalf("temporary error from fake accounts: %v", err)
		}
		if len(res.Targets) > maxTargets {
			t.Fatalf("%d targets", len(res.Targets))
		}
		for _, tg := range res.Targets {
			if tg.Kind == TargetProgram || tg.Kind == TargetFile {
				t.Fatalf("program or file target while not allowed: %+v", tg)
			}
		}
	})
}

// onlyPP knows one account and never fails.
type onlyPP struct{}

func (onlyPP) AccountExists(_ context.Context, name string) (bool, error) { return name == "pp", nil }

// Bounces to the SRS addresses we made go to the sender they stand for;
// forged or foreign ones are unknown users.
func TestResolveSRS(t *testing.T) {
	tb := tables(t, map[string]string{"local-host-names": "example.org\n"})
	rw := &srs.Rewriter{Secrets: [][]byte{[]byte("k1")}, Domain: "mx.example.org"}
	r := New(Config{Hostname: "mx.example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true}, SRS: rw})
	good, err := rw.Forward("sender@far.example")
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Resolve(context.Background(), a(good))
	if err != nil || !res.Local || describe(res.Targets) != "remote:sender@far.example" {
		t.Fatalf("%s: %+v %v", good, res, err)
	}
	// An SRS address of a local sender comes back home.
	local, _ := (&srs.Rewriter{Secrets: rw.Secrets, Domain: "mx.example.org"}).Forward("pp@example.org")
	if res, err := r.Resolve(context.Background(), a(local)); err != nil || describe(res.Targets) != "acct:pp" {
		t.Errorf("%s: %+v %v", local, res, err)
	}
	other := &srs.Rewriter{Secrets: [][]byte{[]byte("not ours")}, Domain: "mx.example.org"}
	forged, _ := other.Forward("victim@far.example")
	tampered := strings.Replace(good, "far.example", "evil.example", 1)
	for _, bad := range []string{forged, tampered} {
		_, err := r.Resolve(context.Background(), a(bad))
		var rej *Rejection
		if !errors.As(err, &rej) || rej.Code != 550 || rej.Enhanced != "5.1.1" {
			t.Errorf("%s: %v, want 550 5.1.1", bad, err)
		}
	}
	// At another local domain it is an ordinary (unknown) name.
	at := strings.Replace(good, "@mx.example.org", "@example.org", 1)
	if _, err := r.Resolve(context.Background(), a(at)); err == nil || !strings.Contains(err.Error(), "user unknown") {
		t.Errorf("%s: %v", at, err)
	}
}
