package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseSendmailArgs(t *testing.T) {
	s := func(v string) *string { return &v }
	tests := []struct {
		args []string
		want sendmailOpts // ignored: only its length is compared
	}{
		{[]string{"-t", "-i"}, sendmailOpts{mode: 'm', extract: true, ignoreDots: true}},
		{[]string{"-ti"}, sendmailOpts{mode: 'm', extract: true, ignoreDots: true}},
		{[]string{"-oi", "-t"}, sendmailOpts{mode: 'm', extract: true, ignoreDots: true}},
		{[]string{"-o", "i", "a@b.org"}, sendmailOpts{mode: 'm', ignoreDots: true, rcpts: []string{"a@b.org"}}},
		{[]string{"-oiFalse", "a@b.org"}, sendmailOpts{mode: 'm', rcpts: []string{"a@b.org"}}},
		{[]string{"-OIgnoreDots=true", "a@b.org"}, sendmailOpts{mode: 'm', ignoreDots: true, rcpts: []string{"a@b.org"}}},
		{[]string{"-fbounce@x.org", "a@b.org"}, sendmailOpts{mode: 'm', sender: s("bounce@x.org"), rcpts: []string{"a@b.org"}}},
		{[]string{"-f", "bounce@x.org", "a@b.org"}, sendmailOpts{mode: 'm', sender: s("bounce@x.org"), rcpts: []string{"a@b.org"}}},
		{[]string{"-r", "x@y.org", "a@b.org"}, sendmailOpts{mode: 'm', sender: s("x@y.org"), rcpts: []string{"a@b.org"}}},
		{[]string{"-f", "<>", "a@b.org"}, sendmailOpts{mode: 'm', sender: s("<>"), rcpts: []string{"a@b.org"}}},
		{[]string{"-F", "Cron Daemon", "a@b.org"}, sendmailOpts{mode: 'm', fullName: s("Cron Daemon"), rcpts: []string{"a@b.org"}}},
		// A value-taking option ends a cluster; its value is the next argument.
		{[]string{"-tF", "Cron Daemon"}, sendmailOpts{mode: 'm', extract: true, fullName: s("Cron Daemon")}},
		{[]string{"-tvfme@x.org"}, sendmailOpts{mode: 'm', extract: true, verbose: true, sender: s("me@x.org")}},
		{[]string{"-bp"}, sendmailOpts{mode: 'p'}},
		{[]string{"-bi"}, sendmailOpts{mode: 'i'}},
		{[]string{"-I"}, sendmailOpts{mode: 'i'}},
		{[]string{"-bm", "a@b.org"}, sendmailOpts{mode: 'm', rcpts: []string{"a@b.org"}}},
		{[]string{"-q"}, sendmailOpts{mode: 'q'}},
		{[]string{"-q30m"}, sendmailOpts{mode: 'q'}},
		// What Postfix ignores is ignored, values and all (-N's value is not a recipient).
		{[]string{"-oem", "-B", "8BITMIME", "-N", "never", "-R", "hdrs", "-V", "envid", "-odb", "-U", "-m", "-h", "5", "-L", "x", "-Ac", "a@b.org"},
			sendmailOpts{mode: 'm', rcpts: []string{"a@b.org"}, ignored: make([]string, 11)}},
		{[]string{"--config", "/etc/p.toml", "-t"}, sendmailOpts{mode: 'm', extract: true, config: "/etc/p.toml"}},
		{[]string{"-t", "--config=/etc/p.toml"}, sendmailOpts{mode: 'm', extract: true, config: "/etc/p.toml"}},
		{[]string{"-config", "/etc/p.toml", "a@b.org"}, sendmailOpts{mode: 'm', config: "/etc/p.toml", rcpts: []string{"a@b.org"}}},
		// Options may follow recipients; after "--" nothing is an option.
		{[]string{"a@b.org", "-i", "c@d.org"}, sendmailOpts{mode: 'm', ignoreDots: true, rcpts: []string{"a@b.org", "c@d.org"}}},
		{[]string{"-i", "--", "-t", "a@b.org"}, sendmailOpts{mode: 'm', ignoreDots: true, rcpts: []string{"-t", "a@b.org"}}},
	}
	for _, tc := range tests {
		got, err := parseSendmailArgs(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if len(got.ignored) != len(tc.want.ignored) {
			t.Errorf("%q: ignored %q, want %d options", tc.args, got.ignored, len(tc.want.ignored))
		}
		got.ignored, tc.want.ignored = nil, nil
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.args, *got, tc.want)
		}
	}
	for _, args := range [][]string{{"-bv"}, {"-bd"}, {"-bt"}, {"-f"}, {"-t", "-F"}, {"-k"}, {"-tk"}, {"--verbose"}, {"--config"}} {
		_, err := parseSendmailArgs(args)
		var se *statusError
		if !errors.As(err, &se) || se.code != exUsage {
			t.Errorf("%q: %v, want exit %d", args, err, exUsage)
		}
	}
}

func TestAddressList(t *testing.T) {
	const host = "mx.example.org"
	tests := []struct {
		in        string
		want, bad []string
	}{
		{"a@b.org", []string{"a@b.org"}, nil},
		{"Joe <joe@Example.ORG>, root", []string{"joe@example.org", "root@mx.example.org"}, nil},
		{"undisclosed-recipients:;", nil, nil},
		{`team: a@x.org, "Smith, J" <j@x.org>;, c@y.org`, []string{"a@x.org", "j@x.org", "c@y.org"}, nil},
		{"a@x.org (comment, with: a comma)", []string{"a@x.org"}, nil},
		{`"john doe"@x.org`, []string{`"john doe"@x.org`}, nil},
		{"<@relay.org:u@x.org>", []string{"u@x.org"}, nil},
		{"  ,, a@x.org ,", []string{"a@x.org"}, nil},
		{"a b@x.org", nil, []string{"a b@x.org"}},
		{"a@, b@x.org", []string{"b@x.org"}, []string{"a@"}},
		{"<a@>", nil, []string{"<a@>"}},
		{`"x@y" <a>`, []string{"a@mx.example.org"}, nil},
		{"a (at@home)", []string{"a@mx.example.org"}, nil},
		{"a@x.org, @, b@y.org", []string{"a@x.org", "b@y.org"}, []string{"@"}},
		{"Name <>", nil, []string{"Name <>"}},
	}
	for _, tc := range tests {
		got, bad := addressList(tc.in, host)
		if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(bad, tc.bad) {
			t.Errorf("%q: got %q bad %q, want %q bad %q", tc.in, got, bad, tc.want, tc.bad)
		}
	}
}

var msgIDRE = regexp.MustCompile(`Message-ID: <[0-9a-z]+\.[0-9a-f]{16}@mx\.example\.org>\r\n`)

func TestPrepareMessage(t *testing.T) {
	s := func(v string) *string { return &v }
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	const date = "Date: Wed, 04 Mar 2026 05:06:07 +0100\r\n"
	const mid = "Message-ID: <ID>\r\n"
	tests := []struct {
		name  string
		opts  sendmailOpts
		gecos string
		in    string
		from  string // envelope sender; "<>" for null
		rcpts []string
		out   string // Message-ID values shown as <ID>
	}{
		{"-t: To, Cc and Bcc, Bcc removed, headers added, LF made CRLF, input ends at the dot",
			sendmailOpts{extract: true}, "Pat Q",
			"To: a@x.org,\n b@x.org\nCc: Carl <c@Y.org>\nBcc: hidden@z.org\nSubject: hi\n\nbody\n..\n.\nafter the dot\n",
			"pp@mx.example.org", []string{"a@x.org", "b@x.org", "c@y.org", "hidden@z.org"},
			"To: a@x.org,\r\n b@x.org\r\nCc: Carl <c@Y.org>\r\nSubject: hi\r\n" +
				"From: \"Pat Q\" <pp@mx.example.org>\r\n" + date + mid + "\r\nbody\r\n..\r\n"},
		{"-i keeps the dot line; complete header left as it is; -f <> is the null sender; bare names qualified",
			sendmailOpts{ignoreDots: true, sender: s("<>"), rcpts: []string{"root", "Admin <admin@x.org>"}}, "Pat Q",
			"From: me@x.org\r\nDate: Tue, 1 Jan 2030 00:00:00 +0000\r\nMessage-ID: <1@x.org>\r\nBcc: kept@x.org\r\n\r\na\r\n.\r\nb\r\n",
			"<>", []string{"root@mx.example.org", "admin@x.org"},
			"From: me@x.org\r\nDate: Tue, 1 Jan 2030 00:00:00 +0000\r\nMessage-ID: <1@x.org>\r\nBcc: kept@x.org\r\n\r\na\r\n.\r\nb\r\n"},
		{"-t adds to the command line's recipients, once each",
			sendmailOpts{extract: true, rcpts: []string{"a@x.org", "extra@x.org"}}, "",
			"To: a@x.org, b@x.org\nSubject: s\n\nx\n",
			"pp@mx.example.org", []string{"a@x.org", "extra@x.org", "b@x.org"},
			"To: a@x.org, b@x.org\r\nSubject: s\r\nFrom: pp@mx.example.org\r\n" + date + mid + "\r\nx\r\n"},
		{"no header at all: headers and an empty line go before the text",
			sendmailOpts{rcpts: []string{"a@x.org"}}, "",
			"hello world\nsecond: line",
			"pp@mx.example.org", []string{"a@x.org"},
			"From: pp@mx.example.org\r\n" + date + mid + "\r\nhello world\r\nsecond: line\r\n"},
		{"a header ended by a line that is not a field",
			sendmailOpts{rcpts: []string{"a@x.org"}}, "",
			"Subject: s\nthis is the body\n",
			"pp@mx.example.org", []string{"a@x.org"},
			"Subject: s\r\nFrom: pp@mx.example.org\r\n" + date + mid + "\r\nthis is the body\r\n"},
		{"an mbox From_ line is dropped",
			sendmailOpts{rcpts: []string{"a@x.org"}}, "",
			"From pp Mon Jan  1 00:00:00 2024\nSubject: s\n\nb\n",
			"pp@mx.example.org", []string{"a@x.org"},
			"Subject: s\r\nFrom: pp@mx.example.org\r\n" + date + mid + "\r\nb\r\n"},
		{"-F and -f make the From: field",
			sendmailOpts{fullName: s("Cron Daemon"), sender: s("bounce@Example.net"), rcpts: []string{"a@x.org"}}, "Pat Q",
			"Subject: s\n\nb\n",
			"bounce@example.net", []string{"a@x.org"},
			"Subject: s\r\nFrom: \"Cron Daemon\" <bounce@example.net>\r\n" + date + mid + "\r\nb\r\n"},
		{"a full name cannot add a header field",
			sendmailOpts{fullName: s("Evil\r\nBcc: x@y.org"), rcpts: []string{"a@x.org"}}, "",
			"\n",
			"pp@mx.example.org", []string{"a@x.org"},
			"From: \"Evil Bcc: x@y.org\" <pp@mx.example.org>\r\n" + date + mid + "\r\n"},
		{"a non-ASCII GECOS name is encoded (RFC 2047)",
			sendmailOpts{rcpts: []string{"a@x.org"}}, "José,Room 1,555",
			"", "pp@mx.example.org", []string{"a@x.org"},
			"From: =?utf-8?q?Jos=C3=A9?= <pp@mx.example.org>\r\n" + date + mid + "\r\n"},
		{"Resent- fields, when present, are the ones -t reads",
			sendmailOpts{extract: true}, "",
			"To: old@x.org\nResent-To: new@y.org\nResent-Bcc: secret@z.org\nFrom: a@x.org\nDate: x\nMessage-ID: <m@x>\n\nb\n",
			"pp@mx.example.org", []string{"new@y.org", "secret@z.org"},
			"To: old@x.org\r\nResent-To: new@y.org\r\nFrom: a@x.org\r\nDate: x\r\nMessage-ID: <m@x>\r\n\r\nb\r\n"},
		{"the dot ends the input in the header too",
			sendmailOpts{extract: true}, "",
			"To: a@x.org\n.\nTo: b@x.org\n",
			"pp@mx.example.org", []string{"a@x.org"},
			"To: a@x.org\r\nFrom: pp@mx.example.org\r\n" + date + mid + "\r\n"},
		{"a bare CR inside a line stays; the last line gets its line end",
			sendmailOpts{rcpts: []string{"a@x.org"}}, "",
			"Subject: s\r\n\r\na\rb\nno newline at the end",
			"pp@mx.example.org", []string{"a@x.org"},
			"Subject: s\r\nFrom: pp@mx.example.org\r\n" + date + mid + "\r\na\rb\r\nno newline at the end\r\n"},
		{"groups and comments in To:",
			sendmailOpts{extract: true}, "",
			"To: undisclosed-recipients:;\nCc: list: a@x.org, b@x.org;\nBcc: c@x.org (Carl)\nFrom: f@x.org\n\n",
			"pp@mx.example.org", []string{"a@x.org", "b@x.org", "c@x.org"},
			"To: undisclosed-recipients:;\r\nCc: list: a@x.org, b@x.org;\r\nFrom: f@x.org\r\n" + date + mid + "\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.mode = 'm'
			sub := &submission{hostname: "mx.example.org", user: "pp", fullName: gecosName(tc.gecos), opts: &o, now: now}
			env, r, err := sub.prepare(strings.NewReader(tc.in), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			from := env.From
			if env.Null {
				from = "<>"
			}
			if from != tc.from || !reflect.DeepEqual(env.Recipients, tc.rcpts) {
				t.Errorf("envelope from %q to %q, want from %q to %q", from, env.Recipients, tc.from, tc.rcpts)
			}
			if env.User != "pp" {
				t.Errorf("user %q", env.User)
			}
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			out := msgIDRE.ReplaceAllString(string(b), mid)
			if out != tc.out {
				t.Errorf("message:\n%q\nwant:\n%q", b, tc.out)
			}
		})
	}
}

func TestPrepareRefuses(t *testing.T) {
	tests := []struct {
		name string
		opts sendmailOpts
		in   string
		max  int64
		code int
	}{
		{"-t without recipients", sendmailOpts{extract: true}, "Subject: s\n\nb\n", 1 << 20, exUsage},
		{"-t with only a group", sendmailOpts{extract: true}, "To: undisclosed-recipients:;\n\nb\n", 1 << 20, exUsage},
		{"a recipient that is not an address", sendmailOpts{rcpts: []string{"a b@x.org"}}, "", 1 << 20, exUsage},
		{"a bad sender", sendmailOpts{rcpts: []string{"a@x.org"}, sender: func() *string { s := "a@"; return &s }()}, "", 1 << 20, exUsage},
		{"a header section over the limit", sendmailOpts{rcpts: []string{"a@x.org"}},
			strings.Repeat("X-Long: "+strings.Repeat("y", 1000)+"\n", maxHeaderBytes/1000+10) + "\nb\n", 1 << 30, exDataErr},
		{"one header line over the limit", sendmailOpts{rcpts: []string{"a@x.org"}},
			"X-Long: " + strings.Repeat("y", maxHeaderBytes+10) + "\n\nb\n", 1 << 30, exDataErr},
		{"headers alone over the message limit", sendmailOpts{rcpts: []string{"a@x.org"}}, "Subject: s\n\n", 50, exDataErr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			sub := &submission{hostname: "mx.example.org", user: "pp", opts: &o, now: time.Now()}
			_, _, err := sub.prepare(strings.NewReader(tc.in), tc.max)
			var se *statusError
			if !errors.As(err, &se) || se.code != tc.code {
				t.Errorf("got %v, want exit %d", err, tc.code)
			}
		})
	}
	// Over the message limit in the body: the reader fails with errTooBig.
	o := sendmailOpts{rcpts: []string{"a@x.org"}}
	sub := &submission{hostname: "mx.example.org", user: "pp", opts: &o, now: time.Now()}
	_, r, err := sub.prepare(strings.NewReader("Subject: s\n\n"+strings.Repeat("body line\n", 1000)), 5000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, errTooBig) {
		t.Errorf("reading a message over the limit: %v", err)
	}
}

// normalise is the line reader's contract written plainly: lines split at
// LF, one CR before it dropped, each line ended with CRLF.
func normalise(in string) string {
	if in == "" {
		return ""
	}
	in = strings.TrimSuffix(in, "\n")
	var b strings.Builder
	for _, line := range strings.Split(in, "\n") {
		b.WriteString(strings.TrimSuffix(line, "\r"))
		b.WriteString("\r\n")
	}
	return b.String()
}

func readAllLines(in string, ignoreDots bool, bufSize int) (string, error) {
	lr := &lineReader{r: bufio.NewReaderSize(strings.NewReader(in), bufSize), ignoreDots: ignoreDots}
	b, err := io.ReadAll(&bodyReader{lr: lr})
	return string(b), err
}

func TestLineReaderLongLines(t *testing.T) {
	const size = 64 << 10 // the buffer prepare uses
	x := strings.Repeat("x", size-1)
	tests := []struct {
		name, in, want string
		ignoreDots     bool
	}{
		// The CR of CRLF is the buffer's last byte, the LF the next read's first.
		{"CRLF split across reads", x + "\r\nnext\r\n", x + "\r\nnext\r\n", false},
		{"CR at the buffer's end, then data", x + "\ry\n", x + "\ry\r\n", false},
		{"LF line longer than the buffer", x + x + "\n", x + x + "\r\n", false},
		// A "." that continues a long line is not a line of its own.
		{"dot after a buffer's worth", x + "x.\nmore\n.\nnot this\n", x + "x.\r\nmore\r\n", false},
		{"long last line without LF", x + "xx", x + "xx\r\n", false},
		{"ends exactly at the buffer's end", x + "x", x + "x\r\n", false},
		{"ends with a lone CR", "a\r", "a\r\n", false},
		{"a dot line with CRLF ends input", "a\r\n.\r\nb\r\n", "a\r\n", false},
		{"a dot without line end at the end", "a\n.", "a\r\n", false},
		{"with -i the dot stays", "a\n.\nb\n", "a\r\n.\r\nb\r\n", true},
		{"empty", "", "", false},
	}
	for _, tc := range tests {
		got, err := readAllLines(tc.in, tc.ignoreDots, size)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %d bytes %q..., %v; want %d bytes", tc.name, len(got), trunc(got), err, len(tc.want))
		}
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:20] + "..." + s[len(s)-20:]
	}
	return s
}

// FuzzLineReader checks the line reader against normalise, with a small
// buffer so that lines often span reads.
func FuzzLineReader(f *testing.F) {
	f.Add("a\r\nb\nc")
	f.Add("0123456789abcdef\r\n")
	f.Add("0123456789abcde\r\n\r\r\n")
	f.Add("\r\r\n\n\r")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := readAllLines(in, true, 16)
		if err != nil {
			t.Fatal(err)
		}
		if want := normalise(in); got != want {
			t.Fatalf("%q: got %q, want %q", in, got, want)
		}
	})
}

// FuzzPrepare: hostile input never panics; what comes out has CRLF line
// ends only and, with -t, no Bcc: field.
func FuzzPrepare(f *testing.F) {
	f.Add("To: a@x.org\nBcc: b@x.org\n\nbody\n")
	f.Add("From x\nTo: a@x.org,\n\tb@y.org\nBcc:\n c@z.org\n.\n")
	f.Add("Resent-Bcc: \"q,:;\" <a@x.org>\nTo: g: a@b.org;\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		o := sendmailOpts{extract: true}
		sub := &submission{hostname: "mx.example.org", user: "pp", opts: &o, now: time.Now()}
		_, r, err := sub.prepare(strings.NewReader(in), 1<<20)
		if err != nil {
			return
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return
		}
		if i := bytes.Index(b, []byte("\n")); i >= 0 && (i == 0 || b[i-1] != '\r') {
			t.Fatalf("bare LF in %q", b)
		}
		for _, line := range bytes.Split(b, []byte("\r\n")) {
			if len(line) == 0 {
				break // the end of the header section
			}
			if n := fieldName(line); n == "bcc" || n == "resent-bcc" {
				t.Fatalf("a Bcc: field remains in %q", b)
			}
		}
	})
}
