package imapwire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzReadCommand feeds hostile input to the reader: it must return
// commands or errors, never panic, and never read a literal over the
// limits.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a NOOP\r\n",
		"a LOGIN {3}\r\njoe {4+}\r\npass\r\n",
		"a UID FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (A B)]<0.10>) (CHANGEDSINCE 5 VANISHED)\r\n",
		"a SEARCH RETURN (MIN) CHARSET UTF-8 OR (1:3 UID $) NOT HEADER X \"y\"\r\n",
		"a APPEND x (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" ~{2}\r\n\x00\x01\r\n",
		"a SELECT x (QRESYNC (1 2 3:4 (1 2)))\r\n",
		"a LIST (SUBSCRIBED) \"\" (* %) RETURN (STATUS (MESSAGES))\r\n",
		"a STORE 1 (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Seen)\r\n",
		"a LOGIN {999999999999}\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		opts := Options{MaxLine: 200, MaxLiteral: 100, MaxCommand: 400, MaxDepth: 8, Continue: func(string, int64) error { return nil }}
		r := NewReader(bufio.NewReader(strings.NewReader(in)), opts)
		for i := 0; i < 50; i++ {
			cmd, err := r.ReadCommand()
			var pe *Error
			switch {
			case err == nil:
				if cmd.Tag == "" || cmd.Name == "" {
					t.Fatalf("command without tag or name: %+v", cmd)
				}
				if a, ok := cmd.Args.(*AppendCommand); ok {
					for _, m := range a.Messages {
						if len(m.Data) > 100 {
							t.Fatalf("literal of %d octets over the limit", len(m.Data))
						}
					}
				}
			case errors.As(err, &pe):
				if pe.Msg == "" {
					t.Fatal("error without text")
				}
				if pe.Fatal {
					return
				}
			default:
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
		}
	})
}
