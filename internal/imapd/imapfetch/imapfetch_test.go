package imapfetch

import (
	"bytes"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
)

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// render runs f on a Writer and returns what it wrote.
func render(t testing.TB, utf8 bool, f func(w *imapwire.Writer)) string {
	var b bytes.Buffer
	w := imapwire.NewWriter(&b)
	w.UTF8 = utf8
	f(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// lines returns n lines of width characters, each ended by CRLF.
func lines(n, width int) string {
	return strings.Repeat(strings.Repeat("x", width)+"\r\n", n)
}

// rfc3501Sample is the message of the sample connection in RFC 3501
// section 8 (FETCH 12 FULL): its header as shown there, and a body of 3028
// octets in 92 lines (84 lines of 31 characters, 8 of 30, each with CRLF).
var rfc3501Sample = crlf(`Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

`) + lines(84, 31) + lines(8, 30)

// rfc3501Multipart is built to match the two-part example of RFC 3501
// section 7.4.2 (BODYSTRUCTURE): a text part of 1152 octets in 23 lines
// (22 of 48 characters, one of 50, with CRLF) and a BASE64 text attachment
// of 4554 octets in 73 lines (45 of 60, 28 of 61). The empty line before
// each delimiter is the CRLF that belongs to the delimiter (RFC 2046 5.1.1).
var rfc3501Multipart = crlf(`MIME-Version: 1.0
Content-Type: MULTIPART/MIXED; BOUNDARY=b

--b
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII

`) + lines(22, 48) + lines(1, 50) + crlf(`
--b
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff
Content-ID: <960723163407.20117h@cac.washington.edu>
Content-Description: Compiler diff
Content-Transfer-Encoding: BASE64

`) + lines(45, 60) + lines(28, 61) + crlf(`
--b--
`)

var alternative = crlf(`From: a@example.org
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Hi

--alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Hi</p>

--alt--
`)

var nested = crlf(`Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

one

--inner--

--outer
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"; size=3
Content-Transfer-Encoding: base64
Content-Language: en, de
Content-Location: http://example.org/r.pdf

QUJD

--outer
Content-Type: message/rfc822
Content-Disposition: inline

From: "Bob B." <bob@example.net>
Subject: inner
Date: Mon, 1 Dec 2026 10:00:00 +0000
Message-ID: <in@example.net>
Content-Language: fr

Bonjour

--outer--
`)

var rfc2231 = crlf(`Content-Type: application/octet-stream; name*0="long"; name*1="name.txt"
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.txt;
 title*=iso-8859-1'en'caf%E9

x
`)

const defaultText = `("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" `

func TestBodyStructure(t *testing.T) {
	tests := []struct {
		name, raw string
		utf8      bool
		body      string // BODY
		bs        string // BODYSTRUCTURE
	}{
		{
			name: "RFC 3501 section 8 sample",
			raw:  rfc3501Sample,
			body: `("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)`,
			bs:   `("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)`,
		},
		{
			name: "RFC 3501 section 7.4.2 multipart example",
			raw:  rfc3501Multipart,
			body: `(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)` +
				`("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")`,
			bs: `(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)` +
				`("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 NIL NIL NIL NIL)` +
				` "MIXED" ("BOUNDARY" "b") NIL NIL NIL)`,
		},
		{
			name: "multipart/alternative",
			raw:  alternative,
			body: `(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 4 1)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 11 1) "ALTERNATIVE")`,
			bs: `(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 4 1 NIL NIL NIL NIL)` +
				`("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 11 1 NIL NIL NIL NIL)` +
				` "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL)`,
		},
		{
			name: "nested mixed with attachment and message/rfc822",
			raw:  nested,
			body: `((` + defaultText + `5 1) "ALTERNATIVE")` +
				`("APPLICATION" "PDF" ("NAME" "report.pdf") NIL NIL "BASE64" 6)` +
				`("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 151 ` +
				`("Mon, 1 Dec 2026 10:00:00 +0000" "inner" (("Bob B." NIL "bob" "example.net")) (("Bob B." NIL "bob" "example.net")) (("Bob B." NIL "bob" "example.net")) NIL NIL NIL NIL "<in@example.net>") ` +
				defaultText + `9 1) 7) "MIXED")`,
			bs: `((` + defaultText + `5 1 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)` +
				`("APPLICATION" "PDF" ("NAME" "report.pdf") NIL NIL "BASE64" 6 NIL ("ATTACHMENT" ("FILENAME" "report.pdf" "SIZE" "3")) ("en" "de") "http://example.org/r.pdf")` +
				`("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 151 ` +
				`("Mon, 1 Dec 2026 10:00:00 +0000" "inner" (("Bob B." NIL "bob" "example.net")) (("Bob B." NIL "bob" "example.net")) (("Bob B." NIL "bob" "example.net")) NIL NIL NIL NIL "<in@example.net>") ` +
				defaultText + `9 1 NIL NIL "fr" NIL) 7 NIL ("INLINE" NIL) NIL NIL)` +
				` "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)`,
		},
		{
			name: "RFC 2231 parameters to a client without UTF-8",
			raw:  rfc2231,
			body: `("APPLICATION" "OCTET-STREAM" ("NAME" "longname.txt") NIL NIL "7BIT" 3)`,
			bs: `("APPLICATION" "OCTET-STREAM" ("NAME" "longname.txt") NIL NIL "7BIT" 3 NIL` +
				` ("ATTACHMENT" ("FILENAME*" "utf-8''%E2%82%AC%20rates.txt" "TITLE*" "utf-8''caf%C3%A9")) NIL NIL)`,
		},
		{
			name: "RFC 2231 parameters to a UTF-8 client",
			raw:  rfc2231,
			utf8: true,
			body: `("APPLICATION" "OCTET-STREAM" ("NAME" "longname.txt") NIL NIL "7BIT" 3)`,
			bs:   `("APPLICATION" "OCTET-STREAM" ("NAME" "longname.txt") NIL NIL "7BIT" 3 NIL ("ATTACHMENT" ("FILENAME" "€ rates.txt" "TITLE" "café")) NIL NIL)`,
		},
		{
			name: "no header at all",
			raw:  "hello\r\n",
			body: defaultText + `7 1)`,
			bs:   defaultText + `7 1 NIL NIL NIL NIL)`,
		},
		{
			name: "text without charset gets the default",
			raw:  "Content-Type: text/plain; format=flowed\r\n\r\nab\r\n",
			body: `("TEXT" "PLAIN" ("FORMAT" "flowed" "CHARSET" "us-ascii") NIL NIL "7BIT" 4 1)`,
			bs:   `("TEXT" "PLAIN" ("FORMAT" "flowed" "CHARSET" "us-ascii") NIL NIL "7BIT" 4 1 NIL NIL NIL NIL)`,
		},
		{
			name: "unreadable Content-Type is text/plain",
			raw:  "Content-Type: garbage\r\nContent-Transfer-Encoding: 8BIT\r\n\r\nabc\r\n",
			body: `("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "8BIT" 5 1)`,
			bs:   `("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "8BIT" 5 1 NIL NIL NIL NIL)`,
		},
		{
			name: "multipart without boundary is text/plain",
			raw:  "Content-Type: multipart/mixed\r\n\r\nabc\r\n",
			body: defaultText + `5 1)`,
			bs:   defaultText + `5 1 NIL NIL NIL NIL)`,
		},
		{
			name: "multipart whose boundary never appears still has a body",
			raw:  "Content-Type: multipart/mixed; boundary=x\r\n\r\nno parts\r\n",
			body: `(` + defaultText + `0 0) "MIXED")`,
			bs:   `(` + defaultText + `0 0 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "x") NIL NIL NIL)`,
		},
		{
			name: "Content-ID, description, MD5, one language, location on a single part",
			raw: crlf(`Content-Type: image/png; name="a b.png"
Content-ID: <img1@x>
Content-Description: a "quoted" \ picture
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Language: en-GB
Content-Location: cid-loc

AAAA
`),
			body: `("IMAGE" "PNG" ("NAME" "a b.png") "<img1@x>" "a \"quoted\" \\ picture" "7BIT" 6)`,
			bs:   `("IMAGE" "PNG" ("NAME" "a b.png") "<img1@x>" "a \"quoted\" \\ picture" "7BIT" 6 "Q2hlY2sgSW50ZWdyaXR5IQ==" NIL "en-GB" "cid-loc")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := msg.ParseBytes([]byte(tt.raw))
			if got := render(t, tt.utf8, func(w *imapwire.Writer) { Body(w, &m.Part, Options{}) }); got != tt.body {
				t.Errorf("BODY\n got %s\nwant %s", got, tt.body)
			}
			if got := render(t, tt.utf8, func(w *imapwire.Writer) { BodyStructure(w, &m.Part, Options{}) }); got != tt.bs {
				t.Errorf("BODYSTRUCTURE\n got %s\nwant %s", got, tt.bs)
			}
		})
	}
}

func TestEnvelope(t *testing.T) {
	tests := []struct {
		name, header string
		utf8         bool
		want         string
	}{
		{
			name:   "RFC 3501 section 8 sample",
			header: rfc3501Sample,
			want: `("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes"` +
				` (("Terry Gray" NIL "gray" "cac.washington.edu"))` +
				` (("Terry Gray" NIL "gray" "cac.washington.edu"))` +
				` (("Terry Gray" NIL "gray" "cac.washington.edu"))` +
				` ((NIL NIL "imap" "cac.washington.edu"))` +
				` ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL` +
				` "<B27397-0100000@cac.washington.edu>")`,
		},
		{
			name:   "missing headers are NIL",
			header: "\r\nbody\r\n",
			want:   `(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)`,
		},
		{
			name: "groups",
			header: crlf(`From: a@x.example
Sender: s@y.example
To: undisclosed-recipients:;
Cc: A Group: a@b.example, Joe <j@c.example>; , d@e.example
Bcc: g: foo;

`),
			want: `(NIL NIL ((NIL NIL "a" "x.example")) ((NIL NIL "s" "y.example")) ((NIL NIL "a" "x.example"))` +
				` ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))` +
				` ((NIL NIL "A Group" NIL)(NIL NIL "a" "b.example")("Joe" NIL "j" "c.example")(NIL NIL NIL NIL)(NIL NIL "d" "e.example"))` +
				` ((NIL NIL "g" NIL)(NIL NIL "foo" "")(NIL NIL NIL NIL)) NIL NIL)`,
		},
		{
			name: "reply-to, source route, address without domain, in-reply-to",
			header: crlf(`From: foo
Reply-To: "Help, Desk" <help@z.example>
To: <@relay.example:s@x.example>
In-Reply-To: <0@x>
Message-ID: <1@x>

`),
			want: `(NIL NIL ((NIL NIL "foo" "")) ((NIL NIL "foo" "")) (("Help, Desk" NIL "help" "z.example"))` +
				` ((NIL "@relay.example" "s" "x.example")) NIL NIL "<0@x>" "<1@x>")`,
		},
		{
			name:   "two groups, and a group without a name",
			header: "To: g1: a@b;, g2: c@d, e@f;\r\nCc: :;\r\n\r\n",
			want: `(NIL NIL NIL NIL NIL` +
				` ((NIL NIL "g1" NIL)(NIL NIL "a" "b")(NIL NIL NIL NIL)(NIL NIL "g2" NIL)(NIL NIL "c" "d")(NIL NIL "e" "f")(NIL NIL NIL NIL))` +
				` ((NIL NIL "" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)`,
		},
		{
			name:   "quotes and backslashes in the subject",
			header: "Subject: say \"hi\" \\ ok\r\n\r\n",
			want:   `(NIL "say \"hi\" \\ ok" NIL NIL NIL NIL NIL NIL NIL NIL)`,
		},
		{
			name:   "8-bit subject is a literal without UTF-8",
			header: "Subject: caf\xc3\xa9\r\n\r\n",
			want:   "(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)",
		},
		{
			name:   "8-bit subject is quoted with UTF-8",
			header: "Subject: caf\xc3\xa9\r\n\r\n",
			utf8:   true,
			want:   "(NIL \"caf\xc3\xa9\" NIL NIL NIL NIL NIL NIL NIL NIL)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := msg.ParseBytes([]byte(tt.header))
			if got := render(t, tt.utf8, func(w *imapwire.Writer) { Envelope(w, &m.Envelope) }); got != tt.want {
				t.Errorf("ENVELOPE\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestHandBuilt feeds structures msg's parser would not make (as the store
// could hold after a change of msg), which must still render validly.
func TestHandBuilt(t *testing.T) {
	text := msg.Part{Type: "text", Subtype: "plain", Params: [][2]string{{"charset", "utf-8"}}, Encoding: "7bit", BodyStart: 10, End: 13, Lines: 1}
	deep := text
	for range maxDepth + 5 {
		deep = msg.Part{Type: "multipart", Subtype: "mixed", Children: []msg.Part{deep}}
	}
	tests := []struct {
		name string
		p    msg.Part
		opt  Options
		want string // BODY
	}{
		{
			name: "message/rfc822 without its message",
			p:    msg.Part{Type: "message", Subtype: "rfc822", BodyStart: 0, End: 5, Lines: 2},
			want: `("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 5 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ` + defaultText + `0 0) 2)`,
		},
		{
			name: "message/global to an IMAP4rev1 client is a basic body",
			p:    msg.Part{Type: "message", Subtype: "global", Encoding: "8bit", End: 3, Message: &msg.Message{Part: text}},
			want: `("MESSAGE" "GLOBAL" NIL NIL NIL "8BIT" 3)`,
		},
		{
			name: "message/global to an IMAP4rev2 client is encapsulated",
			p:    msg.Part{Type: "message", Subtype: "global", Encoding: "8bit", End: 3, Lines: 1, Message: &msg.Message{Part: text}},
			opt:  Options{Rev2: true},
			want: `("MESSAGE" "GLOBAL" NIL NIL NIL "8BIT" 3 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 3 1) 1)`,
		},
		{
			name: "negative size and lines, empty type and encoding",
			p:    msg.Part{BodyStart: 9, End: 2, Lines: -4},
			want: defaultText + `0 0)`,
		},
		{
			name: "nesting beyond the bound ends in an empty text part",
			p:    deep,
			want: strings.Repeat("(", maxDepth+1) + defaultText + `0 0)` + strings.Repeat(` "MIXED")`, maxDepth+1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(t, false, func(w *imapwire.Writer) { Body(w, &tt.p, tt.opt) }); got != tt.want {
				t.Errorf("BODY\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestEnvelopeDefaultsSenderAndReplyTo(t *testing.T) {
	from := []msg.Address{{Name: "A", Mailbox: "a", Host: "x"}}
	got := render(t, false, func(w *imapwire.Writer) { Envelope(w, &msg.Envelope{From: from}) })
	want := `(NIL NIL (("A" NIL "a" "x")) (("A" NIL "a" "x")) (("A" NIL "a" "x")) NIL NIL NIL NIL NIL)`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	got = render(t, false, func(w *imapwire.Writer) { Envelope(w, nil) })
	if got != `(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)` {
		t.Errorf("nil envelope: %s", got)
	}
}

// TestAddressListMarkers covers lists msg's parser does not make: a stray
// group end, and a bare local part with no end after it (not a group).
func TestAddressListMarkers(t *testing.T) {
	tests := []struct {
		to   []msg.Address
		want string
	}{
		{[]msg.Address{{Mailbox: "x"}}, `((NIL NIL "x" ""))`},
		{[]msg.Address{{Mailbox: "g"}, {}, {}}, `((NIL NIL "g" NIL)(NIL NIL NIL NIL))`},
		{[]msg.Address{{}, {Mailbox: "a", Host: "b"}}, `((NIL NIL "a" "b"))`},
		{[]msg.Address{{}}, `NIL`},
	}
	for _, tt := range tests {
		got := render(t, false, func(w *imapwire.Writer) { Envelope(w, &msg.Envelope{To: tt.to}) })
		want := `(NIL NIL NIL NIL NIL ` + tt.want + ` NIL NIL NIL NIL)`
		if got != want {
			t.Errorf("%+v:\n got %s\nwant %s", tt.to, got, want)
		}
	}
}
