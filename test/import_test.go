package test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Moving in from the guide's Sendmail + popa3d (issue 9), end to end: the
// tables, the account with its old SHA-512-crypt password and its mbox are
// imported into a fresh installation; then the user logs in over POP3 and
// IMAP with the old password, the mail is there with its read state and
// popa3d-style UIDLs, and SMTP answers the guide's addresses as Sendmail's
// tables did.
func TestImportSendmailEndToEnd(t *testing.T) {
	requireTool(t, "openssl")
	in := newInstance(t)
	pop3, imap := freePort(t), freePort(t)
	cfg, err := os.ReadFile(in.cfg)
	if err != nil {
		t.Fatal(err)
	}
	in.writeFile("posthorn.toml", mergeConfig(string(cfg), fmt.Sprintf("[pop3]\nlisten = %q\n[imap]\nlisten = %q\n", pop3, imap)))

	root := t.TempDir()
	etc, spool := filepath.Join(root, "etc-mail"), filepath.Join(root, "mail")
	for _, d := range []string{etc, spool} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"access":           "localhost RELAY\n192.168.69 RELAY\n",
		"aliases":          "root: pp\nwebmaster: root\nwww: webmaster\n",
		"local-host-names": "example.org\n",
		"virtusertable":    "shop-x7k2@example.org pp\nspam@example.org error:nouser No such user here\n",
		"router.mc":        "divert(0)\nOSTYPE(freebsd6)\nMAILER(local)\nMAILER(smtp)\n",
	}
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(etc, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hash, err := exec.Command("openssl", "passwd", "-6", "-salt", "e2esalt", "pp-old-password").Output()
	if err != nil {
		t.Fatal(err)
	}
	passwd, shadow := filepath.Join(root, "passwd"), filepath.Join(root, "shadow")
	os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\npp:x:1001:1001:PP:/home/pp:/bin/sh\n"), 0o644)
	os.WriteFile(shadow, []byte("root:*:1::::::\npp:"+strings.TrimSpace(string(hash))+":19000:0:99999:7:::\n"), 0o600)
	os.WriteFile(filepath.Join(spool, "pp"), []byte(
		"From alice@example.net Tue Mar  4 05:06:07 2009\nReceived: from a by router.example.org; Tue, 4 Mar 2009 05:06:07 +0100\n"+
			"Message-ID: <1@example.net>\nSubject: already read\nStatus: RO\n\nHello\n>From the quoted line\n\n"+
			"From bob@example.net Wed Mar  5 10:00:00 2009\nReceived: from b by router.example.org; Wed, 5 Mar 2009 10:00:00 +0000\n"+
			"Subject: not read yet\n\nNew\n"), 0o600)

	out := in.run("", "import", "sendmail", "--etc", etc, "--spool", spool, "--passwd", passwd, "--shadow", shadow,
		"--mc", filepath.Join(etc, "router.mc"), "--config", in.cfg)
	if !strings.Contains(out, "summary: 1 accounts (1 new), 2 messages") {
		t.Fatalf("import:\n%s", out)
	}
	in.start()

	// POP3 with the old password: both messages, the first with its ">From"
	// unquoted, UIDLs of popa3d's form (16 hex digits), not posthorn's own.
	p := dialText(t, pop3)
	p.expect("+OK")
	p.cmd("USER pp", "+OK")
	p.cmd("PASS pp-old-password", "+OK")
	p.cmd("STAT", "+OK 2 ")
	p.send("UIDL")
	p.expect("+OK")
	uidl := regexp.MustCompile(`^[12] [0-9a-f]{16}$`)
	for i := 0; i < 2; i++ {
		if l := p.line(); !uidl.MatchString(l) {
			t.Errorf("UIDL line %q: want popa3d's 16 hex digits", l)
		}
	}
	p.expect(".")
	p.send("RETR 1")
	p.expect("+OK")
	var msg []string
	for l := p.line(); l != "."; l = p.line() {
		msg = append(msg, l)
	}
	if body := strings.Join(msg, "\n"); !strings.Contains(body, "\nFrom the quoted line") || !strings.Contains(body, "Subject: already read") {
		t.Errorf("RETR 1:\n%s", body)
	}
	p.cmd("QUIT", "+OK")

	// IMAP with the old password: the read state came along.
	c := dialText(t, imap)
	c.expect("* OK")
	c.cmd("a LOGIN pp pp-old-password", "a OK")
	c.cmd("b SELECT INBOX", "b OK")
	c.send("c FETCH 1:2 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	var fetched []string
	for l := c.line(); !strings.HasPrefix(l, "c "); l = c.line() {
		fetched = append(fetched, l)
	}
	got := strings.Join(fetched, "\n")
	if !regexp.MustCompile(`\* 1 FETCH \(FLAGS \([^)]*\\Seen`).MatchString(got) || regexp.MustCompile(`\* 2 FETCH \(FLAGS \([^)]*\\Seen`).MatchString(got) {
		t.Errorf("flags after import (1 read, 2 not):\n%s", got)
	}
	c.cmd("d LOGOUT", "* BYE")

	// SMTP answers the guide's addresses as its tables said.
	s, err := gosmtp.Dial(in.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Mail("someone@remote.example", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"shop-x7k2@example.org", "www@example.org", "pp@example.org"} {
		if err := s.Rcpt(rcpt, nil); err != nil {
			t.Errorf("RCPT %s: %v", rcpt, err)
		}
	}
	var se *gosmtp.SMTPError
	if err := s.Rcpt("spam@example.org", nil); !errors.As(err, &se) || se.Code != 550 || !strings.Contains(se.Message, "No such user here") {
		t.Errorf("RCPT spam@: %v, want 550 with the table's text", err)
	}
}

// textConn is a line-oriented client for POP3 and IMAP in the tests.
type textConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialText(t *testing.T, addr string) *textConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &textConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *textConn) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *textConn) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads lines until one starts with prefix (untagged IMAP lines
// before it are skipped).
func (c *textConn) expect(prefix string) string {
	c.t.Helper()
	for {
		l := c.line()
		if strings.HasPrefix(l, prefix) {
			return l
		}
		if !strings.HasPrefix(l, "* ") {
			c.t.Fatalf("got %q, want %q...", l, prefix)
		}
	}
}

func (c *textConn) cmd(s, prefix string) string {
	c.t.Helper()
	c.send(s)
	return c.expect(prefix)
}

// A 50 MB spool (issue 9's fixture for the progress bar): imported with
// plain progress lines when the output is not a terminal, and with a bar
// on one (driven through script(1) when it is there); every message lands.
func TestImportLargeSpoolProgress(t *testing.T) {
	in := newInstance(t, "pp")
	spool := filepath.Join(t.TempDir(), "pp")
	f, err := os.Create(spool)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	body := strings.Repeat("a line of a large spool, as old mail boxes are\n", 200) // ~9.4 KB
	n := 0
	for size := 0; size < 50<<20; n++ {
		m := fmt.Sprintf("From sender%d@example.net Tue Mar  4 05:06:07 2009\nSubject: message %d\nMessage-ID: <%d@spool.test>\n\n%s\n", n, n, n, body)
		w.WriteString(m)
		size += len(m)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	half := filepath.Join(filepath.Dir(spool), "half")
	out := in.run("", "import", "mbox", "pp", spool, "--config", in.cfg)
	for _, want := range []string{"importing", "25%", "50%", "75%", fmt.Sprintf("%d messages", n)} {
		if !strings.Contains(out, want) {
			t.Errorf("plain progress lacks %s:\n%s", want, out)
		}
	}
	if got := len(in.messages("pp")); got != n {
		t.Errorf("%d messages imported, the spool has %d", got, n)
	}
	if _, err := exec.LookPath("script"); err != nil {
		return
	}
	// On a terminal: a bar. A second spool, so that something is imported.
	os.WriteFile(half, []byte("From x@example.net Tue Mar  4 05:06:07 2009\nSubject: one more\n\nx\n"), 0o600)
	cmd := exec.Command("script", "-qec", binary+" import mbox pp "+half+" --config "+in.cfg, "/dev/null")
	tty, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, tty)
	}
	if !strings.Contains(string(tty), "[#") || !strings.Contains(string(tty), "100%") {
		t.Errorf("no progress bar on a terminal:\n%q", tty)
	}
}
