package imapfetch

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
)

// checkSyntax reads s as exactly one parenthesised list of NIL, numbers,
// quoted strings, literals and lists, with at most one space between
// items: the shape of every ENVELOPE and body of RFC 9051 section 9. It
// returns an error describing the first thing out of place.
func checkSyntax(s string) error {
	i, err := value(s, 0, 0)
	if err != nil {
		return err
	}
	if i != len(s) {
		return fmt.Errorf("trailing data at %d: %q", i, s[i:])
	}
	if s == "" || s[0] != '(' {
		return fmt.Errorf("not a list")
	}
	return nil
}

func value(s string, i, depth int) (int, error) {
	if depth > 1000 {
		return i, fmt.Errorf("nesting too deep")
	}
	if i >= len(s) {
		return i, fmt.Errorf("value expected at end")
	}
	switch c := s[i]; {
	case c == '(':
		i++
		first := true
		for {
			if i >= len(s) {
				return i, fmt.Errorf("unclosed list")
			}
			if s[i] == ')' {
				if first {
					return i, fmt.Errorf("empty list at %d", i)
				}
				return i + 1, nil
			}
			if !first && s[i] == ' ' {
				i++
			}
			var err error
			if i, err = value(s, i, depth+1); err != nil {
				return i, err
			}
			first = false
		}
	case c == '"':
		for i++; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 >= len(s) || s[i+1] != '"' && s[i+1] != '\\' {
					return i, fmt.Errorf("bad escape at %d", i)
				}
				i++
			case '"':
				return i + 1, nil
			case '\r', '\n', 0:
				return i, fmt.Errorf("CR, LF or NUL in quoted string at %d", i)
			}
		}
		return i, fmt.Errorf("unclosed quoted string")
	case c == '{':
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(s[i+1 : j])
		if err != nil || j+3 > len(s) || s[j:j+3] != "}\r\n" || j+3+n > len(s) {
			return i, fmt.Errorf("bad literal at %d", i)
		}
		return j + 3 + n, nil
	case c >= '0' && c <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i, nil
	case len(s)-i >= 3 && s[i:i+3] == "NIL":
		return i + 3, nil
	}
	return i, fmt.Errorf("unexpected %q at %d", s[i], i)
}

func TestCheckSyntax(t *testing.T) {
	// The checker itself must refuse what is broken.
	for _, bad := range []string{"", "(", ")", "()", `("a"`, `("a\")`, "({3}\r\nab)", `(NIL))`, `(NIL  NIL)`, `(x)`, "(\"a\nb\")"} {
		if checkSyntax(bad) == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	for _, good := range []string{`(NIL)`, `(("a" 1)("b" NIL) "c")`, "({3}\r\nabc NIL)", `("a\"b\\")`} {
		if err := checkSyntax(good); err != nil {
			t.Errorf("refused %q: %v", good, err)
		}
	}
}

// renderAll writes ENVELOPE, BODY and BODYSTRUCTURE of m and checks each.
func renderAll(t testing.TB, m *msg.Message) []string {
	var out []string
	for _, utf8 := range []bool{false, true} {
		for _, opt := range []Options{{}, {Rev2: true}} {
			for _, f := range []func(w *imapwire.Writer){
				func(w *imapwire.Writer) { Envelope(w, &m.Envelope) },
				func(w *imapwire.Writer) { Body(w, &m.Part, opt) },
				func(w *imapwire.Writer) { BodyStructure(w, &m.Part, opt) },
			} {
				s := render(t, utf8, f)
				if err := checkSyntax(s); err != nil {
					t.Fatalf("%v in %q", err, s)
				}
				out = append(out, s)
			}
		}
	}
	return out
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{rfc3501Sample, rfc3501Multipart, alternative, nested, rfc2231, "hello\r\n", "",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\nno parts\r\n",
		"To: g: foo;, \"x\" <>, (c) <@a:b@c>\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nx\r\n--d--\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := msg.ParseBytes(raw)
		got := renderAll(t, m)
		// What the store gives back renders the same as what was parsed.
		back, err := msg.Unmarshal(m.Marshal())
		if err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		again := renderAll(t, back)
		for i := range got {
			if got[i] != again[i] {
				t.Fatalf("after Marshal/Unmarshal\n got %q\nwant %q", again[i], got[i])
			}
		}
	})
}
