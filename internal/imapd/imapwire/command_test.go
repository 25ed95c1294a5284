package imapwire

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func parseOne(t *testing.T, in string) (*Command, error) {
	t.Helper()
	r := NewReader(bufio.NewReader(strings.NewReader(in)), Options{})
	return r.ReadCommand()
}

func TestCommandsValid(t *testing.T) {
	star := SeqRange{0, 0}
	_ = star
	date := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		in   string
		name string
		uid  bool
		args any
	}{
		{"a CAPABILITY\r\n", "CAPABILITY", false, nil},
		{"a noop\r\n", "NOOP", false, nil},
		{"a LOGOUT\n", "LOGOUT", false, nil}, // bare LF tolerated
		{"a StartTLS\r\n", "STARTTLS", false, nil},
		{"a IDLE\r\n", "IDLE", false, nil},
		{"a CLOSE\r\n", "CLOSE", false, nil},
		{"a UNSELECT\r\n", "UNSELECT", false, nil},
		{"a EXPUNGE\r\n", "EXPUNGE", false, nil},
		{"a UID EXPUNGE 3:5,9\r\n", "EXPUNGE", true, &ExpungeCommand{SeqSet{Ranges: []SeqRange{{3, 5}, {9, 9}}}}},
		{"a AUTHENTICATE plain\r\n", "AUTHENTICATE", false, &AuthenticateCommand{Mechanism: "PLAIN"}},
		{"a AUTHENTICATE PLAIN AGZvbwBiYXI=\r\n", "AUTHENTICATE", false, &AuthenticateCommand{Mechanism: "PLAIN", Initial: "AGZvbwBiYXI=", HasInitial: true}},
		{"a AUTHENTICATE PLAIN =\r\n", "AUTHENTICATE", false, &AuthenticateCommand{Mechanism: "PLAIN", HasInitial: true}},
		{"a LOGIN joe \"pa\\\"ss\\\\\"\r\n", "LOGIN", false, &LoginCommand{"joe", `pa"ss\`}},
		{"a LOGIN {3}\r\njoe {4+}\r\npass\r\n", "LOGIN", false, &LoginCommand{"joe", "pass"}},
		{"a LOGIN \"j\xc3\xb6\" x]y\r\n", "LOGIN", false, &LoginCommand{"jö", "x]y"}},
		{"a ENABLE condstore QRESYNC\r\n", "ENABLE", false, &EnableCommand{[]string{"CONDSTORE", "QRESYNC"}}},
		{"a SELECT inbox\r\n", "SELECT", false, &SelectCommand{Mailbox: "INBOX"}},
		{"a SELECT \"InBoX\"\r\n", "SELECT", false, &SelectCommand{Mailbox: "INBOX"}},
		{"a SELECT INBOX.Sent\r\n", "SELECT", false, &SelectCommand{Mailbox: "INBOX.Sent"}},
		{"a EXAMINE foo (CONDSTORE)\r\n", "EXAMINE", false, &SelectCommand{Mailbox: "foo", CondStore: true}},
		{"a SELECT foo (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n", "SELECT", false,
			&SelectCommand{Mailbox: "foo", QResync: &QResyncParams{UIDValidity: 67890007, ModSeq: 20050715194045000,
				KnownUIDs: &SeqSet{Ranges: []SeqRange{{41, 41}, {43, 211}, {214, 541}}}}}},
		{"a SELECT foo (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n", "SELECT", false, nil},
		{"a SELECT foo (QRESYNC (1 2 (1 3)))\r\n", "SELECT", false,
			&SelectCommand{Mailbox: "foo", QResync: &QResyncParams{UIDValidity: 1, ModSeq: 2,
				SeqMatchSeqs: &SeqSet{Ranges: []SeqRange{{1, 1}}}, SeqMatchUIDs: &SeqSet{Ranges: []SeqRange{{3, 3}}}}}},
		{"a CREATE owatagusiam/\r\n", "CREATE", false, &CreateCommand{Mailbox: "owatagusiam/"}},
		{"a CREATE MySpecial (USE (\\Drafts \\Sent))\r\n", "CREATE", false, &CreateCommand{Mailbox: "MySpecial", SpecialUse: []string{`\Drafts`, `\Sent`}}},
		{"a DELETE foo/bar\r\n", "DELETE", false, &MailboxCommand{"foo/bar"}},
		{"a SUBSCRIBE #news.comp.mail.mime\r\n", "SUBSCRIBE", false, &MailboxCommand{"#news.comp.mail.mime"}},
		{"a UNSUBSCRIBE \"a b\"\r\n", "UNSUBSCRIBE", false, &MailboxCommand{"a b"}},
		{"a RENAME INBOX old-mail\r\n", "RENAME", false, &RenameCommand{"INBOX", "old-mail"}},
		{"a LIST \"\" *\r\n", "LIST", false, &ListCommand{Reference: "", Patterns: []string{"*"}}},
		{"a LIST ~/Mail/ %\r\n", "LIST", false, &ListCommand{Reference: "~/Mail/", Patterns: []string{"%"}}},
		{"a LIST (SUBSCRIBED REMOTE) \"\" (\"*\" foo/%) RETURN (CHILDREN STATUS (MESSAGES UNSEEN) SPECIAL-USE)\r\n", "LIST", false,
			&ListCommand{Select: []string{"SUBSCRIBED", "REMOTE"}, Patterns: []string{"*", "foo/%"},
				Return: []string{"CHILDREN", "SPECIAL-USE"}, Status: []string{"MESSAGES", "UNSEEN"}}},
		{"a LIST () \"\" % RETURN ()\r\n", "LIST", false, &ListCommand{Select: []string{}, Patterns: []string{"%"}, Return: []string{}}},
		{"a LSUB \"news.\" \"comp.mail.*\"\r\n", "LSUB", false, &ListCommand{Reference: "news.", Patterns: []string{"comp.mail.*"}}},
		{"a STATUS blurdybloop (UIDNEXT MESSAGES size highestmodseq)\r\n", "STATUS", false,
			&StatusCommand{"blurdybloop", []string{"UIDNEXT", "MESSAGES", "SIZE", "HIGHESTMODSEQ"}}},
		{"a APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5}\r\nhello\r\n", "APPEND", false,
			&AppendCommand{"saved-messages", []AppendMessage{{Flags: []string{`\Seen`},
				Date: time.Date(1994, 2, 7, 21, 52, 25, 0, time.FixedZone("", -8*3600)), Data: []byte("hello")}}}},
		{"a APPEND x {2+}\r\nhi ~{3}\r\na\x00b (\\Draft) {0}\r\n\r\n", "APPEND", false,
			&AppendCommand{"x", []AppendMessage{{Data: []byte("hi")}, {Data: []byte("a\x00b"), Binary: true}, {Flags: []string{`\Draft`}, Data: []byte{}}}}},
		{"a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n", "SEARCH", false,
			&SearchCommand{Key: &SearchKey{Op: "AND", Children: []*SearchKey{
				{Op: "FLAGGED"}, {Op: "SINCE", Date: date(1994, 2, 1)},
				{Op: "NOT", Children: []*SearchKey{{Op: "FROM", Str: "Smith"}}}}}}},
		{"a UID SEARCH RETURN (MIN COUNT) CHARSET utf-8 OR (1:3 UID $) HEADER X-Foo \"\" MODSEQ \"/flags/\\\\draft\" all 620162338\r\n", "SEARCH", true,
			&SearchCommand{Return: []string{"MIN", "COUNT"}, HasReturn: true, Charset: "UTF-8", Key: &SearchKey{Op: "AND", Children: []*SearchKey{
				{Op: "OR", Children: []*SearchKey{
					{Op: "AND", Children: []*SearchKey{{Op: "SEQ", Seq: SeqSet{Ranges: []SeqRange{{1, 3}}}}, {Op: "UID", Seq: SeqSet{Saved: true}}}},
					{Op: "HEADER", Field: "X-Foo", Str: ""}}},
				{Op: "MODSEQ", ModSeqEntry: `/flags/\draft`, ModSeqType: "all", Num: 620162338}}}}},
		{"a SEARCH RETURN () 2:* KEYWORD $Forwarded LARGER 10 OLDER 3600 SENTON \"5-Mar-2000\"\r\n", "SEARCH", false,
			&SearchCommand{Return: []string{}, HasReturn: true, Key: &SearchKey{Op: "AND", Children: []*SearchKey{
				{Op: "SEQ", Seq: SeqSet{Ranges: []SeqRange{{2, 0}}}}, {Op: "KEYWORD", Flag: "$Forwarded"},
				{Op: "LARGER", Num: 10}, {Op: "OLDER", Num: 3600}, {Op: "SENTON", Date: date(2000, 3, 5)}}}}},
		{"a SEARCH TEXT {5}\r\nhello\r\n", "SEARCH", false,
			&SearchCommand{Key: &SearchKey{Op: "AND", Children: []*SearchKey{{Op: "TEXT", Str: "hello"}}}}},
		{"a FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n", "FETCH", false,
			&FetchCommand{Seq: SeqSet{Ranges: []SeqRange{{2, 4}}}, Items: []FetchItem{{Name: "FLAGS"},
				{Name: "BODY", Section: &Section{Specifier: "HEADER.FIELDS", Fields: []string{"DATE", "FROM"}}}}}},
		{"a fetch 12 full\r\n", "FETCH", false, &FetchCommand{Seq: SeqSet{Ranges: []SeqRange{{12, 12}}}, Items: []FetchItem{
			{Name: "FLAGS"}, {Name: "INTERNALDATE"}, {Name: "RFC822.SIZE"}, {Name: "ENVELOPE"}, {Name: "BODY"}}}},
		{"a fetch 1 body.peek[1.2.mime]<0.100>\r\n", "FETCH", false, &FetchCommand{Seq: SeqSet{Ranges: []SeqRange{{1, 1}}}, Items: []FetchItem{
			{Name: "BODY", Peek: true, Section: &Section{Part: []uint32{1, 2}, Specifier: "MIME"}, Partial: &Partial{0, 100}}}}},
		{"a UID FETCH 1:* (BINARY.PEEK[1.2] BINARY.SIZE[3] BODY[] UID MODSEQ) (CHANGEDSINCE 12345 VANISHED)\r\n", "FETCH", true,
			&FetchCommand{Seq: SeqSet{Ranges: []SeqRange{{1, 0}}}, Items: []FetchItem{
				{Name: "BINARY", Peek: true, Section: &Section{Part: []uint32{1, 2}}},
				{Name: "BINARY.SIZE", Section: &Section{Part: []uint32{3}}},
				{Name: "BODY", Section: &Section{}}, {Name: "UID"}, {Name: "MODSEQ"}}, ChangedSince: 12345, Vanished: true}},
		{"a FETCH $ BODY[2.HEADER.FIELDS.NOT (\"X-A\" {3}\r\nX-B)]\r\n", "FETCH", false, &FetchCommand{Seq: SeqSet{Saved: true}, Items: []FetchItem{
			{Name: "BODY", Section: &Section{Part: []uint32{2}, Specifier: "HEADER.FIELDS.NOT", Fields: []string{"X-A", "X-B"}}}}}},
		{"a STORE 2:4 +FLAGS (\\Deleted)\r\n", "STORE", false, &StoreCommand{Seq: SeqSet{Ranges: []SeqRange{{2, 4}}}, Mode: StoreAdd, Flags: []string{`\Deleted`}}},
		{"a store 12 +flags \\deleted\r\n", "STORE", false, &StoreCommand{Seq: SeqSet{Ranges: []SeqRange{{12, 12}}}, Mode: StoreAdd, Flags: []string{`\deleted`}}},
		{"a UID STORE 7,5 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT ($a \\Seen)\r\n", "STORE", true, &StoreCommand{Seq: SeqSet{Ranges: []SeqRange{{7, 7}, {5, 5}}},
			UnchangedSince: 320162338, HasUnchangedSince: true, Mode: StoreRemove, Silent: true, Flags: []string{"$a", `\Seen`}}},
		{"a STORE 1 FLAGS ()\r\n", "STORE", false, &StoreCommand{Seq: SeqSet{Ranges: []SeqRange{{1, 1}}}, Flags: []string{}}},
		{"a COPY 2:4 MEETING\r\n", "COPY", false, &CopyCommand{SeqSet{Ranges: []SeqRange{{2, 4}}}, "MEETING"}},
		{"a UID MOVE 4:2 inbox\r\n", "MOVE", true, &CopyCommand{SeqSet{Ranges: []SeqRange{{4, 2}}}, "INBOX"}},
		{"a SORT (REVERSE DATE subject) UTF-8 ALL\r\n", "SORT", false, &SortCommand{Criteria: []SortCriterion{{"DATE", true}, {"SUBJECT", false}},
			Charset: "UTF-8", Key: &SearchKey{Op: "AND", Children: []*SearchKey{{Op: "ALL"}}}}},
		{"a THREAD REFERENCES UTF-8 ALL\r\n", "THREAD", false, &ThreadCommand{"REFERENCES", "UTF-8", &SearchKey{Op: "AND", Children: []*SearchKey{{Op: "ALL"}}}}},
		{"a ID NIL\r\n", "ID", false, &IDCommand{}},
		{"a ID (\"name\" \"mutt\" \"os\" NIL)\r\n", "ID", false, &IDCommand{Params: map[string]*string{"name": ptr("mutt"), "os": nil}}},
		{"a COMPRESS deflate\r\n", "COMPRESS", false, &CompressCommand{"DEFLATE"}},
	} {
		cmd, err := parseOne(t, tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if cmd.Tag != "a" || cmd.Name != tc.name || cmd.UID != tc.uid {
			t.Errorf("%q: got tag %q name %q uid %v", tc.in, cmd.Tag, cmd.Name, cmd.UID)
		}
		if tc.args != nil && !reflect.DeepEqual(cmd.Args, tc.args) {
			t.Errorf("%q:\n got %#v\nwant %#v", tc.in, cmd.Args, tc.args)
		}
	}
}

func ptr(s string) *string { return &s }

func TestCommandsInvalid(t *testing.T) {
	for _, tc := range []struct {
		in      string
		tag     string
		msgPart string
	}{
		{"\r\n", "", "empty"},
		{"+x NOOP\r\n", "", "tag"},
		{"a\r\n", "a", "missing command"},
		{"a FROB\r\n", "a", "unknown command"},
		{"a NOOP extra\r\n", "a", "unexpected"},
		{"a UID NOOP\r\n", "a", "not a command"},
		{"a LOGIN joe\r\n", "a", "missing"},
		{"a LOGIN \"joe pass\r\n", "a", "unterminated"},
		{"a LOGIN \"jo\\e\" x\r\n", "a", "escape"},
		{"a LOGIN \"\xff\xfe\" x\r\n", "a", "UTF-8"},
		{"a LOGIN j\xc3\xb6 x\r\n", "a", "8-bit"},
		{"a LOGIN j\x01 x\r\n", "a", "control"},
		{"a ENABLE\r\n", "a", "capability"},
		{"a SELECT foo (BOGUS)\r\n", "a", "unknown SELECT"},
		{"a SELECT foo (QRESYNC (0 1))\r\n", "a", "zero"},
		{"a STATUS foo (MESSAGES BOGUS)\r\n", "a", "unknown STATUS"},
		{"a STATUS foo ()\r\n", "a", "empty"},
		{"a APPEND foo\r\n", "a", "needs a message"},
		{"a APPEND foo \"hello\"\r\n", "a", "date"},
		{"a APPEND foo \"31-Feb-2020 00:00:00 +0000\" {1}\r\n", "a", "no such day"},
		{"a APPEND foo \" 1-Feb-2020 25:00:00 +0000\" {1}\r\n", "a", "bad time"},
		{"a FETCH 0 FLAGS\r\n", "a", "zero"},
		{"a FETCH 1:x FLAGS\r\n", "a", "sequence"},
		{"a FETCH 1,,2 FLAGS\r\n", "a", "sequence"},
		{"a FETCH 4294967296 FLAGS\r\n", "a", "range"},
		{"a FETCH 1 (FLAGS\r\n", "a", "unterminated"},
		{"a FETCH 1 BOGUS\r\n", "a", "unknown fetch item"},
		{"a FETCH 1 BODY[FOO]\r\n", "a", "unknown section"},
		{"a FETCH 1 BODY[MIME]\r\n", "a", "MIME needs"},
		{"a FETCH 1 BINARY[TEXT]\r\n", "a", "part numbers"},
		{"a FETCH 1 BODY[1.]\r\n", "a", "dot"},
		{"a FETCH 1 BODY[]<0.0>\r\n", "a", "zero"},
		{"a FETCH 1 FLAGS (VANISHED)\r\n", "a", "VANISHED"},
		{"a FETCH 1 FLAGS (CHANGEDSINCE 0)\r\n", "a", "CHANGEDSINCE"},
		{"a STORE 1 FLAGZ (\\Seen)\r\n", "a", "unknown STORE"},
		{"a STORE 1 (UNCHANGEDSINCE x) FLAGS (\\Seen)\r\n", "a", "number"},
		{"a SEARCH\r\n", "a", "missing"},
		{"a SEARCH BOGUS\r\n", "a", "unknown search key"},
		{"a SEARCH OR SEEN\r\n", "a", "missing"},
		{"a SEARCH SINCE 1-Foo-2000\r\n", "a", "month"},
		{"a SEARCH (SEEN\r\n", "a", "unterminated"},
		{"a SEARCH RETURN (BOGUS) ALL\r\n", "a", "return option"},
		{"a SEARCH MODSEQ \"/flags/x\" nope 1\r\n", "a", "entry type"},
		{"a SEARCH " + strings.Repeat("NOT ", 100) + "ALL\r\n", "a", "too deep"},
		{"a SEARCH " + strings.Repeat("(", 100) + "ALL" + strings.Repeat(")", 100) + "\r\n", "a", "too deep"},
		{"a SORT (REVERSE) UTF-8 ALL\r\n", "a", "REVERSE"},
		{"a LIST \"\" ()\r\n", "a", "empty pattern"},
		{"a LIST \"\" * RETURNS ()\r\n", "a", "RETURN"},
		{"a AUTHENTICATE PLAIN abc\r\n", "a", "base64"},
		{"a LOGIN {3x}\r\n", "a", "literal"},
		{"a LOGIN x {3}y\r\n", "a", "literal"},
		{"a COPY 1\r\n", "a", "missing"},
	} {
		_, err := parseOne(t, tc.in)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%q: got %v, want *Error", tc.in, err)
			continue
		}
		if pe.Tag != tc.tag || !strings.Contains(pe.Msg, tc.msgPart) {
			t.Errorf("%q: got tag %q msg %q, want tag %q and %q", tc.in, pe.Tag, pe.Msg, tc.tag, tc.msgPart)
		}
	}
}

// After a refused command the next one parses, including when the bad
// one carried a non-synchronising literal that must be skipped.
func TestResync(t *testing.T) {
	in := "a BOGUS {3+}\r\nabc more {2+}\r\nxy\r\n" +
		"b FETCH 1 (FLAGS\r\n" +
		"c LOGIN {3}\r\n" + // sync literal refused? no: accepted, needs Continue
		"joe x\r\n" +
		"d APPEND foo {1}\r\n\x00\r\n" + // NUL in a text literal
		"e NOOP\r\n"
	continues := 0
	r := NewReader(bufio.NewReader(strings.NewReader(in)), Options{Continue: func(string, int64) error { continues++; return nil }})
	var got []string
	for {
		cmd, err := r.ReadCommand()
		if err == io.EOF {
			break
		}
		var pe *Error
		switch {
		case errors.As(err, &pe):
			got = append(got, pe.Tag+" error")
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, cmd.Tag+" "+cmd.Name)
		}
	}
	want := []string{"a error", "b error", "c LOGIN", "d error", "e NOOP"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if continues != 2 {
		t.Errorf("Continue called %d times, want 2", continues)
	}
}

// A literal bomb is refused from its size, before anything is allocated
// or a continuation is sent.
func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		in        string
		opts      Options
		code      string
		fatal     bool
		continued bool
	}{
		{"a LOGIN {999999999999}\r\n", Options{}, "TOOBIG", false, false},
		{"a LOGIN {99999999999999999999999}\r\n", Options{}, "TOOBIG", false, false},
		{"a LOGIN {999999999999+}\r\n", Options{}, "TOOBIG", true, false},
		{"a APPEND x {11}\r\n", Options{MaxLiteral: 10}, "TOOBIG", false, false},
		{"a APPEND x {6}\r\n123456\r\n", Options{MaxLiteral: 10, MaxCommand: 20}, "TOOBIG", false, false},
		{"a NOOP " + strings.Repeat("x", 200) + "\r\nb NOOP\r\n", Options{MaxLine: 100}, "", false, false},
	} {
		continued := false
		tc.opts.Continue = func(string, int64) error { continued = true; return nil }
		r := NewReader(bufio.NewReader(strings.NewReader(tc.in)), tc.opts)
		_, err := r.ReadCommand()
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%.40q: got %v", tc.in, err)
			continue
		}
		if pe.Code != tc.code || pe.Fatal != tc.fatal || continued != tc.continued {
			t.Errorf("%.40q: got %+v continued=%v", tc.in, pe, continued)
		}
		if tc.code == "TOOBIG" && !errors.Is(err, ErrTooBig) {
			t.Errorf("%.40q: errors.Is(ErrTooBig) false", tc.in)
		}
	}
	// The over-long line was skipped: the next command reads.
	r := NewReader(bufio.NewReader(strings.NewReader("a NOOP "+strings.Repeat("x", 200)+"\r\nb NOOP\r\n")), Options{MaxLine: 100})
	r.ReadCommand()
	if cmd, err := r.ReadCommand(); err != nil || cmd.Tag != "b" {
		t.Errorf("after long line: %v %v", cmd, err)
	}
}

func TestReadLineAndEOF(t *testing.T) {
	r := NewReader(bufio.NewReader(strings.NewReader("DONE\r\na NOOP")), Options{})
	if l, err := r.ReadLine(); err != nil || l != "DONE" {
		t.Errorf("ReadLine = %q, %v", l, err)
	}
	if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated command: %v", err)
	}
	r = NewReader(bufio.NewReader(strings.NewReader("a LOGIN {5}\r\nab")), Options{})
	if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated literal: %v", err)
	}
}

func TestSeqSet(t *testing.T) {
	for _, tc := range []struct {
		in       string
		n, max   uint32
		contains bool
	}{
		{"1:3", 2, 10, true},
		{"1:3", 4, 10, false},
		{"3:1", 2, 10, true},
		{"5:*", 10, 10, true},
		{"*", 10, 10, true},
		{"*", 9, 10, false},
		{"*:5", 7, 10, true},
		{"1,3,5", 4, 10, false},
	} {
		r := NewReader(bufio.NewReader(strings.NewReader("")), Options{})
		r.line = []byte(tc.in)
		s, err := r.seqSet()
		if err != nil || !r.eol() {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if s.String() != tc.in {
			t.Errorf("%s: String = %s", tc.in, s)
		}
		if s.Contains(tc.n, tc.max) != tc.contains {
			t.Errorf("%s Contains(%d,%d) != %v", tc.in, tc.n, tc.max, tc.contains)
		}
	}
}

func TestLongLineRecovery(t *testing.T) {
	long := strings.Repeat("x", 300)
	in := "t1 LOGIN " + long + " {4+}\r\nab\r\n" + // over-long, ends in a literal
		"cd\r\n" + // rest of t1 after the literal
		"t2 NOOP\r\n"
	r := NewReader(bufio.NewReaderSize(strings.NewReader(in), 16), Options{MaxLine: 100})
	_, err := r.ReadCommand()
	var pe *Error
	if !errors.As(err, &pe) || pe.Tag != "t1" || pe.Fatal || !strings.Contains(pe.Msg, "too long") {
		t.Fatalf("long line: %v", err)
	}
	cmd, err := r.ReadCommand()
	if err != nil || cmd.Tag != "t2" {
		t.Fatalf("after long line with literal: %v %v", cmd, err)
	}
}

func TestLiteralMinus(t *testing.T) {
	opts := Options{MaxNonSync: 4096}
	r := NewReader(bufio.NewReader(strings.NewReader("a APPEND x {4097+}\r\n")), opts)
	_, err := r.ReadCommand()
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "TOOBIG" || !pe.Fatal {
		t.Errorf("4097-octet non-sync literal under LITERAL-: %v", err)
	}
	// The same size as a synchronising literal is fine.
	in := "a APPEND x {4097}\r\n" + strings.Repeat("y", 4097) + "\r\n"
	r = NewReader(bufio.NewReader(strings.NewReader(in)), opts)
	if _, err := r.ReadCommand(); err != nil {
		t.Errorf("sync literal: %v", err)
	}
}

func TestQuotaAndUTF8Append(t *testing.T) {
	for _, tc := range []struct {
		in   string
		args any
	}{
		{"a GETQUOTA \"\"\r\n", &QuotaCommand{""}},
		{"a GETQUOTAROOT inbox\r\n", &QuotaCommand{"INBOX"}},
		{"a SETQUOTA \"\" (STORAGE 512 message 1000)\r\n", &SetQuotaCommand{"", map[string]uint64{"STORAGE": 512, "MESSAGE": 1000}}},
		{"a SETQUOTA \"\" ()\r\n", &SetQuotaCommand{"", map[string]uint64{}}},
		{"a APPEND x UTF8 (~{2}\r\nhi)\r\n", &AppendCommand{"x", []AppendMessage{{Data: []byte("hi"), Binary: true, UTF8: true}}}},
	} {
		cmd, err := parseOne(t, tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(cmd.Args, tc.args) {
			t.Errorf("%q:\n got %#v\nwant %#v", tc.in, cmd.Args, tc.args)
		}
	}
	for _, in := range []string{
		"a SETQUOTA \"\" (STORAGE 1 STORAGE 2)\r\n",
		"a SETQUOTA \"\" (STORAGE)\r\n",
		"a APPEND x UTF8 ({2}\r\nhi)\r\n",
		"a APPEND x UTF8 (~{2}\r\nhi\r\n",
		"a APPEND x UTF9 (~{2}\r\nhi)\r\n",
	} {
		if _, err := parseOne(t, in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestOctetStrings(t *testing.T) {
	// A Latin-1 password in a literal is octets, not refused.
	cmd, err := parseOne(t, "a LOGIN joe {3}\r\np\xe4s\r\n")
	if err != nil || cmd.Args.(*LoginCommand).Password != "p\xe4s" {
		t.Errorf("latin-1 literal password: %v", err)
	}
	// A search string in a declared charset likewise.
	cmd, err = parseOne(t, "a SEARCH CHARSET ISO-8859-1 SUBJECT {1}\r\n\xe4\r\n")
	if err != nil || cmd.Args.(*SearchCommand).Key.Children[0].Str != "\xe4" {
		t.Errorf("latin-1 search string: %v", err)
	}
	// But a mailbox name must be UTF-8, and numbers have no leading zero.
	for _, in := range []string{
		"a SELECT {2}\r\n\xe4x\r\n",
		"a FETCH 01 FLAGS\r\n",
	} {
		if _, err := parseOne(t, in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func BenchmarkReadFetch(b *testing.B) {
	line := "a123 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT TO CC MESSAGE-ID)]) (CHANGEDSINCE 12345)\r\n"
	in := strings.NewReader("")
	br := bufio.NewReader(in)
	r := NewReader(br, Options{})
	b.ReportAllocs()
	for b.Loop() {
		in.Reset(line)
		br.Reset(in)
		if _, err := r.ReadCommand(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVanishedNeedsUID(t *testing.T) {
	if _, err := parseOne(t, "a FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\r\n"); err == nil {
		t.Error("FETCH with VANISHED accepted without UID")
	}
}

func TestCommandLogValue(t *testing.T) {
	cmd, err := parseOne(t, "a7 LOGIN joe secret\r\n")
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("cmd", "c", cmd)
	if strings.Contains(buf.String(), "secret") || !strings.Contains(buf.String(), "c.command=LOGIN") {
		t.Errorf("log line %q", buf.String())
	}
}

// The server can refuse a synchronising literal from its size and
// command (APPENDLIMIT); the session continues with the next command.
func TestContinueRefuses(t *testing.T) {
	var seen []string
	cont := func(cmd string, n int64) error {
		seen = append(seen, cmd)
		if cmd == "APPEND" && n > 10 {
			return &Error{Code: "TOOBIG", Msg: "over APPENDLIMIT"}
		}
		return nil
	}
	in := "a APPEND x {11}\r\nb LOGIN {1}\r\nj p\r\n"
	r := NewReader(bufio.NewReader(strings.NewReader(in)), Options{Continue: cont})
	_, err := r.ReadCommand()
	var pe *Error
	if !errors.As(err, &pe) || pe.Tag != "a" || pe.Code != "TOOBIG" || pe.Fatal {
		t.Fatalf("got %v", err)
	}
	cmd, err := r.ReadCommand()
	if err != nil || cmd.Tag != "b" {
		t.Fatalf("next command: %v %v", cmd, err)
	}
	if !reflect.DeepEqual(seen, []string{"APPEND", "LOGIN"}) {
		t.Errorf("Continue saw %v", seen)
	}
	// A connection error from Continue is returned as is.
	boom := errors.New("write failed")
	r = NewReader(bufio.NewReader(strings.NewReader("a LOGIN {1}\r\n")), Options{Continue: func(string, int64) error { return boom }})
	if _, err := r.ReadCommand(); err != boom {
		t.Errorf("got %v, want %v", err, boom)
	}
}

func TestIdleAndAuthLines(t *testing.T) {
	r := NewReader(bufio.NewReader(strings.NewReader("done\r\nNOPE\r\nAGpvZQBzZWNyZXQ=\r\n*\r\n\r\n!!!\r\n")), Options{})
	if err := r.ReadDone(); err != nil {
		t.Errorf("done: %v", err)
	}
	var pe *Error
	if err := r.ReadDone(); !errors.As(err, &pe) {
		t.Errorf("NOPE: %v", err)
	}
	if d, c, err := r.ReadAuthResponse(); err != nil || c || string(d) != "\x00joe\x00secret" {
		t.Errorf("auth data: %q %v %v", d, c, err)
	}
	if _, c, err := r.ReadAuthResponse(); err != nil || !c {
		t.Errorf("cancel: %v %v", c, err)
	}
	if d, c, err := r.ReadAuthResponse(); err != nil || c || len(d) != 0 {
		t.Errorf("empty: %q %v %v", d, c, err)
	}
	if _, _, err := r.ReadAuthResponse(); !errors.As(err, &pe) {
		t.Errorf("bad base64: %v", err)
	}
}

// A literal is read into a buffer that grows with what arrives: announcing
// 64 MiB and sending a few octets costs a few octets' worth, not 64 MiB.
func TestLiteralGrowsWithData(t *testing.T) {
	in := "a APPEND INBOX {67108864+}\r\nonly this much"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewReader(bufio.NewReader(strings.NewReader(in)), Options{MaxLiteral: 64 << 20, MaxCommand: 65 << 20})
	_, err := r.ReadCommand()
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a short literal was taken")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("reading a 13-octet start of a 64 MiB literal allocated %d MB", got>>20)
	}
	// A whole literal still arrives whole.
	big := strings.Repeat("x", 300000)
	r = NewReader(bufio.NewReader(strings.NewReader("a APPEND INBOX {300000+}\r\n"+big+"\r\n")), Options{})
	cmd, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	if got := cmd.Args.(*AppendCommand).Messages[0].Data; string(got) != big {
		t.Errorf("literal of %d octets came back as %d", len(big), len(got))
	}
}
