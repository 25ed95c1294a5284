package test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/smtpc/smtptest"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

// twoServers is posthorn at a.test (mx.a.test, 127.0.0.2) and posthorn at
// b.test (mx.b.test, 127.0.0.3), on one port, finding each other by MX
// through a fake DNS server.
type twoServers struct {
	dns  *dnstest.Server
	a, b *instance
}

// commonPort finds a port free on both addresses.
func commonPort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no common free port")
	return 0
}

// outboundConfig is what the tests add to posthorn.toml: the fake DNS, the
// port for MX delivery, short retries.
func outboundConfig(dns string, port int) string {
	return fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = %d\nconnect_timeout = \"5s\"\n\n[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n", dns, port)
}

func newTwoServers(t *testing.T) *twoServers {
	t.Helper()
	dns := dnstest.Start(t)
	port := commonPort(t, "127.0.0.2", "127.0.0.3")
	dns.MustAdd(t,
		"a.test. 60 IN MX 10 mx.a.test.", "mx.a.test. 60 IN A 127.0.0.2",
		"b.test. 60 IN MX 10 mx.b.test.", "mx.b.test. 60 IN A 127.0.0.3",
	)
	extra := outboundConfig(dns.Addr, port)
	ts := &twoServers{dns: dns}
	ts.a = newInstanceWith(t, instanceOptions{hostname: "mx.a.test", domain: "a.test", listen: fmt.Sprintf("127.0.0.2:%d", port), extra: extra}, "pp")
	ts.b = newInstanceWith(t, instanceOptions{hostname: "mx.b.test", domain: "b.test", listen: fmt.Sprintf("127.0.0.3:%d", port), extra: extra}, "bob")
	return ts
}

// waitMessages waits until an account has n messages and returns them.
func (in *instance) waitMessages(account string, n int) []string {
	in.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := in.messages(account)
		if len(m) >= n || time.Now().After(deadline) {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queueLen is the number of entries on the instance's queue.
func (in *instance) queueLen() int {
	in.t.Helper()
	st, err := sqlite.Open(filepath.Join(in.dir, "data"), sqlite.Options{})
	if err != nil {
		in.t.Fatal(err)
	}
	defer st.Close()
	q, err := st.ListQueue(context.Background())
	if err != nil {
		in.t.Fatal(err)
	}
	return len(q)
}

func (in *instance) waitQueueEmpty() {
	in.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for in.queueLen() > 0 {
		if time.Now().After(deadline) {
			in.t.Fatalf("queue of %s not empty:\n%s", in.cfg, in.run("", "mailq", "--config", in.cfg))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTwoServersByMX(t *testing.T) {
	ts := newTwoServers(t)
	ts.a.start()
	ts.b.start()

	// pp at a.test writes to bob at b.test: A relays for its local client
	// (loopback), finds b.test's MX, and B stores it.
	out, code := ts.a.swaks("--from", "pp@a.test", "--to", "bob@b.test", "--header", "Subject: hello bob")
	if code != 0 {
		t.Fatalf("swaks to A: %d\n%s", code, out)
	}
	m := ts.b.waitMessages("bob", 1)
	if len(m) != 1 || !strings.Contains(m[0], "Subject: hello bob") {
		t.Fatalf("bob's INBOX: %q", m)
	}
	// B's Received: names A as the client; A's own Received: is there too,
	// and the Return-Path: is B's alone.
	if !strings.Contains(m[0], "by mx.a.test") || !strings.Contains(m[0], "by mx.b.test") || strings.Count(m[0], "Return-Path:") != 1 ||
		!strings.HasPrefix(m[0], "Return-Path: <pp@a.test>") {
		t.Errorf("trace fields:\n%s", m[0][:min(len(m[0]), 800)])
	}
	// And back, to a.test.
	if out, code := ts.b.swaks("--from", "bob@b.test", "--to", "pp@a.test", "--header", "Subject: hello pp"); code != 0 {
		t.Fatalf("swaks to B: %d\n%s", code, out)
	}
	if m := ts.a.waitMessages("pp", 1); len(m) != 1 || !strings.Contains(m[0], "Subject: hello pp") {
		t.Fatalf("pp's INBOX: %q", m)
	}
	ts.a.waitQueueEmpty()
	ts.b.waitQueueEmpty()
}

// A recipient the destination refuses: the sender gets a failure report in
// its mailbox; a report that cannot be delivered makes no further report.
func TestBounceToSender(t *testing.T) {
	ts := newTwoServers(t)
	ts.a.start()
	ts.b.start()
	if out, code := ts.a.swaks("--from", "pp@a.test", "--to", "nosuch@b.test", "--header", "Subject: to nobody"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	m := ts.a.waitMessages("pp", 1)
	if len(m) != 1 {
		t.Fatalf("pp got %d messages, want the bounce", len(m))
	}
	// The store adds Return-Path: <>; the rest is the report.
	if !strings.HasPrefix(m[0], "Return-Path: <>") {
		t.Errorf("bounce not from the null sender: %q", m[0][:min(80, len(m[0]))])
	}
	p, err := dsn.Parse([]byte(m[0]))
	if err != nil {
		t.Fatalf("the bounce is not a DSN: %v\n%s", err, m[0])
	}
	if len(p.Recipients) != 1 {
		t.Fatalf("report recipients: %v", p.Recipients)
	}
	rc := p.Recipients[0]
	if rc.Get("Action") != "failed" || !strings.HasPrefix(rc.Get("Status"), "5.") || !strings.Contains(rc.Get("Final-Recipient"), "nosuch@b.test") ||
		!strings.Contains(rc.Get("Remote-MTA"), "mx.b.test") || !strings.Contains(rc.Get("Diagnostic-Code"), "550") {
		t.Errorf("recipient fields: %v", rc)
	}
	if p.ReturnedType != "message/rfc822" || !strings.Contains(string(p.Returned), "Subject: to nobody") {
		t.Errorf("returned part %s: %q", p.ReturnedType, p.Returned)
	}
	ts.a.waitQueueEmpty()

	// A bounce (null sender) to an address that fails: nothing comes back.
	if out, code := ts.a.swaks("--from", "<>", "--to", "nosuch@b.test", "--header", "Subject: a bounce"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	ts.a.waitQueueEmpty()
	time.Sleep(500 * time.Millisecond)
	if m := ts.a.messages("pp"); len(m) != 1 {
		t.Errorf("pp has %d messages: a bounce of a bounce?", len(m))
	}
	if q := ts.a.queueLen(); q != 0 {
		t.Errorf("%d entries on the queue after a failed bounce", q)
	}
}

// Mail waiting for a destination that is down survives SIGKILL and goes out
// once, after the restart.
func TestQueueSurvivesKill(t *testing.T) {
	ts := newTwoServers(t)
	ts.a.start()
	const n = 5
	for i := range n {
		if out, code := ts.a.swaks("--from", "pp@a.test", "--to", "bob@b.test", "--header", fmt.Sprintf("Subject: queued %d", i)); code != 0 {
			t.Fatalf("swaks: %d\n%s", code, out)
		}
	}
	ts.a.kill()
	if q := ts.a.queueLen(); q != n {
		t.Fatalf("%d entries on the queue after the kill, want %d", q, n)
	}
	ts.b.start()
	ts.a.start()
	m := ts.b.waitMessages("bob", n)
	ts.a.waitQueueEmpty()
	time.Sleep(300 * time.Millisecond)
	m = ts.b.messages("bob")
	seen := map[string]int{}
	for _, x := range m {
		for i := range n {
			if strings.Contains(x, fmt.Sprintf("Subject: queued %d\r\n", i)) {
				seen[fmt.Sprint(i)]++
			}
		}
	}
	if len(m) != n || len(seen) != n {
		t.Fatalf("bob got %d messages (%v), want each of %d once", len(m), seen, n)
	}
}

// An access RELAY entry lets a network relay; another address may not.
func TestRelayByAccessEntry(t *testing.T) {
	ts := newTwoServers(t)
	ts.a.writeFile("access", "127.0.0.5\tRELAY\n")
	ts.a.start()
	ts.b.start()
	out, code := ts.a.swaks("--local-interface", "127.0.0.5", "--from", "x@a.test", "--to", "bob@b.test", "--header", "Subject: from the LAN")
	if code != 0 {
		t.Fatalf("relay from 127.0.0.5: %d\n%s", code, out)
	}
	out, code = ts.a.swaks("--local-interface", "127.0.0.6", "--from", "x@a.test", "--to", "bob@b.test")
	if code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("relay from 127.0.0.6 allowed: %d\n%s", code, out)
	}
	if m := ts.b.waitMessages("bob", 1); len(m) != 1 || !strings.Contains(m[0], "Subject: from the LAN") {
		t.Fatalf("bob's INBOX: %d", len(m))
	}
}

// The ISP's relay on 587: STARTTLS with a certificate from ca_file, AUTH,
// and a first answer of 4xx: the message arrives after a retry.
func TestSmartHostWithTLSAuthAndRetry(t *testing.T) {
	smart := smtptest.Start(t, smtptest.Options{TLS: true, Hostname: "smtp.isp.test", User: "pp@isp.test", Password: "isp secret",
		Data: func(n int) error {
			if n == 1 {
				return smtptest.Temp("try again later")
			}
			return nil
		}})
	dns := dnstest.Start(t)
	dns.MustAdd(t, "smtp.isp.test. 60 IN A 127.0.0.1")
	dir := t.TempDir()
	ca := filepath.Join(dir, "isp-ca.pem")
	pw := filepath.Join(dir, "smarthost.password")
	if err := os.WriteFile(ca, smart.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte("isp secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("resolver = %q\n\n[smtpc]\nca_file = %q\n\n[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\n", dns.Addr, ca)
	in := newInstanceWith(t, instanceOptions{extra: extra}, "pp")
	cfg := mustRead(t, in.cfg)
	cfg = strings.Replace(cfg, "# smart_host = \"[smtp.your-isp.example]:587\"",
		fmt.Sprintf("smart_host = \"[smtp.isp.test]:%d\"\nsmart_host_user = \"pp@isp.test\"\nsmart_host_password_file = %q", smart.Port(), pw), 1)
	in.writeFile("posthorn.toml", cfg)
	in.start()
	if out, code := in.swaks("--from", "pp@example.org", "--to", "friend@far.test", "--header", "Subject: via the ISP"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	m := smart.Wait(1, 20*time.Second)
	if len(m) != 1 {
		t.Fatalf("the smart host got %d messages\n%s", len(m), in.stderr.String())
	}
	if !m[0].TLS || m[0].AuthUser != "pp@isp.test" || m[0].To[0] != "friend@far.test" || !strings.Contains(string(m[0].Data), "Subject: via the ISP") {
		t.Errorf("received %+v", m[0])
	}
	if strings.Contains(string(m[0].Data), "Return-Path:") {
		t.Error("Return-Path: sent on to the next hop")
	}
	if strings.Contains(in.stderr.String(), "isp secret") {
		t.Error("the smart host password is in the log")
	}
	in.waitQueueEmpty()
}

func TestQueueCommands(t *testing.T) {
	in := newInstance(t, "pp")
	in.start()
	// remote.example's MX refuses connections: the message waits.
	if out, code := in.swaks("--from", "pp@example.org", "--to", "friend@remote.example"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	list := func() string { return in.run("", "queue", "list", "--config", in.cfg) }
	waitFor := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			l := list()
			if ok(l) {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("queue list never showed %s:\n%s", what, l)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	l := waitFor("one attempt", func(l string) bool { return strings.Contains(l, "attempts 1") })
	id := strings.Fields(l)[0]
	if !strings.Contains(l, "friend@remote.example") || !strings.Contains(l, "connection refused") {
		t.Errorf("queue list:\n%s", l)
	}
	q := in.run("", "mailq", "--config", in.cfg)
	for _, want := range []string{id, "<pp@example.org>", "(Deferred: ", "<friend@remote.example>", "Total requests: 1"} {
		if !strings.Contains(q, want) {
			t.Errorf("mailq lacks %q:\n%s", want, q)
		}
	}
	// The next attempt is minutes away (min_backoff 5m); flush makes it now.
	in.run("", "queue", "flush", "--config", in.cfg)
	waitFor("a second attempt after flush", func(l string) bool { return strings.Contains(l, "attempts 2") })

	if out := in.run("", "queue", "hold", id, "--config", in.cfg); !strings.Contains(out, "1 entry held") {
		t.Errorf("hold: %q", out)
	}
	if l := list(); !strings.Contains(l, " held") {
		t.Errorf("not shown held:\n%s", l)
	}
	if q := in.run("", "mailq", "--config", in.cfg); !strings.Contains(q, "(held") {
		t.Errorf("mailq does not say held:\n%s", q)
	}
	in.run("", "queue", "flush", "--config", in.cfg)
	time.Sleep(3 * time.Second) // more than the server's scan interval
	if l := list(); !strings.Contains(l, "attempts 2") {
		t.Errorf("a held entry was tried:\n%s", l)
	}
	in.run("", "queue", "release", id, "--config", in.cfg)
	waitFor("an attempt after release", func(l string) bool { return strings.Contains(l, "attempts 3") && strings.Contains(l, "waiting") })

	if r := in.exec("", "queue", "delete", "NOSUCHID", "--config", in.cfg); r.code != 1 || !strings.Contains(r.stderr, "no such queue entry") {
		t.Errorf("delete of an unknown ID: %d %q", r.code, r.stderr)
	}
	if out := in.run("", "queue", "delete", id, "--config", in.cfg); !strings.Contains(out, "1 entry deleted") {
		t.Errorf("delete: %q", out)
	}
	if n := in.queueLen(); n != 0 {
		t.Errorf("%d entries after delete", n)
	}
	if q := in.run("", "mailq", "--config", in.cfg); !strings.Contains(q, "is empty") {
		t.Errorf("mailq of an empty queue:\n%s", q)
	}
}

// Mail that a.test forwards (aliases) leaves with an SRS sender; the bounce
// to that address finds its way back to the real sender; forged SRS
// addresses are refused.
func TestForwardingWithSRS(t *testing.T) {
	ts := newTwoServers(t)
	ts.a.writeFile("aliases", mustRead(t, filepath.Join(ts.a.dir, "aliases"))+"fwd: bob@b.test\nfwdbad: nosuch@b.test\n")
	ts.a.start()
	ts.b.start()
	if out, code := ts.b.swaks("--from", "bob@b.test", "--to", "fwd@a.test", "--header", "Subject: forwarded"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	m := ts.b.waitMessages("bob", 1)
	if len(m) != 1 || !strings.Contains(m[0], "Subject: forwarded") {
		t.Fatalf("bob's INBOX: %d", len(m))
	}
	rp := strings.SplitN(m[0], "\r\n", 2)[0]
	if !strings.HasPrefix(rp, "Return-Path: <SRS0=") || !strings.HasSuffix(rp, "=b.test=bob@mx.a.test>") {
		t.Fatalf("forwarded with %q, want an SRS sender at mx.a.test", rp)
	}
	srsAddr := strings.TrimSuffix(strings.TrimPrefix(rp, "Return-Path: <"), ">")

	// A bounce to the SRS address, as the next server would send it.
	if out, code := ts.a.swaks("--from", "<>", "--to", srsAddr, "--header", "Subject: bounce via SRS"); code != 0 {
		t.Fatalf("bounce to %s: %d\n%s", srsAddr, code, out)
	}
	if m := ts.b.waitMessages("bob", 2); len(m) != 2 || !strings.Contains(m[1], "Subject: bounce via SRS") {
		t.Fatalf("the bounce did not come back to bob: %d", len(m))
	}
	// A valid SRS address with a sender: refused, or anyone who saw one
	// could relay through it.
	if out, code := ts.a.swaks("--local-interface", "127.0.0.7", "--from", "spammer@spam.test", "--to", srsAddr); code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("SRS address took mail with a sender: %d\n%s", code, out)
	}
	// One we did not make.
	forged := strings.Replace(srsAddr, "=b.test=bob@", "=evil.test=victim@", 1)
	if out, code := ts.a.swaks("--from", "<>", "--to", forged); code == 0 || !strings.Contains(out, "550 5.1.1") {
		t.Fatalf("forged SRS address accepted: %d\n%s", code, out)
	}

	// Forwarded to an address that does not exist: a.test's report goes to
	// the SRS address, which is bob.
	if out, code := ts.b.swaks("--from", "bob@b.test", "--to", "fwdbad@a.test", "--header", "Subject: to a bad forward"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	m = ts.b.waitMessages("bob", 3)
	if len(m) != 3 {
		t.Fatalf("bob got %d messages, want the report too", len(m))
	}
	p, err := dsn.Parse([]byte(m[2]))
	if err != nil {
		t.Fatalf("not a report: %v\n%s", err, m[2])
	}
	rc := p.Recipients[0]
	if rc.Get("Action") != "failed" || !strings.Contains(rc.Get("Final-Recipient"), "nosuch@b.test") ||
		!strings.Contains(rc.Get("Original-Recipient"), "fwdbad@a.test") {
		t.Errorf("report fields: %v", rc)
	}
	ts.a.waitQueueEmpty()
	ts.b.waitQueueEmpty()
}

// Notices for what never reaches the queue: a member of an alias list that
// does not exist (the others get the message), and a "delivered" report for
// NOTIFY=SUCCESS on local delivery.
func TestLocalNotices(t *testing.T) {
	in := newInstance(t, "pp", "bob")
	in.writeFile("aliases", mustRead(t, filepath.Join(in.dir, "aliases"))+"team: bob, nosuchuser\n")
	in.start()
	c, err := gosmtp.Dial(in.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("pp@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("team@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.org", &gosmtp.RcptOptions{Notify: []gosmtp.DSNNotify{gosmtp.DSNNotifySuccess}}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "Subject: to the team\r\n\r\nhi\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if m := in.waitMessages("bob", 1); len(m) != 1 {
		t.Fatalf("bob has %d messages", len(m))
	}
	m := in.waitMessages("pp", 2)
	if len(m) != 2 {
		t.Fatalf("pp has %d notices, want a failure and a delivery report", len(m))
	}
	actions := map[string]string{}
	for _, x := range m {
		p, err := dsn.Parse([]byte(x))
		if err != nil {
			t.Fatalf("not a report: %v\n%s", err, x)
		}
		rc := p.Recipients[0]
		actions[rc.Get("Action")] = rc.Get("Final-Recipient") + " " + rc.Get("Diagnostic-Code") + " " + rc.Get("Status")
	}
	if f := actions["failed"]; !strings.Contains(f, "team@example.org") || !strings.Contains(f, "nosuchuser") || !strings.Contains(f, "5.1.1") {
		t.Errorf("failure report: %q", f)
	}
	if d := actions["delivered"]; !strings.Contains(d, "bob@example.org") || !strings.Contains(d, "2.0.0") {
		t.Errorf("delivery report: %q", d)
	}
}
