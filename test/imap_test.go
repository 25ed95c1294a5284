package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

// imapInstance is an instance with IMAP on a 143-like (STARTTLS) and a
// 993-like (implicit TLS) port, a self-signed certificate, and accounts pp
// and bob (passwords secret-pp, secret-bob).
type imapInstance struct {
	*instance
	imap, imaps string // listen addresses
	certFile    string
}

// imapCert writes a self-signed certificate for the clients to check: for
// the name mx.example.org, and for 127.0.0.1 both as an IP address (curl,
// Python, GnuTLS) and as a DNS name (mbsync compares the host it dials with
// the certificate's names as strings).
func imapCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: popHost},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{popHost, "127.0.0.1"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func newIMAPInstance(t *testing.T) *imapInstance {
	t.Helper()
	certFile, keyFile := imapCert(t, t.TempDir())
	p := &imapInstance{imap: freePort(t), imaps: freePort(t), certFile: certFile}
	// Never the real DNS, never mail out.
	dns := dnstest.Start(t)
	extra := fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = 1\n\n[imap]\nlisten = %q\ntls_listen = %q\n\n[tls]\ncert_file = %q\nkey_file = %q\n",
		dns.Addr, p.imap, p.imaps, certFile, keyFile)
	p.instance = newInstanceWith(t, instanceOptions{extra: extra}, "pp", "bob")
	p.start()
	return p
}

// ports returns the port numbers of the two IMAP listeners.
func (p *imapInstance) ports() (plain, implicit string) {
	_, plain, _ = net.SplitHostPort(p.imap)
	_, implicit, _ = net.SplitHostPort(p.imaps)
	return plain, implicit
}

// imapMessage is message i of a test: a distinct subject and Message-ID,
// a body with a line that starts with a dot, and a word only it has.
func imapMessage(i int) string {
	return fmt.Sprintf("From: Sender <sender@example.net>\r\nTo: pp@example.org\r\nSubject: message %d\r\n"+
		"Message-ID: <m%d@example.net>\r\nDate: Mon, 23 Nov 2026 10:%02d:00 +0000\r\n\r\n"+
		"Hello %d.\r\n.a line with a leading dot\r\nword%dword\r\n", i, i, i%60, i, i)
}

// deliver sends msgs to rcpt over SMTP (no TLS, from 127.0.0.1), on up to
// four connections at once, and returns when the server took every one.
func (p *imapInstance) deliver(rcpt string, msgs []string) {
	p.t.Helper()
	// A few messages go on one connection, so that their UIDs follow the
	// order sent; many go on four.
	conns := 1
	if len(msgs) > 50 {
		conns = 4
	}
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			c, err := gosmtp.Dial(p.smtp)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Hello("client.example.net"); err != nil {
				errs <- err
				return
			}
			for i := w; i < len(msgs); i += conns {
				if err := c.SendMail("sender@example.net", []string{rcpt}, strings.NewReader(msgs[i])); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
			c.Quit()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		p.t.Fatal(err)
	}
}

// storedMessage is a message as the store holds it.
type storedMessage struct {
	UID    uint32
	ModSeq uint64
	Flags  []string
	Body   string
}

// mailbox reads a mailbox of an account from the store on disk (a second
// reader next to the running server), in UID order.
func (p *imapInstance) mailbox(account, name string) []storedMessage {
	p.t.Helper()
	st, err := sqlite.Open(filepath.Join(p.dir, "data"), sqlite.Options{})
	if err != nil {
		p.t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	a, err := st.GetAccount(ctx, account)
	if err != nil {
		p.t.Fatalf("account %s: %v", account, err)
	}
	mb, err := st.GetMailbox(ctx, a.ID, name)
	if err != nil {
		p.t.Fatalf("mailbox %s: %v", name, err)
	}
	infos, err := st.ListMessages(ctx, mb.ID, 0, false)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []storedMessage
	for _, m := range infos {
		r, err := st.OpenMessage(ctx, mb.ID, m.UID)
		if err != nil {
			p.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			p.t.Fatal(err)
		}
		out = append(out, storedMessage{m.UID, m.ModSeq, m.Flags, string(b)})
	}
	return out
}

// fill delivers n test messages to pp's INBOX and returns the INBOX as
// stored, checked to hold what was sent behind the trace fields.
func (p *imapInstance) fill(n int) []storedMessage {
	p.t.Helper()
	var msgs []string
	for i := range n {
		msgs = append(msgs, imapMessage(i+1))
	}
	p.deliver("pp@example.org", msgs)
	stored := p.mailbox("pp", store.Inbox)
	if len(stored) != n {
		p.t.Fatalf("%d messages stored, want %d", len(stored), n)
	}
	sent := map[string]bool{}
	for _, m := range msgs {
		sent[m] = true
	}
	for _, m := range stored {
		_, rest, ok := strings.Cut(m.Body, "\r\nFrom: Sender")
		if !ok || !sent["From: Sender"+rest] || !strings.HasPrefix(m.Body, "Return-Path: ") {
			p.t.Fatalf("stored message UID %d is not one sent:\n%q", m.UID, m.Body)
		}
	}
	return stored
}

// runTool runs a client with a time limit and returns its combined output.
func runTool(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish in %v: %w", name, timeout, err)
	}
	return out.String(), err
}

// lf is a message with LF line ends, as Maildir tools and mutt write it.
func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// Python's imaplib: STARTTLS on the 143-like port and implicit TLS on the
// 993-like one, verifying the certificate; LOGIN, LIST, SELECT, SEARCH,
// FETCH BODY[], STORE, EXPUNGE, APPEND; the bytes it gets are those in the
// store, and what it changed is in the store.
func TestIMAPWithPython(t *testing.T) {
	requireTool(t, "python3")
	p := newIMAPInstance(t)
	stored := p.fill(3)
	out := t.TempDir()
	script := `
import imaplib, ssl, sys
cafile, port, tlsport, out = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
def ok(r):
    typ, data = r
    assert typ == "OK", r
    return data
m = imaplib.IMAP4("127.0.0.1", int(port), timeout=20)
assert "STARTTLS" in m.capabilities, m.capabilities
ok(m.starttls(ctx))
ok(m.login("pp", "secret-pp"))
for l in ok(m.list()):
    print("LIST", l.decode())
print("SELECT", ok(m.select("INBOX"))[0].decode())
print("SEARCH", ok(m.search(None, "ALL"))[0].decode())
print("SEARCH word2word", ok(m.search(None, "BODY", "word2word"))[0].decode())
for n in ok(m.search(None, "ALL"))[0].split():
    data = ok(m.fetch(n, "(UID BODY[])"))
    with open("%s/%s" % (out, n.decode()), "wb") as f:
        f.write(data[0][1])
print("STORE", ok(m.store("1", "+FLAGS", "(\\Deleted)"))[0].decode())
ok(m.store("2", "+FLAGS", "(\\Flagged $Label1)"))
print("EXPUNGE", b" ".join(ok(m.expunge())).decode())
print("FLAGGED", ok(m.search(None, "FLAGGED"))[0].decode())
msg = b"From: pp@example.org\r\nSubject: appended\r\n\r\nSaved by imaplib.\r\n"
print("APPEND", ok(m.append("Archive", "(\\Seen)", None, msg))[0].decode())
print("ARCHIVE", ok(m.select("Archive", readonly=True))[0].decode())
data = ok(m.fetch("1", "(FLAGS BODY.PEEK[])"))
with open("%s/appended" % out, "wb") as f:
    f.write(data[0][1])
m.logout()
s = imaplib.IMAP4_SSL("127.0.0.1", int(tlsport), ssl_context=ctx, timeout=20)
ok(s.login("pp", "secret-pp"))
print("TLS SELECT", ok(s.select("INBOX", readonly=True))[0].decode())
for n in ok(s.search(None, "ALL"))[0].split():
    data = ok(s.fetch(n, "(BODY.PEEK[])"))
    with open("%s/tls%s" % (out, n.decode()), "wb") as f:
        f.write(data[0][1])
# Another account's INBOX is out of reach, however it is named.
for name in ['"../bob/INBOX"', '"bob/INBOX"', '"/INBOX"', '"~bob/INBOX"']:
    print("ESCAPE", name, s.select(name, readonly=True)[0])
s.logout()
`
	plain, implicit := p.ports()
	res, err := runTool(t, 60*time.Second, nil, "python3", "-c", script, p.certFile, plain, implicit, out)
	if err != nil {
		t.Fatalf("python3 imaplib: %v\n%s", err, res)
	}
	// The one message with word2word in its body, by sequence number.
	wordSearch := ""
	for i, m := range stored {
		if strings.Contains(m.Body, "word2word") {
			wordSearch = fmt.Sprintf("SEARCH word2word %d\n", i+1)
		}
	}
	for _, want := range []string{
		`LIST (\HasNoChildren) "/" INBOX` + "\n",
		`LIST (\HasNoChildren \Archive) "/" Archive` + "\n",
		"SELECT 3\n", "SEARCH 1 2 3\n", wordSearch,
		"STORE 1 (FLAGS (\\Seen \\Deleted))\n",
		"EXPUNGE 1\n", "FLAGGED 1\n",
		"ARCHIVE 1\n", "TLS SELECT 2\n",
		`ESCAPE "../bob/INBOX" NO` + "\n", `ESCAPE "bob/INBOX" NO` + "\n", `ESCAPE "/INBOX" NO` + "\n", `ESCAPE "~bob/INBOX" NO` + "\n",
	} {
		if !strings.Contains(res, want) {
			t.Errorf("imaplib printed:\n%s\nwant %q", res, want)
		}
	}
	for i, m := range stored {
		if got := mustRead(t, filepath.Join(out, fmt.Sprint(i+1))); got != m.Body {
			t.Errorf("message %d by imaplib:\n%q\nstored:\n%q", i+1, got, m.Body)
		}
	}
	// The INBOX lost message 1 and message 2 carries \Flagged; what the
	// implicit-TLS session read is what is left.
	after := p.mailbox("pp", store.Inbox)
	if len(after) != 2 || after[0].UID != stored[1].UID || after[1].UID != stored[2].UID {
		t.Fatalf("INBOX after EXPUNGE: %+v", after)
	}
	if !slices.Contains(after[0].Flags, `\Flagged`) || !slices.Contains(after[0].Flags, "$Label1") || !slices.Contains(after[0].Flags, `\Seen`) {
		t.Errorf("flags of the stored message: %q, want \\Flagged $Label1 \\Seen", after[0].Flags)
	}
	for i, m := range after {
		if got := mustRead(t, filepath.Join(out, fmt.Sprintf("tls%d", i+1))); got != m.Body {
			t.Errorf("message %d by imaplib over TLS:\n%q\nstored:\n%q", i+1, got, m.Body)
		}
	}
	const appended = "From: pp@example.org\r\nSubject: appended\r\n\r\nSaved by imaplib.\r\n"
	arch := p.mailbox("pp", "Archive")
	if len(arch) != 1 || arch[0].Body != appended || !slices.Contains(arch[0].Flags, `\Seen`) {
		t.Errorf("Archive after APPEND: %+v", arch)
	}
	if want := fmt.Sprintf("APPEND [APPENDUID %s %d] ", "", arch[0].UID); !strings.Contains(res, "APPEND [APPENDUID ") ||
		!strings.Contains(res, fmt.Sprintf(" %d] ", arch[0].UID)) {
		t.Errorf("APPEND answer:\n%s\nwant %q with the UIDVALIDITY", res, want)
	}
	if got := mustRead(t, filepath.Join(out, "appended")); got != appended {
		t.Errorf("appended message fetched back: %q", got)
	}
	if n := len(p.mailbox("bob", store.Inbox)); n != 0 {
		t.Errorf("bob's INBOX has %d messages", n)
	}
}

// curl fetches by UID over STARTTLS (--ssl-reqd) and over implicit TLS
// (imaps://), verifying the certificate: the bytes are those in the store.
// It lists and searches too. Without TLS from an address that is not
// loopback it cannot log in (LOGINDISABLED), and a wrong password is refused.
func TestIMAPWithCurl(t *testing.T) {
	requireTool(t, "curl")
	p := newIMAPInstance(t)
	stored := p.fill(3)
	plain, implicit := p.ports()
	curl := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"-sS", "--max-time", "30", "--cacert", p.certFile}
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
	for _, m := range stored {
		for _, url := range []string{
			fmt.Sprintf("imap://127.0.0.1:%s/INBOX;UID=%d", plain, m.UID),
			fmt.Sprintf("imaps://127.0.0.1:%s/INBOX;UID=%d", implicit, m.UID),
		} {
			args := []string{"-u", "pp:secret-pp", url}
			if strings.HasPrefix(url, "imap:") {
				args = append([]string{"--ssl-reqd"}, args...)
			}
			got, code := curl(args...)
			if code != 0 {
				t.Fatalf("curl %s: exit %d: %s", url, code, got)
			}
			if got != m.Body {
				t.Errorf("curl %s:\n%q\nstored:\n%q", url, got, m.Body)
			}
		}
	}
	list, code := curl("--ssl-reqd", "-u", "pp:secret-pp", fmt.Sprintf("imap://127.0.0.1:%s/", plain))
	for _, want := range []string{"* LIST (\\HasNoChildren) \"/\" INBOX\r\n", "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"} {
		if code != 0 || !strings.Contains(list, want) {
			t.Errorf("curl LIST: exit %d, %q; want %q", code, list, want)
		}
	}
	// A URL query is a SEARCH (RFC 5092 section 6).
	search, code := curl("-u", "pp:secret-pp", fmt.Sprintf("imaps://127.0.0.1:%s/INBOX?SUBJECT%%20%%22message%%202%%22", implicit))
	if want := "* SEARCH 2\r\n"; code != 0 || search != want {
		t.Errorf("curl SEARCH: exit %d, %q; want %q", code, search, want)
	}
	// From 127.0.0.2 without TLS no password may be sent: the server says
	// LOGINDISABLED and offers no AUTH=PLAIN, and refuses them if tried.
	for _, opts := range [][]string{nil, {"--login-options", "AUTH=PLAIN"}, {"--login-options", "AUTH=LOGIN"}} {
		args := append([]string{"--interface", popOutside, "-u", "pp:secret-pp"}, opts...)
		args = append(args, fmt.Sprintf("imap://127.0.0.1:%s/INBOX;UID=%d", plain, stored[0].UID))
		if got, code := curl(args...); code == 0 || strings.Contains(got, "Subject:") {
			t.Errorf("curl %v without TLS from %s: exit %d, got %q", args, popOutside, code, got)
		}
	}
	// Another account's password never opens pp's mailbox (67: login denied).
	if got, code := curl("-u", "pp:secret-bob", fmt.Sprintf("imaps://127.0.0.1:%s/INBOX;UID=%d", implicit, stored[0].UID)); code != 67 {
		t.Errorf("curl with bob's password for pp: exit %d (want 67, login denied): %q", code, got)
	}
	// bob's login sees bob's INBOX, which is empty.
	if got, code := curl("-u", "bob:secret-bob", fmt.Sprintf("imaps://127.0.0.1:%s/INBOX;UID=%d", implicit, stored[0].UID)); code == 0 || strings.Contains(got, "Subject:") {
		t.Errorf("curl as bob for UID %d: exit %d, %q", stored[0].UID, code, got)
	}
}

// imapAppend puts msgs into a mailbox of pp's over implicit TLS with a
// plain IMAP dialogue (LOGIN, APPEND with synchronising literals).
func (p *imapInstance) imapAppend(mailbox string, msgs []string) {
	p.t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(mustRead(p.t, p.certFile)))
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.imaps, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	expect := func(prefix string) {
		p.t.Helper()
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				p.t.Fatalf("IMAP read: %v", err)
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
			if !strings.HasPrefix(l, "* ") {
				p.t.Fatalf("IMAP: %q, want %q", l, prefix)
			}
		}
	}
	expect("* OK")
	fmt.Fprintf(c, "a LOGIN pp secret-pp\r\n")
	expect("a OK")
	for i, m := range msgs {
		fmt.Fprintf(c, "b%d APPEND %s {%d}\r\n", i, mailbox, len(m))
		expect("+")
		fmt.Fprintf(c, "%s\r\n", m)
		expect(fmt.Sprintf("b%d OK", i))
	}
	fmt.Fprintf(c, "z LOGOUT\r\n")
}

// maildir lists the messages of a Maildir folder: file name (without the
// directory) to contents.
func maildir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out[sub+"/"+e.Name()] = mustRead(t, filepath.Join(dir, sub, e.Name()))
		}
	}
	return out
}

// sameMessages reports the differences between what a Maildir holds and
// what a mailbox on the server holds (compared with LF line ends; mbsync
// adds an X-TUID: field to the header of what it copies, which is left out).
func sameMessages(local map[string]string, remote []storedMessage) []string {
	norm := func(s string) string {
		s = lf(s)
		header, body, _ := strings.Cut(s, "\n\n")
		var kept []string
		for _, l := range strings.SplitAfter(header+"\n", "\n") {
			if !strings.HasPrefix(l, "X-TUID: ") {
				kept = append(kept, l)
			}
		}
		return strings.Join(kept, "") + "\n" + body
	}
	count := map[string]int{}
	for _, b := range local {
		count[norm(b)]++
	}
	for _, m := range remote {
		count[norm(m.Body)]--
	}
	var diff []string
	for b, n := range count {
		if n != 0 {
			first, _, _ := strings.Cut(b[strings.Index(b, "Subject:"):], "\n")
			diff = append(diff, fmt.Sprintf("%+d %s", n, first))
		}
	}
	slices.Sort(diff)
	return diff
}

// mbsync (isync) syncs INBOX and Archive down to a Maildir, 1,000 messages
// in the INBOX; then a flag set and messages added locally go up; run once
// more, it changes nothing, on either side.
func TestIMAPWithMbsync(t *testing.T) {
	requireTool(t, "mbsync")
	p := newIMAPInstance(t)
	start := time.Now()
	stored := p.fill(1000)
	var archived []string
	for i := range 3 {
		archived = append(archived, imapMessage(2000+i))
	}
	p.imapAppend("Archive", archived)
	t.Logf("1,000 messages delivered over SMTP in %v", time.Since(start).Round(time.Millisecond))

	home := t.TempDir()
	mail := filepath.Join(home, "mail")
	if err := os.Mkdir(mail, 0o700); err != nil {
		t.Fatal(err)
	}
	plain, _ := p.ports()
	rc := filepath.Join(home, "mbsyncrc")
	// COMPRESS=DEFLATE is off here, so that this test is about syncing;
	// TestIMAPWithMbsyncCompress syncs with it.
	text := fmt.Sprintf(`IMAPAccount pp
Host 127.0.0.1
Port %s
User pp
Pass secret-pp
SSLType STARTTLS
CertificateFile %s
DisableExtension COMPRESS=DEFLATE
Timeout 20

IMAPStore remote
Account pp

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel pp
Far :remote:
Near :local:
Patterns INBOX Archive
Create Near
Sync All
Expunge None
SyncState *
`, plain, p.certFile, mail, mail)
	if err := os.WriteFile(rc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func(run string) {
		t.Helper()
		start := time.Now()
		out, err := runTool(t, 60*time.Second, []string{"HOME=" + home}, "mbsync", "-c", rc, "-a")
		if err != nil {
			t.Fatalf("mbsync (%s): %v\n%s", run, err, out)
		}
		t.Logf("mbsync %s: %v", run, time.Since(start).Round(time.Millisecond))
	}

	sync("first run")
	inbox, archive := filepath.Join(mail, "INBOX"), filepath.Join(mail, "Archive")
	local := maildir(t, inbox)
	if len(local) != len(stored) {
		t.Fatalf("mbsync put %d messages in the INBOX Maildir, want %d", len(local), len(stored))
	}
	if d := sameMessages(local, stored); len(d) > 0 {
		t.Fatalf("the INBOX Maildir differs from the server's (%d): %q", len(d), d[:min(len(d), 5)])
	}
	if d := sameMessages(maildir(t, archive), p.mailbox("pp", "Archive")); len(d) > 0 || len(maildir(t, archive)) != 3 {
		t.Fatalf("the Archive Maildir differs from the server's: %q", d)
	}

	// Local changes: flag the message with word7word, add one message to
	// each folder.
	var flagged string
	for name, b := range local {
		if strings.Contains(b, "\nword7word\n") {
			flagged = name
		}
	}
	if flagged == "" || !strings.Contains(flagged, ":2,") {
		t.Fatalf("no Maildir file for message 7 with an info part: %q", flagged)
	}
	if err := os.Rename(filepath.Join(inbox, flagged), filepath.Join(inbox, "cur", filepath.Base(flagged)+"F")); err != nil {
		t.Fatal(err)
	}
	newInbox := lf(imapMessage(3000))
	newArchive := lf(imapMessage(3001))
	for _, f := range []struct{ dir, text string }{{inbox, newInbox}, {archive, newArchive}} {
		name := filepath.Join(f.dir, "new", fmt.Sprintf("%d.local.test", time.Now().UnixNano()))
		if err := os.WriteFile(name, []byte(f.text), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	sync("second run (local changes up)")
	server := p.mailbox("pp", store.Inbox)
	if len(server) != len(stored)+1 {
		t.Fatalf("server INBOX has %d messages after the upload, want %d", len(server), len(stored)+1)
	}
	var uploaded bool
	for _, m := range server {
		if strings.Contains(m.Body, "word7word") != slices.Contains(m.Flags, `\Flagged`) {
			t.Errorf("UID %d: flags %q after flagging message 7 locally", m.UID, m.Flags)
		}
		// What mbsync uploads has CRLF line ends, as IMAP wants (RFC 9051
		// section 6.3.12); its content is compared below.
		if strings.Contains(m.Body, "word3000word") && !strings.Contains(strings.ReplaceAll(m.Body, "\r\n", ""), "\n") {
			uploaded = true
		}
	}
	if !uploaded {
		t.Errorf("the message added to the INBOX Maildir is not on the server, with CRLF line ends")
	}
	if d := sameMessages(maildir(t, inbox), server); len(d) > 0 {
		t.Errorf("INBOX differs after the second run: %q", d)
	}
	serverArchive := p.mailbox("pp", "Archive")
	if d := sameMessages(maildir(t, archive), serverArchive); len(d) > 0 || len(serverArchive) != 4 {
		t.Errorf("Archive after the second run: %d on the server, differences %q", len(serverArchive), d)
	}

	// Once more: nothing to do, nothing done.
	beforeInbox, beforeArchive := maildir(t, inbox), maildir(t, archive)
	sync("third run (nothing to do)")
	if got := p.mailbox("pp", store.Inbox); !slices.EqualFunc(got, server, sameState) {
		t.Errorf("the server's INBOX changed on a run with nothing to do")
	}
	if got := p.mailbox("pp", "Archive"); !slices.EqualFunc(got, serverArchive, sameState) {
		t.Errorf("the server's Archive changed on a run with nothing to do")
	}
	for _, f := range []struct {
		before map[string]string
		dir    string
	}{{beforeInbox, inbox}, {beforeArchive, archive}} {
		after := maildir(t, f.dir)
		if len(after) != len(f.before) {
			t.Errorf("%s: %d messages, %d before the third run", f.dir, len(after), len(f.before))
		}
		for name := range f.before {
			if _, ok := after[name]; !ok {
				t.Errorf("%s: %s renamed or gone on a run with nothing to do", f.dir, name)
			}
		}
	}
}

// sameState compares two stored messages by UID, MODSEQ and flags: a
// message untouched keeps all three.
func sameState(a, b storedMessage) bool {
	return a.UID == b.UID && a.ModSeq == b.ModSeq && slices.Equal(a.Flags, b.Flags)
}

// mutt, in a tmux pane: it lists the INBOX over implicit TLS and over
// STARTTLS, and pipes each message to a file; the files hold the stored
// bytes (with LF line ends, as mutt writes them).
func TestIMAPWithMutt(t *testing.T) {
	requireTool(t, "mutt")
	requireTool(t, "tmux")
	p := newIMAPInstance(t)
	stored := p.fill(3)
	home := t.TempDir()
	rc := filepath.Join(home, "muttrc")
	text := fmt.Sprintf(`set imap_user="pp"
set imap_pass="secret-pp"
set ssl_ca_certificates_file=%q
set certificate_file=%q
set ssl_starttls=yes
set ssl_force_tls=yes
set header_cache=""
set message_cachedir=""
set wait_key=no
set pipe_decode=no
set quit=yes
set move=no
set record=""
set sort=mailbox-order
set index_format="IDX %%4C %%s"
set folder="imaps://127.0.0.1/"
`, p.certFile, filepath.Join(home, "certificates"))
	if err := os.WriteFile(rc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// A tmux server of this test's own, ended with the test.
	sock := fmt.Sprintf("posthorn-test-%d", os.Getpid())
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })

	plain, implicit := p.ports()
	for _, url := range []string{
		fmt.Sprintf("imaps://127.0.0.1:%s/INBOX", implicit),
		fmt.Sprintf("imap://127.0.0.1:%s/INBOX", plain), // STARTTLS, forced
	} {
		out := t.TempDir()
		var keys strings.Builder
		for i := range stored {
			if i > 0 {
				keys.WriteString("<next-entry>")
			}
			fmt.Fprintf(&keys, "<pipe-message>cat > %s/%d<enter>", out, i+1)
		}
		cmd := fmt.Sprintf("env HOME=%s mutt -n -F %s -f %s -e 'push \"%s\"'", home, rc, url, keys.String())
		tmux("new-session", "-d", "-s", "mutt", "-x", "160", "-y", "40", cmd)
		// Wait for the last message to be written and the index drawn.
		var pane string
		deadline := time.Now().Add(20 * time.Second)
		for {
			pane = tmux("capture-pane", "-p", "-t", "mutt")
			_, err := os.Stat(filepath.Join(out, fmt.Sprint(len(stored))))
			if err == nil && strings.Count(pane, "IDX ") == len(stored) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("mutt %s: no listing or messages after 20s; the screen:\n%s", url, pane)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i, m := range stored {
			subject := fmt.Sprintf("IDX %4d message %d", i+1, i+1)
			if !strings.Contains(pane, subject) {
				t.Errorf("mutt %s: the index lacks %q:\n%s", url, subject, pane)
			}
			// The file may still be being written: wait for all of it.
			var got string
			for range 50 {
				if got = mustRead(t, filepath.Join(out, fmt.Sprint(i+1))); got == lf(m.Body) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got != lf(m.Body) {
				t.Errorf("mutt %s, message %d:\n%q\nstored:\n%q", url, i+1, got, lf(m.Body))
			}
		}
		tmux("send-keys", "-t", "mutt", "q")
		for deadline := time.Now().Add(10 * time.Second); ; {
			if exec.Command("tmux", "-L", sock, "has-session", "-t", "mutt").Run() != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("mutt did not quit:\n%s", tmux("capture-pane", "-p", "-t", "mutt"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Piping reads with BODY.PEEK (no \Seen); on leaving, mutt marks the
	// new messages it listed "Old" (mark_old), a keyword it STOREs since
	// PERMANENTFLAGS has \*. It reached the store.
	for _, m := range p.mailbox("pp", store.Inbox) {
		if !slices.Equal(m.Flags, []string{"Old"}) {
			t.Errorf("UID %d after mutt: flags %q, want [Old]", m.UID, m.Flags)
		}
	}
}

// offlineimap (offlineimap3) syncs INBOX and Archive down to a Maildir over
// implicit TLS, verifying the certificate: the files hold the stored bytes.
func TestIMAPWithOfflineimap(t *testing.T) {
	requireTool(t, "offlineimap")
	p := newIMAPInstance(t)
	stored := p.fill(20)
	p.imapAppend("Archive", []string{imapMessage(500)})
	archived := p.mailbox("pp", "Archive")
	home := t.TempDir()
	mail := filepath.Join(home, "mail")
	_, implicit := p.ports()
	rc := filepath.Join(home, "offlineimaprc")
	text := fmt.Sprintf(`[general]
accounts = pp
metadata = %s/meta
ui = basic

[Account pp]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = %s
remoteuser = pp
remotepass = secret-pp
ssl = yes
sslcacertfile = %s
folderfilter = lambda f: f in ['INBOX', 'Archive']
`, home, mail, implicit, p.certFile)
	if err := os.WriteFile(rc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, 60*time.Second, []string{"HOME=" + home}, "offlineimap", "-c", rc, "-o")
	if err != nil || strings.Contains(out, "ERROR") {
		t.Fatalf("offlineimap: %v\n%s", err, out)
	}
	inbox := maildir(t, filepath.Join(mail, "INBOX"))
	if len(inbox) != len(stored) {
		t.Fatalf("offlineimap put %d messages in the INBOX Maildir, want %d\n%s", len(inbox), len(stored), out)
	}
	if d := sameMessages(inbox, stored); len(d) > 0 {
		t.Errorf("the INBOX Maildir differs from the server's: %q", d)
	}
	// offlineimap names each file with its UID (",U=n,"): each has the
	// bytes of that UID.
	named := 0
	for name, b := range inbox {
		for _, m := range stored {
			if strings.Contains(name, fmt.Sprintf(",U=%d,", m.UID)) {
				named++
				if b != lf(m.Body) {
					t.Errorf("%s:\n%q\nUID %d stored:\n%q", name, b, m.UID, m.Body)
				}
			}
		}
	}
	if named != len(stored) {
		t.Errorf("%d Maildir files name a stored UID, want %d: %v", named, len(stored), slices.Collect(maps.Keys(inbox)))
	}
	if d := sameMessages(maildir(t, filepath.Join(mail, "Archive")), archived); len(d) > 0 || len(archived) != 1 {
		t.Errorf("the Archive Maildir differs from the server's: %q", d)
	}
}

// mbsync with COMPRESS=DEFLATE (its default when offered) over implicit
// TLS, 1,000 messages down. mbsync flushes its compressed commands with
// zlib's Z_PARTIAL_FLUSH (as Thunderbird does): a block ends with no empty
// stored block after it (RFC 4978 leaves the flush mode to the sender). A
// reader that returns a block's data only at such a marker, or that needs
// bits beyond the end of what was flushed, leaves the server waiting for the
// rest of a command while mbsync waits for the answers: mbsync times out.
func TestIMAPWithMbsyncCompress(t *testing.T) {
	requireTool(t, "mbsync")
	p := newIMAPInstance(t)
	stored := p.fill(1000)
	home := t.TempDir()
	mail := filepath.Join(home, "mail")
	if err := os.Mkdir(mail, 0o700); err != nil {
		t.Fatal(err)
	}
	_, implicit := p.ports()
	rc := filepath.Join(home, "mbsyncrc")
	text := fmt.Sprintf(`IMAPAccount pp
Host 127.0.0.1
Port %s
User pp
Pass secret-pp
SSLType IMAPS
CertificateFile %s
Timeout 5

IMAPStore remote
Account pp

MaildirStore local
Path %s/
Inbox %s/INBOX

Channel pp
Far :remote:
Near :local:
Patterns INBOX
Create Near
Sync Pull
SyncState *
`, implicit, p.certFile, mail, mail)
	if err := os.WriteFile(rc, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, 30*time.Second, []string{"HOME=" + home}, "mbsync", "-D", "-c", rc, "-a")
	if err != nil {
		// -D shows the exchange: how many messages came, and the last
		// commands and answers before the timeout.
		var tail []string
		bodies := 0
		for _, l := range strings.Split(out, "\n") {
			switch {
			case strings.HasPrefix(l, "F: * ") && strings.Contains(l, " BODY[] {"):
				bodies++
			case strings.HasPrefix(l, "F: >>> "), regexp.MustCompile(`^F: \d+ (OK|NO|BAD)`).MatchString(l),
				strings.Contains(l, "rror"), strings.Contains(l, "timeout"):
				tail = append(tail, l)
			}
		}
		t.Fatalf("mbsync over IMAPS with COMPRESS=DEFLATE: %v; %d of %d messages came; the end of the exchange:\n%s",
			err, bodies, len(stored), strings.Join(tail[max(0, len(tail)-6):], "\n"))
	}
	if d := sameMessages(maildir(t, filepath.Join(mail, "INBOX")), stored); len(d) > 0 {
		t.Errorf("the INBOX Maildir differs from the server's: %q", d)
	}
}

// serve --dev listens for IMAP on 127.0.0.1:2143 and 2993 and says so;
// the curl commands it prints work.
func TestDevServerIMAP(t *testing.T) {
	requireTool(t, "curl")
	for _, a := range []string{"127.0.0.1:2525", "127.0.0.1:2143", "127.0.0.1:2993"} {
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
	for _, want := range []string{"IMAP:     127.0.0.1:2143", "IMAPS:    127.0.0.1:2993"} {
		if !strings.Contains(printed.String(), want) {
			t.Errorf("serve --dev did not print %q:\n%s", want, printed.String())
		}
	}
	c, err := gosmtp.Dial("127.0.0.1:2525")
	if err != nil {
		t.Fatal(err)
	}
	const msg = "From: a@example.net\r\nSubject: dev\r\n\r\nhello over IMAP\r\n"
	if err := c.SendMail("a@example.net", []string{"demo@posthorn.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Run the two "try:" lines as printed (the shell quotes the URL).
	var tries []string
	for _, l := range strings.Split(printed.String(), "\n") {
		if _, cmdline, ok := strings.Cut(l, "try: curl "); ok && strings.Contains(cmdline, "imap") {
			tries = append(tries, "curl -sS --max-time 20 "+cmdline)
		}
	}
	if len(tries) != 2 {
		t.Fatalf("serve --dev printed %d IMAP examples, want 2:\n%s", len(tries), printed.String())
	}
	for _, try := range tries {
		out, err := exec.Command("/bin/sh", "-c", try).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", try, err, out)
			continue
		}
		switch {
		case strings.Contains(try, "UID=1"):
			if !strings.HasSuffix(string(out), msg) {
				t.Errorf("%s:\n%q, want the message", try, out)
			}
		case !strings.Contains(string(out), `"/" INBOX`):
			t.Errorf("%s:\n%q, want a LIST with INBOX", try, out)
		}
	}
}

// Implicit TLS without a certificate is a configuration error, said at
// start; `posthorn check` lists the IMAP listeners.
func TestIMAPConfig(t *testing.T) {
	addr := freePort(t)
	in := newInstanceWith(t, instanceOptions{extra: fmt.Sprintf("[imap]\ntls_listen = %q\n", addr)})
	r := in.exec("", "serve", "--config", in.cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "[imap] tls_listen") || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("serve with [imap] tls_listen and no certificate: exit %d, %q", r.code, r.stderr)
	}
	plain := freePort(t)
	in = newInstanceWith(t, instanceOptions{extra: fmt.Sprintf("[imap]\nlisten = %q\nidle_timeout = \"1h\"\n", plain)})
	out := in.run("", "check", "--config", in.cfg)
	if !regexp.MustCompile(`(?m)^  imap +` + regexp.QuoteMeta(plain) + `$`).MatchString(out) {
		t.Errorf("posthorn check does not list the IMAP listener %s:\n%s", plain, out)
	}
	// An idle timeout under RFC 9051's 30 minutes is refused with its line.
	in.writeFile("posthorn.toml", strings.Replace(mustRead(t, in.cfg), `idle_timeout = "1h"`, `idle_timeout = "10m"`, 1))
	r = in.exec("", "check", "--config", in.cfg)
	if r.code == 0 || !regexp.MustCompile(`posthorn\.toml:\d+: imap\.idle_timeout: .*30m`).MatchString(r.stderr) {
		t.Errorf("check with idle_timeout = 10m: exit %d, %q", r.code, r.stderr)
	}
}

// [imap] append_limit reaches the server (APPENDLIMIT, NO [TOOBIG]), and a
// SIGTERM says BYE to a session in IDLE and stops the server at once.
func TestIMAPAppendLimitAndShutdown(t *testing.T) {
	addr := freePort(t)
	dns := dnstest.Start(t)
	in := newInstanceWith(t, instanceOptions{extra: fmt.Sprintf("resolver = %q\n\n[imap]\nlisten = %q\nappend_limit = \"1KiB\"\n", dns.Addr, addr)}, "pp")
	in.start()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(nc)
	line := func() string {
		t.Helper()
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (%q)", err, l)
		}
		return strings.TrimSuffix(l, "\r\n")
	}
	// until reads up to the line that starts with tag and returns it and
	// the untagged lines before it.
	until := func(tag string) (string, []string) {
		t.Helper()
		var untagged []string
		for {
			l := line()
			if strings.HasPrefix(l, tag+" ") {
				return l, untagged
			}
			untagged = append(untagged, l)
		}
	}
	line() // greeting
	// From 127.0.0.1 a password may go in clear (see Logins).
	fmt.Fprintf(nc, "a LOGIN pp secret-pp\r\n")
	if l, _ := until("a"); !strings.HasPrefix(l, "a OK") || !strings.Contains(l, " APPENDLIMIT=1024 ") {
		t.Errorf("LOGIN: %q, want OK with APPENDLIMIT=1024", l)
	}
	fmt.Fprintf(nc, "b APPEND INBOX {1025}\r\n")
	if l, _ := until("b"); !strings.HasPrefix(l, "b NO [TOOBIG]") {
		t.Errorf("APPEND of 1025 octets: %q, want NO [TOOBIG]", l)
	}
	small := "Subject: small\r\n\r\nfits\r\n"
	fmt.Fprintf(nc, "c APPEND INBOX {%d}\r\n", len(small))
	if l := line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND of %d octets: %q, want a go-ahead", len(small), l)
	}
	fmt.Fprintf(nc, "%s\r\n", small)
	if l, _ := until("c"); !strings.HasPrefix(l, "c OK") {
		t.Errorf("APPEND of %d octets: %q", len(small), l)
	}
	fmt.Fprintf(nc, "d SELECT INBOX\r\ne IDLE\r\n")
	until("d")
	if l := line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	start := time.Now()
	in.proc.Process.Signal(syscall.SIGTERM)
	if l := line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("after SIGTERM, in IDLE: %q, want * BYE", l)
	}
	select {
	case <-in.stopped:
		in.proc = nil
	case <-time.After(10 * time.Second):
		t.Fatal("posthorn did not stop on SIGTERM with an IMAP session in IDLE")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping took %v with a session in IDLE", d)
	}
	if msgs := in.messages("pp"); len(msgs) != 1 || msgs[0] != small {
		t.Errorf("INBOX after the APPENDs: %q", msgs)
	}
}
