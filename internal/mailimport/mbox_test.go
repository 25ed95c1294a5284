package mailimport

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

func readAll(t *testing.T, text string, q Quoting) []*Message {
	t.Helper()
	r := NewMboxReader(strings.NewReader(text), q, time.UTC)
	var out []*Message
	for {
		m, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

func TestMboxReader(t *testing.T) {
	msgs := readAll(t, spoolFixture, MboxRD)
	if len(msgs) != 4 {
		t.Fatalf("%d messages, want 4", len(msgs))
	}
	first := string(msgs[0].Data)
	for _, want := range []string{
		"Subject: read one\r\n\r\nHello,\r\nFrom the start it was quoted.\r\n>From here too.\r\nRegards,\r\nFrom alice (a",
		"unquoted).\r\n",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("message 1 lacks %q:\n%q", want, first)
		}
	}
	if strings.Contains(first, "Status:") || strings.HasSuffix(first, "\r\n\r\n") {
		t.Errorf("message 1 keeps the mbox's fields or separator:\n%q", first)
	}
	if !reflect.DeepEqual(msgs[0].Flags, []string{store.FlagSeen, store.FlagAnswered, store.FlagFlagged}) {
		t.Errorf("message 1 flags %q", msgs[0].Flags)
	}
	if want := time.Date(2009, 3, 4, 5, 6, 7, 0, time.UTC); !msgs[0].Date.Equal(want) || msgs[0].From != "alice@example.org" {
		t.Errorf("message 1 from %q date %v", msgs[0].From, msgs[0].Date)
	}
	if len(msgs[1].Flags) != 0 {
		t.Errorf("unread message has flags %q", msgs[1].Flags)
	}
	if !strings.Contains(string(msgs[1].Data), "said:\r\nFrom the other side") {
		t.Errorf("a \"From \" line after text split the message:\n%q", msgs[1].Data)
	}
	if got := string(msgs[2].Data); got != "Subject: header only\r\nReceived: from a by b\r\n\r\n" {
		t.Errorf("header-only message %q", got)
	}
	if got := msgs[3].Data; !bytes.HasSuffix(got, []byte("\r\n\r\nthe end\r\n")) || len(got) < 300<<10 {
		t.Errorf("long message: %d bytes, ends %q", len(got), got[len(got)-20:])
	}
	// With mboxo, ">>From" stays.
	o := readAll(t, spoolFixture, MboxO)
	if !strings.Contains(string(o[0].Data), "\r\n>>From here too.") || !strings.Contains(string(o[0].Data), "\r\nFrom the start") {
		t.Errorf("mboxo unquoting:\n%q", o[0].Data)
	}
}

func TestMboxReaderEdges(t *testing.T) {
	if _, err := NewMboxReader(strings.NewReader("Subject: x\n\nbody\n"), MboxRD, nil).Next(); !errors.Is(err, ErrNotMbox) {
		t.Errorf("not an mbox: %v", err)
	}
	if _, err := NewMboxReader(strings.NewReader(""), MboxRD, nil).Next(); !errors.Is(err, io.EOF) {
		t.Errorf("empty file: %v", err)
	}
	// No newline at the end, a date with a zone, no date at all.
	m := readAll(t, "From a Sat Jan  3 01:05:34 1996 +0200\nSubject: x\n\nlast", MboxRD)
	if len(m) != 1 || string(m[0].Data) != "Subject: x\r\n\r\nlast\r\n" || m[0].Date.Unix() != time.Date(1996, 1, 2, 23, 5, 34, 0, time.UTC).Unix() {
		t.Errorf("%q %v", m[0].Data, m[0].Date)
	}
	m = readAll(t, "From a\nDate: Tue, 4 Mar 2009 05:05:00 +0100\n\nx\n", MboxRD)
	if m[0].Date.Unix() != time.Date(2009, 3, 4, 4, 5, 0, 0, time.UTC).Unix() {
		t.Errorf("date from the Date: field: %v", m[0].Date)
	}
}

// What MboxWriter writes, MboxReader reads back the same: bytes, flags,
// date.
func TestMboxRoundTrip(t *testing.T) {
	msgs := []struct {
		data  string
		flags []string
	}{
		{"Return-Path: <a@example.org>\r\nSubject: one\r\n\r\nFrom me\r\n>From you\r\n>>>From them\r\n", []string{store.FlagSeen, store.FlagDeleted, "$Label1"}},
		{"Subject: two\r\n\r\n\r\nbody after an empty line\r\n\r\n", nil},
		// (A message without the empty line after its header gets one:
		// an mbox cannot tell it from the separator.)
		{"Subject: no body\r\n\r\n", []string{store.FlagDraft}},
	}
	date := time.Date(2021, 7, 1, 8, 9, 10, 0, time.UTC)
	var buf bytes.Buffer
	w := NewMboxWriter(&buf, time.UTC)
	for _, m := range msgs {
		if err := w.Write([]byte(m.data), m.flags, date, ""); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if !strings.HasPrefix(buf.String(), "From a@example.org Thu Jul  1 08:09:10 2021\n") {
		t.Errorf("From line: %q", buf.String()[:60])
	}
	got := readAll(t, buf.String(), MboxRD)
	if len(got) != len(msgs) {
		t.Fatalf("%d messages back, want %d:\n%s", len(got), len(msgs), buf.String())
	}
	for i, m := range msgs {
		if string(got[i].Data) != m.data {
			t.Errorf("message %d:\n got %q\nwant %q", i, got[i].Data, m.data)
		}
		if !sameFlags(got[i].Flags, m.flags) || !got[i].Date.Equal(date) {
			t.Errorf("message %d flags %q date %v", i, got[i].Flags, got[i].Date)
		}
	}
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := &store.MessageInfo{Flags: a}
	for _, f := range b {
		if !m.HasFlag(f) {
			return false
		}
	}
	return true
}

// FuzzMboxReader: hostile spools end in messages or an error, never a panic.
func FuzzMboxReader(f *testing.F) {
	f.Add(spoolFixture[:2000])
	f.Add("From a\n\nFrom b\n>From c\n")
	f.Add("From \n\n\n\nFrom \r\nStatus: \n X")
	f.Fuzz(func(t *testing.T, s string) {
		r := NewMboxReader(strings.NewReader(s), MboxRD, time.UTC)
		for i := 0; i < 10000; i++ {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	})
}
