package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/tlsutil"
)

// popOutside plays a POP3 client that is not loopback for the plain-text
// rule: only 127.0.0.1 and ::1 are.
const popOutside = "127.0.0.2"

// popHost is the name in the test certificate; clients reach it on 127.0.0.1.
const popHost = "mx.example.org"

// pop3Instance is an instance with POP3 on a 110-like (STLS) and a 995-like
// (implicit TLS) port, a self-signed certificate for popHost, and accounts
// pp and bob (passwords secret-pp, secret-bob).
type pop3Instance struct {
	*instance
	pop3, pop3s string // listen addresses
	certFile    string
	roots       *x509.CertPool
}

func newPOP3Instance(t *testing.T) *pop3Instance {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := tlsutil.SelfSigned([]string{popHost}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pop3Instance{pop3: freePort(t), pop3s: freePort(t), certFile: filepath.Join(dir, "cert.pem"), roots: x509.NewCertPool()}
	p.roots.AppendCertsFromPEM(certPEM)
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(p.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// Never the real DNS, never mail out.
	dns := dnstest.Start(t)
	extra := fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = 1\n\n[pop3]\nlisten = %q\ntls_listen = %q\n\n[tls]\ncert_file = %q\nkey_file = %q\n",
		dns.Addr, p.pop3, p.pop3s, p.certFile, key)
	p.instance = newInstanceWith(t, instanceOptions{extra: extra}, "pp", "bob")
	p.start()
	return p
}

// deliverSMTP sends data (CRLF line ends, no final ".") to rcpt over SMTP,
// without TLS, and returns once the server said 250.
func (p *pop3Instance) deliverSMTP(rcpt, data string) {
	p.t.Helper()
	c, err := gosmtp.Dial(p.smtp)
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		p.t.Fatal(err)
	}
	if err := c.Mail("sender@example.net", nil); err != nil {
		p.t.Fatal(err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		p.t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		p.t.Fatal(err)
	}
	io.WriteString(w, data)
	if err := w.Close(); err != nil {
		p.t.Fatal(err)
	}
	c.Quit()
}

// Messages with what POP3 must get right: lines that start with a dot, a
// line "." alone, a long line, and a message without a body.
var popMessages = []string{
	"From: sender@example.net\r\nTo: pp@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n.\r\n..\r\nplain line\r\n",
	"From: sender@example.net\r\nTo: pp@example.org\r\nSubject: long\r\n\r\n" + strings.Repeat("0123456789", 99) + "\r\n" + strings.Repeat("short line\r\n", 50),
	"From: sender@example.net\r\nTo: pp@example.org\r\nSubject: no body\r\n\r\n",
}

// fill delivers popMessages to pp over SMTP and returns the messages as the
// store holds them (with Return-Path: and Received: in front), each checked
// to end with what was sent.
func (p *pop3Instance) fill() []string {
	p.t.Helper()
	before := len(p.messages("pp"))
	for _, m := range popMessages {
		p.deliverSMTP("pp@example.org", m)
	}
	stored := p.messages("pp")[before:]
	if len(stored) != len(popMessages) {
		p.t.Fatalf("%d messages stored, want %d", len(stored), len(popMessages))
	}
	for i, m := range stored {
		if !strings.HasSuffix(m, popMessages[i]) || !strings.HasPrefix(m, "Return-Path: ") {
			p.t.Fatalf("stored message %d is not what was sent:\n%q", i+1, m)
		}
	}
	return stored
}

// Python's poplib: STLS on the 110-like port and implicit TLS on the
// 995-like one; the bytes it retrieves are those in the store.
func TestPOP3WithPython(t *testing.T) {
	requireTool(t, "python3")
	p := newPOP3Instance(t)
	stored := p.fill()
	out := t.TempDir()
	script := `
import poplib, ssl, sys
cafile, host, port, tlsport, out = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # the certificate names ` + popHost + `, we dial 127.0.0.1; the chain is still verified
p = poplib.POP3(host, int(port), timeout=20)
caps = p.capa()
assert "STLS" in caps, caps
p.stls(ctx)
p.user("pp")
p.pass_("secret-pp")
count, size = p.stat()
print("STAT", count, size)
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    with open("%s/%d" % (out, i), "wb") as f:
        f.write(b"".join(l + b"\r\n" for l in lines))
resp, uidls, _ = p.uidl()
print("UIDL", b" ".join(uidls).decode())
p.quit()
s = poplib.POP3_SSL(host, int(tlsport), context=ctx, timeout=20)
s.user("pp")
s.pass_("secret-pp")
print("TLS STAT", *s.stat())
resp, lines, octets = s.top(1, 0)
with open("%s/top" % out, "wb") as f:
    f.write(b"".join(l + b"\r\n" for l in lines))
s.quit()
`
	host, port, _ := net.SplitHostPort(p.pop3)
	_, tlsPort, _ := net.SplitHostPort(p.pop3s)
	cmd := exec.Command("python3", "-c", script, p.certFile, host, port, tlsPort, out)
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 poplib: %v\n%s", err, res)
	}
	total := 0
	for _, m := range stored {
		total += len(m)
	}
	if want := fmt.Sprintf("STAT %d %d\n", len(stored), total); !strings.Contains(string(res), want) {
		t.Errorf("poplib printed:\n%s\nwant %q", res, want)
	}
	if want := fmt.Sprintf("TLS STAT %d %d\n", len(stored), total); !strings.Contains(string(res), want) {
		t.Errorf("poplib over TLS printed:\n%s\nwant %q", res, want)
	}
	if !regexp.MustCompile(`UIDL 1 \S+ 2 \S+ 3 \S+\n`).Match(res) {
		t.Errorf("poplib UIDL:\n%s", res)
	}
	for i, m := range stored {
		if got := mustRead(t, filepath.Join(out, strconv.Itoa(i+1))); got != m {
			t.Errorf("message %d by poplib:\n%q\nstored:\n%q", i+1, got, m)
		}
	}
	header, _, _ := strings.Cut(stored[0], "\r\n\r\n")
	if got := mustRead(t, filepath.Join(out, "top")); got != header+"\r\n\r\n" {
		t.Errorf("TOP 1 0 by poplib:\n%q\nwant the header:\n%q", got, header+"\r\n\r\n")
	}
	if n := len(p.messages("pp")); n != len(stored) {
		t.Errorf("%d messages left after sessions without DELE, want %d", n, len(stored))
	}
}

// curl fetches over STLS (--ssl-reqd) and over implicit TLS (pop3s://),
// verifying the certificate; the bytes are those in the store. Without TLS
// from an address that is not loopback, it cannot log in.
func TestPOP3WithCurl(t *testing.T) {
	requireTool(t, "curl")
	p := newPOP3Instance(t)
	stored := p.fill()
	_, port, _ := net.SplitHostPort(p.pop3)
	_, tlsPort, _ := net.SplitHostPort(p.pop3s)
	curl := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"-sS", "--max-time", "30", "--cacert", p.certFile,
			"--resolve", popHost + ":" + port + ":127.0.0.1", "--resolve", popHost + ":" + tlsPort + ":127.0.0.1"}
		cmd := exec.CommandContext(ctx, "curl", append(base, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != 0 {
			return stdout.String() + stderr.String(), code
		}
		return stdout.String(), 0
	}
	for i, m := range stored {
		for _, url := range []string{
			fmt.Sprintf("pop3://%s:%s/%d", popHost, port, i+1),
			fmt.Sprintf("pop3s://%s:%s/%d", popHost, tlsPort, i+1),
		} {
			args := []string{"-u", "pp:secret-pp", url}
			if strings.HasPrefix(url, "pop3:") {
				args = append([]string{"--ssl-reqd", "--interface", popOutside}, args...)
			}
			got, code := curl(args...)
			if code != 0 {
				t.Fatalf("curl %s: exit %d: %s", url, code, got)
			}
			if got != m {
				t.Errorf("curl %s:\n%q\nstored:\n%q", url, got, m)
			}
		}
	}
	// LIST through pop3s:// with no message number.
	list, code := curl("-u", "pp:secret-pp", fmt.Sprintf("pop3s://%s:%s/", popHost, tlsPort))
	var want strings.Builder
	for i, m := range stored {
		fmt.Fprintf(&want, "%d %d\r\n", i+1, len(m))
	}
	if code != 0 || list != want.String() {
		t.Errorf("curl LIST: exit %d, %q; want %q", code, list, want.String())
	}
	// From 127.0.0.2 without TLS the server offers no password login, and
	// refuses one (curl is told -ERR [AUTH] when it tries USER anyway).
	for _, args := range [][]string{
		{"--interface", popOutside, "-u", "pp:secret-pp", fmt.Sprintf("pop3://127.0.0.1:%s/1", port)},
		{"--interface", popOutside, "--login-options", "AUTH=+LOGIN", "-u", "pp:secret-pp", fmt.Sprintf("pop3://127.0.0.1:%s/1", port)},
		{"--interface", popOutside, "--login-options", "AUTH=PLAIN", "-u", "pp:secret-pp", fmt.Sprintf("pop3://127.0.0.1:%s/1", port)},
	} {
		if got, code := curl(args...); code == 0 || strings.Contains(got, "Subject:") {
			t.Errorf("curl %v without TLS from %s: exit %d, got %q", args, popOutside, code, got)
		}
	}
	// Another account's password never opens pp's maildrop.
	if got, code := curl("-u", "pp:secret-bob", fmt.Sprintf("pop3s://%s:%s/1", popHost, tlsPort)); code != 67 {
		t.Errorf("curl with bob's password for pp: exit %d (want 67, login denied): %q", code, got)
	}
}

// fetchmail fetches over STLS (110) and deletes what it fetched, and over
// implicit TLS (995) keeping it; what its MDA gets is what the store held,
// with LF line ends as fetchmail hands mail to an MDA.
func TestPOP3WithFetchmail(t *testing.T) {
	requireTool(t, "fetchmail")
	p := newPOP3Instance(t)
	stored := p.fill()
	home := t.TempDir()
	run := func(name, port, options string) []string {
		t.Helper()
		out := filepath.Join(home, name)
		if err := os.MkdirAll(out, 0o700); err != nil {
			t.Fatal(err)
		}
		// One file per message, numbered in the order fetchmail delivers.
		mda := fmt.Sprintf(`/bin/sh -c 'n=$(ls %[1]s | wc -l); cat > %[1]s/$((n+1))'`, out)
		rc := filepath.Join(home, name+".rc")
		text := fmt.Sprintf(`set no syslog
poll %s via 127.0.0.1 with proto POP3 port %s uidl
  user "pp" there with password "secret-pp" is "root" here
  %s sslcertck sslcertfile %q sslcommonname %q
  mda %q
`, popHost, port, options, p.certFile, popHost, mda)
		if err := os.WriteFile(rc, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "fetchmail", "-f", rc, "-v", "--nosyslog", "--invisible", "--norewrite",
			"--pidfile", filepath.Join(home, name+".pid"))
		cmd.Env = append(os.Environ(), "HOME="+home)
		res, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fetchmail (%s): %v\n%s", name, err, res)
		}
		var got []string
		for i := 1; ; i++ {
			b, err := os.ReadFile(filepath.Join(out, strconv.Itoa(i)))
			if err != nil {
				break
			}
			got = append(got, string(b))
		}
		if !strings.Contains(string(res), "STLS") && strings.Contains(options, "tls1.2+") {
			t.Errorf("fetchmail did not use STLS:\n%s", res)
		}
		return got
	}
	lf := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

	_, port, _ := net.SplitHostPort(p.pop3)
	got := run("stls", port, `sslproto "tls1.2+"`)
	if len(got) != len(stored) {
		t.Fatalf("fetchmail over STLS delivered %d messages, want %d", len(got), len(stored))
	}
	for i := range stored {
		if got[i] != lf(stored[i]) {
			t.Errorf("message %d by fetchmail:\n%q\nstored:\n%q", i+1, got[i], lf(stored[i]))
		}
	}
	if n := len(p.messages("pp")); n != 0 {
		t.Errorf("fetchmail (no keep) left %d messages; DELE then QUIT should have removed them", n)
	}

	p.deliverSMTP("pp@example.org", popMessages[0])
	again := p.messages("pp")
	_, tlsPort, _ := net.SplitHostPort(p.pop3s)
	got = run("ssl", tlsPort, "ssl keep")
	if len(got) != 1 || got[0] != lf(again[0]) {
		t.Errorf("fetchmail over implicit TLS got %q, want %q", got, lf(again[0]))
	}
	if n := len(p.messages("pp")); n != 1 {
		t.Errorf("fetchmail with keep left %d messages, want 1", n)
	}
}

// popConn is a plain POP3 client for the checks no real client makes.
type popConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialPOP3(t *testing.T, addr, localIP string) *popConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &popConn{t: t, nc: nc, r: bufio.NewReader(nc)}
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("POP3 greeting %q", g)
	}
	return c
}

func (c *popConn) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("POP3 read: %v (%q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *popConn) cmd(line string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
	return c.line()
}

// multi reads a multi-line body, unstuffed.
func (c *popConn) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		if l == "." {
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(l, ".") + "\r\n")
	}
}

func (c *popConn) login(user, password string) string {
	c.t.Helper()
	c.cmd("USER " + user)
	return c.cmd("PASS " + password)
}

// uidl logs in as pp, returns the UIDL listing and quits.
func (p *pop3Instance) uidl() string {
	p.t.Helper()
	c := dialPOP3(p.t, p.pop3, "")
	if r := c.login("pp", "secret-pp"); !strings.HasPrefix(r, "+OK") {
		p.t.Fatalf("login: %q", r)
	}
	if r := c.cmd("UIDL"); !strings.HasPrefix(r, "+OK") {
		p.t.Fatalf("UIDL: %q", r)
	}
	l := c.multi()
	c.cmd("QUIT")
	return l
}

// UIDL values survive a restart of the binary, a graceful one and a crash.
func TestPOP3UIDLAcrossRestart(t *testing.T) {
	p := newPOP3Instance(t)
	p.fill()
	first := p.uidl()
	if strings.Count(first, "\r\n") != len(popMessages) {
		t.Fatalf("UIDL listing %q", first)
	}
	p.stop()
	p.start()
	if again := p.uidl(); again != first {
		t.Errorf("UIDL after a restart: %q, before: %q", again, first)
	}
	p.kill()
	p.start()
	if again := p.uidl(); again != first {
		t.Errorf("UIDL after SIGKILL and a start: %q, before: %q", again, first)
	}
}

// The maildrop lock, DELE then a dropped connection, another account's
// password, the plain-text rule and the STLS injection, against the binary.
func TestPOP3Sessions(t *testing.T) {
	p := newPOP3Instance(t)
	stored := p.fill()

	t.Run("in use", func(t *testing.T) {
		a := dialPOP3(t, p.pop3, "")
		if r := a.login("pp", "secret-pp"); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("first session: %q", r)
		}
		b := dialPOP3(t, p.pop3, "")
		if r := b.login("pp", "secret-pp"); !strings.HasPrefix(r, "-ERR [IN-USE]") {
			t.Errorf("second session: %q", r)
		}
		// bob's maildrop is another one.
		if r := dialPOP3(t, p.pop3, "").login("bob", "secret-bob"); !strings.HasPrefix(r, "+OK") {
			t.Errorf("bob while pp is in use: %q", r)
		}
		a.cmd("QUIT")
		if r := b.login("pp", "secret-pp"); !strings.HasPrefix(r, "+OK") {
			t.Errorf("second session after the first quit: %q", r)
		}
		b.cmd("QUIT")
	})

	t.Run("DELE then dropped connection", func(t *testing.T) {
		a := dialPOP3(t, p.pop3, "")
		a.login("pp", "secret-pp")
		for i := range stored {
			if r := a.cmd("DELE " + strconv.Itoa(i+1)); !strings.HasPrefix(r, "+OK") {
				t.Fatalf("DELE: %q", r)
			}
		}
		a.nc.Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c := dialPOP3(t, p.pop3, "")
			r := c.login("pp", "secret-pp")
			c.cmd("QUIT")
			if !strings.HasPrefix(r, "-ERR [IN-USE]") {
				if want := fmt.Sprintf("+OK pp has %d messages", len(stored)); !strings.HasPrefix(r, want) {
					t.Errorf("after a dropped connection: %q, want %q...", r, want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the maildrop stayed locked after the connection dropped")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n := len(p.messages("pp")); n != len(stored) {
			t.Errorf("%d messages after DELE and a dropped connection, want %d", n, len(stored))
		}
	})

	t.Run("another account's password", func(t *testing.T) {
		c := dialPOP3(t, p.pop3, "")
		if r := c.login("pp", "secret-bob"); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Errorf("pp with bob's password: %q", r)
		}
		if r := c.cmd("STAT"); !strings.HasPrefix(r, "-ERR") {
			t.Errorf("STAT after a failed login: %q", r)
		}
	})

	t.Run("plain text from outside", func(t *testing.T) {
		c := dialPOP3(t, p.pop3, popOutside)
		if r := c.cmd("USER pp"); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Errorf("USER from %s without TLS: %q", popOutside, r)
		}
		if r := c.cmd("PASS secret-pp"); !strings.HasPrefix(r, "-ERR") {
			t.Errorf("PASS from %s without TLS: %q", popOutside, r)
		}
		if r := c.cmd("AUTH PLAIN AHBwAHNlY3JldC1wcA=="); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Errorf("AUTH PLAIN from %s without TLS: %q", popOutside, r)
		}
	})

	t.Run("STLS injection", func(t *testing.T) {
		c := dialPOP3(t, p.pop3, popOutside)
		io.WriteString(c.nc, "STLS\r\nUSER pp\r\nPASS secret-pp\r\nDELE 1\r\nQUIT\r\n")
		if r := c.line(); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("STLS: %q", r)
		}
		tc := tls.Client(c.nc, &tls.Config{RootCAs: p.roots, ServerName: popHost})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.nc, c.r = tc, bufio.NewReader(tc)
		if r := c.cmd("NOOP"); r != "-ERR Log in first" {
			t.Errorf("first answer inside TLS: %q; the pipelined plain text ran", r)
		}
		if r := c.login("pp", "secret-pp"); !strings.HasPrefix(r, "+OK") {
			t.Errorf("login inside TLS from %s: %q", popOutside, r)
		}
		c.cmd("QUIT")
		if n := len(p.messages("pp")); n != len(stored) {
			t.Errorf("%d messages: the injected DELE ran", n)
		}
	})
}

// serve --dev listens for POP3 on 127.0.0.1:2110 and 2995 and says so.
func TestDevServerPOP3(t *testing.T) {
	requireTool(t, "curl")
	for _, a := range []string{"127.0.0.1:2525", "127.0.0.1:2110", "127.0.0.1:2995"} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Skipf("%s is busy: something else runs there", a)
		}
	}
	dir := filepath.Join(t.TempDir(), "dev")
	cmd := exec.Command(binary, "serve", "--dev", dir)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	var printed strings.Builder
	var pw string
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if m := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			pw = m[1]
		}
		if strings.HasPrefix(sc.Text(), "Stop with") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	for _, want := range []string{"POP3:     127.0.0.1:2110", "POP3S:    127.0.0.1:2995"} {
		if !strings.Contains(printed.String(), want) {
			t.Errorf("serve --dev did not print %q:\n%s", want, printed.String())
		}
	}
	c, err := gosmtp.Dial("127.0.0.1:2525")
	if err != nil {
		t.Fatal(err)
	}
	const msg = "From: a@example.net\r\nSubject: dev\r\n\r\nhello over POP3\r\n"
	if err := c.SendMail("a@example.net", []string{"demo@posthorn.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The dev certificate is self-signed: -k, as printed.
	for _, args := range [][]string{
		{"-sS", "-k", "pop3s://127.0.0.1:2995/1", "-u", "demo:" + pw},
		{"-sS", "-k", "--ssl-reqd", "pop3://127.0.0.1:2110/1", "-u", "demo:" + pw},
	} {
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), msg) {
			t.Errorf("curl %v: %v\n%q", args, err, out)
		}
	}
	if !slices.ContainsFunc(strings.Split(printed.String(), "\n"), func(l string) bool {
		return strings.Contains(l, "curl -k pop3s://127.0.0.1:2995/")
	}) {
		t.Errorf("serve --dev prints no POP3 example:\n%s", printed.String())
	}
}

// Implicit TLS without a certificate is a configuration error, said at start.
func TestPOP3TLSListenNeedsCertificate(t *testing.T) {
	in := newInstanceWith(t, instanceOptions{extra: fmt.Sprintf("[pop3]\ntls_listen = %q\n", freePort(t))})
	r := in.exec("", "serve", "--config", in.cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "[pop3] tls_listen") || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("serve with [pop3] tls_listen and no certificate: exit %d, %q", r.code, r.stderr)
	}
}
