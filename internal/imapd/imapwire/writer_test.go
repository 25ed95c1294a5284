package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestWriterStrings(t *testing.T) {
	for _, tc := range []struct {
		s    string
		utf8 bool
		want string
	}{
		{"hello", false, `"hello"`},
		{`a"b\c`, false, `"a\"b\\c"`},
		{"", false, `""`},
		{"a\r\nb", false, "{4}\r\na\r\nb"},
		{"caf\u00e9", false, "{5}\r\ncaf\u00e9"},
		{"caf\u00e9", true, "\"caf\u00e9\""},
		{"bad\xff", true, "{4}\r\nbad\xff"},
		{"nul\x00", false, "{4}\r\nnul\x00"},
	} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.UTF8 = tc.utf8
		if err := w.String(tc.s).Flush(); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("String(%q, utf8=%v) = %q, want %q", tc.s, tc.utf8, buf.String(), tc.want)
		}
	}
}

// Round trip: what String writes, the reader's string parser reads back.
func TestWriterRoundTrip(t *testing.T) {
	for _, s := range []string{"x", `q"uo\te`, "two\r\nlines", "", "NIL", "a b", "caf\u00e9", "]x"} {
		for _, astr := range []bool{false, true} {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			w.Atom("a LOGIN ")
			if astr {
				w.AString(s)
			} else {
				w.String(s)
			}
			w.Atom(" p").CRLF().Flush()
			cmd, err := NewReader(bufio.NewReader(&buf), Options{}).ReadCommand()
			if err != nil {
				t.Errorf("%q astring=%v: %v", s, astr, err)
				continue
			}
			if got := cmd.Args.(*LoginCommand).Username; got != s {
				t.Errorf("%q astring=%v: read back %q", s, astr, got)
			}
		}
	}
}

func TestWriterStatus(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Status("", "OK", "UIDNEXT 4392", "Predicted next UID")
	w.Status("a1", "NO", "TOOBIG", "too\r\nbig")
	w.Status("a2", "BAD", "", "")
	w.Continue("")
	w.Untagged().Atom("FLAGS").SP().Open().Atom(`\Seen`).SP().Atom(`\Deleted`).Close().CRLF()
	w.Untagged().Number(3).SP().Atom("FETCH (BODY[] ").Literal8([]byte("a\x00")).SP().Nil().Close().CRLF()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "* OK [UIDNEXT 4392] Predicted next UID\r\n" +
		"a1 NO [TOOBIG] too  big\r\n" +
		"a2 BAD BAD\r\n" +
		"+ Ready\r\n" +
		"* FLAGS (\\Seen \\Deleted)\r\n" +
		"* 3 FETCH (BODY[] ~{2}\r\na\x00 NIL)\r\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

func TestWriterStickyError(t *testing.T) {
	w := NewWriter(bufio.NewWriterSize(failWriter{}, 16))
	w.Atom(strings.Repeat("x", 100)).CRLF()
	if w.Err() == nil || w.Flush() == nil {
		t.Error("write error not kept")
	}
}

func TestWriterMailboxAndFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		utf8 bool
		want string
	}{
		{"Entw\u00fcrfe", false, "Entw&APw-rfe"},
		{"Entw\u00fcrfe", true, "\"Entw\u00fcrfe\""},
		{"A&B", false, "A&-B"},
		{"with space", false, "\"with space\""},
	} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.UTF8 = tc.utf8
		w.Mailbox(tc.name).Flush()
		if buf.String() != tc.want {
			t.Errorf("Mailbox(%q, utf8=%v) = %q, want %q", tc.name, tc.utf8, buf.String(), tc.want)
		}
	}
	var buf bytes.Buffer
	NewWriter(&buf).Flags([]string{`\Seen`, "$Junk"}).Flush()
	if buf.String() != `(\Seen $Junk)` {
		t.Errorf("Flags = %q", buf.String())
	}
}

func TestRefuse(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Tag: "a1", Msg: "unknown command FROB"}, "a1 BAD unknown command FROB\r\n"},
		{Error{Msg: "missing or invalid tag"}, "* BAD missing or invalid tag\r\n"},
		{Error{Tag: "a2", Code: "TOOBIG", Msg: "literal too big"}, "a2 NO [TOOBIG] literal too big\r\n"},
		{Error{Tag: "a3", Code: "TOOBIG", Msg: "literal too big", Fatal: true},
			"a3 BAD [TOOBIG] literal too big\r\n* BYE Too much trouble, closing\r\n"},
	} {
		var buf bytes.Buffer
		NewWriter(&buf).Refuse(&tc.e).Flush()
		if buf.String() != tc.want {
			t.Errorf("Refuse(%+v) = %q, want %q", tc.e, buf.String(), tc.want)
		}
	}
}
