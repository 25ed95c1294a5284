package imapd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/testkit"
)

var ctx = context.Background()

// testServer is an imapd.Server over a fresh SQLite store, listening on
// 127.0.0.1 for IMAP (with STARTTLS) and for implicit TLS.
type testServer struct {
	t      testing.TB
	srv    *Server
	st     store.Store
	addr   string
	tlsAdr string
	logs   *testkit.SyncBuffer
	roots  *x509.CertPool
}

type serverOptions struct {
	idle, preauth  time.Duration
	maxErrors      int
	allowPlaintext bool
	appendLimit    int64
}

// newTestServer starts a server with the accounts given, each with
// password "pw-<name>".
func newTestServer(t testing.TB, o serverOptions, accounts ...string) *testServer {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, a := range accounts {
		h, sc := testkit.Credentials(t, "pw-"+a)
		if _, err := st.CreateAccount(ctx, a, h); err != nil {
			t.Fatal(err)
		}
		if err := st.SetPassword(ctx, a, h, sc); err != nil {
			t.Fatal(err)
		}
	}
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cert, roots := testkit.Cert(t)
	a := auth.New(st, auth.Options{AllowPlaintext: o.allowPlaintext, Logger: log, Throttle: auth.ThrottleConfig{
		Sleep:     func(context.Context, time.Duration) error { return nil },
		LockAfter: 1000,
	}})
	srv := &Server{
		Config: Config{
			Hostname:       "imap.example.org",
			TLSConfig:      &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			IdleTimeout:    o.idle,
			PreAuthTimeout: o.preauth,
			MaxErrors:      o.maxErrors,
			AppendLimit:    o.appendLimit,
		},
		Store: st,
		Auth:  a,
		Log:   log,
	}
	ts := &testServer{t: t, srv: srv, st: st, logs: logs, roots: roots}
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		if implicit {
			ts.tlsAdr = ln.Addr().String()
			go func() { done <- srv.ServeTLS(ln) }()
		} else {
			ts.addr = ln.Addr().String()
			go func() { done <- srv.Serve(ln) }()
		}
		t.Cleanup(func() {
			if err := <-done; err != ErrServerClosed {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		})
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return ts
}

// deliver puts a message into account's mailbox ("" for INBOX) as SMTP
// delivery does (with its parsed structure) and returns its UID.
func (ts *testServer) deliver(account, mailbox, text string, flags ...string) uint32 {
	ts.t.Helper()
	res, err := ts.st.Deliver(ctx, &store.Delivery{
		Body:         bytes.NewReader([]byte(text)),
		Meta:         msg.ParseBytes([]byte(text)).Marshal(),
		InternalDate: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
		Local:        []store.LocalTarget{{Account: account, Mailbox: mailbox, Flags: flags}},
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	if res.Local[0].Err != nil {
		ts.t.Fatal(res.Local[0].Err)
	}
	return res.Local[0].UID
}

func (ts *testServer) mailbox(account, name string) *store.Mailbox {
	ts.t.Helper()
	a, err := ts.st.GetAccount(ctx, account)
	if err != nil {
		ts.t.Fatal(err)
	}
	mb, err := ts.st.GetMailbox(ctx, a.ID, name)
	if err != nil {
		ts.t.Fatal(err)
	}
	return mb
}

// uids lists the UIDs in a mailbox, straight from the store.
func (ts *testServer) uids(account, name string) []uint32 {
	ts.t.Helper()
	ms, err := ts.st.ListMessages(ctx, ts.mailbox(account, name).ID, 0, false)
	if err != nil {
		ts.t.Fatal(err)
	}
	var out []uint32
	for _, m := range ms {
		out = append(out, m.UID)
	}
	return out
}

// client is a raw IMAP client for the tests: it sends lines and collects
// the answer up to the tagged line. It is written from RFC 9051, apart
// from the server's code: literals in answers are read by their length.
type client struct {
	t   testing.TB
	nc  net.Conn
	r   *bufio.Reader
	w   io.Writer
	seq int
}

func (ts *testServer) dial() *client {
	ts.t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		ts.t.Fatal(err)
	}
	c := &client{t: ts.t, nc: nc, r: bufio.NewReader(nc), w: nc}
	ts.t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		ts.t.Fatalf("greeting %q", g)
	}
	return c
}

// login dials and logs in as account.
func (ts *testServer) login(account string) *client {
	ts.t.Helper()
	c := ts.dial()
	c.ok("LOGIN " + account + " pw-" + account)
	return c
}

// line reads one line (without CRLF), with any literals in it inlined as
// {n}\r\n<data>.
func (c *client) line() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (so far %q)", err, b.String()+l)
		}
		b.WriteString(l)
		// A literal at the end of the line: read its octets, go on.
		s := strings.TrimRight(l, "\r\n")
		if strings.HasSuffix(s, "}") {
			if i := strings.LastIndexByte(s, '{'); i >= 0 {
				if n, err := strconv.Atoi(strings.TrimSuffix(s[i+1:len(s)-1], "+")); err == nil {
					buf := make([]byte, n)
					if _, err := io.ReadFull(c.r, buf); err != nil {
						c.t.Fatalf("read literal: %v", err)
					}
					b.Write(buf)
					continue
				}
			}
		}
		return strings.TrimRight(b.String(), "\r\n")
	}
}

// send writes a raw line (CRLF added).
func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.w, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a tagged command and returns the untagged lines and the
// tagged one.
func (c *client) cmd(command string) ([]string, string) {
	c.t.Helper()
	c.seq++
	tag := fmt.Sprintf("a%d", c.seq)
	c.send(tag + " " + command)
	return c.until(tag)
}

// until reads lines up to the one tagged tag.
func (c *client) until(tag string) ([]string, string) {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return lines, strings.TrimPrefix(l, tag+" ")
		}
		lines = append(lines, l)
	}
}

// ok runs a command that must succeed and returns its untagged lines.
func (c *client) ok(command string) []string {
	c.t.Helper()
	lines, status := c.cmd(command)
	if !strings.HasPrefix(status, "OK") {
		c.t.Fatalf("%s: %s (after %q)", command, status, lines)
	}
	return lines
}

// expect runs a command whose tagged answer must start with prefix.
func (c *client) expect(command, prefix string) []string {
	c.t.Helper()
	lines, status := c.cmd(command)
	if !strings.HasPrefix(status, prefix) {
		c.t.Fatalf("%s: got %q, want %q... (after %q)", command, status, prefix, lines)
	}
	return lines
}

// has reports whether one of lines contains s.
func has(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func mustHave(t testing.TB, lines []string, s ...string) {
	t.Helper()
	for _, x := range s {
		if !has(lines, x) {
			t.Errorf("no line with %q in %q", x, lines)
		}
	}
}

func mustNotHave(t testing.TB, lines []string, s ...string) {
	t.Helper()
	for _, x := range s {
		if has(lines, x) {
			t.Errorf("a line has %q: %q", x, lines)
		}
	}
}

const simpleMessage = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Hello there\r\n" +
	"Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hi Bob,\r\nthis is the body.\r\n"
