package test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/maildrop"
)

// dropped is a message as the server's pickup sees it.
type dropped struct {
	env *maildrop.Envelope
	msg []byte
}

// pickUp takes n messages from the drop directory with a maildrop.Pickup, as
// the server does, and checks that nothing else is there.
func pickUp(t *testing.T, dir string, n int) []dropped {
	t.Helper()
	ch := make(chan dropped, n+10)
	p := &maildrop.Pickup{
		Dir:      dir,
		Interval: 50 * time.Millisecond,
		Handle: func(_ context.Context, env *maildrop.Envelope, msg io.Reader, id string) error {
			b, err := io.ReadAll(msg)
			if err != nil {
				return err
			}
			ch <- dropped{env, b}
			return nil
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { p.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	var out []dropped
	for len(out) < n {
		select {
		case d := <-ch:
			out = append(out, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d messages in the drop directory", len(out), n)
		}
	}
	cancel()
	<-stopped
	if len(ch) > 0 {
		t.Fatalf("more than %d messages in the drop directory", n)
	}
	return out
}

// command runs a program (the binary, or a link to it) with stdin, extra
// environment and, when cred is set, as another user.
func command(t *testing.T, path, stdin string, env []string, cred *syscall.Credential, args ...string) result {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// parse reads a dropped message and checks it has CRLF line ends only.
func parse(t *testing.T, b []byte) *mail.Message {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("bare LF in the message:\n%q", b)
	}
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the message does not parse: %v\n%q", err, b)
	}
	return m
}

func TestSendmail(t *testing.T) {
	in := newInstance(t)
	data := filepath.Join(in.dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	drop := maildrop.Dir(data)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}

	// Before the server has made the drop directory: try again later.
	if r := in.exec("Subject: s\n\nb\n", "sendmail", "--config", in.cfg, "pp@example.org"); r.code != 75 || !strings.Contains(r.stderr, drop) {
		t.Errorf("no drop directory: exit %d, stderr %q; want 75 naming %s", r.code, r.stderr, drop)
	}
	if err := maildrop.Prepare(drop); err != nil { // as the server does at start
		t.Fatal(err)
	}

	// posthorn sendmail -t: recipients from the header, Bcc: removed, the
	// missing fields added, LF made CRLF, the input ends at the lone dot.
	start := time.Now()
	r := in.exec("To: Pat <pp@example.org>, other@Example.NET\n"+
		"Cc: cc@example.org\n"+
		"Bcc: secret@example.com\n"+
		"Subject: nightly report\n"+
		"\n"+
		"line one\n"+
		"..two dots stay two dots\n"+
		".\n"+
		"not part of the message\n",
		"sendmail", "-t", "--config", in.cfg)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("sendmail -t: exit %d\n%s", r.code, r.stderr)
	}
	d := pickUp(t, drop, 1)[0]
	wantEnv := maildrop.Envelope{
		From:       me.Username + "@mx.example.org",
		Recipients: []string{"pp@example.org", "other@example.net", "cc@example.org", "secret@example.com"},
		User:       me.Username,
		UID:        os.Getuid(),
	}
	if !reflect.DeepEqual(*d.env, wantEnv) {
		t.Errorf("envelope %+v, want %+v", *d.env, wantEnv)
	}
	m := parse(t, d.msg)
	if bytes.Contains(bytes.ToLower(d.msg), []byte("bcc")) || bytes.Contains(d.msg, []byte("secret@")) {
		t.Errorf("the Bcc: field is still in the message:\n%s", d.msg)
	}
	if got := m.Header.Get("Subject"); got != "nightly report" {
		t.Errorf("Subject %q", got)
	}
	from, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil || from.Address != me.Username+"@mx.example.org" {
		t.Errorf("From: %q (%v), want the user at the hostname", m.Header.Get("From"), err)
	}
	date, err := m.Header.Date()
	if err != nil || date.Before(start.Add(-2*time.Second)) || date.After(time.Now().Add(2*time.Second)) {
		t.Errorf("Date: %q (%v), want about now", m.Header.Get("Date"), err)
	}
	if id := m.Header.Get("Message-ID"); !regexp.MustCompile(`^<[^<>@\s]+@mx\.example\.org>$`).MatchString(id) {
		t.Errorf("Message-ID: %q", id)
	}
	body, _ := io.ReadAll(m.Body)
	if string(body) != "line one\r\n..two dots stay two dots\r\n" {
		t.Errorf("body %q", body)
	}

	// The binary called as "sendmail" through a link, the config from
	// $POSTHORN_CONFIG, with -f, -F and -oi (the dot line is kept).
	link := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(binary, link); err != nil {
		t.Fatal(err)
	}
	cfgEnv := []string{"POSTHORN_CONFIG=" + in.cfg}
	r = command(t, link, "Subject: cron output\n\nfirst\n.\nlast", cfgEnv, nil,
		"-oi", "-f", "bounce@example.net", "-F", "Cron Daemon", "-oem", "-N", "never", "rcpt@example.org", "root")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("sendmail -oi -f ...: exit %d\n%s", r.code, r.stderr)
	}
	d = pickUp(t, drop, 1)[0]
	if d.env.From != "bounce@example.net" || d.env.Null ||
		!reflect.DeepEqual(d.env.Recipients, []string{"rcpt@example.org", "root@mx.example.org"}) {
		t.Errorf("envelope %+v: want from bounce@example.net to rcpt@example.org and root@mx.example.org", *d.env)
	}
	m = parse(t, d.msg)
	if got := m.Header.Get("From"); got != `"Cron Daemon" <bounce@example.net>` {
		t.Errorf("From: %q", got)
	}
	body, _ = io.ReadAll(m.Body)
	if string(body) != "first\r\n.\r\nlast\r\n" {
		t.Errorf("body %q", body)
	}

	// -v says what happened; -f "<>" is the null sender; a From: present stays.
	r = command(t, link, "From: robot@example.org\nSubject: s\n\nb\n", cfgEnv, nil, "-v", "-f", "<>", "pp@example.org")
	if r.code != 0 || !strings.Contains(r.stderr, "queued as ") {
		t.Errorf("sendmail -v: exit %d, stderr %q", r.code, r.stderr)
	}
	d = pickUp(t, drop, 1)[0]
	if !d.env.Null || d.env.From != "" {
		t.Errorf("-f <>: envelope %+v", *d.env)
	}
	if got := parse(t, d.msg).Header["From"]; !reflect.DeepEqual(got, []string{"robot@example.org"}) {
		t.Errorf("From: fields %q", got)
	}

	// Errors, with Sendmail's exit statuses; nothing is dropped.
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		{"no recipients", "Subject: s\n\nb\n", []string{"sendmail", "--config", in.cfg}, 64},
		{"-t, no recipients in the header", "Subject: s\n\nb\n", []string{"sendmail", "-t", "--config", in.cfg}, 64},
		{"-bv", "", []string{"sendmail", "-bv", "--config", in.cfg, "pp@example.org"}, 64},
		{"unknown option", "", []string{"sendmail", "-k", "--config", in.cfg, "pp@example.org"}, 64},
		{"no config", "Subject: s\n\nb\n", []string{"sendmail", "--config", filepath.Join(in.dir, "none.toml"), "pp@example.org"}, 78},
	} {
		if r := in.exec(tc.stdin, tc.args...); r.code != tc.code || r.stderr == "" {
			t.Errorf("%s: exit %d, stderr %q; want %d and a reason", tc.name, r.code, r.stderr, tc.code)
		}
	}
	if ents, _ := os.ReadDir(drop); len(ents) != 0 {
		t.Errorf("failed runs left %d files in the drop directory", len(ents))
	}

	// -bp is mailq, -bi newaliases: the same output as those commands.
	if r, want := command(t, link, "", nil, nil, "-bp", "--config", in.cfg), in.run("", "mailq", "--config", in.cfg); r.code != 0 || r.stdout != want {
		t.Errorf("sendmail -bp: exit %d, %q %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	if r, want := command(t, link, "", cfgEnv, nil, "-bi"), in.run("", "newaliases", "--config", in.cfg); r.code != 0 || r.stdout != want {
		t.Errorf("sendmail -bi: exit %d, %q %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	// -q has nothing to do.
	if r := command(t, link, "", cfgEnv, nil, "-q"); r.code != 0 {
		t.Errorf("sendmail -q: exit %d, %q", r.code, r.stderr)
	}
}

// TestSendmailAsAnotherUser runs sendmail as nobody: the file is written into
// a directory nobody cannot list, and the pickup sees nobody's uid.
func TestSendmailAsAnotherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a command as another user")
	}
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Skip("no user 65534")
	}
	in := newInstance(t)
	data := filepath.Join(in.dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	drop := maildrop.Dir(data)
	if err := maildrop.Prepare(drop); err != nil {
		t.Fatal(err)
	}
	// nobody must reach the binary, the config and the drop directory. The
	// test's directories are private; data_dir is too (0700), so it is
	// opened for passing through here.
	bin := filepath.Join(t.TempDir(), "sendmail")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Dir(in.dir), in.dir, filepath.Dir(bin), filepath.Dir(filepath.Dir(bin))} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(data, 0o711); err != nil {
		t.Fatal(err)
	}
	cred := &syscall.Credential{Uid: 65534, Gid: 65534}
	r := command(t, bin, "Subject: from nobody\n\nhi\n", nil, cred, "--config", in.cfg, "-F", "No Body", "pp@example.org")
	if r.code != 0 {
		t.Fatalf("sendmail as nobody: exit %d\n%s", r.code, r.stderr)
	}
	d := pickUp(t, drop, 1)[0]
	if d.env.UID != 65534 || d.env.User != nobody.Username || d.env.From != nobody.Username+"@mx.example.org" {
		t.Errorf("envelope %+v: want uid 65534, user and sender %s", *d.env, nobody.Username)
	}
	if got := parse(t, d.msg).Header.Get("From"); got != `"No Body" <`+nobody.Username+`@mx.example.org>` {
		t.Errorf("From: %q", got)
	}
	// nobody could not list the directory it wrote into.
	r = command(t, "/bin/ls", "", nil, cred, drop)
	if r.code == 0 {
		t.Errorf("nobody can list the drop directory:\n%s", r.stdout)
	}
}

// posthorn sendmail with the server stopped and running: the message is
// delivered (locally and to the queue) once the server runs, with the user in
// its Received: field; a recipient that does not exist comes back to the
// sender as a failure notice.
func TestSendmailThroughTheServer(t *testing.T) {
	in := newInstance(t, "pp")
	in.start() // makes the drop directory
	in.stop()
	r := in.exec("To: pp@example.org, friend@remote.example\nCc: nosuch@example.org\nSubject: while down\n\nbody\n",
		"sendmail", "-t", "-i", "--config", in.cfg)
	if r.code != 0 {
		t.Fatalf("sendmail with the server down: exit %d\n%s", r.code, r.stderr)
	}
	in.start()
	m := in.waitMessages("pp", 2) // the message, and root's failure notice (root: pp)
	if len(m) != 2 {
		t.Fatalf("pp has %d messages, want the message and a notice", len(m))
	}
	var msg, notice string
	for _, x := range m {
		if strings.Contains(x, "Subject: while down") && !strings.Contains(x, "multipart/report") {
			msg = x
		} else {
			notice = x
		}
	}
	if !strings.Contains(msg, "(from root@localhost uid 0)") || !strings.Contains(msg, "\r\nDate: ") || !strings.Contains(msg, "\r\nMessage-ID: <") ||
		!strings.HasPrefix(msg, "Return-Path: <root@mx.example.org>") {
		t.Errorf("delivered message:\n%s", msg)
	}
	p, err := dsn.Parse([]byte(notice))
	if err != nil {
		t.Fatalf("no failure notice: %v\n%s", err, notice)
	}
	if len(p.Recipients) != 1 || !strings.Contains(p.Recipients[0].Get("Final-Recipient"), "nosuch@example.org") || p.Recipients[0].Get("Action") != "failed" {
		t.Errorf("notice recipients %v", p.Recipients)
	}
	if q := in.run("", "mailq", "--config", in.cfg); !strings.Contains(q, "<friend@remote.example>") {
		t.Errorf("the remote recipient is not queued:\n%s", q)
	}
	// With the server running, a message arrives within seconds.
	if r := in.exec("Subject: while up\n\nhi\n", "sendmail", "--config", in.cfg, "pp"); r.code != 0 {
		t.Fatalf("sendmail: exit %d\n%s", r.code, r.stderr)
	}
	if m := in.waitMessages("pp", 3); len(m) != 3 || !strings.Contains(m[2], "Subject: while up") {
		t.Fatalf("pp has %d messages", len(m))
	}
	// The pickup removes a file once its message is stored: just after,
	// so the directory is looked at until it empties (or 5 s pass).
	drop := maildrop.Dir(filepath.Join(in.dir, "data"))
	var ents []os.DirEntry
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ents, _ = os.ReadDir(drop); len(ents) == 0 {
			break
		}
	}
	if len(ents) != 0 {
		t.Errorf("files left in the drop directory: %v", ents)
	}
}

// sendmail -bs: an SMTP dialogue on standard input and output; the message
// reaches the mailbox through the server.
func TestSendmailBS(t *testing.T) {
	in := newInstance(t, "pp")
	in.start()
	session := "EHLO client.example\r\n" +
		"MAIL FROM:<pp@example.org>\r\n" +
		"RCPT TO:<pp@example.org>\r\n" +
		"RCPT TO:<friend@remote.example>\r\n" +
		"DATA\r\n" +
		"Subject: via -bs\r\n\r\nhello\r\n.\r\n" +
		"QUIT\r\n"
	r := in.exec(session, "sendmail", "-bs", "--config", in.cfg)
	if r.code != 0 {
		t.Fatalf("sendmail -bs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\r\n")
	if !strings.HasPrefix(lines[0], "220 ") || !strings.Contains(r.stdout, "250 2.0.0 OK") || !strings.HasPrefix(lines[len(lines)-1], "221") {
		t.Fatalf("dialogue:\n%s", r.stdout)
	}
	m := in.waitMessages("pp", 1)
	if len(m) != 1 || !strings.Contains(m[0], "Subject: via -bs") || strings.Count(m[0], "Return-Path:") != 1 {
		t.Fatalf("pp's INBOX: %q", m)
	}
	if q := in.run("", "mailq", "--config", in.cfg); !strings.Contains(q, "<friend@remote.example>") {
		t.Errorf("the remote recipient is not queued:\n%s", q)
	}
}

// A failure notice that cannot be delivered (the sender has no mailbox) does
// not make the pickup take the file again: the recipient that took the
// message gets it once.
func TestSendmailNoticeFailsDeliversOnce(t *testing.T) {
	in := newInstance(t, "pp")
	in.start()
	r := in.exec("Subject: once\n\nx\n", "sendmail", "-f", "noreply@mx.example.org", "--config", in.cfg, "pp@example.org", "nosuch@example.org")
	if r.code != 0 {
		t.Fatalf("sendmail: exit %d\n%s", r.code, r.stderr)
	}
	in.waitMessages("pp", 1)
	time.Sleep(3 * time.Second) // several pickup scans
	if m := in.messages("pp"); len(m) != 1 {
		t.Fatalf("pp got the message %d times", len(m))
	}
	if ents, _ := os.ReadDir(maildrop.Dir(filepath.Join(in.dir, "data"))); len(ents) != 0 {
		t.Errorf("the file is still in the drop directory: %v", ents)
	}
}
