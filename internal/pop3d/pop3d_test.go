package pop3d

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

func TestCapa(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	for _, tc := range []struct {
		name      string
		dial      func() *client
		want, not []string
	}{
		{"loopback, plain", func() *client { return ts.dial(nil) },
			[]string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS", "USER",
				"SASL SCRAM-SHA-256 PLAIN LOGIN", "EXPIRE NEVER", "IMPLEMENTATION posthorn"}, nil},
		// 127.0.0.2 is not loopback for the plain-text rule: no USER, no
		// PLAIN or LOGIN before TLS.
		{"outside, plain", func() *client { return ts.dial(outside) },
			[]string{"STLS", "SASL SCRAM-SHA-256", "TOP", "UIDL"}, []string{"USER"}},
		{"outside, after STLS", func() *client { c := ts.dial(outside); c.startTLS(ts.roots); return c },
			[]string{"USER", "SASL SCRAM-SHA-256 PLAIN LOGIN"}, []string{"STLS"}},
		{"outside, implicit TLS", func() *client { return ts.dialTLS(outside) },
			[]string{"USER", "SASL SCRAM-SHA-256 PLAIN LOGIN"}, []string{"STLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial()
			if r := c.cmd("CAPA"); !strings.HasPrefix(r, "+OK") {
				t.Fatalf("CAPA: %q", r)
			}
			caps := strings.Split(strings.TrimSuffix(c.multi(), "\r\n"), "\r\n")
			for _, w := range tc.want {
				if !slices.Contains(caps, w) {
					t.Errorf("CAPA lacks %q: %q", w, caps)
				}
			}
			for _, n := range tc.not {
				if slices.Contains(caps, n) {
					t.Errorf("CAPA has %q: %q", n, caps)
				}
			}
		})
	}
	// After login: no login capabilities.
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	c.cmd("CAPA")
	caps := c.multi()
	if strings.Contains(caps, "USER") || strings.Contains(caps, "STLS") || strings.Contains(caps, "SASL") {
		t.Errorf("CAPA in TRANSACTION state lists login capabilities:\n%s", caps)
	}
	if !strings.Contains(caps, "UIDL") {
		t.Errorf("CAPA in TRANSACTION state lacks UIDL:\n%s", caps)
	}
}

func TestUserPass(t *testing.T) {
	ts := newTestServer(t, serverOptions{maxErrors: 100}, "pp", "other")
	ts.deliver("pp", msgText("one", "hello\r\n"))
	for _, tc := range []struct {
		name       string
		user, pass string
		want       string // prefix of the answer to PASS
	}{
		{"right password", "pp", "pw-pp", "+OK pp has 1 messages"},
		{"user name in upper case", "PP", "pw-pp", "+OK pp has 1 messages"},
		{"wrong password", "pp", "nope", "-ERR [AUTH]"},
		{"another account's password", "pp", "pw-other", "-ERR [AUTH]"},
		{"unknown user", "nobody", "pw-pp", "-ERR [AUTH]"},
		{"password with spaces", "pp", "pw pp", "-ERR [AUTH]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(nil)
			if r := c.cmd("USER " + tc.user); r != "+OK Send your password" {
				t.Fatalf("USER: %q", r)
			}
			if r := c.cmd("PASS " + tc.pass); !strings.HasPrefix(r, tc.want) {
				t.Fatalf("PASS: %q, want %q...", r, tc.want)
			}
			c.cmd("QUIT")
		})
	}
	t.Run("state errors", func(t *testing.T) {
		c := ts.dial(nil)
		for _, tc := range []struct{ send, want string }{
			{"PASS pw-pp", "-ERR USER first"},
			{"STAT", "-ERR Log in first"},
			{"RETR 1", "-ERR Log in first"},
			{"NOOP", "-ERR Log in first"},
			{"USER", "-ERR USER needs a user name"},
			{"APOP pp 0123456789abcdef", "-ERR APOP"},
			{"XYZ", "-ERR Unknown command"},
			{"XYZZY", "-ERR a command is a keyword of 3 or 4 letters"},
			{"USER pp", "+OK"},
			{"PASS pw-other", "-ERR [AUTH]"},
			{"PASS pw-pp", "-ERR USER first"}, // USER is spent by a failed PASS
			{"USER pp", "+OK"},
			{"PASS pw-pp", "+OK"},
			{"USER pp", "-ERR Already logged in"},
			{"STLS", "-ERR Already logged in"},
			{"AUTH PLAIN", "-ERR Already logged in"},
		} {
			if r := c.cmd(tc.send); !strings.HasPrefix(r, tc.want) {
				t.Errorf("%s: %q, want %q...", tc.send, r, tc.want)
			}
		}
	})
}

// A password sent whole from an address that is not loopback, without TLS,
// is refused; SCRAM works there, and everything works after STLS.
func TestPlaintextRule(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	plainIR := base64.StdEncoding.EncodeToString([]byte("\x00pp\x00pw-pp"))
	c := ts.dial(outside)
	for _, tc := range []struct{ send, want string }{
		{"USER pp", "-ERR [AUTH] Passwords are not accepted on an unencrypted connection"},
		{"PASS pw-pp", "-ERR USER first"},
		{"AUTH PLAIN " + plainIR, "-ERR [AUTH] Passwords are not accepted"},
		{"AUTH LOGIN", "-ERR [AUTH] Passwords are not accepted"},
	} {
		if r := c.cmd(tc.send); !strings.HasPrefix(r, tc.want) {
			t.Errorf("%s from 127.0.0.2: %q, want %q...", tc.send, r, tc.want)
		}
	}
	if r := c.scramLogin("pp", "pw-pp"); !strings.HasPrefix(r, "+OK pp has") {
		t.Errorf("SCRAM from 127.0.0.2 without TLS: %q", r)
	}
	c.cmd("QUIT")

	c = ts.dial(outside)
	c.startTLS(ts.roots)
	c.login("pp", "pw-pp")
	c.cmd("QUIT")

	c = ts.dialTLS(outside)
	if r := c.cmd("AUTH PLAIN " + plainIR); !strings.HasPrefix(r, "+OK") {
		t.Errorf("AUTH PLAIN over implicit TLS: %q", r)
	}
	c.cmd("QUIT")

	// [auth] allow_plaintext lets it through.
	open := newTestServer(t, serverOptions{allowPlaintext: true}, "pp")
	open.dial(outside).login("pp", "pw-pp")
}

// scramLogin runs AUTH SCRAM-SHA-256 with xdg-go/scram as the client and
// returns the server's last answer.
func (c *client) scramLogin(user, password string) string {
	c.t.Helper()
	cl, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		c.t.Fatal(err)
	}
	conv := cl.NewConversation()
	first, err := conv.Step("")
	if err != nil {
		c.t.Fatal(err)
	}
	r := c.cmd("AUTH SCRAM-SHA-256 " + base64.StdEncoding.EncodeToString([]byte(first)))
	for strings.HasPrefix(r, "+ ") {
		ch, err := base64.StdEncoding.DecodeString(r[2:])
		if err != nil {
			c.t.Fatalf("challenge %q: %v", r, err)
		}
		if conv.Done() {
			r = c.cmd("") // acknowledge server-final
			continue
		}
		resp, err := conv.Step(string(ch))
		if err != nil {
			c.t.Fatalf("SCRAM step: %v", err)
		}
		r = c.cmd(base64.StdEncoding.EncodeToString([]byte(resp)))
	}
	return r
}

func TestSASL(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp", "other")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name  string
		steps []string // sent, then the expected prefix of the answer, in turn
	}{
		{"PLAIN with initial response", []string{"AUTH PLAIN " + b64("\x00pp\x00pw-pp"), "+OK pp has"}},
		{"PLAIN, lower-case mechanism", []string{"AUTH plain " + b64("\x00pp\x00pw-pp"), "+OK pp has"}},
		{"PLAIN with authzid = user", []string{"AUTH PLAIN " + b64("pp\x00pp\x00pw-pp"), "+OK"}},
		{"PLAIN with another authzid", []string{"AUTH PLAIN " + b64("other\x00pp\x00pw-pp"), "-ERR [AUTH]"}},
		{"PLAIN after a continuation", []string{"AUTH PLAIN", "+ ", b64("\x00pp\x00pw-pp"), "+OK pp has"}},
		{"PLAIN, wrong password", []string{"AUTH PLAIN " + b64("\x00pp\x00pw-other"), "-ERR [AUTH] Authentication failed"}},
		{"PLAIN, other user's password", []string{"AUTH PLAIN " + b64("\x00other\x00pw-pp"), "-ERR [AUTH]"}},
		{"PLAIN, not base64", []string{"AUTH PLAIN !!!", "-ERR Malformed"}},
		{"PLAIN, empty initial response", []string{"AUTH PLAIN =", "-ERR Malformed"}},
		{"PLAIN canceled", []string{"AUTH PLAIN", "+ ", "*", "-ERR Authentication canceled"}},
		{"LOGIN", []string{"AUTH LOGIN", "+ " + b64("Username:"), b64("pp"), "+ " + b64("Password:"), b64("pw-pp"), "+OK pp has"}},
		{"unknown mechanism", []string{"AUTH CRAM-MD5", "-ERR Unsupported"}},
		{"too many arguments", []string{"AUTH PLAIN a b", "-ERR Usage"}},
		{"list mechanisms", []string{"AUTH", "+OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(nil)
			for i := 0; i < len(tc.steps); i += 2 {
				if r := c.cmd(tc.steps[i]); !strings.HasPrefix(r, tc.steps[i+1]) {
					t.Fatalf("after %q: %q, want %q...", tc.steps[i], r, tc.steps[i+1])
				}
			}
			c.cmd("QUIT")
		})
	}
	t.Run("SCRAM-SHA-256", func(t *testing.T) {
		c := ts.dial(nil)
		if r := c.scramLogin("pp", "pw-pp"); !strings.HasPrefix(r, "+OK pp has") {
			t.Fatalf("SCRAM: %q", r)
		}
		c.cmd("QUIT")
		c = ts.dial(nil)
		if r := c.scramLogin("pp", "pw-other"); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Fatalf("SCRAM with another account's password: %q", r)
		}
	})
	t.Run("AUTH alone lists the mechanisms", func(t *testing.T) {
		c := ts.dial(nil)
		c.cmd("AUTH")
		if got := c.multi(); got != "SCRAM-SHA-256\r\nPLAIN\r\nLOGIN\r\n" {
			t.Errorf("AUTH list: %q", got)
		}
	})
}

// The commands of the TRANSACTION state, on three messages.
func TestTransaction(t *testing.T) {
	ts := newTestServer(t, serverOptions{maxErrors: 100}, "pp")
	msgs := []string{
		msgText("one", "first line\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n"),
		msgText("two", "a\r\nb\r\nc\r\nd\r\n"),
		msgText("three", strings.Repeat("x", 70)+"\r\n"),
	}
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, ts.deliver("pp", m))
	}
	total := len(msgs[0]) + len(msgs[1]) + len(msgs[2])
	validity := ts.mailbox("pp").UIDValidity
	uidl := func(i int) string { return fmt.Sprintf("%d.%d", validity, uids[i]) }

	c := ts.dial(nil)
	if r := c.login("pp", "pw-pp"); r != fmt.Sprintf("+OK pp has 3 messages (%d octets)", total) {
		t.Errorf("login: %q", r)
	}
	type step struct {
		send, want string // want: the first line, exactly
		body       string // for multi-line answers: the body, unstuffed; "-" for none
	}
	steps := []step{
		{"STAT", fmt.Sprintf("+OK 3 %d", total), "-"},
		{"LIST", fmt.Sprintf("+OK 3 messages (%d octets)", total),
			fmt.Sprintf("1 %d\r\n2 %d\r\n3 %d\r\n", len(msgs[0]), len(msgs[1]), len(msgs[2]))},
		{"LIST 2", fmt.Sprintf("+OK 2 %d", len(msgs[1])), "-"},
		{"list 3", fmt.Sprintf("+OK 3 %d", len(msgs[2])), "-"},
		{"UIDL", "+OK Unique-id listing follows", "1 " + uidl(0) + "\r\n2 " + uidl(1) + "\r\n3 " + uidl(2) + "\r\n"},
		{"UIDL 1", "+OK 1 " + uidl(0), "-"},
		{"RETR 1", fmt.Sprintf("+OK %d octets", len(msgs[0])), msgs[0]},
		{"RETR 2", fmt.Sprintf("+OK %d octets", len(msgs[1])), msgs[1]},
		{"TOP 2 0", "+OK Top of message follows", "From: a@example.net\r\nTo: b@example.org\r\nSubject: two\r\n\r\n"},
		{"TOP 2 2", "+OK Top of message follows", "From: a@example.net\r\nTo: b@example.org\r\nSubject: two\r\n\r\na\r\nb\r\n"},
		{"TOP 2 99", "+OK Top of message follows", msgs[1]},
		{"TOP 1 2", "+OK Top of message follows", "From: a@example.net\r\nTo: b@example.org\r\nSubject: one\r\n\r\nfirst line\r\n.starts with a dot\r\n"},
		{"NOOP", "+OK", "-"},
		{"DELE 2", "+OK Message 2 deleted", "-"},
		{"DELE 2", "-ERR Message 2 is deleted", "-"},
		{"RETR 2", "-ERR Message 2 is deleted", "-"},
		{"LIST 2", "-ERR Message 2 is deleted", "-"},
		{"STAT", fmt.Sprintf("+OK 2 %d", len(msgs[0])+len(msgs[2])), "-"},
		{"LIST", fmt.Sprintf("+OK 2 messages (%d octets)", len(msgs[0])+len(msgs[2])),
			fmt.Sprintf("1 %d\r\n3 %d\r\n", len(msgs[0]), len(msgs[2]))},
		{"UIDL", "+OK Unique-id listing follows", "1 " + uidl(0) + "\r\n3 " + uidl(2) + "\r\n"},
		{"RSET", fmt.Sprintf("+OK Maildrop has 3 messages (%d octets)", total), "-"},
		{"RETR 2", fmt.Sprintf("+OK %d octets", len(msgs[1])), msgs[1]},
		// Bad arguments.
		{"RETR 0", "-ERR Invalid message number", "-"},
		{"RETR 4", "-ERR No such message", "-"},
		{"RETR -1", "-ERR Invalid message number", "-"},
		{"RETR +1", "-ERR Invalid message number", "-"},
		{"RETR 1x", "-ERR Invalid message number", "-"},
		{"RETR 99999999999", "-ERR Invalid message number", "-"},
		{"RETR 2147483648", "-ERR Invalid message number", "-"},
		{"RETR", "-ERR Usage: RETR message", "-"},
		{"RETR 1 2", "-ERR Usage: RETR message", "-"},
		{"TOP 1", "-ERR Usage: TOP message lines", "-"},
		{"TOP 1 -1", "-ERR Invalid number of lines", "-"},
		{"LIST 1 2", "-ERR Usage: LIST [message]", "-"},
		{"STAT 1", "-ERR STAT takes no argument", "-"},
		{"DELE", "-ERR Usage: DELE message", "-"},
	}
	for _, s := range steps {
		r := c.cmd(s.send)
		if r != s.want {
			t.Errorf("%s: %q, want %q", s.send, r, s.want)
			continue
		}
		if s.body != "-" {
			if got := c.multi(); got != s.body {
				t.Errorf("%s: body\n%q\nwant\n%q", s.send, got, s.body)
			}
		}
	}
	if r := c.cmd("QUIT"); r != "+OK Bye, 3 messages left" {
		t.Errorf("QUIT: %q", r)
	}
	c.expectClosed()
}

// The bytes on the wire: stuffing and the end line, checked without the
// test client's unstuffing.
func TestRetrWire(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	const stored = "Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend"
	ts.deliver("pp", stored)
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	c.send("RETR 1\r\n")
	var got strings.Builder
	for {
		l := c.line()
		got.WriteString(l + "\r\n")
		if l == "." {
			break
		}
	}
	want := "+OK " + strconv.Itoa(len(stored)) + " octets\r\nSubject: dots\r\n\r\n..\r\n...\r\n..x\r\nend\r\n.\r\n"
	if got.String() != want {
		t.Errorf("RETR on the wire:\n%q\nwant\n%q", got.String(), want)
	}
}

func TestQuitExpunges(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	var uids []uint32
	for i := range 4 {
		uids = append(uids, ts.deliver("pp", msgText(strconv.Itoa(i), "x\r\n")))
	}
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	c.cmd("DELE 1")
	c.cmd("DELE 3")
	if got := ts.inbox("pp"); len(got) != 4 {
		t.Fatalf("DELE removed messages before QUIT: %v", got)
	}
	if r := c.cmd("QUIT"); r != "+OK Bye, 2 messages left" {
		t.Errorf("QUIT: %q", r)
	}
	c.expectClosed()
	if got, want := ts.inbox("pp"), []uint32{uids[1], uids[3]}; !slices.Equal(got, want) {
		t.Errorf("after QUIT the inbox has %v, want %v", got, want)
	}
	// RSET undoes DELE: nothing removed.
	c = ts.dial(nil)
	c.login("pp", "pw-pp")
	c.cmd("DELE 1")
	c.cmd("RSET")
	c.cmd("QUIT")
	c.expectClosed()
	if got := ts.inbox("pp"); len(got) != 2 {
		t.Errorf("DELE, RSET, QUIT left %v", got)
	}
	if !ts.waitLog("deleted=2") {
		t.Errorf("no session log line with deleted=2:\n%s", ts.logs.String())
	}
}

// A connection that ends without QUIT deletes nothing (RFC 1939 section 6),
// and releases the maildrop.
func TestDroppedConnectionDeletesNothing(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	for i := range 3 {
		ts.deliver("pp", msgText(strconv.Itoa(i), "x\r\n"))
	}
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	c.cmd("DELE 1")
	c.cmd("DELE 2")
	c.nc.Close()
	// The maildrop is free again once the server noticed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c = ts.dial(nil)
		c.cmd("USER pp")
		r := c.cmd("PASS pw-pp")
		if strings.HasPrefix(r, "+OK pp has 3 messages") {
			break
		}
		if !strings.HasPrefix(r, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("after a dropped connection: %q", r)
		}
		c.nc.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if got := ts.inbox("pp"); len(got) != 3 {
		t.Errorf("a dropped connection deleted messages: %v", got)
	}
	if !ts.waitLog("end=dropped") {
		t.Errorf("no log line for the dropped session:\n%s", ts.logs.String())
	}
}

func TestInUse(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp", "other")
	ts.deliver("pp", msgText("one", "x\r\n"))
	first := ts.dial(nil)
	first.login("pp", "pw-pp")

	second := ts.dial(nil)
	second.cmd("USER pp")
	if r := second.cmd("PASS pw-pp"); !strings.HasPrefix(r, "-ERR [IN-USE]") {
		t.Fatalf("second session: %q", r)
	}
	// SASL logins meet the same lock.
	b64 := base64.StdEncoding.EncodeToString([]byte("\x00pp\x00pw-pp"))
	if r := second.cmd("AUTH PLAIN " + b64); !strings.HasPrefix(r, "-ERR [IN-USE]") {
		t.Fatalf("second session, AUTH: %q", r)
	}
	// Another account is not locked.
	ts.dial(nil).login("other", "pw-other")

	first.cmd("QUIT")
	first.expectClosed()
	if r := second.cmd("AUTH PLAIN " + b64); !strings.HasPrefix(r, "+OK pp has 1 messages") {
		t.Fatalf("after the first session quit: %q", r)
	}
}

// Many sessions at once, each for its own account, and as many trying one
// account: exactly one of those gets in.
func TestConcurrentSessions(t *testing.T) {
	names := []string{"a1", "a2", "a3", "a4", "a5", "a6"}
	ts := newTestServer(t, serverOptions{}, names...)
	for _, n := range names {
		ts.deliver(n, msgText(n, "body of "+n+"\r\n"))
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for _, n := range names {
		wg.Go(func() {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer nc.Close()
			c := &client{t: t, nc: nc}
			c.r = newReader(nc)
			c.line()
			c.send("USER " + n + "\r\nPASS pw-" + n + "\r\nRETR 1\r\n")
			c.line()
			if r := c.line(); !strings.HasPrefix(r, "+OK") {
				errs <- n + ": " + r
				return
			}
			if r := c.line(); !strings.HasPrefix(r, "+OK") {
				errs <- n + ": RETR " + r
				return
			}
			if body := c.multi(); body != msgText(n, "body of "+n+"\r\n") {
				errs <- n + ": got another message: " + body
			}
			c.cmd("QUIT")
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	var in, busy int
	var mu sync.Mutex
	var conns []*client
	for range 8 {
		wg.Go(func() {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Error(err)
				return
			}
			c := &client{t: t, nc: nc, r: newReader(nc)}
			c.line()
			c.send("USER a1\r\nPASS pw-a1\r\n")
			c.line()
			r := c.line()
			mu.Lock()
			defer mu.Unlock()
			conns = append(conns, c)
			switch {
			case strings.HasPrefix(r, "+OK"):
				in++
			case strings.HasPrefix(r, "-ERR [IN-USE]"):
				busy++
			default:
				t.Errorf("login: %q", r)
			}
		})
	}
	wg.Wait()
	for _, c := range conns {
		c.nc.Close()
	}
	if in != 1 || busy != 7 {
		t.Errorf("8 sessions for one maildrop: %d got in, %d were told IN-USE; want 1 and 7", in, busy)
	}
}

// Messages expunged through another protocol while a session holds the
// maildrop: RETR says so, the others work, QUIT works.
func TestExpungedMeanwhile(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	var uids []uint32
	for i := range 3 {
		uids = append(uids, ts.deliver("pp", msgText(strconv.Itoa(i), "x\r\n")))
	}
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	if _, err := ts.st.Expunge(ctx, ts.mailbox("pp").ID, []uint32{uids[1]}); err != nil {
		t.Fatal(err)
	}
	if r := c.cmd("RETR 2"); !strings.HasPrefix(r, "-ERR Message 2 is no longer in the maildrop") {
		t.Errorf("RETR of an expunged message: %q", r)
	}
	if r := c.cmd("TOP 2 0"); !strings.HasPrefix(r, "-ERR Message 2 is no longer") {
		t.Errorf("TOP of an expunged message: %q", r)
	}
	if r := c.cmd("RETR 3"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("RETR 3: %q", r)
	} else {
		c.multi()
	}
	c.cmd("DELE 2")
	c.cmd("DELE 3")
	if r := c.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("QUIT: %q", r)
	}
	if got := ts.inbox("pp"); !slices.Equal(got, uids[:1]) {
		t.Errorf("inbox %v, want %v", got, uids[:1])
	}
}

// UIDL values stay the same in a later session and after a restart of the
// server on the same store, and a new message gets a new one.
func TestUIDLStable(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", msgText("1", "x\r\n"))
	ts.deliver("pp", msgText("2", "x\r\n"))
	uidl := func(ts *testServer) string {
		c := ts.dial(nil)
		c.login("pp", "pw-pp")
		c.cmd("UIDL")
		defer c.cmd("QUIT")
		return c.multi()
	}
	first := uidl(ts)
	if !regexp.MustCompile(`^1 [!-~]{1,70}\r\n2 [!-~]{1,70}\r\n$`).MatchString(first) {
		t.Fatalf("UIDL listing %q: RFC 1939 wants 1 to 70 characters 0x21-0x7E", first)
	}
	if again := uidl(ts); again != first {
		t.Errorf("UIDL changed between sessions: %q then %q", first, again)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ts.srv.Shutdown(sctx)
	cancel()
	restarted := newTestServer(t, serverOptions{st: ts.st})
	if again := uidl(restarted); again != first {
		t.Errorf("UIDL changed across a restart: %q then %q", first, again)
	}
	restarted.deliver("pp", msgText("3", "x\r\n"))
	third := uidl(restarted)
	if !strings.HasPrefix(third, first) {
		t.Errorf("a new message changed the older UIDLs: %q then %q", first, third)
	}
	lines := strings.Split(third, "\r\n")
	if id := strings.Fields(lines[2])[1]; strings.Contains(first, " "+id+"\r\n") {
		t.Errorf("the new message got an old UIDL %q", id)
	}
}

// Plain text pipelined after STLS, before the handshake, is never run
// inside TLS (CVE-2011-0411).
func TestSTLSInjection(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", msgText("1", "x\r\n"))
	c := ts.dial(outside)
	c.send("STLS\r\nUSER pp\r\nPASS pw-pp\r\nDELE 1\r\nQUIT\r\n")
	if r := c.line(); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("STLS: %q", r)
	}
	tc := tlsClient(c.nc, ts.roots)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc, c.r = tc, newReader(tc)
	// Had the injected commands run, the first answer here would be theirs.
	if r := c.cmd("NOOP"); r != "-ERR Log in first" {
		t.Fatalf("first answer inside TLS: %q, want the answer to NOOP", r)
	}
	if r := c.cmd("PASS pw-pp"); r != "-ERR USER first" {
		t.Errorf("PASS inside TLS after an injected USER: %q", r)
	}
	c.login("pp", "pw-pp")
	c.cmd("QUIT")
	if got := ts.inbox("pp"); len(got) != 1 {
		t.Errorf("the injected DELE ran: inbox %v", got)
	}
	if !ts.waitLog("pipelined after STLS dropped") {
		t.Errorf("no log line about the dropped plaintext:\n%s", ts.logs.String())
	}
}

func TestSTLSRefused(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.dialTLS(nil)
	if r := c.cmd("STLS"); r != "-ERR Already using TLS" {
		t.Errorf("STLS inside TLS: %q", r)
	}
	c = ts.dial(nil)
	if r := c.cmd("STLS now"); r != "-ERR STLS takes no argument" {
		t.Errorf("STLS with an argument: %q", r)
	}
	ts.srv.TLSConfig = nil
	c = ts.dial(nil)
	if r := c.cmd("STLS"); r != "-ERR STLS is not available" {
		t.Errorf("STLS without a certificate: %q", r)
	}
}

// RFC 2449 section 6.6: a client may send commands together; the answers come
// in order, all of them.
func TestPipelining(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	for i := range 20 {
		ts.deliver("pp", msgText(strconv.Itoa(i), strings.Repeat("line\r\n", i)))
	}
	c := ts.dial(nil)
	var b strings.Builder
	b.WriteString("USER pp\r\nPASS pw-pp\r\n")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&b, "RETR %d\r\nDELE %d\r\n", i, i)
	}
	b.WriteString("QUIT\r\n")
	c.send(b.String())
	c.line()
	if r := c.line(); !strings.HasPrefix(r, "+OK pp has 20") {
		t.Fatalf("PASS: %q", r)
	}
	for i := 1; i <= 20; i++ {
		if r := c.line(); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("RETR %d: %q", i, r)
		}
		if got, want := c.multi(), msgText(strconv.Itoa(i-1), strings.Repeat("line\r\n", i-1)); got != want {
			t.Fatalf("RETR %d: %q, want %q", i, got, want)
		}
		if r := c.line(); r != fmt.Sprintf("+OK Message %d deleted", i) {
			t.Fatalf("DELE %d: %q", i, r)
		}
	}
	if r := c.line(); r != "+OK Bye, 0 messages left" {
		t.Errorf("QUIT: %q", r)
	}
	if got := ts.inbox("pp"); len(got) != 0 {
		t.Errorf("inbox after pipelined DELEs: %v", got)
	}
	if !ts.waitLog("retrieved=20") {
		t.Errorf("the session log does not count 20 retrieved:\n%s", ts.logs.String())
	}
}

func TestLimits(t *testing.T) {
	ts := newTestServer(t, serverOptions{maxErrors: 3}, "pp")
	t.Run("command line too long", func(t *testing.T) {
		c := ts.dial(nil)
		// 255 octets with CRLF is the most RFC 2449 section 4 allows.
		if r := c.cmd("USER " + strings.Repeat("u", 255-len("USER ")-2)); r != "+OK Send your password" {
			t.Errorf("a 255-octet line: %q", r)
		}
		if r := c.cmd("USER " + strings.Repeat("u", 256-len("USER ")-2)); !strings.HasPrefix(r, "-ERR Command line too long") {
			t.Errorf("a 256-octet line: %q", r)
		}
		// The session goes on with the next line.
		if r := c.cmd("CAPA"); r != "+OK Capability list follows" {
			t.Errorf("after a long line: %q", r)
		}
	})
	t.Run("endless line", func(t *testing.T) {
		c := ts.dial(nil)
		go c.nc.Write([]byte(strings.Repeat("x", 200<<10)))
		c.expectClosed()
	})
	t.Run("failed commands", func(t *testing.T) {
		c := ts.dial(nil)
		for _, cmd := range []string{"FOO", "RETR 1"} {
			if r := c.cmd(cmd); !strings.HasPrefix(r, "-ERR") {
				t.Fatalf("%s: %q", cmd, r)
			}
		}
		if r := c.cmd("BAZ"); r != "-ERR Unknown command" {
			t.Fatalf("third failure: %q", r)
		}
		if r := c.line(); r != "-ERR Too many failed commands, closing the connection" {
			t.Fatalf("after the third failure: %q", r)
		}
		c.expectClosed()
	})
	t.Run("control characters", func(t *testing.T) {
		c := ts.dial(nil)
		if r := c.cmd("US\x00ER pp"); !strings.HasPrefix(r, "-ERR") {
			t.Errorf("NUL in a command: %q", r)
		}
	})
	t.Run("bare LF line ends", func(t *testing.T) {
		c := ts.dial(nil)
		c.send("USER pp\n")
		if r := c.line(); r != "+OK Send your password" {
			t.Errorf("USER ending in LF: %q", r)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	ts := newTestServer(t, serverOptions{idle: 300 * time.Millisecond}, "pp")
	ts.deliver("pp", msgText("1", "x\r\n"))
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	c.cmd("DELE 1")
	start := time.Now()
	if r := c.line(); r != "-ERR Disconnected for inactivity" {
		t.Errorf("after the idle timeout: %q", r)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("disconnected after %v, before the timeout", d)
	}
	c.expectClosed()
	if got := ts.inbox("pp"); len(got) != 1 {
		t.Errorf("a timed-out session deleted messages: %v", got)
	}
	if !ts.waitLog(`end="idle timeout"`) {
		t.Errorf("no log line for the timeout:\n%s", ts.logs.String())
	}
}

// Shutdown ends idle sessions at once, without UPDATE, and Serve returns.
func TestShutdown(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", msgText("1", "x\r\n"))
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	c.cmd("DELE 1")
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with one idle session", d)
	}
	if r := c.line(); r != "-ERR [SYS/TEMP] Server shutting down" {
		t.Errorf("idle session at shutdown: %q", r)
	}
	c.expectClosed()
	if got := ts.inbox("pp"); len(got) != 1 {
		t.Errorf("shutdown deleted messages: %v", got)
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Error("still listening after Shutdown")
	}
}

// The session log line names the user and the counts, and never the
// password.
func TestSessionLog(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", msgText("1", "x\r\n"))
	c := ts.dial(nil)
	c.cmd("USER pp")
	c.cmd("PASS wrong-secret-1")
	c.login("pp", "pw-pp")
	c.cmd("RETR 1")
	c.multi()
	c.cmd("DELE 1")
	c.cmd("QUIT")
	c.expectClosed()
	ts.waitLog(`msg="pop3 session"`)
	logs := ts.logs.String()
	if !regexp.MustCompile(`msg="pop3 session" ip=127\.0\.0\.1 user=pp tls=false retrieved=1 retrieved_bytes=\d+ deleted=1 .*end=quit`).MatchString(logs) {
		t.Errorf("no session line with the counts:\n%s", logs)
	}
	if strings.Contains(logs, "wrong-secret-1") || strings.Contains(logs, "pw-pp") {
		t.Errorf("a password is in the log:\n%s", logs)
	}
}

// RETR and TOP in and out of order, across a message too big to be read
// ahead, always send the message asked for.
func TestReadAhead(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	var msgs []string
	for i := range 2*readAheadDepth + 5 {
		body := strings.Repeat(fmt.Sprintf("line %d of message %d\r\n", i, i), 3)
		if i == readAheadDepth/2 {
			body = strings.Repeat("a big message line\r\n", readAheadMax/10) // past readAheadMax
		}
		msgs = append(msgs, msgText("msg "+strconv.Itoa(i+1), body))
		ts.deliver("pp", msgs[i])
	}
	order := []int{}
	for i := 1; i <= len(msgs); i++ {
		order = append(order, i) // in order, as fetchmail does
	}
	order = append(order, 3, 1, 2, 2, 7, 6, len(msgs), 5, 6, 7) // and jumping about
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	for _, n := range order {
		if r := c.cmd("RETR " + strconv.Itoa(n)); r != fmt.Sprintf("+OK %d octets", len(msgs[n-1])) {
			t.Fatalf("RETR %d: %q", n, r)
		}
		if got := c.multi(); got != msgs[n-1] {
			t.Fatalf("RETR %d sent another message: %.60q", n, got)
		}
	}
	// TOP takes from read-ahead as RETR does.
	for _, n := range []int{1, 2, 3} {
		c.cmd("TOP " + strconv.Itoa(n) + " 1")
		want := strings.SplitAfterN(msgs[n-1], "\r\n\r\n", 2)
		line, _, _ := strings.Cut(want[1], "\r\n")
		if got := c.multi(); got != want[0]+line+"\r\n" {
			t.Fatalf("TOP %d 1: %q", n, got)
		}
	}
	// DELE between RETRs changes nothing.
	c.cmd("RETR 1")
	c.multi()
	c.cmd("DELE 2")
	if r := c.cmd("RETR 3"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("RETR 3 after DELE 2: %q", r)
	}
	if got := c.multi(); got != msgs[2] {
		t.Fatalf("RETR 3 after DELE 2 sent %.60q", got)
	}
	c.cmd("QUIT")
}
