package pop3d

import (
	"bytes"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"QUIT", "RETR 1", "TOP 1 0", "PASS a b c", "LIST 99999999999", "AUTH PLAIN =", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if len(cmd.keyword) < 3 || len(cmd.keyword) > 4 || strings.ToUpper(cmd.keyword) != cmd.keyword {
			t.Fatalf("keyword %q from %q", cmd.keyword, line)
		}
		args, err := cmd.args(0, 3)
		if err != nil {
			return
		}
		for _, a := range args {
			if len(a) > maxArgLen || strings.ContainsAny(a, " \r\n") {
				t.Fatalf("argument %q from %q", a, line)
			}
			if n, err := parseNumber(a, true); err == nil {
				// A number read is the digits sent, leading zeros aside.
				if strings.TrimLeft(a, "0") != strings.TrimLeft(strconv.Itoa(n), "0") {
					t.Fatalf("parseNumber(%q) = %d", a, n)
				}
			}
		}
	})
}

var bareLF = regexp.MustCompile(`(^|[^\r])\n`)

// FuzzWriteMessage checks the framing of any message: every LF sent follows
// a CR, no line but the last is ".", and undoing the stuffing gives the
// message back with its line ends made CRLF.
func FuzzWriteMessage(f *testing.F) {
	for _, s := range []string{"A: b\r\n\r\nbody\r\n", ".\r\n", "..\n.\r", "\r\n\r\n.", "x\r\r\n", ""} {
		f.Add(s, int8(-1), uint8(16))
		f.Add(s, int8(1), uint8(0))
	}
	f.Fuzz(func(t *testing.T, msg string, bodyLines int8, bufExtra uint8) {
		out := encode(t, msg, int(bodyLines), 16+int(bufExtra))
		if !strings.HasSuffix(out, ".\r\n") || len(out) > 3 && !strings.HasSuffix(out, "\r\n.\r\n") {
			t.Fatalf("no termination line: %q", out)
		}
		if bareLF.MatchString(out) {
			t.Fatalf("bare LF in %q", out)
		}
		lines := strings.Split(strings.TrimSuffix(out, ".\r\n"), "\r\n")
		lines = lines[:len(lines)-1] // after the last CRLF
		var unstuffed strings.Builder
		for _, l := range lines {
			if l == "." {
				t.Fatalf("a line \".\" before the end in %q", out)
			}
			unstuffed.WriteString(strings.TrimPrefix(l, ".") + "\r\n")
		}
		if bodyLines >= 0 {
			return
		}
		// The message with bare LFs made CRLF and a line end at the end.
		want := msg
		for bareLF.MatchString(want) {
			want = bareLF.ReplaceAllString(want, "$1\r\n")
		}
		switch {
		case want == "" || strings.HasSuffix(want, "\n"):
		case strings.HasSuffix(want, "\r"):
			want += "\n"
		default:
			want += "\r\n"
		}
		if unstuffed.String() != want {
			t.Fatalf("message %q\nsent as %q\nwhich is %q", msg, out, unstuffed.String())
		}
	})
}

// FuzzSession runs a session on whatever a client sends: it must end, with
// no panic, once the client is gone.
func FuzzSession(f *testing.F) {
	ts := newTestServer(f, serverOptions{allowPlaintext: true, maxErrors: 1000}, "pp")
	ts.deliver("pp", msgText("one", "line\r\n.dot\r\n"))
	ts.deliver("pp", msgText("two", "x\r\n"))
	login := "USER pp\r\nPASS pw-pp\r\n"
	for _, s := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		login + "DELE 2\r\nLIST 2\r\nRETR 3\r\nTOP 1 -1\r\n",
		"AUTH PLAIN\r\nAHBwAHB3LXBw\r\nLIST\r\n",
		"AUTH SCRAM-SHA-256 biwsbj1wcCxyPWFiYw==\r\n*\r\n",
		"STLS\r\n\x16\x03\x01\x00\x05hello",
		strings.Repeat("x", 300) + "\r\nNOOP\r\n",
		"USER\r\nPASS\r\nAPOP a b\r\n\r\n\n\r",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		ts.t = t // the helpers report to this input's test
		server, client := net.Pipe()
		c := ts.srv.register(server)
		if c == nil {
			t.Fatal("session refused")
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer ts.srv.release(c)
			c.serve(false)
		}()
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, client)
			close(drained)
		}()
		// Writes end early when the session closes the connection.
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(input)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end after the client left; input %q", input)
		}
		<-drained
		// Whatever was sent, nothing was deleted: no session got to QUIT
		// in the UPDATE state with a DELE... unless the input said so.
		if !bytes.Contains(bytes.ToUpper(input), []byte("QUIT")) && len(ts.inbox("pp")) != 2 {
			t.Fatalf("messages deleted without QUIT; input %q", input)
		}
		if len(ts.inbox("pp")) != 2 {
			// Put the maildrop back for the next input.
			for len(ts.inbox("pp")) < 2 {
				ts.deliver("pp", msgText("again", "x\r\n"))
			}
		}
	})
}
