package smtpd_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"

	"github.com/posthorn/posthorn/internal/auth"
)

// outside plays a client that is not loopback for the plain-text rule: only
// 127.0.0.1 and ::1 are.
const outside = "127.0.0.2"

func plainResp(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// noDelay is a throttle that never sleeps, so that tests of many failures run
// at once; locking still applies.
var noDelay = auth.ThrottleConfig{Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}

func submissionHarness(t *testing.T) *harness {
	return newHarness(t, harnessOpts{tls: true, submission: true, auth: &auth.Options{Throttle: noDelay}})
}

// startTLS runs STARTTLS and the handshake; the session continues in TLS.
func (c *client) startTLS(conf *tls.Config) {
	c.t.Helper()
	c.expect("STARTTLS", 220, "2.0.0")
	tc := tls.Client(c.conn, conf)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.br = tc, newReader(tc)
}

// login says EHLO over TLS and logs in with PLAIN.
func (h *harness) login(localIP, user string) *client {
	h.t.Helper()
	c := h.dial(localIP)
	c.hello()
	c.startTLS(h.tlsConf)
	c.expect("EHLO client.example", 250, "")
	c.expect("AUTH PLAIN "+plainResp(user, "secret-"+user), 235, "2.7.0")
	return c
}

// authLine returns the EHLO reply's AUTH keyword line, "" when there is none.
func authLine(r reply) string {
	for _, l := range r.lines {
		if strings.HasPrefix(l, "AUTH ") {
			return l
		}
	}
	return ""
}

// AUTH is offered where a password may pass: over TLS, from 127.0.0.1, or
// with allow_plaintext; before STARTTLS from elsewhere it is neither offered
// nor taken (RFC 4954 section 4, 538 5.7.11), SCRAM included.
func TestAuthOnlyWhereAPasswordMayPass(t *testing.T) {
	all := "AUTH SCRAM-SHA-256 PLAIN LOGIN"
	for _, tc := range []struct {
		name       string
		allowPlain bool
		from       string
		tls        bool
		want       string // the AUTH line, "" for none
	}{
		{"outside, clear text", false, outside, false, ""},
		{"outside, after STARTTLS", false, outside, true, all},
		{"loopback, clear text", false, "", false, all},
		{"outside, clear text, allow_plaintext", true, outside, false, all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: true, submission: true, auth: &auth.Options{AllowPlaintext: tc.allowPlain, Throttle: noDelay}})
			c := h.dial(tc.from)
			r := c.hello()
			if tc.tls {
				c.startTLS(h.tlsConf)
				r = c.expect("EHLO client.example", 250, "")
			}
			if got := authLine(r); got != tc.want {
				t.Fatalf("EHLO AUTH line %q, want %q (%v)", got, tc.want, r)
			}
			if tc.want == "" {
				for _, cmd := range []string{
					"AUTH PLAIN " + plainResp("pp", "secret-pp"),
					"AUTH LOGIN",
					"AUTH SCRAM-SHA-256",
				} {
					c.expect(cmd, 538, "5.7.11")
				}
				c.expect("MAIL FROM:<pp@example.org>", 530, "5.7.0")
				return
			}
			c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 235, "2.7.0")
			c.expect("MAIL FROM:<pp@example.org>", 250, "")
		})
	}
}

// scramClient adapts xdg-go/scram (an independent SCRAM implementation) to
// go-sasl's client interface.
type scramClient struct{ conv *scram.ClientConversation }

func newSCRAM(t *testing.T, user, password string) sasl.Client {
	c, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	return scramClient{c.NewConversation()}
}

func (c scramClient) Start() (string, []byte, error) {
	first, err := c.conv.Step("")
	return "SCRAM-SHA-256", []byte(first), err
}

func (c scramClient) Next(challenge []byte) ([]byte, error) {
	r, err := c.conv.Step(string(challenge))
	return []byte(r), err
}

// Go's SMTP client (go-smtp with go-sasl's PLAIN and LOGIN, and xdg-go/scram)
// logs in over STARTTLS and submits; wrong passwords, another account's
// password included, get 535 5.7.8.
func TestAuthMechanismsWithGoClient(t *testing.T) {
	h := submissionHarness(t)
	for _, tc := range []struct {
		name   string
		client func() sasl.Client
		ok     bool
	}{
		{"PLAIN", func() sasl.Client { return sasl.NewPlainClient("", "pp", "secret-pp") }, true},
		{"PLAIN with authzid", func() sasl.Client { return sasl.NewPlainClient("pp", "pp", "secret-pp") }, true},
		{"LOGIN", func() sasl.Client { return sasl.NewLoginClient("pp", "secret-pp") }, true},
		{"SCRAM-SHA-256", func() sasl.Client { return newSCRAM(t, "pp", "secret-pp") }, true},
		{"PLAIN, wrong password", func() sasl.Client { return sasl.NewPlainClient("", "pp", "secret-px") }, false},
		{"PLAIN, bob's password for pp", func() sasl.Client { return sasl.NewPlainClient("", "pp", "secret-bob") }, false},
		{"PLAIN, as bob for pp", func() sasl.Client { return sasl.NewPlainClient("pp", "bob", "secret-bob") }, false},
		{"LOGIN, bob's password for pp", func() sasl.Client { return sasl.NewLoginClient("pp", "secret-bob") }, false},
		{"SCRAM-SHA-256, bob's password for pp", func() sasl.Client { return newSCRAM(t, "pp", "secret-bob") }, false},
		{"SCRAM-SHA-256, unknown user", func() sasl.Client { return newSCRAM(t, "nobody", "secret-pp") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(outside)}}
			conn, err := d.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			c, err := gosmtp.NewClientStartTLS(conn, h.tlsConf)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Auth(tc.client())
			if !tc.ok {
				var se *gosmtp.SMTPError
				if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 7, 8}) {
					t.Fatalf("AUTH: %v, want 535 5.7.8", err)
				}
				// Still not logged in.
				var me *gosmtp.SMTPError
				if err := c.Mail("pp@example.org", nil); !errors.As(err, &me) || me.Code != 530 {
					t.Errorf("MAIL after a failed login: %v, want 530", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			subject := "Subject: " + tc.name
			if err := c.SendMail("pp@example.org", []string{"bob@example.org"}, strings.NewReader(
				"From: pp@example.org\r\nTo: bob@example.org\r\n"+subject+"\r\n\r\nhi\r\n")); err != nil {
				t.Fatal(err)
			}
			var got string
			for _, m := range h.messages("bob") {
				if strings.Contains(m, subject+"\r\n") {
					got = m
				}
			}
			if !regexp.MustCompile(`(?m)^\tby mx\.example\.org \(posthorn\) with ESMTPSA \(TLS 1\.[23] `).MatchString(got) {
				t.Errorf("Received: does not say ESMTPSA over TLS:\n%s", got)
			}
			received := got[strings.Index(got, "Received:"):strings.Index(got, "\r\nFrom:")]
			if regexp.MustCompile(`\bpp\b`).MatchString(received) {
				t.Errorf("Received: names the user:\n%s", received)
			}
		})
	}
}

// The SASL exchange itself over a raw connection: challenges, cancel,
// malformed responses, order rules (RFC 4954 section 4).
func TestAuthExchange(t *testing.T) {
	h := submissionHarness(t)
	c := h.dial("")
	if g := c.read(); g.code != 220 {
		t.Fatal(g)
	}
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 503, "5.5.1") // EHLO first
	c.expect("HELO client.example", 250, "")
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 503, "5.5.1") // EHLO, not HELO
	c.expect("EHLO client.example", 250, "")
	c.expect("AUTH", 501, "5.5.4")
	c.expect("AUTH CRAM-MD5", 504, "5.5.4")
	c.expect("AUTH PLAIN !!!notbase64", 501, "5.5.2")
	c.expect("AUTH PLAIN =", 501, "5.5.2") // an empty message is not PLAIN

	// LOGIN asks for the user name and the password; "*" cancels.
	if r := c.expect("AUTH LOGIN", 334, ""); r.lines[0] != b64("Username:") {
		t.Errorf("LOGIN's first challenge %q", r.lines[0])
	}
	c.expect("*", 501, "5.0.0")
	if r := c.expect("AUTH LOGIN "+b64("pp"), 334, ""); r.lines[0] != b64("Password:") {
		t.Errorf("LOGIN's challenge after an initial user name %q", r.lines[0])
	}
	c.expect("not base64!", 501, "5.5.2")
	// A response line longer than RFC 4954's 12288 octets.
	c.expect("AUTH PLAIN", 334, "")
	c.expect(strings.Repeat("A", 13000), 500, "5.5.6")
	// A long but allowed initial response (a 9000-octet password) is read
	// whole and checked: it is wrong, not too long.
	c.expect("AUTH PLAIN "+plainResp("pp", strings.Repeat("x", 9000)), 535, "5.7.8")

	// PLAIN without an initial response: an empty challenge ("334 ").
	c.send("AUTH PLAIN\r\n")
	line, err := c.br.ReadString('\n')
	if err != nil || line != "334 \r\n" {
		t.Fatalf("PLAIN's challenge %q %v", line, err)
	}
	c.expect(plainResp("pp", "secret-pp"), 235, "2.7.0")
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 503, "5.5.1") // only once
	r := c.expect("EHLO client.example", 250, "")
	if authLine(r) != "" {
		t.Errorf("AUTH still offered after the login: %v", r)
	}
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
	c.expect("QUIT", 221, "")

	// AUTH inside a transaction: 503 (port 25, from 127.0.0.1, which may
	// send without a login).
	h25 := newHarness(t, harnessOpts{tls: true, auth: &auth.Options{Throttle: noDelay}})
	c = h25.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 503, "5.5.1")
	c.expect("RSET", 250, "")
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 235, "2.7.0")
}

// Without an Authenticator there is no AUTH, as before.
func TestNoAuthWithoutAuthenticator(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	c := h.dial("")
	if r := c.hello(); authLine(r) != "" {
		t.Errorf("AUTH offered: %v", r)
	}
	c.expect("AUTH PLAIN "+plainResp("pp", "x"), 502, "5.5.1")
}

// Repeated failures lock the client out: 454 4.7.0, even for the right
// password, until the lock ends.
func TestAuthThrottled(t *testing.T) {
	throttle := noDelay
	throttle.LockAfter = 4
	h := newHarness(t, harnessOpts{tls: true, submission: true, auth: &auth.Options{Throttle: throttle}})
	c := h.dial(outside)
	c.hello()
	c.startTLS(h.tlsConf)
	c.expect("EHLO client.example", 250, "")
	for i := 0; i < 4; i++ {
		c.expect("AUTH PLAIN "+plainResp("pp", "guess"), 535, "5.7.8")
	}
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 454, "4.7.0")
	c.expect("AUTH SCRAM-SHA-256", 454, "4.7.0") // the address is locked for every mechanism
	// From another address the account itself is locked too.
	c2 := h.dial("127.0.0.3")
	c2.hello()
	c2.startTLS(h.tlsConf)
	c2.expect("EHLO client.example", 250, "")
	c2.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 454, "4.7.0")
	// bob, from the third address, is not affected.
	c2.expect("AUTH PLAIN "+plainResp("bob", "secret-bob"), 235, "2.7.0")
	if !regexp.MustCompile(`msg="auth failed" ip=127\.0\.0\.2 service=smtp mech=PLAIN user=\S* reason=throttled`).MatchString(h.logs.String()) {
		t.Errorf("no throttled line for fail2ban in the log:\n%s", h.logs.String())
	}
	if strings.Contains(h.logs.String(), "guess") || strings.Contains(h.logs.String(), "secret-") {
		t.Error("a password is in the log")
	}
}

// MAIL FROM must be one of the account's addresses: its name at each local
// domain, and the virtusertable/aliases addresses that lead only to it.
func TestEnvelopeSenderOwnership(t *testing.T) {
	h := submissionHarness(t)
	c := h.login(outside, "pp")
	for _, tc := range []struct {
		from string
		code int
	}{
		{"pp@example.org", 250},
		{"pp@mx.example.org", 250},
		{"PP+lists@Example.NET", 250},
		{"info@example.org", 250},      // virtusertable -> pp
		{"root@example.org", 250},      // aliases root: pp
		{"webmaster@example.org", 250}, // webmaster: root, root: pp
		{"sales@example.org", 553},     // virtusertable -> bob
		{"bob@example.org", 553},
		{"pp@remote.example", 553},
		{"nobody@example.org", 553},
		{"", 553}, // the null sender
	} {
		r := c.cmd("MAIL FROM:<" + tc.from + ">")
		if r.code != tc.code || tc.code == 553 && r.enhanced() != "5.7.1" {
			t.Errorf("MAIL FROM:<%s> as pp: %v, want %d", tc.from, r, tc.code)
		}
		if r.code == 250 {
			c.expect("RSET", 250, "")
		}
	}
	// bob owns sales@ but not info@.
	c = h.login(outside, "bob")
	c.expect("MAIL FROM:<sales@example.org>", 250, "")
	c.expect("RSET", 250, "")
	c.expect("MAIL FROM:<info@example.org>", 553, "5.7.1")
}

// An alias that reaches other accounts too is nobody's to send as.
func TestSharedAliasIsNotOwned(t *testing.T) {
	tables := map[string]string{}
	for k, v := range defaultTables {
		tables[k] = v
	}
	tables["aliases"] += "staff: pp, bob\n"
	h := newHarness(t, harnessOpts{tables: tables, tls: true, submission: true, auth: &auth.Options{Throttle: noDelay}})
	c := h.login(outside, "pp")
	c.expect("MAIL FROM:<staff@example.org>", 553, "5.7.1")
}

// The From: and Sender: fields are checked after the data.
func TestHeaderSenderOwnership(t *testing.T) {
	h := submissionHarness(t)
	for _, tc := range []struct {
		name   string
		header string
		code   int
	}{
		{"own address", "From: PP <pp@example.org>\r\n", 250},
		{"virtusertable address", "From: \"Info desk\" <info@example.org>\r\n", 250},
		{"two of pp's", "From: pp@example.org, info@example.org\r\nSender: pp@example.org\r\n", 250},
		{"encoded display name in an unknown charset", "From: =?x-unknown?Q?P=FC?= <pp@example.org>\r\n", 250},
		{"UTF-8 display name", "From: Jürgen <pp@example.org>\r\n", 250},
		{"Latin-1 display name", "From: J\xfcrgen <pp@example.org>\r\n", 250},
		{"Latin-1 in the address", "From: pp\xfc@example.org\r\n", 553},
		{"group of pp's", "From: Us: pp@example.org, info@example.org;\r\n", 250},
		{"group hiding bob", "From: Us: pp@example.org, bob@example.org;\r\n", 553},
		{"empty group", "From: undisclosed:;\r\n", 553},
		{"another account's", "From: sales@example.org\r\n", 553},
		{"remote", "From: \"pp@example.org\" <boss@remote.example>\r\n", 553},
		{"one of two not pp's", "From: pp@example.org, bob@example.org\r\n", 553},
		{"folded onto a second line", "From: pp@example.org,\r\n bob@example.org\r\n", 553},
		{"second From: field", "From: pp@example.org\r\nFrom: bob@example.org\r\n", 553},
		{"Sender: not pp's", "From: pp@example.org\r\nSender: bob@example.org\r\n", 553},
		{"comment looks like pp", "From: boss@remote.example (pp@example.org)\r\n", 553},
		{"unreadable", "From: <pp@example.org\r\n", 553},
		{"empty", "From:\r\n", 553},
		{"too long to check", "From: pp@example.org,\r\n" + strings.Repeat(" pp@example.org,\r\n", 1200) + " pp@example.org\r\n", 553},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.login(outside, "pp")
			c.expect("MAIL FROM:<pp@example.org>", 250, "")
			c.expect("RCPT TO:<bob@example.org>", 250, "")
			r := c.sendData(tc.header + "Subject: " + tc.name + "\r\n\r\nbody\r\n")
			if r.code != tc.code || tc.code == 553 && r.enhanced() != "5.7.1" {
				t.Fatalf("%v, want %d", r, tc.code)
			}
			delivered := false
			for _, m := range h.messages("bob") {
				delivered = delivered || strings.Contains(m, "Subject: "+tc.name+"\r\n")
			}
			if delivered != (tc.code == 250) {
				t.Errorf("delivered = %v after %v", delivered, r)
			}
			// The session goes on.
			c.expect("NOOP", 250, "")
		})
	}
}

// BDAT goes through the same header check.
func TestHeaderSenderOwnershipWithBDAT(t *testing.T) {
	h := submissionHarness(t)
	c := h.login(outside, "pp")
	msg := "From: bob@example.org\r\n\r\nhi\r\n"
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
	c.expect("RCPT TO:<bob@example.org>", 250, "")
	c.send("BDAT 10\r\n" + msg[:10])
	if r := c.read(); r.code != 250 {
		t.Fatal(r)
	}
	c.send("BDAT " + strconv.Itoa(len(msg)-10) + " LAST\r\n" + msg[10:])
	if r := c.read(); r.code != 553 || r.enhanced() != "5.7.1" {
		t.Fatalf("%v, want 553 5.7.1", r)
	}
	c.expect("NOOP", 250, "")
	if m := h.messages("bob"); len(m) != 0 {
		t.Errorf("delivered: %q", m)
	}
}

// A logged-in user may relay; nobody else from outside may.
func TestRelayOnlyAfterAuth(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true, auth: &auth.Options{Throttle: noDelay}}) // port 25 offers AUTH after TLS
	c := h.dial(outside)
	c.hello()
	c.startTLS(h.tlsConf)
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
	c.expect("RCPT TO:<friend@remote.example>", 550, "5.7.1")
	c.expect("RSET", 250, "")
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 235, "2.7.0")
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
	c.expect("RCPT TO:<friend@remote.example>", 250, "2.1.5")
	if r := c.sendData("From: pp@example.org\r\nTo: friend@remote.example\r\nSubject: out\r\n\r\nhi\r\n"); r.code != 250 {
		t.Fatal(r)
	}
	q := h.queue()
	if len(q) != 1 || q[0].From != "pp@example.org" || len(q[0].Recipients) != 1 || q[0].Recipients[0].Address != "friend@remote.example" {
		t.Fatalf("queue: %+v", q)
	}
	// On port 25 the sender is checked too once logged in; Date: and
	// Message-ID: are not added there.
	c.expect("MAIL FROM:<sales@example.org>", 553, "5.7.1")
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
	c.expect("RCPT TO:<bob@example.org>", 250, "")
	if r := c.sendData("From: pp@example.org\r\nSubject: no date\r\n\r\nhi\r\n"); r.code != 250 {
		t.Fatal(r)
	}
	m := h.messages("bob")[0]
	if strings.Contains(m, "\r\nDate:") || strings.Contains(m, "\r\nMessage-ID:") {
		t.Errorf("Date:/Message-ID: added on port 25:\n%s", m)
	}
}

// A submitted message without Date:, Message-ID: or From: gets them (RFC
// 6409 section 8); one that has them keeps its own.
func TestSubmissionAddsMissingFields(t *testing.T) {
	h := submissionHarness(t)
	c := h.login(outside, "pp")
	send := func(msg string) string {
		t.Helper()
		c.expect("MAIL FROM:<info@example.org>", 250, "")
		c.expect("RCPT TO:<bob@example.org>", 250, "")
		if r := c.sendData(msg); r.code != 250 {
			t.Fatal(r)
		}
		ms := h.messages("bob")
		return ms[len(ms)-1]
	}
	before := time.Now()
	m := send("To: bob@example.org\r\nSubject: bare\r\n\r\nbody\r\n")
	header, body, _ := strings.Cut(m, "\r\n\r\n")
	if body != "body\r\n" {
		t.Errorf("body %q", body)
	}
	dates := regexp.MustCompile(`(?m)^Date: (.*)\r$`).FindAllStringSubmatch(header+"\r\n", -1)
	if len(dates) != 1 {
		t.Fatalf("Date: fields %q in\n%s", dates, header)
	}
	d, err := time.Parse(time.RFC1123Z, dates[0][1])
	if err != nil || d.Before(before.Add(-time.Second).Truncate(time.Second)) || d.After(time.Now().Add(time.Second)) {
		t.Errorf("Date: %q (%v), sent at %v", dates[0][1], err, before)
	}
	if !regexp.MustCompile(`(?m)^Message-ID: <[^<>@\s]+@mx\.example\.org>\r$`).MatchString(header + "\r\n") {
		t.Errorf("no Message-ID: in\n%s", header)
	}
	if !strings.Contains(header, "\r\nFrom: <info@example.org>") {
		t.Errorf("From: the envelope sender not added:\n%s", header)
	}
	// Two messages get two different Message-IDs.
	m2 := send("Subject: bare 2\r\n\r\nbody\r\n")
	id := regexp.MustCompile(`Message-ID: (\S+)`)
	if id.FindString(m) == id.FindString(m2) {
		t.Errorf("the same Message-ID twice: %s", id.FindString(m))
	}
	// A header without a body, and without a final CRLF (BDAT).
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
	c.expect("RCPT TO:<bob@example.org>", 250, "")
	headerOnly := "Subject: header only"
	c.send("BDAT " + strconv.Itoa(len(headerOnly)) + " LAST\r\n" + headerOnly)
	if r := c.read(); r.code != 250 {
		t.Fatal(r)
	}
	ms := h.messages("bob")
	m3 := ms[len(ms)-1]
	if !regexp.MustCompile(`\r\nSubject: header only\r\nDate: [^\r\n]+\r\nMessage-ID: <[^\r\n]+>\r\nFrom: <pp@example\.org>\r\n$`).MatchString(m3) {
		t.Errorf("header-only message:\n%q", m3)
	}

	// Fields the client gave are kept, not doubled.
	own := "From: pp@example.org\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\nMessage-Id: <own@client.example>\r\nSubject: complete\r\n\r\nbody\r\n"
	m = send(own)
	if !strings.HasSuffix(m, own) || strings.Count(m, "Date:") != 1 || strings.Count(strings.ToLower(m), "message-id:") != 1 || strings.Count(m, "From:") != 1 {
		t.Errorf("complete message changed:\n%s", m)
	}
}

// CVE-2011-0411 on the submission port: an AUTH and a MAIL pipelined in
// clear text after STARTTLS are thrown away, not run inside TLS.
func TestSubmissionStartTLSDropsPipelinedPlaintext(t *testing.T) {
	h := submissionHarness(t)
	c := h.dial(outside)
	c.hello()
	c.send("STARTTLS\r\nEHLO x\r\nAUTH PLAIN " + plainResp("pp", "secret-pp") + "\r\nMAIL FROM:<pp@example.org>\r\n")
	if r := c.read(); r.code != 220 {
		t.Fatal(r)
	}
	tc := tls.Client(c.conn, h.tlsConf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.br = tc, newReader(tc)
	// Had the injected commands run, MAIL would be "nested" or accepted.
	c.expect("MAIL FROM:<pp@example.org>", 503, "5.5.1") // no EHLO inside TLS yet
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<pp@example.org>", 530, "5.7.0") // not logged in
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 235, "2.7.0")
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
}

// A login made in clear text from 127.0.0.1 does not survive STARTTLS (RFC
// 3207 section 4.2).
func TestStartTLSForgetsTheLogin(t *testing.T) {
	h := submissionHarness(t)
	c := h.dial("")
	c.hello()
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 235, "2.7.0")
	c.startTLS(h.tlsConf)
	r := c.expect("EHLO client.example", 250, "")
	if authLine(r) == "" {
		t.Errorf("AUTH not offered again after STARTTLS: %v", r)
	}
	c.expect("MAIL FROM:<pp@example.org>", 530, "5.7.0")
}

// Port 465: TLS from the first byte (RFC 8314), then the same submission.
func TestImplicitTLS(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true, submission: true, implicitTLS: true, auth: &auth.Options{Throttle: noDelay}})
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(outside)}}
	conn, err := tls.DialWithDialer(d, "tcp", h.addr, h.tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: t, conn: conn, br: newReader(conn)}
	r := c.hello()
	if strings.Contains(r.text(), "STARTTLS") || authLine(r) != "AUTH SCRAM-SHA-256 PLAIN LOGIN" {
		t.Errorf("EHLO on 465: %v", r)
	}
	c.expect("MAIL FROM:<pp@example.org>", 530, "5.7.0")
	c.expect("AUTH PLAIN "+plainResp("pp", "secret-pp"), 235, "2.7.0")
	c.expect("MAIL FROM:<pp@example.org>", 250, "")
	c.expect("RCPT TO:<bob@example.org>", 250, "")
	if r := c.sendData("From: pp@example.org\r\nSubject: over 465\r\n\r\nhi\r\n"); r.code != 250 {
		t.Fatal(r)
	}
	if m := h.messages("bob"); len(m) != 1 || !strings.Contains(m[0], "with ESMTPSA (TLS") {
		t.Errorf("bob got %q", m)
	}
	// A client that does not speak TLS gets nothing and is dropped.
	plain, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write([]byte("EHLO x\r\n"))
	plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, _ := plain.Read(buf)
	if strings.Contains(string(buf[:n]), "220") {
		t.Errorf("greeting in clear text on the implicit TLS port: %q", buf[:n])
	}
}
