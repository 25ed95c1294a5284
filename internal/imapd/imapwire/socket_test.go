package imapwire

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"
)

// TestSocketDialogue runs Reader and Writer on a real 127.0.0.1 socket:
// the client sends a synchronising literal only after the server's
// continuation request, as a real client does, so a reader that read
// the literal before asking would hang here (bounded by the deadline).
func TestSocketDialogue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cmds []*Command
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		w := NewWriter(c)
		r := NewReader(bufio.NewReader(c), Options{Continue: func(string, int64) error {
			return w.Continue("Ready").Flush()
		}})
		var res result
		for {
			cmd, err := r.ReadCommand()
			var pe *Error
			if errors.As(err, &pe) {
				w.Refuse(pe).Flush()
				continue
			}
			if err != nil {
				res.err = err
				break
			}
			res.cmds = append(res.cmds, cmd)
			w.Status(cmd.Tag, "OK", "", cmd.Name+" completed").Flush()
			if cmd.Name == "LOGOUT" {
				break
			}
		}
		done <- res
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	expect := func(want string) {
		t.Helper()
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("got %q, %v; want %q", line, err, want)
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send("a1 LOGIN {3}\r\n")
	expect("+ Ready\r\n")
	send("joe {6}\r\n")
	expect("+ Ready\r\n")
	send("secret\r\n")
	expect("a1 OK LOGIN completed\r\n")
	send("a2 FROB\r\n")
	expect("a2 BAD unknown command FROB\r\n")
	send("a3 APPEND INBOX {999999999999}\r\n")
	expect("a3 NO [TOOBIG] literal too big\r\n")
	send("a4 APPEND INBOX (\\Seen) {5+}\r\nhello\r\n")
	expect("a4 OK APPEND completed\r\n")
	send("a5 LOGOUT\r\n")
	expect("a5 OK LOGOUT completed\r\n")

	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.cmds) != 3 {
		t.Fatalf("server read %d commands, want 3", len(res.cmds))
	}
	if l := res.cmds[0].Args.(*LoginCommand); l.Username != "joe" || l.Password != "secret" {
		t.Errorf("login %+v", l)
	}
	if a := res.cmds[1].Args.(*AppendCommand); string(a.Messages[0].Data) != "hello" {
		t.Errorf("append %+v", a)
	}
}
