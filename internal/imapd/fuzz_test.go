package imapd

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary client bytes to a logged-in session with a
// selected mailbox of a few messages: whatever comes, the server must not
// panic or hang (each input ends with LOGOUT, and the session must end).
func FuzzSession(f *testing.F) {
	seeds := []string{
		"a SELECT INBOX\r\nb FETCH 1:* (FLAGS BODY[] BODYSTRUCTURE ENVELOPE)\r\n",
		"a SELECT INBOX\r\nb UID STORE 1:* +FLAGS (\\Deleted)\r\nc EXPUNGE\r\n",
		"a SELECT INBOX\r\nb SEARCH OR FROM alice BODY x\r\nc SORT (REVERSE DATE) UTF-8 ALL\r\nd THREAD REFERENCES UTF-8 ALL\r\n",
		"a ENABLE QRESYNC\r\nb SELECT INBOX (QRESYNC (1 1 1:*))\r\nc UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
		"a SELECT INBOX\r\nb FETCH 2 (BODY[1.2.MIME] BINARY[1] BINARY.SIZE[1] BODY[HEADER.FIELDS.NOT (To)]<0.5>)\r\n",
		"a CREATE x/y\r\nb RENAME x z\r\nc LIST (SUBSCRIBED RECURSIVEMATCH) \"\" * RETURN (STATUS (MESSAGES SIZE))\r\n",
		"a APPEND INBOX (\\Seen) {5+}\r\nhello\r\nb SELECT INBOX\r\nc MOVE 1:* Trash\r\nd COPY $ INBOX\r\n",
		"a SELECT INBOX\r\nb SEARCH RETURN (SAVE MIN) ALL\r\nc FETCH $ UID\r\nd IDLE\r\nDONE\r\n",
		"a SELECT INBOX\r\nb FETCH 4294967295 FLAGS\r\nc UID FETCH 0:* FLAGS\r\nd STORE 1 (UNCHANGEDSINCE 0) FLAGS ()\r\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	ts := newTestServer(f, serverOptions{maxErrors: 1000}, "pp")
	ts.deliver("pp", "", simpleMessage)
	ts.deliver("pp", "", fuzzNestedMessage)
	ts.deliver("pp", "", "broken\r\nno header end")
	// The sessions are made here, not by Serve: the server's defaults
	// must be set before (Serve sets them in its own goroutine).
	ts.srv.init()
	acct, err := ts.st.GetAccount(ctx, "pp")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input string) {
		if len(input) > 1<<16 {
			return
		}
		srvConn, cliConn := net.Pipe()
		c := newSession(ts.srv, srvConn, netip.MustParseAddr("127.0.0.1"), false)
		c.loggedIn(ctx, acct)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Serve()
		}()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, cliConn)
		}()
		cliConn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.Copy(cliConn, strings.NewReader(input+"\r\nDONE\r\nzz LOGOUT\r\n"))
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the session did not end after LOGOUT for %q", input)
		}
		cliConn.Close()
		wg.Wait()
	})
}

const fuzzNestedMessage = "From: a@example.org\r\nSubject: nested\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
	"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n" +
	"--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n" +
	"--inner\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>h=C3=A9</p>\r\n--inner--\r\n" +
	"--outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n" +
	"--outer\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--outer--\r\n"
