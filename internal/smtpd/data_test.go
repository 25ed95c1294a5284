package smtpd

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/spool"
)

func TestReadDataUnstuffsAndEnds(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            error
		rest           string // what is left for the next command
	}{
		{"simple", "a\r\nb\r\n.\r\nQUIT\r\n", "a\r\nb\r\n", nil, "QUIT\r\n"},
		{"empty message", ".\r\n", "", nil, ""},
		{"dot stuffing", "..leading dot\r\n...\r\n.\r\n", ".leading dot\r\n..\r\n", nil, ""},
		{"dot not at line start", "a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n", nil, ""},
		{"bare LF then dot line", "a\n.\r\nMAIL\r\n", "a\n", errAmbiguousEnd, "MAIL\r\n"},
		{"dot LF", "a\r\n.\nMAIL\r\n", "a\r\n", errAmbiguousEnd, "MAIL\r\n"},
		{"bare CR dot is not an end", "a\r.\r\n.\r\n", "a\r.\r\n", nil, ""},
		{"eof", "a\r\nb", "a\r\n", io.ErrUnexpectedEOF, ""}, // an unfinished line is dropped with the message
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
		var got strings.Builder
		err := readData(br, &got)
		if !errors.Is(err, tc.err) && !(tc.err == nil && err == nil) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
		if got.String() != tc.want {
			t.Errorf("%s: content %q, want %q", tc.name, got.String(), tc.want)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != tc.rest {
			t.Errorf("%s: left %q, want %q", tc.name, rest, tc.rest)
		}
	}
}

func TestReadDataLongLines(t *testing.T) {
	// Lines longer than the reader's buffer are passed on in pieces; a dot at
	// the start of the first piece is unstuffed, dots in later pieces are not.
	long := strings.Repeat("x", 100)
	in := "." + long + "\r\n" + long + ".\r\n.\r\n"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got strings.Builder
	if err := readData(br, &got); err != nil {
		t.Fatal(err)
	}
	if want := long + "\r\n" + long + ".\r\n"; got.String() != want {
		t.Errorf("got %q, want %q", got.String(), want)
	}
}

// feed writes s to a msgWriter in pieces of n bytes, as BDAT chunks might cut it.
func feed(s string, n int, max int64) (*msgWriter, string) {
	sp := &spool.Spool{}
	w := newMsgWriter(sp, max)
	for len(s) > 0 {
		k := min(n, len(s))
		w.Write([]byte(s[:k]))
		s = s[k:]
	}
	w.finish()
	return w, string(sp.Bytes())
}

func TestMsgWriter(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		bare, big      bool
		hops           int
	}{
		{"plain", "A: b\r\n\r\nbody\r\n", "A: b\r\n\r\nbody\r\n", false, false, 0},
		{"return-path dropped", "Return-Path: <x@y>\r\n folded\r\nA: b\r\n\r\nReturn-Path: in body\r\n", "A: b\r\n\r\nReturn-Path: in body\r\n", false, false, 0},
		{"return-path case and space", "return-PATH : <x@y>\r\nA: b\r\n\r\n", "A: b\r\n\r\n", false, false, 0},
		{"received counted", "Received: a\r\nReceived: b\r\n\tc\r\nX: received: no\r\n\r\nReceived: body\r\n", "", false, false, 2},
		{"bare LF", "A: b\r\n\r\nx\ny\r\n", "", true, false, 0},
		{"bare CR", "A: b\r\n\r\nx\ry\r\n", "", true, false, 0},
		{"bare CR at end", "A: b\r\n\r\nx\r", "", true, false, 0},
		{"too big", "A: b\r\n\r\n" + strings.Repeat("x", 100) + "\r\n", "", false, true, 0},
	} {
		for _, n := range []int{1, 3, 7, 1000} {
			w, got := feed(tc.in, n, 80)
			if w.bare != tc.bare || w.tooBig != tc.big {
				t.Errorf("%s/%d: bare=%v tooBig=%v", tc.name, n, w.bare, w.tooBig)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("%s/%d: stored %q, want %q", tc.name, n, got, tc.want)
			}
			if tc.hops > 0 && w.hops != tc.hops {
				t.Errorf("%s/%d: hops %d, want %d", tc.name, n, w.hops, tc.hops)
			}
		}
	}
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in, path, rest string
		ok             bool
	}{
		{"<a@b>", "a@b", "", true},
		{" <a@b> SIZE=10", "a@b", "SIZE=10", true},
		{"<>", "", "", true},
		{`<"a>b"@c>`, `"a>b"@c`, "", true},
		{`<"a\">b"@c> X`, `"a\">b"@c`, "X", true},
		{"a@b", "", "", false},
		{"<a@b", "", "", false},
		{"<a@b>SIZE=1", "", "", false},
	} {
		p, rest, ok := parsePath(tc.in)
		if ok != tc.ok || p != tc.path || rest != tc.rest {
			t.Errorf("parsePath(%q) = %q, %q, %v", tc.in, p, rest, ok)
		}
	}
}

func BenchmarkMsgWriter4K(b *testing.B) {
	msg := []byte("From: a@b\r\nTo: c@d\r\nSubject: s\r\n\r\n" + strings.Repeat(strings.Repeat("y", 76)+"\r\n", 52))
	sp := &spool.Spool{}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		sp.Reset()
		w := newMsgWriter(sp, 1<<20)
		w.Write(msg)
		w.finish()
	}
}

// Authentication-Results fields of our authserv-id are removed however the
// content is cut into pieces (BDAT chunks); other servers' fields, a field
// merely mentioning our name, and the body are kept.
func TestMsgWriterRemovesForgedAuthResults(t *testing.T) {
	forged1 := "Authentication-Results: MX.Example.Org; spf=pass\r\n"
	forged2 := "Authentication-Results:\r\n mx.example.org (comment);\r\n\tdkim=pass header.d=bank.example\r\n"
	kept := "Authentication-Results: other.example; x=mx.example.org\r\n"
	rest := "From: a@b.example\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.org; body line\r\n"
	in := forged1 + kept + forged2 + rest
	want := kept + rest
	for _, n := range []int{1, 2, 7, 64, len(in)} {
		sp := &spool.Spool{}
		w := newMsgWriter(sp, 0)
		w.authservID = "mx.example.org"
		for s := in; s != ""; {
			k := min(n, len(s))
			w.Write([]byte(s[:k]))
			s = s[k:]
		}
		w.finish()
		if got := string(sp.Bytes()); got != want {
			t.Errorf("pieces of %d: got\n%q\nwant\n%q", n, got, want)
		}
	}
	// A header that ends (no body) with a forged field.
	sp := &spool.Spool{}
	w := newMsgWriter(sp, 0)
	w.authservID = "mx.example.org"
	w.Write([]byte(kept + forged1))
	w.finish()
	if got := string(sp.Bytes()); got != kept {
		t.Errorf("header-only message: %q", got)
	}
}
