package smtpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/smtpc/smtptest"
)

var ctx = context.Background()

const testMsg = "Subject: hi\r\n\r\nhello\r\n"

// setup returns a fake DNS server and a client that asks it and connects to
// port for MX delivery.
func setup(t *testing.T, port int) (*dnstest.Server, *Client) {
	t.Helper()
	dns := dnstest.Start(t)
	c := &Client{
		Hostname:       "out.posthorn.test",
		Resolver:       dnsutil.New(dns.Addr),
		Port:           port,
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 10 * time.Second,
		DataTimeout:    10 * time.Second,
	}
	return dns, c
}

func send(t *testing.T, c *Client, d Destination, env *Envelope, msg string) ([]Result, error) {
	t.Helper()
	cn, err := c.Connect(ctx, d)
	if err != nil {
		return nil, err
	}
	defer cn.Close()
	return cn.Send(ctx, env, strings.NewReader(msg))
}

func env(from string, rcpts ...string) *Envelope {
	e := &Envelope{From: from}
	for _, r := range rcpts {
		e.Recipients = append(e.Recipients, Recipient{Address: r})
	}
	return e
}

func TestMXByPreferenceEveryMXTried(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Addr: "127.0.0.3:0"})
	dns, c := setup(t, srv.Port())
	// mx1 is preferred but nothing listens there; mx2 takes the mail.
	dns.MustAdd(t,
		"example.test. 60 IN MX 20 mx2.example.test.",
		"example.test. 60 IN MX 10 mx1.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.2",
		"mx2.example.test. 60 IN A 127.0.0.3",
	)
	cn, err := c.Connect(ctx, Destination{Host: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if cn.Host() != "mx2.example.test" {
		t.Errorf("connected to %q, want mx2.example.test", cn.Host())
	}
	res, err := cn.Send(ctx, env("a@posthorn.test", "b@example.test"), strings.NewReader(testMsg))
	cn.Close()
	if err != nil || len(res) != 1 || !res[0].Delivered {
		t.Fatalf("send: %+v %v", res, err)
	}
	m := srv.Wait(1, 5*time.Second)
	if len(m) != 1 || m[0].From != "a@posthorn.test" || len(m[0].To) != 1 || m[0].To[0] != "b@example.test" {
		t.Fatalf("received %+v", m)
	}
}

func TestDNSOutcomes(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Addr: "127.0.0.4:0"})
	dns, c := setup(t, srv.Port())
	dns.MustAdd(t,
		"nomx.test. 60 IN A 127.0.0.4", // no MX: the A record is the host
		"nullmx.test. 60 IN MX 0 .",
		"nullmx.test. 60 IN A 127.0.0.4",
		"loop.test. 60 IN MX 10 out.posthorn.test.",
		"out.posthorn.test. 60 IN A 127.0.0.4",
		"lower.test. 60 IN MX 10 other.test.",
		"lower.test. 60 IN MX 20 out.posthorn.test.",
		"other.test. 60 IN A 127.0.0.4",
	)
	for _, tc := range []struct {
		domain    string
		delivered bool
		status    string
		temporary bool
	}{
		{"nomx.test", true, "", false},
		{"nullmx.test", false, "5.1.10", false}, // RFC 7505
		{"nosuch.test", false, "5.1.2", false},  // NXDOMAIN
		{"loop.test", false, "5.4.6", false},    // we are the best MX
		{"lower.test", true, "", false},         // MX preferred to us are tried
		{"[127.0.0.4]", true, "", false},        // an address literal
		{"[nomx.test]", true, "", false},        // no MX lookup
	} {
		t.Run(tc.domain, func(t *testing.T) {
			d := Destination{Host: strings.Trim(tc.domain, "[]"), NoMX: strings.HasPrefix(tc.domain, "[")}
			res, err := send(t, c, d, env("a@posthorn.test", "x@"+d.Host), testMsg)
			if tc.delivered {
				if err != nil || !res[0].Delivered {
					t.Fatalf("not delivered: %+v %v", res, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Temporary != tc.temporary {
				t.Fatalf("error %#v (%v), want status %s temporary %v", e, err, tc.status, tc.temporary)
			}
		})
	}
}

func TestConnectionRefusedIsTemporary(t *testing.T) {
	dns, c := setup(t, 1) // nothing listens on port 1
	dns.MustAdd(t, "down.test. 60 IN A 127.0.0.1")
	_, err := c.Connect(ctx, Destination{Host: "down.test"})
	var e *Error
	if !errors.As(err, &e) || !e.Temporary || e.Status != "4.4.1" {
		t.Fatalf("error %#v (%v)", e, err)
	}
}

func TestSTARTTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: true, Hostname: "mx.tls.test"})
	dns, c := setup(t, srv.Port())
	dns.MustAdd(t, "tls.test. 60 IN MX 10 mx.tls.test.", "mx.tls.test. 60 IN A 127.0.0.1")
	for _, trusted := range []bool{true, false} {
		c.RootCAs = nil
		if trusted {
			c.RootCAs = srv.RootCAs
		}
		cn, err := c.Connect(ctx, Destination{Host: "tls.test"})
		if err != nil {
			t.Fatal(err)
		}
		enc, ver := cn.TLS()
		// An MX whose certificate we cannot verify still gets the mail
		// encrypted (opportunistic TLS).
		if !enc || ver != trusted {
			t.Errorf("trusted=%v: encrypted %v verified %v", trusted, enc, ver)
		}
		res, err := cn.Send(ctx, env("a@posthorn.test", "b@tls.test"), strings.NewReader(testMsg))
		cn.Close()
		if err != nil || !res[0].Delivered {
			t.Fatalf("send: %+v %v", res, err)
		}
	}
	for _, m := range srv.Wait(2, 5*time.Second) {
		if !m.TLS {
			t.Error("message arrived without TLS")
		}
	}
}

func TestSmartHost(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		t.Run(fmt.Sprint("implicit=", implicit), func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{TLS: true, Implicit: implicit, Hostname: "smart.isp.test", User: "pp", Password: "s3cret pass"})
			dns, c := setup(t, 25)
			dns.MustAdd(t, "smart.isp.test. 60 IN A 127.0.0.1")
			c.RootCAs = srv.RootCAs
			c.User, c.Password = "pp", "s3cret pass"
			d := Destination{Host: "smart.isp.test", NoMX: true, Port: srv.Port(), Smart: true, ImplicitTLS: implicit}
			res, err := send(t, c, d, env("a@posthorn.test", "far@away.test"), testMsg)
			if err != nil || !res[0].Delivered {
				t.Fatalf("send: %+v %v", res, err)
			}
			m := srv.Wait(1, 5*time.Second)
			if len(m) != 1 || m[0].AuthUser != "pp" || !m[0].TLS {
				t.Fatalf("received %+v", m)
			}

			// A wrong password: a temporary failure (the mail waits for a
			// fixed config; it does not bounce).
			c.Password = "wrong"
			_, err = send(t, c, d, env("a@posthorn.test", "far@away.test"), testMsg)
			var e *Error
			if !errors.As(err, &e) || !e.Temporary || e.Reply == nil || e.Reply.Code != 535 {
				t.Fatalf("wrong password: %#v (%v)", e, err)
			}

			// A smart host certificate that does not verify ends the connection.
			c.Password, c.RootCAs = "s3cret pass", nil
			_, err = send(t, c, d, env("a@posthorn.test", "far@away.test"), testMsg)
			if !errors.As(err, &e) || !e.Temporary || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("untrusted smart host: %v", err)
			}
		})
	}
}

// A smart host without TLS never sees the password.
func TestNoPasswordInClear(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		fmt.Fprint(conn, "220 plain.test ESMTP\r\n")
		var seen []string
		for {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := br.ReadString('\n')
			if err != nil {
				break
			}
			seen = append(seen, strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(line, "EHLO"):
				fmt.Fprint(conn, "250-plain.test\r\n250 AUTH PLAIN LOGIN\r\n")
			case strings.HasPrefix(line, "QUIT"):
				fmt.Fprint(conn, "221 bye\r\n")
			default:
				fmt.Fprint(conn, "250 ok\r\n")
			}
		}
		got <- strings.Join(seen, "|")
	}()
	_, c := setup(t, 25)
	c.User, c.Password = "pp", "s3cret"
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = c.Connect(ctx, Destination{Host: "127.0.0.1", NoMX: true, Port: port, Smart: true})
	if err == nil || !strings.Contains(err.Error(), "no TLS") {
		t.Fatalf("connect: %v", err)
	}
	if s := <-got; strings.Contains(s, "AUTH") {
		t.Fatalf("the client sent AUTH without TLS: %s", s)
	}
}

func TestPerRecipientResults(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(to string) error {
		switch {
		case strings.HasPrefix(to, "gone@"):
			return smtptest.Perm(550, [3]int{5, 1, 1}, "no such user")
		case strings.HasPrefix(to, "later@"):
			return smtptest.Temp("try again")
		}
		return nil
	}})
	_, c := setup(t, srv.Port())
	res, err := send(t, c, Destination{Host: "127.0.0.1", NoMX: true},
		env("a@posthorn.test", "ok@x.test", "gone@x.test", "later@x.test"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Delivered || res[1].Delivered || res[1].Reply.Code != 550 || res[1].Reply.Status() != "5.1.1" || res[1].Temporary() ||
		res[2].Delivered || !res[2].Temporary() || res[2].Reply.Code != 451 {
		t.Fatalf("results %+v", res)
	}
	if !strings.Contains(res[1].Reply.Text, "no such user") {
		t.Errorf("reply text %q", res[1].Reply.Text)
	}
	m := srv.Wait(1, 5*time.Second)
	if len(m) != 1 || strings.Join(m[0].To, ",") != "ok@x.test" {
		t.Fatalf("received %+v", m)
	}
}

func TestDataRejected(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Data: func(n int) error {
		if n == 1 {
			return smtptest.Perm(554, [3]int{5, 6, 0}, "content rejected")
		}
		return smtptest.Temp("busy")
	}})
	_, c := setup(t, srv.Port())
	cn, err := c.Connect(ctx, Destination{Host: "127.0.0.1", NoMX: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	res, err := cn.Send(ctx, env("a@posthorn.test", "x@x.test", "y@x.test"), strings.NewReader(testMsg))
	if err != nil || res[0].Delivered || res[0].Reply.Code != 554 || res[1].Reply.Code != 554 || res[0].Temporary() {
		t.Fatalf("first: %+v %v", res, err)
	}
	res, err = cn.Send(ctx, env("a@posthorn.test", "x@x.test"), strings.NewReader(testMsg))
	if err != nil || res[0].Delivered || !res[0].Temporary() {
		t.Fatalf("second: %+v %v", res, err)
	}
}

// One connection carries several messages, also after a transaction in which
// every recipient was refused.
func TestConnectionReuse(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone@") {
			return smtptest.Perm(550, [3]int{5, 1, 1}, "no")
		}
		return nil
	}})
	_, c := setup(t, srv.Port())
	cn, err := c.Connect(ctx, Destination{Host: "127.0.0.1", NoMX: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, rc := range []string{"a@x.test", "gone@x.test", "b@x.test", "c@x.test"} {
		res, err := cn.Send(ctx, env("s@posthorn.test", rc), strings.NewReader(testMsg))
		if err != nil || res[0].Delivered == strings.HasPrefix(rc, "gone") {
			t.Fatalf("message %d: %+v %v", i, res, err)
		}
	}
	cn.Close()
	if m := srv.Wait(3, 5*time.Second); len(m) != 3 {
		t.Fatalf("received %d messages", len(m))
	}
	if n := srv.Sessions(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
}

func TestMessageBytes(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	_, c := setup(t, srv.Port())
	in := "Return-Path: <a@posthorn.test>\r\n" +
		"Received: from x\r\n\tby y\r\n" +
		"Subject: dots\r\n\r\n" +
		".leading dot\r\n" +
		"..two\r\n" +
		"bare\nlf\r\n" +
		".\r\n" +
		"end without newline"
	res, err := send(t, c, Destination{Host: "127.0.0.1", NoMX: true}, env("a@posthorn.test", "b@x.test"), in)
	if err != nil || !res[0].Delivered {
		t.Fatalf("send: %+v %v", res, err)
	}
	m := srv.Wait(1, 5*time.Second)
	want := "Received: from x\r\n\tby y\r\n" +
		"Subject: dots\r\n\r\n" +
		".leading dot\r\n" +
		"..two\r\n" +
		"bare\r\nlf\r\n" +
		".\r\n" +
		"end without newline\r\n"
	if len(m) != 1 || string(m[0].Data) != want {
		t.Fatalf("received %q\nwant     %q", m[0].Data, want)
	}
}

func TestDSNParametersPassedOn(t *testing.T) {
	for _, dsn := range []bool{true, false} {
		srv := smtptest.Start(t, smtptest.Options{DSN: dsn})
		_, c := setup(t, srv.Port())
		e := &Envelope{From: "a@posthorn.test", EnvID: "id+1 x", Ret: "HDRS",
			Recipients: []Recipient{{Address: "b@x.test", Notify: "SUCCESS,DELAY", ORCPT: "rfc822;B@x.test"}}}
		res, err := send(t, c, Destination{Host: "127.0.0.1", NoMX: true}, e, testMsg)
		if err != nil || !res[0].Delivered || res[0].DSN != dsn {
			t.Fatalf("dsn=%v: %+v %v", dsn, res, err)
		}
		m := srv.Wait(1, 5*time.Second)[0]
		if !dsn {
			if m.MailOpts.EnvelopeID != "" || len(m.RcptOpts[0].Notify) != 0 {
				t.Errorf("DSN parameters sent to a server without DSN: %+v", m)
			}
			continue
		}
		ro := m.RcptOpts[0]
		if m.MailOpts.EnvelopeID != "id+1 x" || m.MailOpts.Return != smtp.DSNReturnHeaders ||
			len(ro.Notify) != 2 || ro.Notify[0] != smtp.DSNNotifySuccess || ro.OriginalRecipient != "B@x.test" {
			t.Errorf("received mail %+v rcpt %+v", m.MailOpts, ro)
		}
	}
}

// A hostile server: over-long lines, endless continuations, garbage. The
// client fails cleanly.
func TestHostileServer(t *testing.T) {
	for name, greeting := range map[string]string{
		"long line":     "220 " + strings.Repeat("x", 100000) + "\r\n",
		"endless":       strings.Repeat("220-more\r\n", 1000) + "220 ok\r\n",
		"garbage":       "hello there\r\n",
		"code changes":  "220-a\r\n250 b\r\n",
		"no code class": "999 what\r\n",
		"closed":        "",
	} {
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.Write([]byte(greeting))
				conn.Close()
			}()
			_, c := setup(t, ln.Addr().(*net.TCPAddr).Port)
			_, err = c.Connect(ctx, Destination{Host: "127.0.0.1", NoMX: true})
			var e *Error
			if !errors.As(err, &e) || !e.Temporary {
				t.Fatalf("error %v", err)
			}
		})
	}
}

func TestReplyParsing(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
	}{
		{"250 ok\r\n", Reply{250, "", "ok"}},
		{"550 5.1.1 no such user\r\n", Reply{550, "5.1.1", "no such user"}},
		{"550-5.1.1 first\r\n550 5.1.1 second\r\n", Reply{550, "5.1.1", "first\nsecond"}},
		{"451 5.1.1 class mismatch\r\n", Reply{451, "", "5.1.1 class mismatch"}},
		{"250\r\n", Reply{250, "", ""}},
	} {
		c1, c2 := net.Pipe()
		go func() { c2.Write([]byte(tc.in)); c2.Close() }()
		s := newSession(c1, "x", time.Second)
		r, err := s.readReply(time.Second)
		c1.Close()
		if err != nil || r != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.in, r, err, tc.want)
		}
	}
}

func TestXtext(t *testing.T) {
	for in, want := range map[string]string{
		"plain":    "plain",
		"a+b=c":    "a+2Bb+3Dc",
		"sp ace":   "sp+20ace",
		"\x7f\x01": "+7F+01",
	} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDestinationKey(t *testing.T) {
	for _, tc := range []struct {
		d    Destination
		want string
	}{
		{Destination{Host: "Example.ORG"}, "example.org"},
		{Destination{Host: "smart.test", NoMX: true, Port: 587}, "[smart.test]:587"},
		{Destination{Host: "x.test", Port: 2525}, "x.test:" + strconv.Itoa(2525)},
	} {
		if got := tc.d.Key(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.d, got, tc.want)
		}
	}
}

// A bare CR followed by "." must not end the data at the next server: the
// dot of the line it starts is doubled (the smuggling that a local program
// could try through sendmail, whose input is not SMTP-checked).
func TestDataBareCRSmuggling(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	_, c := setup(t, srv.Port())
	in := "Subject: t\r\n\r\nhello\r.\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@elsewhere.example>\r\nDATA\r\nspam\r\n"
	res, err := send(t, c, Destination{Host: "127.0.0.1", NoMX: true}, env("a@posthorn.test", "b@x.test"), in)
	if err != nil || !res[0].Delivered {
		t.Fatalf("send: %+v %v", res, err)
	}
	m := srv.Wait(2, 2*time.Second)
	if len(m) != 1 {
		t.Fatalf("%d transactions arrived, want 1 (the rest was smuggled as commands)", len(m))
	}
	want := "Subject: t\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@elsewhere.example>\r\nDATA\r\nspam\r\n"
	if string(m[0].Data) != want {
		t.Errorf("received %q\nwant     %q", m[0].Data, want)
	}
}

func TestWriteDataEdges(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"},
		{"a\r.b", "a\r\n..b\r\n.\r\n"},
		{"a\n.b\n", "a\r\n..b\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{"x\r", "x\r\n.\r\n"},
		{"", ".\r\n"},
		{"Return-Path: <a@b>\r\n\tcont\r\nX: y\r\n", "X: y\r\n.\r\n"},
		{"Return-Path: <a@b>", ".\r\n"},
		{"return-path: <a@b>\n.x\n", "..x\r\n.\r\n"},
		{"X: y\r\nReturn-Path: <a@b>\r\n", "X: y\r\nReturn-Path: <a@b>\r\n.\r\n"},
	} {
		c1, c2 := net.Pipe()
		got := make(chan string, 1)
		go func() { b, _ := io.ReadAll(c2); got <- string(b) }()
		s := newSession(c1, "x", time.Second)
		if err := writeData(s, strings.NewReader(tc.in)); err != nil {
			t.Fatal(err)
		}
		c1.Close()
		if g := <-got; g != tc.want {
			t.Errorf("%q: sent %q, want %q", tc.in, g, tc.want)
		}
	}
}

// A 421 means the server closes the connection: Send says the connection is
// done, and the recipients may be tried again.
func TestReply421EndsTheConnection(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(string) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
	}})
	_, c := setup(t, srv.Port())
	cn, err := c.Connect(ctx, Destination{Host: "127.0.0.1", NoMX: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cn.Send(ctx, env("a@posthorn.test", "b@x.test"), strings.NewReader(testMsg))
	var e *Error
	if !errors.As(err, &e) || !e.Temporary || len(res) != 1 || !res[0].Temporary() || res[0].Reply.Code != 421 {
		t.Fatalf("421: %+v %v", res, err)
	}
}

// A destination that never greets does not hold up a cancelled Connect.
func TestConnectHonoursCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // a tarpit: accepts, says nothing
		}
	}()
	_, c := setup(t, ln.Addr().(*net.TCPAddr).Port)
	c.CommandTimeout = time.Hour
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Connect(cctx, Destination{Host: "127.0.0.1", NoMX: true})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("Connect to a tarpit: %v after %v", err, time.Since(start))
	}
}

// A smart host that offers only LOGIN gets LOGIN; one that offers neither
// PLAIN nor LOGIN gets no password at all.
func TestSmartHostLoginOnly(t *testing.T) {
	for _, tc := range []struct {
		mechs []string
		ok    bool
	}{
		{[]string{"LOGIN"}, true},
		{[]string{"CRAM-MD5"}, false},
	} {
		srv := smtptest.Start(t, smtptest.Options{TLS: true, Hostname: "smart.isp.test", User: "pp", Password: "pw", Mechanisms: tc.mechs})
		dns, c := setup(t, 25)
		dns.MustAdd(t, "smart.isp.test. 60 IN A 127.0.0.1")
		c.RootCAs = srv.RootCAs
		c.User, c.Password = "pp", "pw"
		d := Destination{Host: "smart.isp.test", NoMX: true, Port: srv.Port(), Smart: true}
		res, err := send(t, c, d, env("a@posthorn.test", "far@away.test"), testMsg)
		if !tc.ok {
			if err == nil || !strings.Contains(err.Error(), "neither AUTH PLAIN nor LOGIN") {
				t.Errorf("%v: %v", tc.mechs, err)
			}
			continue
		}
		if err != nil || !res[0].Delivered {
			t.Fatalf("%v: %+v %v", tc.mechs, res, err)
		}
		if m := srv.Wait(1, 5*time.Second); len(m) != 1 || m[0].AuthUser != "pp" {
			t.Errorf("%v: received %+v", tc.mechs, m)
		}
	}
}
