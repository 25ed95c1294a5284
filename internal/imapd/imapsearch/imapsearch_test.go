package imapsearch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// crlf writes a test message with CRLF line ends.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// memReader is a stored message in memory.
type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// memSource serves messages from memory and counts what it is asked.
type memSource struct {
	raw        map[uint32][]byte // by UID
	opened     []uint32          // UIDs, in order
	structures int
}

func (s *memSource) Structure(m *Message) (*msg.Message, error) {
	s.structures++
	b, ok := s.raw[m.Info.UID]
	if !ok {
		return nil, errors.New("no such message")
	}
	return msg.ParseBytes(b), nil
}

func (s *memSource) Open(m *Message) (store.MessageReader, error) {
	s.opened = append(s.opened, m.Info.UID)
	b, ok := s.raw[m.Info.UID]
	if !ok {
		return nil, errors.New("no such message")
	}
	return memReader{bytes.NewReader(b)}, nil
}

// mailbox builds Messages (Meta filled, as the store keeps it) and their
// source.
func mailbox(raws [][]byte, infos []store.MessageInfo, recent map[uint32]bool) ([]Message, *memSource) {
	src := &memSource{raw: map[uint32][]byte{}}
	msgs := make([]Message, len(raws))
	for i, raw := range raws {
		in := infos[i]
		in.Meta = msg.ParseBytes(raw).Marshal()
		src.raw[in.UID] = raw
		msgs[i] = Message{Seq: uint32(i + 1), Info: &in, Recent: recent[uint32(i+1)]}
	}
	return msgs, src
}

var searchMessages = [][]byte{
	// 1: plain UTF-8 text.
	crlf("Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\n" +
		"From: Alice Example <alice@example.org>\n" +
		"To: Bob <bob@example.net>\n" +
		"Cc: carol@example.com\n" +
		"Subject: Meeting tomorrow\n" +
		"Message-ID: <m1@example.org>\n" +
		"X-Custom: hello\n world\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		"Content-Transfer-Encoding: 8bit\n" +
		"\n" +
		"Let's meet at the café.\n" +
		"Temperature in \u212Aelvin is fine.\n"),
	// 2: multipart/alternative, base64 and quoted-printable, RFC 2047.
	crlf("Date: 8 Feb 1994 10:00:00 +0000\n" +
		"From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.com>\n" +
		"To: alice@example.org\n" +
		"Bcc: secret@example.net\n" +
		"Subject: =?UTF-8?B?UmU6IEdyw7zDn2U=?=\n" +
		"Message-ID: <m2@example.com>\n" +
		"In-Reply-To: <m1@example.org>\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/alternative; boundary=\"b1\"\n" +
		"\n" +
		"--b1\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		"Content-Transfer-Encoding: base64\n" +
		"\n" +
		"UXVhcnRlcmx5IHJlcG9ydCBhdHRhY2hlZC4NCk51bWJlcnMgbG9vayBnb29kLg0K\n" +
		"--b1\n" +
		"Content-Type: text/html; charset=utf-8\n" +
		"Content-Transfer-Encoding: quoted-printable\n" +
		"\n" +
		"<p>A supercali=\n" +
		"fragilistic caf=C3=A9 menu</p>\n" +
		"--b1--\n"),
	// 3: ISO-8859-1 text.
	crlf("Date: Wed, 9 Feb 1994 08:00:00 +0100\n" +
		"From: Hans Mueller <hans@example.de>\n" +
		"To: alice@example.org\n" +
		"Subject: Gruesse\n" +
		"Content-Type: text/plain; charset=iso-8859-1\n" +
		"Content-Transfer-Encoding: 8bit\n" +
		"\n" +
		"Gr\xfc\xdfe aus K\xf6ln\n"),
	// 4: a message/rfc822 attachment.
	crlf("Date: Thu, 10 Feb 1994 12:00:00 +0000\n" +
		"From: bob@example.net\n" +
		"To: alice@example.org\n" +
		"Subject: Fwd: forwarded note\n" +
		"Message-ID: <m4@example.net>\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\n" +
		"\n" +
		"--outer\n" +
		"Content-Type: text/plain\n" +
		"\n" +
		"See attached.\n" +
		"--outer\n" +
		"Content-Type: message/rfc822\n" +
		"\n" +
		"From: dave@example.org\n" +
		"Subject: Quokka facts\n" +
		"Content-Type: text/plain\n" +
		"\n" +
		"the secret word is xylophone\n" +
		"--outer--\n"),
	// 5: malformed: no delimiter of its multipart, unreadable Date.
	crlf("Date: sometime last week\n" +
		"From: broken\n" +
		"Subject: =?bogus?Q?abc?= tail\n" +
		"Content-Type: multipart/mixed; boundary=\"never\"\n" +
		"\n" +
		"orphan words here\n"),
	// 6: base64 with junk in it, a group, a zone far from UTC.
	crlf("Date: Fri, 12 Feb 1994 23:30:00 -1000\n" +
		"From: Eve <eve@example.org>\n" +
		"To: Team: ann@example.org, ben@example.org;\n" +
		"Subject: [list] Re: [fwd: budget] (fwd)\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		"Content-Transfer-Encoding: base64\n" +
		"\n" +
		"Zm9v IGJh\n" +
		"cg==\n" +
		"!!!%%%\n"),
}

func searchMailbox() ([]Message, *memSource, Env) {
	pst := time.FixedZone("PST", -8*3600)
	utc := func(d, h, m int) time.Time { return time.Date(1994, 2, d, h, m, 0, 0, time.UTC) }
	saved := func(d int) time.Time { return time.Date(2024, 3, d, 10, 0, 0, 0, time.UTC) }
	infos := []store.MessageInfo{
		{UID: 10, ModSeq: 5, Flags: []string{`$Work`, `\Answered`, `\Seen`}, InternalDate: time.Date(1994, 2, 7, 23, 0, 0, 0, pst), SaveDate: saved(1), Size: 100},
		{UID: 11, ModSeq: 9, Flags: []string{`\Draft`, `\Flagged`}, InternalDate: utc(8, 10, 0), Size: 2000},
		{UID: 12, ModSeq: 3, Flags: []string{`\Deleted`}, InternalDate: utc(9, 7, 0), SaveDate: saved(2), Size: 300},
		{UID: 20, ModSeq: 12, Flags: []string{`\Seen`}, InternalDate: utc(10, 12, 0), SaveDate: saved(3), Size: 4000},
		{UID: 21, ModSeq: 1, InternalDate: utc(11, 0, 0), SaveDate: saved(4), Size: 50},
		{UID: 22, ModSeq: 7, Flags: []string{`$work`}, InternalDate: utc(13, 9, 31), SaveDate: saved(5), Size: 600},
	}
	msgs, src := mailbox(searchMessages, infos, map[uint32]bool{1: true, 3: true, 6: true})
	env := Env{Now: utc(13, 10, 31), MaxSeq: 6, MaxUID: 22, Saved: []uint32{11, 21}}
	return msgs, src, env
}

// parseKey parses search keys with the session's parser.
func parseKey(t testing.TB, keys string) *imapwire.SearchKey {
	t.Helper()
	r := imapwire.NewReader(bufio.NewReader(strings.NewReader("a SEARCH "+keys+"\r\n")), imapwire.Options{})
	c, err := r.ReadCommand()
	if err != nil {
		t.Fatalf("parse %q: %v", keys, err)
	}
	return c.Args.(*imapwire.SearchCommand).Key
}

func seqsOf(msgs []Message, idx []int) []uint32 {
	out := []uint32{}
	for _, i := range idx {
		out = append(out, msgs[i].Seq)
	}
	return out
}

func TestSearchKeys(t *testing.T) {
	all := []uint32{1, 2, 3, 4, 5, 6}
	for _, tc := range []struct {
		keys string
		want []uint32
	}{
		{"ALL", all},
		{"ANSWERED", []uint32{1}},
		{"UNANSWERED", []uint32{2, 3, 4, 5, 6}},
		{"DELETED", []uint32{3}},
		{"UNDELETED", []uint32{1, 2, 4, 5, 6}},
		{"DRAFT", []uint32{2}},
		{"UNDRAFT", []uint32{1, 3, 4, 5, 6}},
		{"FLAGGED", []uint32{2}},
		{"UNFLAGGED", []uint32{1, 3, 4, 5, 6}},
		{"SEEN", []uint32{1, 4}},
		{"UNSEEN", []uint32{2, 3, 5, 6}},
		{"KEYWORD $WORK", []uint32{1, 6}},
		{"KEYWORD $nothing", []uint32{}},
		{"UNKEYWORD $work", []uint32{2, 3, 4, 5}},
		{"RECENT", []uint32{1, 3, 6}},
		{"OLD", []uint32{2, 4, 5}},
		{"NEW", []uint32{3, 6}},
		// INTERNALDATE's day in its own zone: message 1 arrived on 7 Feb
		// in -0800, which was 8 Feb in UTC.
		{"BEFORE 8-Feb-1994", []uint32{1}},
		{"ON 7-Feb-1994", []uint32{1}},
		{"ON 8-Feb-1994", []uint32{2}},
		{"SINCE 10-Feb-1994", []uint32{4, 5, 6}},
		{"BEFORE 1-Jan-1990", []uint32{}},
		// The Date: header's day as written: message 6 was sent on 12 Feb
		// in -1000 (13 Feb in UTC); message 5 has no readable Date: and
		// falls back to its INTERNALDATE (11 Feb).
		{"SENTBEFORE 8-Feb-1994", []uint32{1}},
		{"SENTON 12-Feb-1994", []uint32{6}},
		{"SENTON 13-Feb-1994", []uint32{}},
		{"SENTON 9-Feb-1994", []uint32{3}},
		{"SENTSINCE 11-Feb-1994", []uint32{5, 6}},
		// Message 2 has no save date.
		{"SAVEDON 1-Mar-2024", []uint32{1}},
		{"SAVEDBEFORE 3-Mar-2024", []uint32{1, 3}},
		{"SAVEDSINCE 1-Jan-2000", []uint32{1, 3, 4, 5, 6}},
		{"SAVEDSINCE 1-Jan-2030", []uint32{}},
		{"SAVEDATESUPPORTED", all},
		{"LARGER 500", []uint32{2, 4, 6}},
		{"LARGER 4000", []uint32{}},
		{"SMALLER 100", []uint32{5}},
		{"SMALLER 51", []uint32{5}},
		{"SMALLER 50", []uint32{}},
		{"2:4", []uint32{2, 3, 4}},
		{"*", []uint32{6}},
		{"5:*", []uint32{5, 6}},
		{"1,3", []uint32{1, 3}},
		{"4:2", []uint32{2, 3, 4}},
		{"UID 11:20", []uint32{2, 3, 4}},
		{"UID *", []uint32{6}},
		{"UID 100:*", []uint32{6}}, // 100:* is 22:100
		{"UID 13:19", []uint32{}},
		{"$", []uint32{2, 5}},
		{"UID $", []uint32{2, 5}},
		{"MODSEQ 7", []uint32{2, 4, 6}},
		{`MODSEQ "/flags/\\seen" all 9`, []uint32{2, 4}},
		{"MODSEQ 13", []uint32{}},
		{"OLDER 7200", []uint32{1, 2, 3, 4, 5}},
		{"YOUNGER 7200", []uint32{6}},
		{"YOUNGER 60", []uint32{}},
		{"FROM alice", []uint32{1}},
		{`FROM "andré"`, []uint32{2}}, // RFC 2047 decoded
		{`FROM "ANDRÉ"`, []uint32{2}}, // Unicode case-insensitive
		{"FROM example.com", []uint32{2}},
		{`FROM "Alice Example <alice@"`, []uint32{1}},
		{"FROM nobody", []uint32{}},
		{"TO bob", []uint32{1}},
		{"TO ben@", []uint32{6}}, // a group member
		{"TO alice", []uint32{2, 3, 4}},
		{"CC carol", []uint32{1}},
		{"CC alice", []uint32{}},
		{"BCC secret", []uint32{2}},
		{"BCC bob", []uint32{}},
		{`SUBJECT "grüße"`, []uint32{2}},
		{`SUBJECT "GRÜßE"`, []uint32{2}},
		{`SUBJECT "GRÜSSE"`, []uint32{}}, // simple folding: ß is not SS
		{"SUBJECT meeting", []uint32{1}},
		{"SUBJECT quokka", []uint32{}}, // the inner message's subject is body
		{"SUBJECT budget", []uint32{6}},
		{`HEADER X-Custom ""`, []uint32{1}},
		{"HEADER x-custom WORLD", []uint32{1}}, // unfolded
		{`HEADER X-Custom "hello world"`, []uint32{1}},
		{"HEADER X-Custom nope", []uint32{}},
		{`HEADER X-Absent ""`, []uint32{}},
		{"HEADER Message-ID m4@", []uint32{4}},
		{"HEADER In-Reply-To <m1@example.org>", []uint32{2}},
		{`HEADER Subject "grüße"`, []uint32{2}},
		{`BODY "café"`, []uint32{1, 2}}, // 8bit, and quoted-printable =C3=A9
		{`BODY "CAFÉ"`, []uint32{1, 2}},
		{"BODY supercalifragilistic", []uint32{2}}, // across a soft line break
		{`BODY "quarterly REPORT"`, []uint32{2}},   // base64
		{"BODY numbers", []uint32{2}},
		{`BODY "köln"`, []uint32{3}}, // ISO-8859-1
		{`BODY "KÖLN"`, []uint32{3}},
		{`BODY "grüße aus"`, []uint32{3}},
		{"BODY xylophone", []uint32{4}}, // in a message/rfc822 part
		{"BODY quokka", []uint32{4}},    // its header is part of the body
		{"BODY orphan", []uint32{5}},
		{`BODY "foo bar"`, []uint32{6}},
		{"BODY kelvin", []uint32{1}}, // U+212A KELVIN SIGN folds with k
		{"BODY meeting", []uint32{}}, // only in the header
		{"BODY tomorrow", []uint32{}},
		{`BODY ""`, all},
		{"TEXT meeting", []uint32{1}},
		{`TEXT "x-custom: hello"`, []uint32{1}},
		{`TEXT "grüße"`, []uint32{2, 3}}, // 2's subject, 3's body
		{"TEXT xylophone", []uint32{4}},
		{"TEXT zebra", []uint32{}},
		{"EMAILID abc", []uint32{}},
		{"THREADID abc", []uint32{}},
		{"OR SEEN FLAGGED", []uint32{1, 2, 4}},
		{"NOT SEEN", []uint32{2, 3, 5, 6}},
		{"(SEEN KEYWORD $work)", []uint32{1}},
		{"SEEN KEYWORD $work", []uint32{1}},
		{"NOT (OR DELETED DRAFT)", []uint32{1, 4, 5, 6}},
		{"OR BODY xylophone 1", []uint32{1, 4}},
		{"NOT NOT ANSWERED", []uint32{1}},
		{"OR (SEEN LARGER 1000) (UNSEEN SMALLER 100)", []uint32{4, 5}},
	} {
		t.Run(tc.keys, func(t *testing.T) {
			msgs, src, env := searchMailbox()
			got, err := Search(context.Background(), parseKey(t, tc.keys), msgs, src, env)
			if err != nil {
				t.Fatal(err)
			}
			if g := seqsOf(msgs, got); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("SEARCH %s = %v, want %v", tc.keys, g, tc.want)
			}
		})
	}
}

func TestSearchSavedNone(t *testing.T) {
	msgs, src, env := searchMailbox()
	env.Saved = nil
	for _, k := range []string{"$", "UID $", "OR $ SEEN"} {
		got, err := Search(context.Background(), parseKey(t, k), msgs, src, env)
		if err != nil {
			t.Fatal(err)
		}
		want := []uint32{}
		if k == "OR $ SEEN" {
			want = []uint32{1, 4}
		}
		if g := seqsOf(msgs, got); !reflect.DeepEqual(g, want) {
			t.Errorf("%s with nothing saved = %v, want %v", k, g, want)
		}
	}
}

// Cheap keys decide first: a body search opens only the messages that
// the flag key let through, whichever order the client wrote them in.
func TestSearchOpensOnlyWhatItMust(t *testing.T) {
	for _, keys := range []string{"SEEN BODY xylophone", "BODY xylophone SEEN", "OR (BODY xylophone SEEN) DRAFT", "UID 20 TEXT xylophone"} {
		msgs, src, env := searchMailbox()
		if _, err := Search(context.Background(), parseKey(t, keys), msgs, src, env); err != nil {
			t.Fatal(err)
		}
		want := []uint32{10, 20}
		if strings.HasPrefix(keys, "UID") {
			want = []uint32{20}
		}
		if strings.HasPrefix(keys, "OR") {
			want = []uint32{10, 20} // 2 is a draft: OR decided without its body
		}
		if !reflect.DeepEqual(src.opened, want) {
			t.Errorf("%s opened UIDs %v, want %v", keys, src.opened, want)
		}
		if src.structures != 0 {
			t.Errorf("%s asked Source.Structure %d times though Meta was there", keys, src.structures)
		}
	}
	// Keys that the stored structure answers open nothing.
	msgs, src, env := searchMailbox()
	if _, err := Search(context.Background(), parseKey(t, "OR FROM alice SUBJECT budget SENTSINCE 1-Jan-1994"), msgs, src, env); err != nil {
		t.Fatal(err)
	}
	if len(src.opened) != 0 {
		t.Errorf("envelope keys opened %v", src.opened)
	}
}

func TestSearchWithoutMeta(t *testing.T) {
	msgs, src, env := searchMailbox()
	msgs[3].Info.Meta = nil
	got, err := Search(context.Background(), parseKey(t, "FROM bob"), msgs, src, env)
	if err != nil {
		t.Fatal(err)
	}
	if g := seqsOf(msgs, got); !reflect.DeepEqual(g, []uint32{4}) {
		t.Errorf("FROM bob = %v", g)
	}
	if src.structures != 1 {
		t.Errorf("Source.Structure asked %d times, want 1", src.structures)
	}
}

func TestSearchErrors(t *testing.T) {
	msgs, src, env := searchMailbox()
	delete(src.raw, 20)
	if _, err := Search(context.Background(), parseKey(t, "BODY anything"), msgs, src, env); err == nil {
		t.Error("a message that cannot be opened gave no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Search(ctx, parseKey(t, "ALL"), msgs, src, env); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled search: %v", err)
	}
	if _, err := Search(context.Background(), &imapwire.SearchKey{Op: "BOGUS"}, msgs, src, env); err == nil {
		t.Error("unknown key accepted")
	}
	if _, err := Search(context.Background(), &imapwire.SearchKey{Op: "OR", Children: []*imapwire.SearchKey{{Op: "ALL"}}}, msgs, src, env); err == nil {
		t.Error("OR with one operand accepted")
	}
}

func TestCheckCharset(t *testing.T) {
	for cs, ok := range map[string]bool{"": true, "UTF-8": true, "utf-8": true, "US-ASCII": true, "us-ascii": true, "ISO-8859-1": false, "UTF8": false, "x": false} {
		if err := CheckCharset(cs); (err == nil) != ok || err != nil && !errors.Is(err, ErrBadCharset) {
			t.Errorf("CheckCharset(%q) = %v", cs, err)
		}
	}
}

// A body larger than a chunk, with the word across a chunk boundary and
// in base64, is found; the reader is read in pieces, never whole.
func TestBodyAcrossChunks(t *testing.T) {
	for _, at := range []int{chunkSize - 3, chunkSize - 1, chunkSize, 3*chunkSize - 5} {
		body := bytes.Repeat([]byte("a"), at)
		body = append(body, "ZEBRA crossing ü"...)
		body = append(body, bytes.Repeat([]byte("b"), 100)...)
		raw := append(crlf("Subject: big\nContent-Type: text/plain; charset=utf-8\n\n"), body...)
		msgs, src := mailbox([][]byte{raw}, []store.MessageInfo{{UID: 1}}, nil)
		for keys, want := range map[string]int{"BODY zebra": 1, `BODY "crossing Ü"`: 1, "BODY zebrb": 0} {
			got, err := Search(context.Background(), parseKey(t, keys), msgs, src, Env{MaxSeq: 1, MaxUID: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != want {
				t.Errorf("at %d: %s matched %d", at, keys, len(got))
			}
		}
	}
}

// A multi-byte rune split by a chunk boundary is folded whole.
func TestBodyRuneAcrossChunks(t *testing.T) {
	body := bytes.Repeat([]byte("a"), chunkSize-1)
	body = append(body, "Ölfeld"...) // Ö is 2 bytes: split by the boundary
	raw := append(crlf("Content-Type: text/plain; charset=utf-8\n\n"), body...)
	msgs, src := mailbox([][]byte{raw}, []store.MessageInfo{{UID: 1}}, nil)
	got, err := Search(context.Background(), parseKey(t, `BODY "aölfeld"`), msgs, src, Env{})
	if err != nil || len(got) != 1 {
		t.Errorf("split rune: %v %v", got, err)
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		eq   bool
	}{
		{"hello", "HELLO", true},
		{"\u212Aelvin", "kelvin", true},
		{"\u017Fun", "SUN", true},
		{"straße", "STRASSE", false},
		{"Ωmega", "ωMEGA", true},
		{"ǅ", "ǆ", true}, // title case orbit
		{"a", "b", false},
	} {
		if eq := foldString(tc.a) == foldString(tc.b); eq != tc.eq || eq != strings.EqualFold(tc.a, tc.b) {
			t.Errorf("fold(%q) == fold(%q): %v, want %v", tc.a, tc.b, eq, tc.eq)
		}
	}
}

func TestParseSentDate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // yyyy-mm-dd hh:mm:ss offset, "" for unreadable
	}{
		{"Mon, 7 Feb 1994 21:52:25 -0800 (PST)", "1994-02-07 21:52:25 -28800"},
		{"7 Feb 1994 21:52 +0100", "1994-02-07 21:52:00 3600"},
		{"Tue, 1 Jul 03 10:52:37 GMT", "2003-07-01 10:52:37 0"},
		{"1 Jul 99 10:52:37 EST", "1999-07-01 10:52:37 -18000"},
		{"Mon Jan  2 15:04:05 2006", "2006-01-02 15:04:05 0"},
		{"2 February 2010 10:00 +0000", "2010-02-02 10:00:00 0"},
		{"30 Feb 2010", ""},
		{"sometime last week", ""},
		{"Mark 3 2010", ""},
		{"", ""},
	} {
		d, ok := parseSentDate(tc.in)
		got := ""
		if ok {
			got = fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d %d", d.year, d.month, d.day, d.hour, d.min, d.sec, d.offset)
		}
		if got != tc.want {
			t.Errorf("parseSentDate(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// base64 decoding carries partial quanta across reads: a word beyond the
// first chunk of a long base64 body, junk inside it, and a final partial
// quantum without padding are all read.
func TestBodyBase64Long(t *testing.T) {
	text := strings.Repeat("lorem ipsum ", chunkSize/6) + "Zebra crossing" + strings.Repeat(" dolor", 10) + " END!"
	enc := base64.StdEncoding.EncodeToString([]byte(text))
	var b strings.Builder
	for i := 0; i < len(enc); i += 76 {
		line := enc[i:min(i+76, len(enc))]
		if i%(76*7) == 0 {
			line = line[:10] + " \t" + line[10:] // junk a decoder skips
		}
		b.WriteString(line + "\n")
	}
	body := strings.TrimRight(b.String(), "=\n") + "\n" // no padding at the end
	raw := append(crlf("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"), crlf(body)...)
	msgs, src := mailbox([][]byte{raw}, []store.MessageInfo{{UID: 1}}, nil)
	for keys, want := range map[string]int{"BODY zebra": 1, `BODY "dolor end!"`: 1, "BODY zebrb": 0} {
		got, err := Search(context.Background(), parseKey(t, keys), msgs, src, Env{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("%s matched %d, want %d", keys, len(got), want)
		}
	}
}

// Cancelling the context stops a body search in the middle of a message.
func TestBodyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	raw := append(crlf("Content-Type: text/plain\n\n"), bytes.Repeat([]byte("x"), 4*chunkSize)...)
	msgs, _ := mailbox([][]byte{raw}, []store.MessageInfo{{UID: 1}}, nil)
	src := cancelSource{raw: raw, cancel: cancel}
	if _, err := Search(ctx, parseKey(t, "BODY y"), msgs, src, Env{}); !errors.Is(err, context.Canceled) {
		t.Errorf("search cancelled while reading: %v", err)
	}
}

// cancelSource cancels the search as the message is opened.
type cancelSource struct {
	raw    []byte
	cancel func()
}

func (s cancelSource) Structure(m *Message) (*msg.Message, error) { return msg.ParseBytes(s.raw), nil }
func (s cancelSource) Open(m *Message) (store.MessageReader, error) {
	s.cancel()
	return memReader{bytes.NewReader(s.raw)}, nil
}
