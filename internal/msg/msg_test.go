package msg

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// body returns the bytes of a part's body.
func body(raw string, p *Part) string { return raw[p.BodyStart:p.End] }

func hdr(raw string, p *Part) string { return raw[p.HeaderStart:p.BodyStart] }

func TestSimpleMessage(t *testing.T) {
	raw := crlf(`Date: Tue, 24 Nov 2026 04:05:10 +0000
From: Peter Pan <pp@example.org>
To: bob@example.org, "Carol, C." <carol@example.net>
Subject: =?utf-8?q?hello?=
Message-ID: <1@example.org>
In-Reply-To: <0@example.org>

Hello.
Second line.
`)
	m := ParseBytes([]byte(raw))
	p := &m.Part
	if p.Type != "text" || p.Subtype != "plain" || !reflect.DeepEqual(p.Params, [][2]string{{"charset", "us-ascii"}}) || p.Encoding != "7bit" {
		t.Errorf("defaults: %s/%s %v %s", p.Type, p.Subtype, p.Params, p.Encoding)
	}
	if body(raw, p) != "Hello.\r\nSecond line.\r\n" || p.Lines != 2 || p.Size() != 22 {
		t.Errorf("body %q lines %d size %d", body(raw, p), p.Lines, p.Size())
	}
	if !strings.HasSuffix(hdr(raw, p), "In-Reply-To: <0@example.org>\r\n\r\n") || p.HeaderStart != 0 {
		t.Errorf("header ends %q", hdr(raw, p))
	}
	e := m.Envelope
	want := Envelope{
		Date:      "Tue, 24 Nov 2026 04:05:10 +0000",
		Subject:   "=?utf-8?q?hello?=",
		From:      []Address{{Name: "Peter Pan", Mailbox: "pp", Host: "example.org"}},
		Sender:    []Address{{Name: "Peter Pan", Mailbox: "pp", Host: "example.org"}},
		ReplyTo:   []Address{{Name: "Peter Pan", Mailbox: "pp", Host: "example.org"}},
		To:        []Address{{Mailbox: "bob", Host: "example.org"}, {Name: "Carol, C.", Mailbox: "carol", Host: "example.net"}},
		InReplyTo: "<0@example.org>",
		MessageID: "<1@example.org>",
	}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("envelope\n got %+v\nwant %+v", e, want)
	}
}

const mixed = `From: a@example.org
Subject: attachment
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

plain text
--inner
Content-Type: text/html; charset="utf-8"

<p>html</p>
--inner--
--outer
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64
Content-ID: <pdf@example.org>
Content-Description: the report
Content-Language: en, fr

JVBERi0xLjQK
--outer
Content-Type: message/rfc822

From: inner@example.net
Subject: forwarded

inner body
line two
--outer--
epilogue
`

func TestNestedMultipart(t *testing.T) {
	raw := crlf(mixed)
	m := ParseBytes([]byte(raw))
	root := &m.Part
	if root.Type != "multipart" || root.Subtype != "mixed" || root.Param("boundary") != "outer" || len(root.Children) != 3 {
		t.Fatalf("root: %s/%s %v, %d children", root.Type, root.Subtype, root.Params, len(root.Children))
	}
	if root.End != int64(len(raw)) {
		t.Errorf("root ends at %d, want %d", root.End, len(raw))
	}
	alt := &root.Children[0]
	if alt.Subtype != "alternative" || len(alt.Children) != 2 {
		t.Fatalf("alternative: %s %d", alt.Subtype, len(alt.Children))
	}
	if got := body(raw, &alt.Children[0]); got != "plain text" {
		t.Errorf("text/plain body %q (the CRLF before the boundary is the boundary's)", got)
	}
	// Lines count the line ends inside the body; the last one before a
	// boundary is the boundary's, so "plain text" has none (as Dovecot counts).
	if alt.Children[0].Encoding != "quoted-printable" || alt.Children[0].Lines != 0 {
		t.Errorf("text/plain: %s lines %d", alt.Children[0].Encoding, alt.Children[0].Lines)
	}
	if got := body(raw, &alt.Children[1]); got != "<p>html</p>" {
		t.Errorf("text/html body %q", got)
	}
	if got := hdr(raw, &alt.Children[1]); got != "Content-Type: text/html; charset=\"utf-8\"\r\n\r\n" {
		t.Errorf("text/html header (MIME section) %q", got)
	}
	if got := body(raw, alt); got != crlf("--inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nplain text\n--inner\nContent-Type: text/html; charset=\"utf-8\"\n\n<p>html</p>\n--inner--") {
		t.Errorf("alternative body %q", got)
	}
	pdf := &root.Children[1]
	if pdf.Type != "application" || pdf.Subtype != "pdf" || pdf.Param("name") != "report.pdf" ||
		pdf.Disposition != "attachment" || !reflect.DeepEqual(pdf.DispositionParams, [][2]string{{"filename", "report.pdf"}}) ||
		pdf.Encoding != "base64" || pdf.ID != "<pdf@example.org>" || pdf.Description != "the report" ||
		!reflect.DeepEqual(pdf.Language, []string{"en", "fr"}) || pdf.Lines != 0 {
		t.Errorf("pdf part: %+v", pdf)
	}
	if got := body(raw, pdf); got != "JVBERi0xLjQK" {
		t.Errorf("pdf body %q", got)
	}
	fwd := &root.Children[2]
	if fwd.Message == nil {
		t.Fatal("message/rfc822 not parsed")
	}
	if got := body(raw, fwd); got != crlf("From: inner@example.net\nSubject: forwarded\n\ninner body\nline two") {
		t.Errorf("message/rfc822 body %q", got)
	}
	// RFC 3501: the lines of a message/rfc822 body are those of the whole
	// encapsulated message: 4 line ends inside (the last one is the boundary's).
	if fwd.Lines != 4 {
		t.Errorf("message/rfc822 lines %d, want 4", fwd.Lines)
	}
	in := fwd.Message
	if in.Envelope.Subject != "forwarded" || body(raw, &in.Part) != "inner body\r\nline two" || in.Part.Lines != 1 {
		t.Errorf("inner message: %+v body %q lines %d", in.Envelope, body(raw, &in.Part), in.Part.Lines)
	}
}

func TestSection(t *testing.T) {
	raw := crlf(mixed)
	m := ParseBytes([]byte(raw))
	for _, tc := range []struct {
		path []int
		body string
		ok   bool
	}{
		{[]int{1, 1}, "plain text", true},
		{[]int{1, 2}, "<p>html</p>", true},
		{[]int{2}, "JVBERi0xLjQK", true},
		{[]int{3, 1}, "inner body\r\nline two", true}, // part 1 of a non-multipart embedded message is its body
		{[]int{4}, "", false},
		{[]int{1, 3}, "", false},
		{[]int{2, 1}, "JVBERi0xLjQK", true}, // part 1 of a non-multipart part is the part itself (RFC 9051 6.4.5)
		{[]int{2, 2}, "", false},
		{[]int{0}, "", false},
	} {
		p, ok := m.Section(tc.path)
		if ok != tc.ok || ok && body(raw, p) != tc.body {
			got := ""
			if p != nil {
				got = body(raw, p)
			}
			t.Errorf("Section(%v) = %q, %v", tc.path, got, ok)
		}
	}
	single := ParseBytes([]byte(crlf("Subject: x\n\nbody\n")))
	if p, ok := single.Section([]int{1}); !ok || p != &single.Part {
		t.Error("part 1 of a single-part message is the message body")
	}
}

func TestDigestDefaultsToMessage(t *testing.T) {
	raw := crlf(`Content-Type: multipart/digest; boundary=d

--d

From: one@example.org
Subject: one

first
--d
Content-Type: text/plain

not a message
--d--
`)
	m := ParseBytes([]byte(raw))
	c := m.Part.Children
	if len(c) != 2 || c[0].Type != "message" || c[0].Subtype != "rfc822" || c[0].Message == nil || c[0].Message.Envelope.Subject != "one" {
		t.Fatalf("digest child 1: %+v", c)
	}
	if c[1].Type != "text" || c[1].Message != nil {
		t.Errorf("digest child 2: %s/%s", c[1].Type, c[1].Subtype)
	}
}

func TestRFC2231Parameters(t *testing.T) {
	raw := crlf(`Content-Type: application/x-stuff;
 title*0*=us-ascii'en'This%20is%20even%20more%20;
 title*1*=%2A%2A%2Afun%2A%2A%2A%20;
 title*2="isn't it!"; simple="a \"quoted\" value"; (comment) other=plain
Content-Disposition: attachment; filename*=iso-8859-1''caf%E9.txt

x
`)
	p := ParseBytes([]byte(raw)).Part
	if got := p.Param("title"); got != "This is even more ***fun*** isn't it!" {
		t.Errorf("title = %q", got) // RFC 2231 section 4.1's example
	}
	if got := p.Param("simple"); got != `a "quoted" value` {
		t.Errorf("simple = %q", got)
	}
	if got := p.Param("other"); got != "plain" {
		t.Errorf("other = %q", got)
	}
	if !reflect.DeepEqual(p.DispositionParams, [][2]string{{"filename", "café.txt"}}) {
		t.Errorf("filename = %q", p.DispositionParams)
	}
}

func TestAddressLists(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Address
	}{
		{"pp@example.org", []Address{{Mailbox: "pp", Host: "example.org"}}},
		{`"Pan, Peter" <pp@example.org>`, []Address{{Name: "Pan, Peter", Mailbox: "pp", Host: "example.org"}}},
		{"Peter  Q.  Pan <pp@example.org> (comment)", []Address{{Name: "Peter Q. Pan", Mailbox: "pp", Host: "example.org"}}},
		{"=?utf-8?q?P=C3=A9ter?= <pp@example.org>", []Address{{Name: "=?utf-8?q?P=C3=A9ter?=", Mailbox: "pp", Host: "example.org"}}},
		{"<@relay.example:pp@example.org>", []Address{{Adl: "@relay.example", Mailbox: "pp", Host: "example.org"}}},
		{"undisclosed-recipients:;", []Address{{Mailbox: "undisclosed-recipients"}, {}}},
		{"team: a@x.example, B <b@y.example>; c@z.example", []Address{
			{Mailbox: "team"}, {Mailbox: "a", Host: "x.example"}, {Name: "B", Mailbox: "b", Host: "y.example"}, {},
			{Mailbox: "c", Host: "z.example"},
		}},
		{"a@x.example,, ,b@y.example", []Address{{Mailbox: "a", Host: "x.example"}, {Mailbox: "b", Host: "y.example"}}},
		{`"odd local"@example.org`, []Address{{Mailbox: "odd local", Host: "example.org"}}},
		{"user@[192.0.2.1]", []Address{{Mailbox: "user", Host: "[192.0.2.1]"}}},
		{"", nil},
		{"<<<>>>", nil},
	} {
		got := ParseAddressList(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAddressList(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestMalformedInput(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		check     func(t *testing.T, raw string, m *Message)
	}{
		{"no blank line: the header ends at the first non-field line", "Subject: x\nthis is body\nmore\n", func(t *testing.T, raw string, m *Message) {
			if body(raw, &m.Part) != "this is body\r\nmore\r\n" || m.Envelope.Subject != "x" {
				t.Errorf("body %q subject %q", body(raw, &m.Part), m.Envelope.Subject)
			}
		}},
		{"header only", "Subject: only a header\n", func(t *testing.T, raw string, m *Message) {
			if m.Part.BodyStart != int64(len(raw)) || m.Part.Size() != 0 || m.Envelope.Subject != "only a header" {
				t.Errorf("%+v", m.Part)
			}
		}},
		{"empty", "", func(t *testing.T, raw string, m *Message) {
			if m.Part.End != 0 || m.Part.Type != "text" {
				t.Errorf("%+v", m.Part)
			}
		}},
		{"boundary never appears", "Content-Type: multipart/mixed; boundary=zz\n\nno parts here\n", func(t *testing.T, raw string, m *Message) {
			if m.Part.Type != "multipart" || len(m.Part.Children) != 0 || m.Part.End != int64(len(raw)) {
				t.Errorf("%+v", m.Part)
			}
		}},
		{"multipart without boundary is text", "Content-Type: multipart/mixed\n\n--x\nhi\n", func(t *testing.T, raw string, m *Message) {
			if m.Part.Type != "text" || m.Part.Subtype != "plain" {
				t.Errorf("%s/%s", m.Part.Type, m.Part.Subtype)
			}
		}},
		{"no close delimiter", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n", func(t *testing.T, raw string, m *Message) {
			if len(m.Part.Children) != 2 || body(raw, &m.Part.Children[1]) != "two\r\n" {
				t.Errorf("%+v", m.Part.Children)
			}
		}},
		{"bad content-type", "Content-Type: garbage\n\nx\n", func(t *testing.T, raw string, m *Message) {
			if m.Part.Type != "text" || m.Part.Subtype != "plain" {
				t.Errorf("%s/%s", m.Part.Type, m.Part.Subtype)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := crlf(tc.raw)
			tc.check(t, raw, ParseBytes([]byte(raw)))
		})
	}
}

func TestLFOnlyOffsets(t *testing.T) {
	raw := "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b--\n"
	m := ParseBytes([]byte(raw))
	if len(m.Part.Children) != 1 || body(raw, &m.Part.Children[0]) != "one" {
		t.Errorf("LF-only part body %q", body(raw, &m.Part.Children[0]))
	}
}

func TestDeepNestingIsBounded(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 200; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + strings.Repeat("x", i) + "\r\n\r\n--b" + strings.Repeat("x", i) + "\r\n")
	}
	b.WriteString("\r\nleaf\r\n")
	m := ParseBytes([]byte(b.String()))
	depth := 0
	for p := &m.Part; len(p.Children) > 0; p = &p.Children[0] {
		depth++
	}
	if depth > MaxDepth {
		t.Errorf("nesting depth %d exceeds %d", depth, MaxDepth)
	}
	if _, err := Unmarshal(m.Marshal()); err != nil {
		t.Errorf("deep message does not round-trip: %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, raw := range []string{crlf(mixed), crlf("Subject: x\n\nbody\n"), ""} {
		m := ParseBytes([]byte(raw))
		back, err := Unmarshal(m.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, back) {
			t.Errorf("round trip differs:\n%+v\n%+v", m, back)
		}
	}
	for _, bad := range [][]byte{nil, {}, {9}, {encodingVersion}, {encodingVersion, 0xff, 0xff, 0xff}} {
		if _, err := Unmarshal(bad); err == nil {
			t.Errorf("Unmarshal(%v) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(crlf(mixed)))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b--\n"))
	f.Add([]byte("Content-Type: message/rfc822\n\nSubject: x\n\ny\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := ParseBytes(raw)
		var check func(p *Part)
		check = func(p *Part) {
			if p.HeaderStart < 0 || p.HeaderStart > p.BodyStart || p.BodyStart > p.End || p.End > int64(len(raw)) || p.Lines < 0 {
				t.Fatalf("bad offsets %d %d %d (size %d)", p.HeaderStart, p.BodyStart, p.End, len(raw))
			}
			for i := range p.Children {
				c := &p.Children[i]
				if c.HeaderStart < p.BodyStart || c.End > p.End {
					t.Fatalf("child %d..%d outside parent body %d..%d", c.HeaderStart, c.End, p.BodyStart, p.End)
				}
				check(c)
			}
			if p.Message != nil {
				check(&p.Message.Part)
			}
		}
		check(&m.Part)
		// Reading from a ReaderAt (a spool file) gives the same structure.
		if m2, err := Parse(bytes.NewReader(raw), int64(len(raw))); err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("Parse and ParseBytes differ: %v", err)
		}
		back, err := Unmarshal(m.Marshal())
		if err != nil || !reflect.DeepEqual(m, back) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(ParseBytes([]byte(crlf(mixed))).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		Unmarshal(b) // must not panic or allocate wildly
	})
}

func BenchmarkParse4K(b *testing.B) {
	raw := []byte(crlf("From: a@example.org\nTo: b@example.org\nSubject: hello\nMessage-ID: <1@x>\nDate: Tue, 24 Nov 2026 04:05:10 +0000\n\n" + strings.Repeat(strings.Repeat("y", 76)+"\n", 50)))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		ParseBytes(raw).Marshal()
	}
}

func BenchmarkParse100KMultipart(b *testing.B) {
	raw := []byte(crlf(strings.Replace(mixed, "JVBERi0xLjQK", strings.Repeat(strings.Repeat("Q", 76)+"\n", 1300), 1)))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		ParseBytes(raw).Marshal()
	}
}
