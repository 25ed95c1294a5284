package pop3d

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
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/testkit"
)

var ctx = context.Background()

// testServer is a pop3d.Server over a fresh SQLite store, listening on
// 127.0.0.1 for plain POP3 (with STLS) and for implicit TLS.
type testServer struct {
	t      testing.TB
	srv    *Server
	st     store.Store
	addr   string // plain, STLS offered
	tlsAdr string // implicit TLS
	logs   *testkit.SyncBuffer
	roots  *x509.CertPool
}

type serverOptions struct {
	idle           time.Duration
	maxErrors      int
	allowPlaintext bool
	st             store.Store // reuse a store (a "restart"); nil: a new one
}

// newTestServer starts a server with the accounts given, each with password
// "pw-<name>".
func newTestServer(t testing.TB, o serverOptions, accounts ...string) *testServer {
	t.Helper()
	st := o.st
	if st == nil {
		s, err := sqlite.Open(t.TempDir(), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		st = s
		for _, a := range accounts {
			h, sc := testkit.Credentials(t, "pw-"+a)
			if _, err := st.CreateAccount(ctx, a, h); err != nil {
				t.Fatal(err)
			}
			if err := st.SetPassword(ctx, a, h, sc); err != nil {
				t.Fatal(err)
			}
		}
	}
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cert, roots := testkit.Cert(t)
	a := auth.New(st, auth.Options{AllowPlaintext: o.allowPlaintext, Logger: log, Throttle: auth.ThrottleConfig{
		// No waiting between failures in tests; the throttle has its own.
		Sleep:     func(context.Context, time.Duration) error { return nil },
		LockAfter: 1000,
	}})
	srv := &Server{
		Config: Config{
			Hostname:    "pop.example.org",
			TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			IdleTimeout: o.idle,
			MaxErrors:   o.maxErrors,
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

// deliver puts a message into account's INBOX and returns its UID.
func (ts *testServer) deliver(account, text string) uint32 {
	ts.t.Helper()
	res, err := ts.st.Deliver(ctx, &store.Delivery{
		Body:         bytes.NewReader([]byte(text)),
		InternalDate: time.Now(),
		Local:        []store.LocalTarget{{Account: account}},
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	if res.Local[0].Err != nil {
		ts.t.Fatal(res.Local[0].Err)
	}
	return res.Local[0].UID
}

// inbox returns the UIDs in account's INBOX.
func (ts *testServer) inbox(account string) []uint32 {
	ts.t.Helper()
	a, err := ts.st.GetAccount(ctx, account)
	if err != nil {
		ts.t.Fatal(err)
	}
	mb, err := ts.st.GetMailbox(ctx, a.ID, store.Inbox)
	if err != nil {
		ts.t.Fatal(err)
	}
	ms, err := ts.st.ListMessages(ctx, mb.ID, 0, false)
	if err != nil {
		ts.t.Fatal(err)
	}
	var uids []uint32
	for _, m := range ms {
		uids = append(uids, m.UID)
	}
	return uids
}

func (ts *testServer) mailbox(account string) *store.Mailbox {
	ts.t.Helper()
	a, err := ts.st.GetAccount(ctx, account)
	if err != nil {
		ts.t.Fatal(err)
	}
	mb, err := ts.st.GetMailbox(ctx, a.ID, store.Inbox)
	if err != nil {
		ts.t.Fatal(err)
	}
	return mb
}

// client is a minimal POP3 client for the tests, written from RFC 1939
// independently of the server's code.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

// dial connects from local (nil: any address) to addr and reads the greeting.
func (ts *testServer) dial(local net.Addr) *client {
	ts.t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	c := &client{t: ts.t, nc: nc, r: bufio.NewReader(nc)}
	ts.t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		ts.t.Fatalf("greeting %q", g)
	}
	return c
}

// dialTLS connects to the implicit-TLS listener.
func (ts *testServer) dialTLS(local net.Addr) *client {
	ts.t.Helper()
	d := &net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	nc, err := tls.DialWithDialer(d, "tcp", ts.tlsAdr, &tls.Config{RootCAs: ts.roots, ServerName: "localhost"})
	if err != nil {
		ts.t.Fatal(err)
	}
	c := &client{t: ts.t, nc: nc, r: bufio.NewReader(nc)}
	ts.t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		ts.t.Fatalf("greeting %q", g)
	}
	return c
}

// startTLS sends STLS and does the handshake.
func (c *client) startTLS(roots *x509.CertPool) {
	c.t.Helper()
	if r := c.cmd("STLS"); !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("STLS: %q", r)
	}
	tc := tls.Client(c.nc, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.nc = tc
	c.r = bufio.NewReader(tc)
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// line reads one line and returns it without CRLF; it fails the test on a
// line that does not end in CRLF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the first line of the answer.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.line()
}

// multi reads the body of a multi-line answer up to the termination line and
// undoes the byte-stuffing (RFC 1939 section 3): the lines joined with CRLF.
func (c *client) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		if l == "." {
			return b.String()
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
}

// login logs in with USER/PASS and fails the test unless it worked.
func (c *client) login(user, password string) string {
	c.t.Helper()
	if r := c.cmd("USER " + user); !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("USER %s: %q", user, r)
	}
	r := c.cmd("PASS " + password)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("PASS for %s: %q", user, r)
	}
	return r
}

// expectClosed checks that the server closed the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Fatalf("connection still open, read %q", b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection still open after 5 s")
	}
}

// outside is a local address that is not loopback for the plain-text rule.
var outside = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

func msgText(subject, body string) string {
	return fmt.Sprintf("From: a@example.net\r\nTo: b@example.org\r\nSubject: %s\r\n\r\n%s", subject, body)
}

func newReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

func tlsClient(nc net.Conn, roots *x509.CertPool) *tls.Conn {
	return tls.Client(nc, &tls.Config{RootCAs: roots, ServerName: "localhost"})
}

// waitLog waits until the server's log holds s: a session writes its line
// after it closed the connection.
func (ts *testServer) waitLog(s string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ts.logs.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
