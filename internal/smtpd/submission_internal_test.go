package smtpd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

var testFix = headerFix{date: "Date: D\r\n", messageID: "Message-ID: <M@h>\r\n", from: "From: <F@h>\r\n"}

// feedSubmission writes s to a msgWriter that keeps the identity fields and
// adds testFix's, in pieces of n bytes.
func feedSubmission(s string, n int) (*msgWriter, string) {
	sp := &spool.Spool{}
	w := newMsgWriter(sp, 1<<20)
	w.identity = &identityFields{}
	fix := testFix
	w.fix = &fix
	for len(s) > 0 {
		k := min(n, len(s))
		w.Write([]byte(s[:k]))
		s = s[k:]
	}
	w.finish()
	return w, string(sp.Bytes())
}

func TestMsgWriterSubmission(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		from, sender   []string
	}{
		{"all missing", "Subject: s\r\n\r\nbody\r\n",
			"Subject: s\r\nDate: D\r\nMessage-ID: <M@h>\r\nFrom: <F@h>\r\n\r\nbody\r\n", nil, nil},
		{"all present, any case", "from: a@b\r\nDATE: x\r\nMessage-Id: <y>\r\n\r\nFrom: in body\r\n",
			"from: a@b\r\nDATE: x\r\nMessage-Id: <y>\r\n\r\nFrom: in body\r\n", []string{" a@b\r\n"}, nil},
		{"folded From and a Sender", "From: a@b,\r\n c@d\r\nSender: e@f\r\nX-From: g@h\r\nDate: x\r\nMessage-ID: <y>\r\n\r\n",
			"", []string{" a@b,\r\n c@d\r\n"}, []string{" e@f\r\n"}},
		{"two From fields", "From: a@b\r\nSubject: s\r\n\tfrom: not@this\r\nFrom : c@d\r\n\r\n",
			"", []string{" a@b\r\n", " c@d\r\n"}, nil},
		{"header only", "Subject: s\r\n", "Subject: s\r\nDate: D\r\nMessage-ID: <M@h>\r\nFrom: <F@h>\r\n", nil, nil},
		{"header only, no final CRLF", "Subject: s", "Subject: s\r\nDate: D\r\nMessage-ID: <M@h>\r\nFrom: <F@h>\r\n", nil, nil},
		{"empty", "", "Date: D\r\nMessage-ID: <M@h>\r\nFrom: <F@h>\r\n", nil, nil},
		{"empty header", "\r\nbody\r\n", "Date: D\r\nMessage-ID: <M@h>\r\nFrom: <F@h>\r\n\r\nbody\r\n", nil, nil},
		{"Return-Path dropped, From kept", "Return-Path: <x@y>\r\nFrom: a@b\r\n\r\n",
			"From: a@b\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\n", []string{" a@b\r\n"}, nil},
	} {
		for _, n := range []int{1, 2, 5, 1000} {
			w, got := feedSubmission(tc.in, n)
			if tc.want != "" && got != tc.want {
				t.Errorf("%s/%d: stored %q, want %q", tc.name, n, got, tc.want)
			}
			if !reflect.DeepEqual(w.identity.from, tc.from) || !reflect.DeepEqual(w.identity.sender, tc.sender) {
				t.Errorf("%s/%d: from %q sender %q, want %q %q", tc.name, n, w.identity.from, w.identity.sender, tc.from, tc.sender)
			}
			if w.identity.overflow {
				t.Errorf("%s/%d: overflow", tc.name, n)
			}
		}
	}
}

// A From: field longer than the header-line buffer, or than
// maxIdentityBytes over its lines, cannot be checked whole: overflow.
func TestMsgWriterIdentityOverflow(t *testing.T) {
	for _, in := range []string{
		"From: " + strings.Repeat("a", 3*maxHeaderLine) + "@b\r\n\r\n",
		"From: a@b,\r\n " + strings.Repeat("a", 3*maxHeaderLine) + "@b\r\n\r\n",
		"From: a@b" + strings.Repeat(",\r\n a@b", maxIdentityBytes/6) + "\r\n\r\n",
	} {
		w, _ := feedSubmission(in, 1000)
		if !w.identity.overflow {
			t.Errorf("no overflow for a From: of %d bytes", len(in))
		}
	}
	// A long line of another field does not count.
	w, _ := feedSubmission("From: a@b\r\nX: "+strings.Repeat("a", 3*maxHeaderLine)+"\r\n\r\n", 1000)
	if w.identity.overflow || !reflect.DeepEqual(w.identity.from, []string{" a@b\r\n"}) {
		t.Errorf("overflow %v, from %q", w.identity.overflow, w.identity.from)
	}
}

// FuzzMsgWriterSubmission: however a message is cut into pieces, the
// msgWriter stores the same bytes and keeps the same fields; what it stores
// is the message with at most the three fields added at the end of the
// header, and the kept From: values parse (or not) without a panic.
func FuzzMsgWriterSubmission(f *testing.F) {
	for _, s := range []string{
		"From: a@b\r\nSubject: s\r\n\r\nbody\r\n",
		"From: a@b,\r\n c@d\r\nSender: e@f\r\n\r\n",
		"Subject: s",
		"From: \"x\" <a@b> (c)\r\n\r\n",
		"\r\n",
	} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, in string, n int) {
		if n <= 0 || n > 1<<12 {
			n = 1
		}
		w1, got1 := feedSubmission(in, n)
		w2, got2 := feedSubmission(in, len(in)+1)
		if !w2.ok() {
			return // bare LF/CR: refused whatever it holds
		}
		if got1 != got2 || !reflect.DeepEqual(w1.identity, w2.identity) || w1.seen != w2.seen {
			t.Fatalf("pieces of %d change the result:\n%q\n%q", n, got1, got2)
		}
		// Taking the added fields out gives the message back (it has no
		// Return-Path: to drop, or the comparison is skipped).
		if strings.Contains(strings.ToLower(in), "return-path") {
			return
		}
		var added string
		for _, f := range []struct {
			seen bool
			add  string
		}{{w2.seen.date, testFix.date}, {w2.seen.messageID, testFix.messageID}, {w2.seen.from, testFix.from}} {
			if !f.seen {
				added += f.add
			}
		}
		found := false
		for i := 0; i <= len(got2)-len(added) && !found; i++ {
			if strings.HasPrefix(got2[i:], added) {
				back := got2[:i] + got2[i+len(added):]
				found = back == in || back == in+"\r\n"
			}
		}
		if !found {
			t.Fatalf("stored %q for %q", got2, in)
		}
		for _, v := range w2.identity.from {
			headerParser.ParseList(strings.NewReplacer("\r\n", "", "\n", "").Replace(v))
		}
	})
}

// FuzzSubmissionSession feeds arbitrary bytes to a submission session from
// 127.0.0.1 (where AUTH is offered in clear text), seeded with logins: no
// panic, no hang.
func FuzzSubmissionSession(f *testing.F) {
	plain := "AGRlbW8Ac2VjcmV0LWRlbW8=" // \0demo\0secret-demo
	for _, seed := range []string{
		"EHLO x\r\nAUTH PLAIN " + plain + "\r\nMAIL FROM:<demo@example.org>\r\nRCPT TO:<demo@example.org>\r\nDATA\r\nFrom: demo@example.org\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nAUTH LOGIN\r\nZGVtbw==\r\nc2VjcmV0LWRlbW8=\r\nMAIL FROM:<>\r\n",
		"EHLO x\r\nAUTH SCRAM-SHA-256 biwsbj1kZW1vLHI9YWJj\r\n*\r\nAUTH PLAIN\r\n=\r\n",
		"EHLO x\r\nAUTH PLAIN " + plain + "\r\nMAIL FROM:<demo@example.org>\r\nRCPT TO:<a@remote.example>\r\nBDAT 12 LAST\r\nFrom: <a@b\r\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "local-host-names"), []byte("example.org\n"), 0o644)
	w, err := maps.NewWatcher(dir, time.Hour, nil)
	if err != nil {
		f.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	ctx := context.Background()
	st.CreateAccount(ctx, "demo", "x")
	hash, scram, err := auth.NewCredentials("secret-demo")
	if err != nil {
		f.Fatal(err)
	}
	st.SetPassword(ctx, "demo", hash, scram)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &Server{
		Config: Config{Hostname: "mx.example.org", MaxMessageBytes: 1 << 16, CommandTimeout: 2 * time.Second,
			DataTimeout: 2 * time.Second, SpoolDir: dir, Submission: true},
		Tables:    w.Current,
		Router:    route.New(route.Config{Hostname: "mx.example.org", Tables: w.Current, Accounts: fuzzAccounts{}}),
		Deliverer: &deliver.Deliverer{Store: st},
		Log:       log,
		Auth: auth.New(st, auth.Options{Logger: log, Throttle: auth.ThrottleConfig{
			Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}}),
	}
	srv.init()
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		c := newConn(srv, server, netip.MustParseAddr("127.0.0.1"))
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		client.Write(input)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the session did not end after the client went away")
		}
	})
}
