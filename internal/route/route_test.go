package route

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
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
			"tmp: broken-db\n",
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
			"noprog@example.org\t|/bin/cat\n",
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
		{"pp@example.net", "acct:pp", 0, "", true},        // any local domain
		{"postmaster", "acct:pp", 0, "", true},            // unqualified
		{"www@example.org", "acct:pp", 0, "", true},       // the guide's chain www -> webmaster -> root -> pp
		{"root+test@example.org", "acct:pp", 0, "", true}, // alias +detail falls back to root
		{"bob+anything@example.org", "acct:bob", 0, "", true},
		{"staff@example.org", "acct:bob acct:pp remote:alice@elsewhere.example", 0, "", true},
		{"info@example.org", "acct:pp", 0, "", true},
		{"sales@example.org", "acct:bob acct:pp remote:alice@elsewhere.example", 0, "", true}, // virtusertable then aliases
		{"fwd@example.org", "remote:someone@remote.example", 0, "", true},                     // forwarding is not relaying
		{"chain@example.org", "acct:pp", 0, "", true},                                         // re-resolved
		{"viaaddr@example.org", "acct:pp", 0, "", true},                                       // alias to a local address
		{"bob+x@catchall.example", "acct:bob", 0, "", true},                                   // %1%3 keeps the detail
		{"pp+shop@example.org", "acct:bob", 0, "", true},                                      // virtusertable user+* before user@
		{"announce@example.org", "acct:bob acct:pp remote:carol@elsewhere.example", 0, "", true},
		{"self@example.org", "acct:bob", 0, "", true}, // "self" is no account: the loop branch is dropped
		{"mixed@example.org", "acct:pp", 0, "", true}, // one bad member does not refuse the list
		{"leaked@example.org", "", 550, "No such user here", true},
		{"blocked@example.org", "", 550, "Go away", true},
		{"nobody@example.org", "", 550, "user unknown", true},
		{"allbad@example.org", "", 550, "user unknown", true},
		{"loop1@example.org", "", 554, "loop", true},
		{"vloop1@example.org", "", 554, "loop", true},
		{"prog@example.org", "", 550, "not allowed", true},
		{"file@example.org", "", 550, "not allowed", true},
		{"noprog@example.org", "", 550, "not allowed", true},
		{"someone@remote.example", "remote:someone@remote.example", 0, "", false},
		{"user@[192.0.2.1]", "remote:user@[192.0.2.1]", 0, "", false}, // literals are not local
		{"user%remote.example@example.org", "", 550, "user unknown", true},
		{"remote.example!user@example.org", "", 550, "user unknown", true},
		{`"user@remote.example"@example.org`, "", 550, "user unknown", true},
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

func TestResolveOwnerAndTemporaryErrors(t *testing.T) {
	tb := tables(t, map[string]string{
		"aliases": "list: pp, bob\nowner-list: pp\ntmp: broken-db\n",
	})
	r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true, "bob": true}})
	res, err := r.Resolve(context.Background(), a("list@example.org"))
	if err != nil || len(res.Targets) != 2 || res.Targets[0].Owner != "owner-list@example.org" {
		t.Errorf("owner: %+v %v", res.Targets, err)
	}
	// A failing account lookup is temporary, not "user unknown".
	_, err = r.Resolve(context.Background(), a("tmp@example.org"))
	var rej *Rejection
	if err == nil || errors.As(err, &rej) {
		t.Errorf("temporary failure reported as %v", err)
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

func TestParseErrorTarget(t *testing.T) {
	for _, tc := range []struct {
		in       string
		code     int
		enhanced string
		text     string
	}{
		{"error:nouser No such user here", 550, "5.1.1", "No such user here"},
		{"error:nouser 550 Gone for good", 550, "5.1.1", "Gone for good"},
		{"ERROR:5.7.0:550 Not here", 550, "5.7.0", "Not here"},
		{"error:550 Plain", 550, "5.0.0", "Plain"},
		{"error:tempfail Try later", 451, "4.0.0", "Try later"},
		{"error:4.2.2:450 Mailbox full", 450, "4.2.2", "Mailbox full"},
		{"error:nouser", 550, "5.1.1", "Address rejected"},
	} {
		rej, ok := ParseErrorTarget(tc.in)
		if !ok || rej.Code != tc.code || rej.Enhanced != tc.enhanced || rej.Text != tc.text {
			t.Errorf("%q: %+v", tc.in, rej)
		}
	}
	if _, ok := ParseErrorTarget("pp"); ok {
		t.Error("pp parsed as an error")
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
		{"echo no such user; exit 67", 550, "5.1.1", "no such user"},
		{"exit 75", 451, "4.0.0", "EX_TEMPFAIL"},
		{"exit 1", 550, "5.0.0", "status 1"},
		{"sleep 10", 451, "4.4.7", "timed out"},
	} {
		err := RunProgram(ctx, tc.cmd, strings.NewReader("x"), nil, 300*time.Millisecond)
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
	for b.Loop() {
		if _, err := r.Resolve(context.Background(), rcpt); err != nil {
			b.Fatal(err)
		}
	}
}
