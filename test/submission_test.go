package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/tlsutil"
)

// outsideIP plays a client that is not loopback: only 127.0.0.1 and ::1 are.
const outsideIP = "127.0.0.2"

// subInstance is an instance with submission on 587-like and 465-like ports,
// a self-signed certificate, accounts pp and bob (passwords secret-pp,
// secret-bob), info@example.org leading to pp and a list staff: pp, bob.
type subInstance struct {
	*instance
	submission, submissions string // listen addresses
	certFile                string
}

func newSubInstance(t *testing.T) *subInstance {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := tlsutil.SelfSigned([]string{"mx.example.org"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := &subInstance{submission: freePort(t), submissions: freePort(t),
		certFile: filepath.Join(dir, "cert.pem")}
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(s.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// Never the real DNS; remote.example's MX refuses (port 1), so that
	// relayed mail waits in the queue.
	dns := dnstest.Start(t)
	dns.MustAdd(t, "remote.example. 60 IN MX 10 mx.remote.example.", "mx.remote.example. 60 IN A 127.0.0.1")
	extra := fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = 1\n\n[smtp]\nsubmission_listen = %q\nsubmissions_listen = %q\n\n[tls]\ncert_file = %q\nkey_file = %q\n",
		dns.Addr, s.submission, s.submissions, s.certFile, key)
	s.instance = newInstanceWith(t, instanceOptions{extra: extra}, "pp", "bob")
	s.writeFile("virtusertable", "info@example.org\tpp\n")
	s.writeFile("aliases", mustRead(t, filepath.Join(s.dir, "aliases"))+"staff: pp, bob\n")
	s.start()
	return s
}

// swaksSub runs swaks against the submission port from outsideIP, with
// STARTTLS, and returns its transcript and exit code.
func (s *subInstance) swaksSub(args ...string) (string, int) {
	s.t.Helper()
	requireTool(s.t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swaks", append([]string{"--server", s.submission, "--local-interface", outsideIP,
		"--timeout", "20", "--tls"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return string(out), code
}

// find returns the account's message that contains marker, or "".
func (s *subInstance) find(account, marker string) string {
	for _, m := range s.messages(account) {
		if strings.Contains(m, marker) {
			return m
		}
	}
	return ""
}

// A message for swaks --data (which ends it with a line end): no Date:, no
// Message-ID:.
func submittedData(from, subject, body string) string {
	return "From: " + from + "\nTo: bob@example.org\nSubject: " + subject + "\n\n" + body
}

// swaks logs in with PLAIN and LOGIN over STARTTLS and submits; the bytes it
// sent arrive, with a Received: that says ESMTPSA and Date:/Message-ID:
// added. Wrong passwords and other accounts' passwords get 535.
func TestSubmissionWithSwaks(t *testing.T) {
	s := newSubInstance(t)
	for _, tc := range []struct {
		name, mech, user, password, from string
		want                             string // "" for success, else the reply code that ends it
	}{
		{"PLAIN", "PLAIN", "pp", "secret-pp", "pp@example.org", ""},
		{"LOGIN as info@", "LOGIN", "pp", "secret-pp", "info@example.org", ""},
		{"wrong password", "PLAIN", "pp", "secret-px", "pp@example.org", "535 5.7.8"},
		{"bob's password for pp", "PLAIN", "pp", "secret-bob", "pp@example.org", "535 5.7.8"},
		{"bob's password for pp, LOGIN", "LOGIN", "pp", "secret-bob", "pp@example.org", "535 5.7.8"},
		{"bob's address", "PLAIN", "pp", "secret-pp", "bob@example.org", "553 5.7.1"},
		{"a shared list", "PLAIN", "pp", "secret-pp", "staff@example.org", "553 5.7.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "body of " + tc.name
			out, code := s.swaksSub("--auth", tc.mech, "--auth-user", tc.user, "--auth-password", tc.password,
				"--from", tc.from, "--to", "bob@example.org", "--data", submittedData(tc.from, tc.name, body))
			if strings.Contains(s.stderr.String(), tc.password) {
				t.Errorf("the password %q is in the log", tc.password)
			}
			if tc.want != "" {
				if code == 0 || !strings.Contains(out, "<~* "+tc.want) {
					t.Fatalf("swaks: exit %d, want %s:\n%s", code, tc.want, out)
				}
				if s.find("bob", body) != "" {
					t.Error("delivered anyway")
				}
				return
			}
			if code != 0 {
				t.Fatalf("swaks: exit %d\n%s", code, out)
			}
			m := s.find("bob", body)
			if m == "" {
				t.Fatalf("bob has no message %q", tc.name)
			}
			sent := "From: " + tc.from + "\r\nTo: bob@example.org\r\nSubject: " + tc.name + "\r\n"
			if !strings.Contains(m, sent) || !strings.HasSuffix(m, "\r\n\r\n"+body+"\r\n") {
				t.Errorf("the bytes sent did not arrive:\n%s", m)
			}
			if !regexp.MustCompile(`\r\n\tby mx\.example\.org \(posthorn\) with ESMTPSA \(TLS 1\.[23] `).MatchString(m) {
				t.Errorf("Received: does not say ESMTPSA over TLS:\n%s", m)
			}
			if !regexp.MustCompile(`\r\nDate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n`).MatchString(m) ||
				!regexp.MustCompile(`\r\nMessage-ID: <[^@\s]+@mx\.example\.org>\r\n`).MatchString(m) {
				t.Errorf("Date:/Message-ID: not added:\n%s", m)
			}
		})
	}
}

// Mail to other domains is relayed for a logged-in user, and only then.
func TestSubmissionRelays(t *testing.T) {
	s := newSubInstance(t)
	// Port 25, from outside, no login: relaying denied.
	out, code := s.swaks("--local-interface", outsideIP, "--from", "pp@example.org", "--to", "friend@remote.example")
	if code == 0 || !strings.Contains(out, "<** 550 5.7.1") {
		t.Fatalf("relay without a login: exit %d\n%s", code, out)
	}
	// Submission without a login: 530 at MAIL.
	out, code = s.swaksSub("--from", "pp@example.org", "--to", "friend@remote.example")
	if code == 0 || !strings.Contains(out, "<~* 530 5.7.0 Authentication required") {
		t.Fatalf("submission without a login: exit %d\n%s", code, out)
	}
	if n := s.queueLen(); n != 0 {
		t.Fatalf("%d queued", n)
	}
	out, code = s.swaksSub("--auth", "PLAIN", "--auth-user", "pp", "--auth-password", "secret-pp",
		"--from", "pp@example.org", "--to", "friend@remote.example", "--data", submittedData("pp@example.org", "out", "going out"))
	if code != 0 {
		t.Fatalf("relay after a login: exit %d\n%s", code, out)
	}
	q := s.queued()
	if len(q) != 1 || !strings.Contains(q[0], "\r\nFrom: pp@example.org\r\nTo: bob@example.org\r\nSubject: out\r\n") ||
		!strings.HasSuffix(q[0], "\r\n\r\ngoing out\r\n") || !strings.Contains(q[0], "with ESMTPSA") {
		t.Errorf("queued after relaying: %q", q)
	}
	// The From: header is checked too: the envelope is pp's, the header bob's.
	out, code = s.swaksSub("--auth", "PLAIN", "--auth-user", "pp", "--auth-password", "secret-pp",
		"--from", "pp@example.org", "--to", "friend@remote.example", "--data", submittedData("bob@example.org", "forged", "x"))
	if code == 0 || !regexp.MustCompile(`<~\* 553 5\.7\.1 <bob@example\.org>: From: address not owned`).MatchString(out) {
		t.Fatalf("forged From: exit %d\n%s", code, out)
	}
	if n := s.queueLen(); n != 1 {
		t.Errorf("%d queued after a refused message, want 1", n)
	}
}

// curl submits over implicit TLS (smtps://, RFC 8314) with PLAIN and LOGIN.
func TestSubmissionsWithCurl(t *testing.T) {
	requireTool(t, "curl")
	s := newSubInstance(t)
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			body := "sent by curl with " + mech
			msg := filepath.Join(t.TempDir(), "msg")
			os.WriteFile(msg, []byte("From: pp@example.org\r\nTo: bob@example.org\r\nSubject: curl "+mech+"\r\n\r\n"+body+"\r\n"), 0o644)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "curl", "--silent", "--show-error", "--interface", outsideIP,
				"--url", "smtps://mx.example.org:"+portOf(s.submissions), "--cacert", s.certFile, "--resolve", "mx.example.org:"+portOf(s.submissions)+":127.0.0.1",
				"--user", "pp:secret-pp", "--login-options", "AUTH="+mech,
				"--mail-from", "pp@example.org", "--mail-rcpt", "bob@example.org", "--upload-file", msg).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			m := s.find("bob", body)
			if !strings.Contains(m, "\r\nFrom: pp@example.org\r\nTo: bob@example.org\r\nSubject: curl "+mech+"\r\n") ||
				!strings.HasSuffix(m, "\r\n\r\n"+body+"\r\n") || !strings.Contains(m, "with ESMTPSA (TLS") {
				t.Errorf("bob got:\n%s", m)
			}
		})
	}
	// A wrong password: curl fails, nothing arrives.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", "--silent", "--show-error", "--interface", outsideIP,
		"--url", "smtps://"+s.submissions, "--insecure", "--user", "pp:secret-bob",
		"--mail-from", "pp@example.org", "--mail-rcpt", "bob@example.org", "--upload-file", "/dev/null").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 67 { // CURLE_LOGIN_DENIED
		t.Errorf("curl with bob's password for pp: %v\n%s", err, out)
	}
}

// queued returns the bytes of the messages on the queue.
func (s *subInstance) queued() []string {
	s.t.Helper()
	st, err := sqlite.Open(filepath.Join(s.dir, "data"), sqlite.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	q, err := st.ListQueue(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range q {
		r, err := st.OpenQueueMessage(ctx, e.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// scramSASL adapts xdg-go/scram to go-sasl's client.
type scramSASL struct{ conv *scram.ClientConversation }

func (c scramSASL) Start() (string, []byte, error) {
	first, err := c.conv.Step("")
	return "SCRAM-SHA-256", []byte(first), err
}

func (c scramSASL) Next(ch []byte) ([]byte, error) {
	r, err := c.conv.Step(string(ch))
	return []byte(r), err
}

// Go's SMTP client (go-smtp, go-sasl, xdg-go/scram) on both ports.
func TestSubmissionWithGoClient(t *testing.T) {
	s := newSubInstance(t)
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(outsideIP)}}
	dial := func(implicit bool) *gosmtp.Client {
		t.Helper()
		if implicit {
			conn, err := tls.DialWithDialer(d, "tcp", s.submissions, tlsConf)
			if err != nil {
				t.Fatal(err)
			}
			return gosmtp.NewClient(conn)
		}
		conn, err := d.Dial("tcp", s.submission)
		if err != nil {
			t.Fatal(err)
		}
		c, err := gosmtp.NewClientStartTLS(conn, tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	scramFor := func(user, pw string) sasl.Client {
		c, err := scram.SHA256.NewClient(user, pw, "")
		if err != nil {
			t.Fatal(err)
		}
		return scramSASL{c.NewConversation()}
	}
	for _, tc := range []struct {
		name     string
		implicit bool
		client   sasl.Client
		ok       bool
	}{
		{"587 SCRAM-SHA-256", false, scramFor("pp", "secret-pp"), true},
		{"587 PLAIN", false, sasl.NewPlainClient("", "pp", "secret-pp"), true},
		{"465 SCRAM-SHA-256", true, scramFor("pp", "secret-pp"), true},
		{"465 LOGIN", true, sasl.NewLoginClient("pp", "secret-pp"), true},
		{"587 SCRAM-SHA-256 with bob's password", false, scramFor("pp", "secret-bob"), false},
		{"465 PLAIN with bob's password", true, sasl.NewPlainClient("", "pp", "secret-bob"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(tc.implicit)
			defer c.Close()
			err := c.Auth(tc.client)
			var se *gosmtp.SMTPError
			if !tc.ok {
				if !errors.As(err, &se) || se.Code != 535 {
					t.Fatalf("AUTH: %v, want 535", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			msg := "From: pp@example.org\r\nTo: bob@example.org\r\nDate: Mon, 02 Mar 2026 10:00:00 +0100\r\nMessage-ID: <" +
				strings.ReplaceAll(tc.name, " ", "-") + "@client.example>\r\nSubject: " + tc.name + "\r\n\r\nhello\r\n"
			if err := c.SendMail("pp@example.org", []string{"bob@example.org"}, strings.NewReader(msg)); err != nil {
				t.Fatal(err)
			}
			c.Quit()
			m := s.find("bob", "Subject: "+tc.name+"\r\n")
			if !strings.HasSuffix(m, "\r\n"+msg) || strings.Count(m, "Message-ID:") != 1 || strings.Count(m, "Date:") != 1 {
				t.Errorf("bob got:\n%s", m)
			}
		})
	}
}

// rawSMTP is a plain SMTP conversation, for what a client library would not
// send.
type rawSMTP struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// dialRaw connects from localIP ("" for 127.0.0.1) and reads the greeting.
func dialRaw(t *testing.T, addr, localIP string) *rawSMTP {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	r := &rawSMTP{t: t, conn: conn, br: bufio.NewReader(conn)}
	if g := r.read(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting %q", g)
	}
	return r
}

// read reads one reply, all its lines.
func (r *rawSMTP) read() string {
	r.t.Helper()
	var all string
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading a reply: %v after %q", err, all)
		}
		all += l
		if len(l) < 4 || l[3] == ' ' {
			return all
		}
	}
}

func (r *rawSMTP) cmd(line string) string {
	r.t.Helper()
	fmt.Fprintf(r.conn, "%s\r\n", line)
	return r.read()
}

// startTLS sends STARTTLS and whatever follows it in the same write, then
// shakes hands; the conversation goes on in TLS.
func (r *rawSMTP) startTLS(pipelined string) {
	r.t.Helper()
	fmt.Fprintf(r.conn, "STARTTLS\r\n%s", pipelined)
	if l := r.read(); !strings.HasPrefix(l, "220 ") {
		r.t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn, r.br = tc, bufio.NewReader(tc)
}

// AUTH before STARTTLS on the submission port: not offered and refused from
// outside; from 127.0.0.1 it is allowed. Plain text pipelined after STARTTLS
// is thrown away (CVE-2011-0411). Repeated failures slow down.
func TestSubmissionBeforeTLS(t *testing.T) {
	s := newSubInstance(t)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00pp\x00secret-pp"))

	c := dialRaw(t, s.submission, outsideIP)
	if r := c.cmd("EHLO client.example"); strings.Contains(r, "AUTH") || !strings.Contains(r, "STARTTLS") {
		t.Errorf("EHLO from outside before TLS:\n%s", r)
	}
	if r := c.cmd("AUTH PLAIN " + plain); !strings.HasPrefix(r, "538 5.7.11 ") {
		t.Errorf("AUTH before TLS from outside: %q", r)
	}
	if r := c.cmd("MAIL FROM:<pp@example.org>"); !strings.HasPrefix(r, "530 5.7.0 ") {
		t.Errorf("MAIL without a login: %q", r)
	}

	c = dialRaw(t, s.submission, "")
	if r := c.cmd("EHLO client.example"); !regexp.MustCompile(`\r\n250[ -]AUTH SCRAM-SHA-256 PLAIN LOGIN\r\n`).MatchString(r) {
		t.Errorf("EHLO from 127.0.0.1:\n%s", r)
	}
	if r := c.cmd("AUTH PLAIN " + plain); !strings.HasPrefix(r, "235 2.7.0 ") {
		t.Errorf("AUTH from 127.0.0.1: %q", r)
	}

	// STARTTLS with a login and a MAIL pipelined in clear text.
	c = dialRaw(t, s.submission, outsideIP)
	c.cmd("EHLO client.example")
	c.startTLS("EHLO x\r\nAUTH PLAIN " + plain + "\r\nMAIL FROM:<pp@example.org>\r\n")
	if r := c.cmd("MAIL FROM:<pp@example.org>"); !strings.HasPrefix(r, "503 ") {
		t.Errorf("MAIL right after the handshake: %q (the pipelined commands ran?)", r)
	}
	if r := c.cmd("EHLO client.example"); !regexp.MustCompile(`\r\n250[ -]AUTH SCRAM-SHA-256 PLAIN LOGIN\r\n`).MatchString(r) {
		t.Errorf("EHLO over TLS:\n%s", r)
	}
	if r := c.cmd("MAIL FROM:<pp@example.org>"); !strings.HasPrefix(r, "530 ") {
		t.Errorf("MAIL after EHLO in TLS: %q (the pipelined AUTH ran?)", r)
	}

	// Throttling: the first two failures from an address are answered at
	// once, the third waits a second.
	c = dialRaw(t, s.submission, "127.0.0.5")
	c.cmd("EHLO client.example")
	c.startTLS("")
	c.cmd("EHLO client.example")
	bad := base64.StdEncoding.EncodeToString([]byte("\x00pp\x00guess"))
	var took []time.Duration
	for i := 0; i < 3; i++ {
		start := time.Now()
		if r := c.cmd("AUTH PLAIN " + bad); !strings.HasPrefix(r, "535 5.7.8 ") {
			t.Fatalf("attempt %d: %q", i+1, r)
		}
		took = append(took, time.Since(start))
	}
	if took[2] < 900*time.Millisecond || took[2] < took[0]+500*time.Millisecond {
		t.Errorf("failures took %v: the third was not slowed down", took)
	}
	if !strings.Contains(s.stderr.String(), `msg="auth failed" ip=127.0.0.5 service=smtp mech=PLAIN user=pp reason="wrong password"`) {
		t.Errorf("no fail2ban line:\n%s", s.stderr.String())
	}
	if strings.Contains(s.stderr.String(), "guess") {
		t.Error("a password is in the log")
	}
}

// serve --dev adds submission on 127.0.0.1:2587 and prints how to use it.
func TestDevSubmission(t *testing.T) {
	requireTool(t, "swaks")
	for _, a := range []string{"127.0.0.1:2525", "127.0.0.1:2587"} {
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
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Stop with") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	pw := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(printed.String())
	try := regexp.MustCompile(`(?m)^  Submit:   127\.0\.0\.1:2587 .*\n\s+try: (swaks .*)$`).FindStringSubmatch(printed.String())
	if pw == nil || try == nil || !strings.Contains(try[1], "--auth-password "+pw[1]) {
		t.Fatalf("serve --dev printed:\n%s", printed.String())
	}
	// The printed command works as it is.
	out, err := exec.Command("sh", "-c", try[1]+" --header 'Subject: dev submission'").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "235 2.7.0") {
		t.Fatalf("%s: %v\n%s", try[1], err, out)
	}
	in := &instance{t: t, dir: dir}
	msgs := in.messages("demo")
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: dev submission") || !strings.Contains(msgs[0], "with ESMTPSA") {
		t.Errorf("demo's INBOX: %q", msgs)
	}
}

// Implicit TLS needs a certificate: serve refuses to start without one.
func TestSubmissionsNeedsCertificate(t *testing.T) {
	in := newInstance(t)
	cfg := strings.Replace(mustRead(t, in.cfg), "[smtp]\n", fmt.Sprintf("[smtp]\nsubmissions_listen = %q\n", freePort(t)), 1)
	in.writeFile("posthorn.toml", cfg)
	r := in.exec("", "serve", "--config", in.cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "submissions_listen") || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("serve with submissions_listen and no certificate: exit %d, %q", r.code, r.stderr)
	}
}
