package test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/smtpc/smtptest"
)

// dialFrom opens an SMTP session to addr from localIP (127.0.0.2 ... play
// outside clients) and says EHLO helo.
func dialFrom(t *testing.T, addr, localIP, helo string) *gosmtp.Client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello(helo); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// sendRaw sends one message and returns the error of the first refused step.
func sendRaw(c *gosmtp.Client, from, to string, msg []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// publishRecords publishes what `posthorn dns-records` prints in dns: its
// zone lines, with the RSA key's strings (split over lines in parentheses)
// joined into one line for the fake server's parser.
func publishRecords(t *testing.T, dns *dnstest.Server, out string) int {
	t.Helper()
	out = strings.ReplaceAll(out, "\n\t", " ")
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		l = strings.NewReplacer("( ", "", " )", "").Replace(l)
		dns.MustAdd(t, l)
		n++
	}
	return n
}

// posthorn A signs with both keys from `posthorn init`; with the records of
// `posthorn dns-records` published (and `--check` saying so), posthorn B
// verifies what A sent and writes dkim=pass spf=pass dmarc=pass. A forged
// From under p=reject is refused with 550 5.7.1.
//
// A's queue delivers to a recording MX, and the test hands that on to B from
// 127.0.0.2 (A's address in DNS): a delivery from A straight to B would come
// from 127.0.0.1, which B trusts and does not check.
func TestAuthSignAndVerify(t *testing.T) {
	dns := dnstest.Start(t)
	mx := smtptest.Start(t, smtptest.Options{Addr: "127.0.0.3:0", Hostname: "mx.b.test"})
	dns.MustAdd(t,
		"mx.a.test. 60 IN A 127.0.0.2",
		"b.test. 60 IN MX 10 mx.b.test.", "mx.b.test. 60 IN A 127.0.0.3",
		`_dmarc.bank.test. 60 IN TXT "v=DMARC1; p=reject"`,
		`bank.test. 60 IN TXT "v=spf1 -all"`,
	)
	a := newInstanceWith(t, instanceOptions{hostname: "mx.a.test", domain: "a.test",
		extra: outboundConfig(dns.Addr, mx.Port())}, "pp")
	records := a.run("", "dns-records", "--config", a.cfg)
	for _, want := range []string{"a.test.", "IN MX   10 mx.a.test.", "v=spf1 mx -all", "-ed25519._domainkey.a.test.", "k=ed25519",
		"-rsa._domainkey.a.test.", "k=rsa", "_dmarc.a.test.", "_submission._tcp.a.test.", "_imaps._tcp.a.test.", "_pop3s._tcp.a.test."} {
		if !strings.Contains(records, want) {
			t.Errorf("dns-records lacks %q:\n%s", want, records)
		}
	}
	// Before publishing, --check names what is missing and exits 1.
	if r := a.exec("", "dns-records", "--check", "--config", a.cfg); r.code != 1 || !strings.Contains(r.stdout, "missing") {
		t.Errorf("check before publishing: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := publishRecords(t, dns, records); n < 9 {
		t.Fatalf("published %d records", n)
	}
	if r := a.exec("", "dns-records", "--check", "--config", a.cfg); r.code != 0 || strings.Contains(r.stdout, "missing") || strings.Contains(r.stdout, "wrong") {
		t.Errorf("check after publishing: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	b := newInstanceWith(t, instanceOptions{hostname: "mx.b.test", domain: "b.test",
		extra: fmt.Sprintf("resolver = %q\n", dns.Addr)}, "bob")
	a.start()
	b.start()

	out, code := a.swaks("--from", "pp@a.test", "--to", "bob@b.test", "--header", "Subject: signed")
	if code != 0 {
		t.Fatalf("swaks to A: %d\n%s", code, out)
	}
	got := mx.Wait(1, 20*time.Second)
	if len(got) != 1 {
		t.Fatalf("the MX got %d messages", len(got))
	}
	sent := got[0].Data
	if n := strings.Count(string(sent), "DKIM-Signature:"); n != 2 || !strings.Contains(string(sent), "a=ed25519-sha256") || !strings.Contains(string(sent), "a=rsa-sha256") {
		t.Fatalf("A sent %d signatures:\n%s", n, sent)
	}

	c := dialFrom(t, b.smtp, "127.0.0.2", "mx.a.test")
	if err := sendRaw(c, got[0].From, "bob@b.test", sent); err != nil {
		t.Fatalf("to B: %v", err)
	}
	m := b.waitMessages("bob", 1)
	if len(m) != 1 {
		t.Fatalf("bob has %d messages", len(m))
	}
	ar := ""
	sc := bufio.NewScanner(strings.NewReader(m[0]))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Authentication-Results: mx.b.test;") {
			ar = l
		} else if ar != "" && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			ar += l
		} else if ar != "" {
			break
		}
	}
	for _, want := range []string{"spf=pass", "dmarc=pass", "header.from=a.test", "header.a=ed25519-sha256", "header.a=rsa-sha256"} {
		if !strings.Contains(ar, want) {
			t.Errorf("B's Authentication-Results lacks %q: %s", want, ar)
		}
	}
	if strings.Count(ar, "dkim=pass") != 2 {
		t.Errorf("B's Authentication-Results: want two dkim=pass: %s", ar)
	}

	// A From: of bank.test (p=reject) sent from an address it does not
	// authorise: refused, and the reply says why.
	forged := "From: <ceo@bank.test>\r\nTo: <bob@b.test>\r\nSubject: wire money\r\n\r\nnow\r\n"
	err := sendRaw(dialFrom(t, b.smtp, "127.0.0.2", "mx.a.test"), "pp@a.test", "bob@b.test", []byte(forged))
	se, ok := err.(*gosmtp.SMTPError)
	if !ok || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 1}) || !strings.Contains(strings.ToLower(se.Message), "dmarc") {
		t.Errorf("forged From under p=reject: %v, want 550 5.7.1 naming DMARC", err)
	}
	waitLog(b, "smtp message rejected")
	if !strings.Contains(b.stderr.String(), "smtp message rejected") {
		t.Errorf("no log line for the refusal:\n%s", b.stderr.String())
	}
}

// Greylisting (on, with a one-second delay): the first attempt is deferred
// with 451, the retry after the delay accepted.
func TestAuthGreylist(t *testing.T) {
	dns := dnstest.Start(t)
	in := newInstanceWith(t, instanceOptions{extra: fmt.Sprintf("resolver = %q\n\n[authcheck]\nenabled = false\n\n[antispam]\ngreylist = true\ngreylist_delay = \"1s\"\ngreylist_expiry = \"1m\"\n", dns.Addr)}, "pp")
	in.start()
	msg := []byte("From: <x@remote.test>\r\nTo: <pp@example.org>\r\nSubject: grey\r\n\r\nhi\r\n")
	err := sendRaw(dialFrom(t, in.smtp, "127.0.0.2", "mx.remote.test"), "x@remote.test", "pp@example.org", msg)
	if se, ok := err.(*gosmtp.SMTPError); !ok || se.Code != 451 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("first attempt: %v, want 451 4.7.1", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := sendRaw(dialFrom(t, in.smtp, "127.0.0.2", "mx.remote.test"), "x@remote.test", "pp@example.org", msg); err != nil {
		t.Fatalf("retry after the delay: %v", err)
	}
	if m := in.waitMessages("pp", 1); len(m) != 1 {
		t.Errorf("pp has %d messages", len(m))
	}
}

// A client a DNSBL lists is refused at connect with the list's TXT reason,
// and the server says so in its log.
func TestAuthDNSBL(t *testing.T) {
	dns := dnstest.Start(t)
	dns.MustAdd(t, "2.0.0.127.bl.test. 60 IN A 127.0.0.2", `2.0.0.127.bl.test. 60 IN TXT "spam source, see https://bl.test/127.0.0.2"`)
	in := newInstanceWith(t, instanceOptions{extra: fmt.Sprintf("resolver = %q\n\n[antispam]\ndnsbl = [\"bl.test\"]\n", dns.Addr)}, "pp")
	in.start()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conn, err := d.Dial("tcp", in.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	greet, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(greet, "554 5.7.1 ") || !strings.Contains(greet, "bl.test: spam source, see https://bl.test/127.0.0.2") {
		t.Errorf("greeting of a listed client: %q", greet)
	}
	// Another address is greeted.
	c := dialFrom(t, in.smtp, "127.0.0.3", "mx.remote.test")
	c.Quit()
	waitLog(in, "dnsbl bl.test lists 127.0.0.2")
	if !strings.Contains(in.stderr.String(), "dnsbl bl.test lists 127.0.0.2") {
		t.Errorf("no log line naming the list:\n%s", in.stderr.String())
	}
}

// waitLog waits a little for a line of the server's log: it comes through a
// pipe, after the reply the test has already read.
func waitLog(in *instance, text string) {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(in.stderr.String(), text) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}
