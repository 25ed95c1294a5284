package imapsearch

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/store"
)

func TestBaseSubject(t *testing.T) {
	// Worked through RFC 5256 section 2.1 by hand.
	for _, tc := range []struct {
		in    string
		base  string
		reply bool
	}{
		{"Hello", "Hello", false},
		{"Re: Hello", "Hello", true},
		{"RE:Hello", "Hello", true},
		{"re : Hello", "Hello", true},
		{"Fwd: Hello", "Hello", true},
		{"FW: Hello", "Hello", true},
		{"Re: Re: Fwd: Hello", "Hello", true},
		{"Re[2]: Hello", "Hello", true},
		{"[list] Re: Hello", "Hello", true},
		{"[list] Hello", "Hello", false},       // step 4: a blob before a subject
		{"[list]", "[list]", false},            // ... not when nothing would be left
		{"[a] [b]", "[b]", false},              // only while something is left
		{"Hello (fwd)", "Hello", true},         // step 2
		{"Hello (FWD) (fwd)  ", "Hello", true}, // repeated
		{"[Fwd: Hello]", "Hello", true},        // step 6
		{"[fwd: Re: Hello (fwd)]", "Hello", true},
		{"[list] Re: [fwd: budget] (fwd)", "budget", true},
		{"Hello\t  world", "Hello world", false}, // step 1: spaces
		{"=?UTF-8?B?UmU6IEdyw7zDn2U=?=", "Grüße", true},
		{"Reply needed", "Reply needed", false}, // "re" needs a colon
		{"Re:", "", true},
		{"", "", false},
	} {
		base, reply := baseSubject(tc.in)
		if base != tc.base || reply != tc.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", tc.in, base, reply, tc.base, tc.reply)
		}
	}
}

// sortMessages: base subjects APPLE (1, 3, 5), BANANA (2), CHERRY (4).
// Sent dates in UTC: 1 Jan 3 10:00, 2 Jan 2 10:00, 3 Jan 2 04:00, 4 none
// (INTERNALDATE Jan 1 00:00), 5 Jan 2 04:00.
func sortMessages() ([]Message, *memSource) {
	raws := [][]byte{
		crlf("Subject: Re: apple\nDate: Mon, 3 Jan 2000 10:00:00 +0000\nFrom: zed@x\nTo: b@x\nMessage-ID: <s1@x>\n\nbody\n"),
		crlf("Subject: banana\nDate: Sun, 2 Jan 2000 10:00:00 +0000\nFrom: Amy <amy@x>\nTo: a@x\nMessage-ID: <s2@x>\n\nbody\n"),
		crlf("Subject: [list] Fwd: Apple (fwd)\nDate: Sat, 1 Jan 2000 23:00:00 -0500\nFrom: bob@x\nMessage-ID: <s3@x>\n\nbody\n"),
		crlf("Subject: cherry\nFrom: Bob <BOB@y>\nMessage-ID: <s4@x>\n\nbody\n"),
		crlf("Subject: APPLE\nDate: 2 Jan 2000 04:00:00 GMT\nMessage-ID: <s5@x>\n\nbody\n"),
	}
	day := func(d int) time.Time { return time.Date(2000, 1, d, 0, 0, 0, 0, time.UTC) }
	infos := []store.MessageInfo{
		{UID: 101, InternalDate: day(5), Size: 300},
		{UID: 102, InternalDate: day(4), Size: 100},
		{UID: 103, InternalDate: day(3), Size: 300},
		{UID: 104, InternalDate: day(1), Size: 200},
		{UID: 105, InternalDate: day(2), Size: 100},
	}
	return mailbox(raws, infos, nil)
}

func parseSort(t *testing.T, s string) []imapwire.SortCriterion {
	t.Helper()
	r := imapwire.NewReader(bufio.NewReader(strings.NewReader("a SORT ("+s+") UTF-8 ALL\r\n")), imapwire.Options{})
	c, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	return c.Args.(*imapwire.SortCommand).Criteria
}

func TestSort(t *testing.T) {
	for _, tc := range []struct {
		crit string
		want []uint32
	}{
		{"SUBJECT", []uint32{1, 3, 5, 2, 4}},
		{"SUBJECT DATE", []uint32{3, 5, 1, 2, 4}},
		{"DATE", []uint32{4, 3, 5, 2, 1}},
		// REVERSE does not reverse the sequence number tie-break of 3 and 5.
		{"REVERSE DATE", []uint32{1, 2, 3, 5, 4}},
		{"ARRIVAL", []uint32{4, 5, 3, 2, 1}},
		{"SIZE", []uint32{2, 5, 4, 1, 3}},
		{"REVERSE SIZE", []uint32{1, 3, 4, 2, 5}},
		{"SIZE SUBJECT", []uint32{5, 2, 4, 1, 3}},
		{"REVERSE SUBJECT", []uint32{4, 2, 1, 3, 5}},
		// The empty string first; addr-mailbox case-insensitive.
		{"FROM", []uint32{5, 2, 3, 4, 1}},
		{"DISPLAYFROM", []uint32{5, 2, 4, 3, 1}},
		{"TO", []uint32{3, 4, 5, 2, 1}},
		{"CC", []uint32{1, 2, 3, 4, 5}},
		{"DISPLAYTO", []uint32{3, 4, 5, 2, 1}},
	} {
		msgs, src := sortMessages()
		got, err := Sort(context.Background(), parseSort(t, tc.crit), msgs, []int{0, 1, 2, 3, 4}, src)
		if err != nil {
			t.Fatal(err)
		}
		if g := seqsOf(msgs, got); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("SORT (%s) = %v, want %v", tc.crit, g, tc.want)
		}
	}
	// Only the given indexes are sorted.
	msgs, src := sortMessages()
	got, err := Sort(context.Background(), parseSort(t, "DATE"), msgs, []int{4, 0, 2}, src)
	if err != nil {
		t.Fatal(err)
	}
	if g := seqsOf(msgs, got); !reflect.DeepEqual(g, []uint32{3, 5, 1}) {
		t.Errorf("SORT (DATE) of 5 1 3 = %v", g)
	}
}

func formatThreads(threads []*ThreadNode, num func(int) uint32) string {
	var b bytes.Buffer
	w := imapwire.NewWriter(&b)
	FormatThreads(w, threads, num)
	w.Flush()
	return b.String()
}

func bySeq(msgs []Message) func(int) uint32 { return func(i int) uint32 { return msgs[i].Seq } }

func TestThreadOrderedSubject(t *testing.T) {
	// APPLE: 3 and 5 (same date, by sequence) then 1; first is 3. Threads by
	// the date of their first message: 4 (Jan 1), 3 (Jan 2 04:00), 2 (Jan 2
	// 10:00).
	msgs, src := sortMessages()
	th, err := Thread(context.Background(), "ORDEREDSUBJECT", msgs, []int{0, 1, 2, 3, 4}, src)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := formatThreads(th, bySeq(msgs)), "(4)(3 (5)(1))(2)"; got != want {
		t.Errorf("ORDEREDSUBJECT = %s, want %s", got, want)
	}
}

// threadMessage writes a message for the REFERENCES tests.
func threadMessage(id, refs, inReplyTo, subject string, date time.Time) []byte {
	var b strings.Builder
	if id != "" {
		fmt.Fprintf(&b, "Message-ID: %s\n", id)
	}
	if refs != "" {
		fmt.Fprintf(&b, "References: %s\n", refs)
	}
	if inReplyTo != "" {
		fmt.Fprintf(&b, "In-Reply-To: %s\n", inReplyTo)
	}
	fmt.Fprintf(&b, "Subject: %s\nDate: %s\n\nbody\n", subject, date.Format(time.RFC1123Z))
	return crlf(b.String())
}

func threadMailbox(specs [][4]string, dates []time.Time) ([]Message, *memSource) {
	raws := make([][]byte, len(specs))
	infos := make([]store.MessageInfo, len(specs))
	for i, s := range specs {
		raws[i] = threadMessage(s[0], s[1], s[2], s[3], dates[i])
		infos[i] = store.MessageInfo{UID: uint32(100 + i), InternalDate: dates[i]}
	}
	return mailbox(raws, infos, nil)
}

func TestThreadReferences(t *testing.T) {
	at := func(d, h, m int) time.Time { return time.Date(2000, 1, d, h, m, 0, 0, time.UTC) }
	for _, tc := range []struct {
		name  string
		specs [][4]string // Message-ID, References, In-Reply-To, Subject
		dates []time.Time
		want  string
	}{
		{
			// Worked by hand through RFC 5256 section 4:
			// (1) 2, 3 (via 2), 4 (In-Reply-To) under 1; a dummy <missing>
			// over 5 and 6; 9 repeats 1's Message-ID and gets its own; a
			// dummy <gone1> over 10 alone. (3) <gone1> goes, 10 rises to
			// the top; <missing> stays (two children). (4) 10 (Dec 31), 1,
			// dummy (by 6, Jan 2 08:00), 7, 8, 9, 11. (5) 7 "Re: Lonely"
			// goes under 8 "Lonely"; 11 "Re: Re: Topic A" under 1. (6)
			// 1's children by date: 4, 2, 11.
			name: "rfc5256",
			specs: [][4]string{
				{"<1@x>", "", "", "Topic A"},
				{"<2@x>", "<1@x>", "", "Re: Topic A"},
				{"<3@x>", "<1@x> <2@x>", "", "Re: Topic A"},
				{"<4@x>", "", "<1@x>", "Re: Topic A"},
				{"<5@x>", "<missing@x>", "", "Orphan child one"},
				{"<6@x>", "<missing@x>", "", "Orphan child two"},
				{"<7@x>", "", "", "Re: Lonely"},
				{"<8@x>", "", "", "Lonely"},
				{"<1@x>", "", "", "Something else"},
				{"<10@x>", "<gone1@x>", "", "Single"},
				{"<11@x>", "", "", "Re: Re: Topic A"},
			},
			dates: []time.Time{at(1, 10, 0), at(1, 11, 0), at(1, 12, 0), at(1, 10, 30), at(2, 9, 0), at(2, 8, 0),
				at(3, 0, 0), at(4, 0, 0), at(5, 0, 0), time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC), at(6, 0, 0)},
			want: "(10)(1 (4)(2 3)(11))((6)(5))(8 7)(9)",
		},
		{
			// Two messages with one base subject, neither a reply: a new
			// dummy holds both; the reply 3 then joins the dummy.
			name:  "subject dummy",
			specs: [][4]string{{"<u1@x>", "", "", "Plan"}, {"<u2@x>", "", "", "Plan"}, {"<u3@x>", "", "", "Re: Plan"}},
			dates: []time.Time{at(1, 0, 0), at(2, 0, 0), at(3, 0, 0)},
			want:  "((1)(2)(3))",
		},
		{
			// Two dummies of one subject: the second's children join the
			// first's.
			name: "both dummies",
			specs: [][4]string{{"<v1@x>", "<g1@x>", "", "Plan"}, {"<v2@x>", "<g1@x>", "", "Plan"},
				{"<v3@x>", "<g2@x>", "", "Re: Plan"}, {"<v4@x>", "<g2@x>", "", "Plan"}},
			dates: []time.Time{at(1, 0, 0), at(2, 0, 0), at(3, 0, 0), at(4, 0, 0)},
			want:  "((1)(2)(3)(4))",
		},
		{
			// References that make a loop: 1 is made the child of a dummy
			// <b>, which 2 then fills; 2's reference to 1 would be a loop.
			name:  "loop",
			specs: [][4]string{{"<a@x>", "<b@x>", "", "x"}, {"<b@x>", "<a@x>", "", "y"}},
			dates: []time.Time{at(1, 0, 0), at(2, 0, 0)},
			want:  "(2 1)",
		},
		{
			// Quoting differences are the same Message ID (section 4); a
			// message references itself; no Message-ID at all.
			name: "normalised ids",
			specs: [][4]string{{`<"abc"@x>`, "", "", "p"}, {"<d@x>", "<abc@x> <d@x>", "", "q"},
				{"", "", "<d@x> (comment) bob@x", "r"}},
			dates: []time.Time{at(1, 0, 0), at(2, 0, 0), at(3, 0, 0)},
			want:  "(1 2 3)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, src := threadMailbox(tc.specs, tc.dates)
			idx := make([]int, len(msgs))
			for i := range idx {
				idx[i] = i
			}
			th, err := Thread(context.Background(), "REFERENCES", msgs, idx, src)
			if err != nil {
				t.Fatal(err)
			}
			if got := formatThreads(th, bySeq(msgs)); got != tc.want {
				t.Errorf("REFERENCES = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFormatThreads(t *testing.T) {
	n := func(i int, kids ...*ThreadNode) *ThreadNode { return &ThreadNode{Index: i, Children: kids} }
	id := func(i int) uint32 { return uint32(i) }
	// RFC 5256 section 4's examples.
	th := []*ThreadNode{n(2), n(3, n(6, n(4, n(23)), n(44, n(7, n(96)))))}
	if got, want := formatThreads(th, id), "(2)(3 6 (4 23)(44 7 96))"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got, want := formatThreads([]*ThreadNode{n(-1, n(3), n(5))}, id), "((3)(5))"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// A dummy with nothing under it is not written ("()" is no thread).
	if got, want := formatThreads([]*ThreadNode{n(-1), n(1, n(-1))}, id), "(1)"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// UIDs instead of sequence numbers.
	if got, want := formatThreads([]*ThreadNode{n(0, n(1))}, func(i int) uint32 { return uint32(100 + i) }), "(100 101)"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestThreadErrors(t *testing.T) {
	msgs, src := sortMessages()
	if _, err := Thread(context.Background(), "BOGUS", msgs, []int{0}, src); err == nil {
		t.Error("unknown algorithm accepted")
	}
	if _, err := Thread(context.Background(), "REFERENCES", msgs, []int{9}, src); err == nil {
		t.Error("index out of range accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Thread(ctx, "REFERENCES", msgs, []int{0, 1}, src); err == nil {
		t.Error("cancelled THREAD gave no error")
	}
	if _, err := Sort(ctx, parseSort(t, "SUBJECT"), msgs, []int{0, 1}, src); err == nil {
		t.Error("cancelled SORT gave no error")
	}
}
