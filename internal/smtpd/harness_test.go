package smtpd_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/smtpd"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/testkit"
	"github.com/posthorn/posthorn/internal/tlsutil"
)

// harness runs an smtpd.Server on 127.0.0.1 with a real store and real tables
// in temporary directories.
type harness struct {
	t       testing.TB
	srv     *smtpd.Server
	addr    string
	st      store.Store
	mapsDir string
	watcher *maps.Watcher
	dns     *dnstest.Server
	logs    *testkit.SyncBuffer
	tlsConf *tls.Config // client side, trusting the server's certificate
	rec     *recordingDeliverer
}

// recordingDeliverer hands messages to the real deliverer and keeps a copy of
// each envelope, so that tests see what the server passed on.
type recordingDeliverer struct {
	next *deliver.Deliverer
	mu   sync.Mutex
	envs []deliver.Envelope
}

func (r *recordingDeliverer) Deliver(ctx context.Context, env *deliver.Envelope, body store.Body) (*deliver.Result, error) {
	r.mu.Lock()
	e := *env
	e.Recipients = append([]deliver.Recipient(nil), env.Recipients...)
	r.envs = append(r.envs, e)
	r.mu.Unlock()
	return r.next.Deliver(ctx, env, body)
}

// envelope returns the envelope of the message with this queue ID.
func (h *harness) envelope(t testing.TB, id string) deliver.Envelope {
	t.Helper()
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	for _, e := range h.rec.envs {
		if e.ID == id {
			return e
		}
	}
	t.Fatalf("no envelope for queue ID %q was handed to the deliverer", id)
	return deliver.Envelope{}
}

type harnessOpts struct {
	tables   map[string]string // file name -> contents; defaults below
	accounts []string
	tls      bool
	config   func(*smtpd.Config)
	// allowPrograms and allowFiles permit "|command" and "/file" aliases.
	allowPrograms, allowFiles bool
	// auth, when set, gives the server an Authenticator with these options
	// and every account the password "secret-<name>".
	auth *auth.Options
	// submission makes it a submission server; implicitTLS serves it with
	// ServeTLS (port 465). Both need tls.
	submission, implicitTLS bool
	// checks are the anti-spam and authentication checks; given the
	// harness's DNS server when they need it.
	checks func(h *harness) *smtpd.Checks
}

var defaultTables = map[string]string{
	"local-host-names": "example.org\nexample.net\n",
	"aliases":          "root: pp\nwebmaster: root\nwww: webmaster\npostmaster: root\n",
	"virtusertable": "info@example.org\tpp\n" +
		"sales@example.org\tbob\n" +
		"fwd@example.org\tsomeone@remote.example\n" +
		"leaked@example.org\terror:nouser No such user here\n",
	"access": "",
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, mapsDir: filepath.Join(dir, "maps"), logs: &testkit.SyncBuffer{}}
	os.MkdirAll(h.mapsDir, 0o755)
	tables := o.tables
	if tables == nil {
		tables = defaultTables
	}
	for name, text := range tables {
		h.writeTable(name, text)
	}
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.st = st
	accounts := o.accounts
	if accounts == nil {
		accounts = []string{"pp", "bob"}
	}
	for _, a := range accounts {
		if _, err := st.CreateAccount(context.Background(), a, "x"); err != nil {
			t.Fatal(err)
		}
		if o.auth != nil {
			hash, scram, err := auth.NewCredentials("secret-" + a)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.SetPassword(context.Background(), a, hash, scram); err != nil {
				t.Fatal(err)
			}
		}
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := maps.NewWatcher(h.mapsDir, 50*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	h.watcher = w
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go w.Run(ctx)

	h.dns = dnstest.Start(t)
	h.rec = &recordingDeliverer{next: &deliver.Deliverer{Store: st, Log: log, AllowPrograms: o.allowPrograms, AllowFiles: o.allowFiles,
		ProgramTimeout: 5 * time.Second}}
	h.srv = &smtpd.Server{
		Config: smtpd.Config{
			Hostname:        "mx.example.org",
			MaxMessageBytes: 1 << 20,
			MaxRecipients:   100,
			MaxConnsPerIP:   20,
			SpoolDir:        dir,
		},
		Tables: w.Current,
		Router: route.New(route.Config{
			Hostname:      "mx.example.org",
			Tables:        w.Current,
			Accounts:      accountsOf{st},
			AllowPrograms: o.allowPrograms,
			AllowFiles:    o.allowFiles,
		}),
		Deliverer: h.rec,
		DNS:       dnsutil.New(h.dns.Addr),
		Log:       log,
	}
	if o.tls {
		certPEM, keyPEM, err := tlsutil.SelfSigned([]string{"mx.example.org"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		h.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		h.tlsConf = &tls.Config{InsecureSkipVerify: true}
	}
	if o.auth != nil {
		opts := *o.auth
		opts.Logger = log
		h.srv.Auth = auth.New(st, opts)
	}
	h.srv.Submission = o.submission
	if o.checks != nil {
		h.srv.Checks = o.checks(h)
	}
	if o.config != nil {
		o.config(&h.srv.Config)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	if o.implicitTLS {
		go h.srv.ServeTLS(ln)
	} else {
		go h.srv.Serve(ln)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
	})
	return h
}

type accountsOf struct{ st store.Store }

func (a accountsOf) AccountExists(ctx context.Context, name string) (bool, error) {
	_, err := a.st.GetAccount(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// writeTable replaces a table file atomically, as an editor that renames would.
func (h *harness) writeTable(name, text string) {
	h.t.Helper()
	tmp := filepath.Join(h.mapsDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.mapsDir, name)); err != nil {
		h.t.Fatal(err)
	}
}

// messages returns the bytes of every message in the account's INBOX.
func (h *harness) messages(account string) []string {
	h.t.Helper()
	ctx := context.Background()
	a, err := h.st.GetAccount(ctx, account)
	if err != nil {
		h.t.Fatalf("account %s: %v", account, err)
	}
	mb, err := h.st.GetMailbox(ctx, a.ID, store.Inbox)
	if err != nil {
		h.t.Fatal(err)
	}
	infos, err := h.st.ListMessages(ctx, mb.ID, 0, false)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, m := range infos {
		r, err := h.st.OpenMessage(ctx, mb.ID, m.UID)
		if err != nil {
			h.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func (h *harness) queue() []store.QueueEntry {
	h.t.Helper()
	q, err := h.st.ListQueue(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return q
}

// client is a raw SMTP client that checks every reply.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

type reply struct {
	code  int
	lines []string // texts after "NNN-" / "NNN "
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s", r.code, strings.Join(r.lines, " | "))
}

// enhanced returns the enhanced status code of the last line, "" if none.
func (r reply) enhanced() string {
	if len(r.lines) == 0 {
		return ""
	}
	f := strings.Fields(r.lines[len(r.lines)-1])
	if len(f) == 0 {
		return ""
	}
	parts := strings.Split(f[0], ".")
	if len(parts) != 3 {
		return ""
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return ""
		}
	}
	return f[0]
}

func (r reply) text() string { return strings.Join(r.lines, "\n") }

// dial connects from 127.0.0.1, or from localIP (another 127.x address, to play
// an outside client).
func (h *harness) dial(localIP string) *client {
	h.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	conn, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	c := &client{t: h.t, conn: conn, br: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

func (c *client) read() reply {
	c.t.Helper()
	var r reply
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %v)", err, r)
		}
		if !strings.HasSuffix(line, "\r\n") {
			c.t.Fatalf("reply line %q does not end in CRLF", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if len(line) < 3 {
			c.t.Fatalf("short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			c.t.Fatalf("reply line %q has no code", line)
		}
		if r.code != 0 && code != r.code {
			c.t.Fatalf("multi-line reply changes code: %q after %v", line, r)
		}
		r.code = code
		if len(line) == 3 {
			r.lines = append(r.lines, "")
			return r
		}
		r.lines = append(r.lines, line[4:])
		if line[3] == ' ' {
			return r
		}
		if line[3] != '-' {
			c.t.Fatalf("bad reply line %q", line)
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends one command line and reads the reply.
func (c *client) cmd(line string) reply {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.read()
}

// expect sends a command and checks the reply code and enhanced code.
func (c *client) expect(line string, code int, enh string) reply {
	c.t.Helper()
	r := c.cmd(line)
	if r.code != code || enh != "" && r.enhanced() != enh {
		c.t.Fatalf("%q: got %v, want %d %s", line, r, code, enh)
	}
	return r
}

// hello reads the greeting and says EHLO.
func (c *client) hello() reply {
	c.t.Helper()
	if g := c.read(); g.code != 220 {
		c.t.Fatalf("greeting %v", g)
	}
	return c.expect("EHLO client.example", 250, "")
}

// sendData sends DATA, the message (already CRLF, without the final dot line)
// and the end, returning the final reply.
func (c *client) sendData(body string) reply {
	c.t.Helper()
	c.expect("DATA", 354, "")
	c.send(body + ".\r\n")
	return c.read()
}

const simpleMessage = "From: Sender <sender@remote.example>\r\n" +
	"To: pp@example.org\r\n" +
	"Subject: hello\r\n" +
	"Message-ID: <1@remote.example>\r\n" +
	"\r\n" +
	"Hello there.\r\n"

type smtpdConfig = smtpd.Config

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
