package smtpd_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

func TestEHLOAdvertisesExtensions(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	r := c.hello()
	want := []string{"PIPELINING", "SIZE 1048576", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"}
	got := strings.Join(r.lines[1:], ",")
	for _, w := range want {
		if !strings.Contains(","+got+",", ","+w+",") {
			t.Errorf("EHLO lacks %s: %v", w, r)
		}
	}
	if strings.Contains(got, "STARTTLS") {
		t.Errorf("STARTTLS advertised without a certificate: %v", r)
	}
	if !strings.HasPrefix(r.lines[0], "mx.example.org ") {
		t.Errorf("EHLO first line %q does not name the server", r.lines[0])
	}

	ht := newHarness(t, harnessOpts{tls: true})
	c = ht.dial("")
	if r := c.hello(); !strings.Contains(strings.Join(r.lines, ","), "STARTTLS") {
		t.Errorf("STARTTLS not advertised with a certificate: %v", r)
	}
}

func TestDeliverLocally(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("127.0.0.2") // an outside client: local delivery needs no relay right
	c.hello()
	c.expect("MAIL FROM:<sender@remote.example>", 250, "2.1.0")
	c.expect("RCPT TO:<pp@example.org>", 250, "2.1.5")
	r := c.sendData(simpleMessage)
	if r.code != 250 || r.enhanced() != "2.0.0" || !strings.Contains(r.text(), "queued as ") {
		t.Fatalf("end of data: %v", r)
	}
	id := r.text()[strings.Index(r.text(), "queued as ")+len("queued as "):]
	c.expect("QUIT", 221, "2.0.0")

	msgs := h.messages("pp")
	if len(msgs) != 1 {
		t.Fatalf("pp has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !strings.HasPrefix(m, "Return-Path: <sender@remote.example>\r\nReceived: from client.example ([127.0.0.2])\r\n\tby mx.example.org (posthorn) with ESMTP id "+id+"\r\n\tfor <pp@example.org>; ") {
		t.Errorf("trace fields wrong:\n%s", m)
	}
	if !strings.HasSuffix(m, simpleMessage) {
		t.Errorf("message body changed:\n%q", m)
	}
	// One structured log line for the transaction.
	logs := h.logs.String()
	if n := strings.Count(logs, `msg="smtp transaction"`); n != 1 {
		t.Errorf("%d transaction log lines, want 1:\n%s", n, logs)
	}
	for _, f := range []string{"client_ip=127.0.0.2", "from=sender@remote.example", "rcpts=[pp@example.org]", "queue_id=" + id, `result="250 2.0.0 OK: queued as ` + id + `"`} {
		if !strings.Contains(logs, f) {
			t.Errorf("log lacks %s:\n%s", f, logs)
		}
	}
	if strings.Contains(logs, "Hello there") {
		t.Error("the message body was logged")
	}
}

func TestTablesRouteRecipients(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("127.0.0.2")
	c.hello()
	c.expect("MAIL FROM:<sender@remote.example>", 250, "")
	c.expect("RCPT TO:<www@example.org>", 250, "")  // www -> webmaster -> root -> pp
	c.expect("RCPT TO:<info@example.net>", 550, "") // no such entry, no such account
	c.expect("RCPT TO:<sales@example.org>", 250, "")
	c.expect("RCPT TO:<postmaster>", 250, "") // RFC 5321 4.5.1: no domain needed
	// The virtusertable's own text comes back in the reply.
	r := c.cmd("RCPT TO:<leaked@example.org>")
	if r.code != 550 || !strings.Contains(r.text(), "No such user here") {
		t.Errorf("error:nouser: %v", r)
	}
	c.expect("RCPT TO:<nobody-here@example.org>", 550, "5.1.1")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Fatalf("data: %v", r)
	}
	// pp got it once (www and postmaster both lead to pp); bob once.
	if n := len(h.messages("pp")); n != 1 {
		t.Errorf("pp has %d messages, want 1", n)
	}
	if n := len(h.messages("bob")); n != 1 {
		t.Errorf("bob has %d messages, want 1", n)
	}
}

func TestForwardedToRemoteIsQueued(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("127.0.0.2")
	c.hello()
	c.expect("MAIL FROM:<sender@remote.example>", 250, "")
	c.expect("RCPT TO:<fwd@example.org>", 250, "") // virtusertable -> someone@remote.example
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	r := c.sendData(simpleMessage)
	if r.code != 250 {
		t.Fatal(r)
	}
	q := h.queue()
	if len(q) != 1 || len(q[0].Recipients) != 1 || q[0].Recipients[0].Address != "someone@remote.example" {
		t.Fatalf("queue = %+v", q)
	}
	if q[0].From != "sender@remote.example" || !strings.Contains(r.text(), q[0].ID) {
		t.Errorf("queue entry %+v does not match reply %v", q[0], r)
	}
	if len(h.messages("pp")) != 1 {
		t.Error("the local copy is missing")
	}
}

func TestRelayingRules(t *testing.T) {
	h := newHarness(t, harnessOpts{tables: map[string]string{
		"local-host-names": "example.org\n",
		"access":           "127.0.0.3\tRELAY\nConnect:127.0.0.5\tRELAY\nTo:partner.example\tRELAY\n",
		"relay-domains":    "relayed.example\n",
	}})
	h.dns.AddPTR("127.0.0.4", "trusted.example.org")
	h.writeTable("access", "127.0.0.3\tRELAY\nConnect:127.0.0.5\tRELAY\nTo:partner.example\tRELAY\nConnect:trusted.example.org\tRELAY\n")
	waitFor(t, func() bool { return h.watcher.Current().Access.Len() == 4 })

	for _, tc := range []struct {
		from, rcpt string
		want       int
	}{
		{"", "someone@remote.example", 250},          // 127.0.0.1 may relay
		{"127.0.0.2", "someone@remote.example", 550}, // an outside client may not
		{"127.0.0.3", "someone@remote.example", 250}, // access 127.0.0.3 RELAY
		{"127.0.0.4", "someone@remote.example", 250}, // verified PTR name is RELAY
		{"127.0.0.5", "someone@remote.example", 250}, // Connect: tag
		{"127.0.0.2", "someone@partner.example", 250},
		{"127.0.0.2", "someone@sub.relayed.example", 250}, // relay-domains covers subdomains
		{"127.0.0.2", "pp@example.org", 250},              // local, not a relay
	} {
		c := h.dial(tc.from)
		c.hello()
		c.expect("MAIL FROM:<sender@elsewhere.example>", 250, "")
		r := c.cmd("RCPT TO:<" + tc.rcpt + ">")
		if r.code != tc.want {
			t.Errorf("from %q to %s: %v, want %d", tc.from, tc.rcpt, r, tc.want)
		}
		if tc.want == 550 && (r.enhanced() != "5.7.1" || !strings.Contains(r.text(), "Relaying denied")) {
			t.Errorf("from %q to %s: %v, want 550 5.7.1 Relaying denied", tc.from, tc.rcpt, r)
		}
		c.cmd("QUIT")
	}
}

// Addresses that try to sneak through a relay check must not be relayed.
func TestSneakyAddressesDoNotRelay(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, rcpt := range []string{
		"<user%remote.example@example.org>",
		"<@example.org:user@remote.example>",
		"<@example.org,@mx.example.org:user@remote.example>",
		"<remote.example!user@example.org>",
		"<remote.example!user>",
		`<"user@remote.example"@example.org>`,
		`<"user%remote.example"@example.org>`,
		"<user@[192.0.2.1]>",
		"<user@[IPv6:2001:db8::1]>",
		"<user@remote.example.>",
		"<USER@REMOTE.EXAMPLE>",
	} {
		c := h.dial("127.0.0.2")
		c.hello()
		c.expect("MAIL FROM:<spammer@elsewhere.example>", 250, "")
		r := c.cmd("RCPT TO:" + rcpt)
		if r.code/100 == 2 {
			t.Errorf("RCPT TO:%s accepted from an outside client: %v", rcpt, r)
		}
		c.cmd("QUIT")
	}
	if q := h.queue(); len(q) != 0 {
		t.Errorf("something was queued: %+v", q)
	}
}

func TestOutOfOrderAndUnknownCommands(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	if g := c.read(); g.code != 220 {
		t.Fatal(g)
	}
	c.expect("MAIL FROM:<a@remote.example>", 503, "5.5.1") // before EHLO
	c.expect("EHLO client.example", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 503, "5.5.1")
	c.expect("DATA", 503, "5.5.1")
	c.expect("BDAT 0 LAST", 503, "5.5.1")
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("MAIL FROM:<a@remote.example>", 503, "5.5.1") // nested
	c.expect("DATA", 554, "5.5.1")                         // no valid recipients
	c.expect("FROB", 500, "5.5.2")
	c.expect("MAIL\x00 FROM:<a@b>", 500, "5.5.2")
	c.expect("EXPN root", 502, "5.5.1")
	c.expect("VRFY root", 252, "2.5.2")
	c.expect("NOOP", 250, "2.0.0")
	c.expect("HELP", 214, "2.0.0")
	c.expect("RSET", 250, "2.0.0")
	c.expect("EHLO", 501, "5.5.4")
	c.expect("STARTTLS", 502, "5.5.1") // not offered without a certificate
	c.expect("QUIT", 221, "2.0.0")
}

func TestMalformedPaths(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	for _, p := range []string{"MAIL FROM:sender@remote.example", "MAIL FROM:<sender@@remote.example>", "MAIL FROM:<sender@remote.example", "MAIL FROM:<a b@remote.example>"} {
		c.expect(p, 501, "5.1.7")
	}
	c.expect("MAIL FROM:<>", 250, "") // the null sender is fine
	for _, p := range []string{
		"RCPT TO:pp@example.org", "RCPT TO:<>", "RCPT TO:<pp@@example.org>", "RCPT TO:<pp@example.org",
		"RCPT TO:<pp@exa mple.org>", "RCPT TO:<pp>", "RCPT TO:<" + strings.Repeat("a", 65) + "@example.org>",
		"RCPT TO:<pp@" + strings.Repeat("a", 64) + ".org>",
	} {
		c.expect(p, 501, "5.1.3")
	}
	c.expect("RCPT TO:<pp@example.org> FOO=BAR", 555, "5.5.4")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
}

func TestLongLineAndTooManyErrors(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	c.expect("NOOP "+strings.Repeat("x", 5000), 500, "5.5.2")
	c.expect("NOOP", 250, "") // the session goes on
	// A client that only sends garbage is cut off.
	var last reply
	for i := 0; i < 30; i++ {
		c.send("GARBAGE\r\n")
		last = c.read()
		if last.code == 421 {
			break
		}
	}
	if last.code != 421 {
		t.Fatalf("after 30 bad commands: %v, want 421", last)
	}
	// Closed: EOF, or a reset when the 421 came right behind the previous
	// reply and the GARBAGE sent after that one reached a closed socket.
	if _, err := c.br.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection not closed after 421: %v", err)
	}
}

func TestTooManyRecipients(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	for i := 0; i < 100; i++ {
		c.expect("RCPT TO:<pp@example.org>", 250, "")
	}
	c.expect("RCPT TO:<pp@example.org>", 452, "4.5.3")
	c.expect("RCPT TO:<bob@example.org>", 452, "4.5.3") // still, and not a reason to disconnect
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Fatal(r)
	}
	if n := len(h.messages("pp")); n != 1 {
		t.Errorf("pp has %d copies, want 1", n)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *smtpdConfig) { c.MaxMessageBytes = 10000 }})
	c := h.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example> SIZE=20000", 552, "5.3.4")
	c.expect("MAIL FROM:<a@remote.example> SIZE=5000", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	big := simpleMessage + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 120)
	if r := c.sendData(big); r.code != 552 || r.enhanced() != "5.3.4" {
		t.Errorf("over-size message: %v", r)
	}
	// The session is usable afterwards, and nothing was stored.
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Fatal(r)
	}
	if n := len(h.messages("pp")); n != 1 {
		t.Errorf("pp has %d messages, want only the small one", n)
	}
}

func TestBareLFRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for name, body := range map[string]string{
		"bare LF in body":   "Subject: x\r\n\r\nline one\nline two\r\n",
		"bare CR in body":   "Subject: x\r\n\r\nline one\rline two\r\n",
		"bare LF in header": "Subject: x\nFrom: a@b\r\n\r\nbody\r\n",
	} {
		c := h.dial("")
		c.hello()
		c.expect("MAIL FROM:<a@remote.example>", 250, "")
		c.expect("RCPT TO:<pp@example.org>", 250, "")
		if r := c.sendData(body); r.code != 550 {
			t.Errorf("%s: %v, want 550", name, r)
		}
		c.expect("NOOP", 250, "")
	}
	if n := len(h.messages("pp")); n != 0 {
		t.Errorf("%d messages stored, want 0", n)
	}
}

// SMTP smuggling: a client ends the message with <LF>.<CR><LF> hoping that we
// see the end there while a server behind sees a second message. We refuse to
// guess and close.
func TestSmugglingAttempt(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	c.expect("DATA", 354, "")
	c.send("Subject: first\r\n\r\nhello\n.\r\nMAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n")
	r := c.read()
	if r.code != 521 {
		t.Fatalf("smuggling attempt: %v, want 521", r)
	}
	if _, err := c.br.ReadString('\n'); err == nil {
		t.Error("connection still open after 521")
	}
	if n := len(h.messages("pp")) + len(h.messages("bob")); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

func TestDisconnectDuringDataStoresNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	c.expect("DATA", 354, "")
	c.send("Subject: half\r\n\r\nthe first half")
	c.conn.Close()
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), "disconnected during DATA") })
	if n := len(h.messages("pp")); n != 0 {
		t.Errorf("%d messages stored after a broken DATA", n)
	}
}

func TestPipelining(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	// One write with a whole transaction up to DATA (RFC 2920), then the data.
	c.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<pp@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
	for i, want := range []int{250, 250, 550, 250, 354} {
		if r := c.read(); r.code != want {
			t.Fatalf("pipelined reply %d: %v, want %d", i, r, want)
		}
	}
	c.send(simpleMessage + ".\r\nMAIL FROM:<b@remote.example>\r\nRCPT TO:<pp@example.org>\r\nDATA\r\n")
	for i, want := range []int{250, 250, 250, 354} {
		if r := c.read(); r.code != want {
			t.Fatalf("second batch reply %d: %v, want %d", i, r, want)
		}
	}
	c.send(simpleMessage + ".\r\nQUIT\r\n")
	if r := c.read(); r.code != 250 {
		t.Fatal(r)
	}
	if r := c.read(); r.code != 221 {
		t.Fatal(r)
	}
	if n := len(h.messages("pp")); n != 2 {
		t.Errorf("pp has %d messages, want 2", n)
	}
}

func TestBDAT(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	half := len(simpleMessage) / 2
	c.send(fmt.Sprintf("BDAT %d\r\n%s", half, simpleMessage[:half]))
	if r := c.read(); r.code != 250 {
		t.Fatal(r)
	}
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(simpleMessage)-half, simpleMessage[half:]))
	if r := c.read(); r.code != 250 || !strings.Contains(r.text(), "queued as") {
		t.Fatal(r)
	}
	msgs := h.messages("pp")
	if len(msgs) != 1 || !strings.HasSuffix(msgs[0], simpleMessage) {
		t.Fatalf("BDAT message: %q", msgs)
	}
	// A bare LF in a chunk refuses the message, and BDAT 0 LAST ends it.
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	chunk := "X: y\nz\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
	if r := c.read(); r.code != 250 {
		t.Fatal(r)
	}
	c.expect("BDAT 0 LAST", 550, "")
	if n := len(h.messages("pp")); n != 1 {
		t.Errorf("pp has %d messages, want 1", n)
	}
}

func TestMailLoopRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *smtpdConfig) { c.MaxHops = 5 }})
	c := h.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	msg := strings.Repeat("Received: from x by y; Tue, 24 Nov 2026 00:00:00 +0000\r\n", 6) + simpleMessage
	if r := c.sendData(msg); r.code != 554 || r.enhanced() != "5.4.6" {
		t.Errorf("looping message: %v", r)
	}
}

func TestClientReturnPathRemoved(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.hello()
	c.expect("MAIL FROM:<real@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	if r := c.sendData("Return-Path: <forged@example.org>\r\n\tcontinued\r\n" + simpleMessage); r.code != 250 {
		t.Fatal(r)
	}
	m := h.messages("pp")[0]
	if strings.Contains(m, "forged") || strings.Contains(m, "continued") || strings.Count(m, "Return-Path:") != 1 {
		t.Errorf("client Return-Path kept:\n%s", m)
	}
}

func TestConnectionCapPerIP(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *smtpdConfig) { c.MaxConnsPerIP = 2 }})
	a, b := h.dial("127.0.0.2"), h.dial("127.0.0.2")
	a.read()
	b.read()
	third := h.dial("127.0.0.2")
	if r := third.read(); r.code != 421 || r.enhanced() != "4.7.0" {
		t.Errorf("third connection: %v, want 421 4.7.0", r)
	}
	other := h.dial("127.0.0.3") // another address is not affected
	if r := other.read(); r.code != 220 {
		t.Errorf("other client: %v", r)
	}
	a.cmd("QUIT")
	waitFor(t, func() bool {
		c := h.dial("127.0.0.2")
		defer c.conn.Close()
		return c.read().code == 220
	})
}

func TestCommandTimeout(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *smtpdConfig) { c.CommandTimeout = 200 * time.Millisecond }})
	c := h.dial("")
	c.hello()
	if r := c.read(); r.code != 421 || r.enhanced() != "4.4.2" {
		t.Errorf("idle client: %v, want 421 4.4.2", r)
	}
}

func TestAccessRejectAndDiscard(t *testing.T) {
	h := newHarness(t, harnessOpts{tables: map[string]string{
		"local-host-names": "example.org\n",
		"access": "Connect:127.0.0.6\tREJECT\n" +
			"From:spammer.example\tERROR:5.7.1:550 We do not want your mail\n" +
			"From:quiet.example\tDISCARD\n" +
			"To:bob@example.org\tERROR:4.2.2:450 mailbox full\n",
	}})
	c := h.dial("127.0.0.6")
	if r := c.read(); r.code != 554 {
		t.Errorf("rejected client greeting: %v", r)
	}
	c.expect("EHLO x", 503, "")
	c.expect("QUIT", 221, "")

	c = h.dial("127.0.0.2")
	c.hello()
	r := c.cmd("MAIL FROM:<a@mail.spammer.example>")
	if r.code != 550 || r.enhanced() != "5.7.1" || !strings.Contains(r.text(), "We do not want your mail") {
		t.Errorf("From: ERROR: %v", r)
	}
	c.expect("MAIL FROM:<a@quiet.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Errorf("discarded message: %v", r)
	}
	if n := len(h.messages("pp")); n != 0 {
		t.Errorf("DISCARD stored %d messages", n)
	}
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<bob@example.org>", 450, "4.2.2")
}

func TestTableReloadWithoutRestart(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("127.0.0.2")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<new@example.org>", 550, "")
	h.writeTable("virtusertable", defaultTables["virtusertable"]+"new@example.org\tbob\n")
	waitFor(t, func() bool {
		return c.cmd("RCPT TO:<new@example.org>").code == 250
	})
	// A broken table is not loaded: the previous one stays in force.
	h.writeTable("virtusertable", "broken-line-without-value@example.org\n")
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), "virtusertable:1") })
	c.expect("RCPT TO:<new@example.org>", 250, "")
	c.expect("RCPT TO:<info@example.org>", 250, "")
}

func TestStartTLSDropsPipelinedPlaintext(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	c := h.dial("")
	c.hello()
	// CVE-2011-0411: commands sent in the clear right after STARTTLS must not
	// run inside the TLS session.
	c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<injected@remote.example>\r\n")
	if r := c.read(); r.code != 220 {
		t.Fatal(r)
	}
	tc := tls.Client(c.conn, h.tlsConf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.br = tc, newReader(tc)
	// Had the injected MAIL run, this EHLO would still work but MAIL would be
	// "nested"; and RCPT would be accepted without a MAIL.
	c.expect("RCPT TO:<pp@example.org>", 503, "5.5.1") // HELO state is forgotten too
	r := c.expect("EHLO client.example", 250, "")
	if strings.Contains(strings.Join(r.lines, ","), "STARTTLS") {
		t.Error("STARTTLS offered again inside TLS")
	}
	c.expect("RCPT TO:<pp@example.org>", 503, "5.5.1")
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Fatal(r)
	}
	m := h.messages("pp")[0]
	if !strings.Contains(m, "with ESMTPS (TLS") {
		t.Errorf("Received does not say ESMTPS and TLS:\n%s", m)
	}
}

// Go's SMTP client (go-smtp) sends a message with PIPELINING and CHUNKING.
func TestGoSMTPClient(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c, err := gosmtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("sender@remote.example", []string{"pp@example.org", "bob@example.org"}, strings.NewReader(simpleMessage)); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if len(h.messages("pp")) != 1 || len(h.messages("bob")) != 1 {
		t.Error("message not delivered to both")
	}
}

func TestShutdownLetsTransactionFinish(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	busy := h.dial("")
	busy.hello()
	busy.expect("MAIL FROM:<a@remote.example>", 250, "")
	busy.expect("RCPT TO:<pp@example.org>", 250, "")
	busy.expect("DATA", 354, "")
	busy.send("Subject: x\r\n\r\n")
	idle := h.dial("")
	idle.hello()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	if r := idle.read(); r.code != 421 {
		t.Errorf("idle client at shutdown: %v, want 421", r)
	}
	busy.send("body\r\n.\r\n")
	if r := busy.read(); r.code != 250 {
		t.Errorf("transaction in progress at shutdown: %v, want 250", r)
	}
	if r := busy.read(); r.code != 421 {
		t.Errorf("after the transaction: %v, want 421", r)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Error("still accepting after Shutdown")
	}
	if len(h.messages("pp")) != 1 {
		t.Error("the finished transaction was not stored")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkDeliveryOverSMTP is the whole delivery path: a transaction over a
// loopback connection, parsed, stored durably and acknowledged, from
// parallel clients.
func BenchmarkDeliveryOverSMTP(b *testing.B) {
	h := newHarness(b, harnessOpts{})
	msg := simpleMessage + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 50)
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(10)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := h.dial("")
		c.hello()
		for pb.Next() {
			c.send("MAIL FROM:<a@remote.example>\r\n")
			if r := c.read(); r.code != 250 {
				b.Error(r)
				return
			}
			c.send("RCPT TO:<pp@example.org>\r\n")
			c.read()
			c.send("DATA\r\n")
			c.read()
			c.send(msg + ".\r\n")
			if r := c.read(); r.code != 250 {
				b.Error(r)
				return
			}
		}
	})
}
