package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	gotextproto "github.com/emersion/go-message/textproto"
)

var (
	arrival = time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC)
	attempt = time.Date(2026, 2, 3, 10, 5, 30, 0, time.FixedZone("", 3600))
	giveUp  = time.Date(2026, 2, 8, 10, 0, 0, 0, time.UTC)
	noticed = time.Date(2026, 2, 3, 10, 6, 0, 0, time.UTC)
)

const original = "Received: from client.example.com by mx.example.org\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: lunch\r\n" +
	"Message-ID: <lunch.1@example.com>\r\n" +
	"\r\n" +
	"Shall we meet at noon?\r\n" +
	"-- \r\n" +
	"Alice\r\n"

const originalHeader = "Received: from client.example.com by mx.example.org\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: lunch\r\n" +
	"Message-ID: <lunch.1@example.com>\r\n"

func failed(addr string) Recipient {
	return Recipient{
		Final: addr, Action: ActionFailed, Status: "5.1.1", RemoteMTA: "mx.example.net",
		Diagnostic: "550 5.1.1 <" + addr + ">: no such user", LastAttempt: attempt,
	}
}

func delayed(addr string) Recipient {
	return Recipient{
		Final: addr, Action: ActionDelayed, Status: "4.4.1", RemoteMTA: "mx2.example.net",
		Diagnostic: "421 4.4.1 try again later", LastAttempt: attempt, WillRetryUntil: giveUp,
	}
}

func succeeded(addr string, a Action) Recipient {
	return Recipient{Final: addr, Action: a, Status: "2.0.0", RemoteMTA: "mx.example.net",
		Diagnostic: "250 2.0.0 Ok: queued as 12345", LastAttempt: attempt}
}

func report(rs ...Recipient) *Report {
	return &Report{
		ReportingMTA: "mx.example.org",
		From:         "MAILER-DAEMON@mx.example.org",
		To:           "alice@example.com",
		ArrivalDate:  arrival,
		QueueID:      "0ABCDEFGHJKLMNPQ",
		Recipients:   rs,
		Original:     []byte(original),
		Date:         noticed,
		MessageID:    "<notice.1@mx.example.org>",
	}
}

// checkLines asserts the RFC 5322 section 2.1.1 and 2.3 rules on raw lines:
// CRLF only, and no line of 998 octets or more.
func checkLines(t *testing.T, msg []byte) {
	t.Helper()
	for i, line := range bytes.Split(msg, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) >= 998 {
			t.Errorf("line %d is %d octets long", i+1, len(line))
		}
	}
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Error("message does not end in CRLF")
	}
}

func mustDate(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := mail.ParseDate(s)
	if err != nil {
		t.Fatalf("date %q: %v", s, err)
	}
	return d
}

// goMessageView reads a notice with go-message, independently of net/mail
// and mime/multipart: the part types and the delivery-status groups.
type goMessageView struct {
	contentType string
	params      map[string]string
	partTypes   []string
	groups      []gotextproto.Header
	parts       [][]byte
}

func viewWithGoMessage(t *testing.T, msg []byte) goMessageView {
	t.Helper()
	e, err := gomessage.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("go-message: %v", err)
	}
	var v goMessageView
	if v.contentType, v.params, err = e.Header.ContentType(); err != nil {
		t.Fatalf("go-message Content-Type: %v", err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatal("go-message: not multipart")
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("go-message part: %v", err)
		}
		ct, _, _ := p.Header.ContentType()
		v.partTypes = append(v.partTypes, ct)
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("go-message body: %v", err)
		}
		v.parts = append(v.parts, body)
		if strings.HasSuffix(ct, "delivery-status") {
			br := bufio.NewReader(bytes.NewReader(body))
			for {
				h, err := gotextproto.ReadHeader(br)
				if err != nil && !errors.Is(err, io.EOF) {
					t.Fatalf("go-message delivery-status group: %v", err)
				}
				if h.Len() > 0 {
					v.groups = append(v.groups, h)
				}
				if err != nil {
					break
				}
				if _, perr := br.Peek(1); perr != nil {
					break
				}
			}
		}
	}
	return v
}

func TestBuildKinds(t *testing.T) {
	tests := []struct {
		name    string
		recips  []Recipient
		subject string
	}{
		{"failed", []Recipient{failed("bob@example.net")}, "Undelivered Mail Returned to Sender"},
		{"delayed", []Recipient{delayed("carol@example.net")}, "Delayed Mail (still being retried)"},
		{"delivered", []Recipient{succeeded("dave@example.net", ActionDelivered)}, "Successful Mail Delivery Report"},
		{"relayed", []Recipient{succeeded("erin@example.net", ActionRelayed)}, "Successful Mail Delivery Report"},
		{"expanded", []Recipient{succeeded("list@example.net", ActionExpanded)}, "Successful Mail Delivery Report"},
		{"mixed", []Recipient{
			succeeded("dave@example.net", ActionDelivered), delayed("carol@example.net"), failed("bob@example.net"),
		}, "Undelivered Mail Returned to Sender"},
		{"delayed and delivered", []Recipient{
			succeeded("dave@example.net", ActionDelivered), delayed("carol@example.net"),
		}, "Delayed Mail (still being retried)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(tt.recips...)
			r.ReturnFull = true
			msg, err := Build(r)
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, msg)
			p, err := Parse(msg)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, msg)
			}

			h := p.Header
			for name, want := range map[string]string{
				"Subject":        tt.subject,
				"From":           "MAILER-DAEMON@mx.example.org",
				"To":             "alice@example.com",
				"Message-Id":     "<notice.1@mx.example.org>",
				"Auto-Submitted": "auto-replied",
				"Mime-Version":   "1.0",
			} {
				if got := h.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if d := mustDate(t, h.Get("Date")); !d.Equal(noticed) {
				t.Errorf("Date = %v, want %v", d, noticed)
			}
			if p.ReportType != "delivery-status" {
				t.Errorf("report-type %q", p.ReportType)
			}

			if got := p.PerMessage.Get("Reporting-MTA"); got != "dns; mx.example.org" {
				t.Errorf("Reporting-MTA = %q", got)
			}
			if d := mustDate(t, p.PerMessage.Get("Arrival-Date")); !d.Equal(arrival) {
				t.Errorf("Arrival-Date = %v", d)
			}
			if p.PerMessage.Get("Original-Envelope-Id") != "" {
				t.Error("Original-Envelope-Id without an ENVID")
			}
			if len(p.Recipients) != len(tt.recips) {
				t.Fatalf("%d recipient groups, want %d", len(p.Recipients), len(tt.recips))
			}
			for i, want := range tt.recips {
				g := p.Recipients[i]
				for name, v := range map[string]string{
					"Final-Recipient": "rfc822; " + want.Final,
					"Action":          string(want.Action),
					"Status":          want.Status,
					"Remote-MTA":      "dns; " + want.RemoteMTA,
					"Diagnostic-Code": "smtp; " + want.Diagnostic,
				} {
					if got := g.Get(name); got != v {
						t.Errorf("group %d %s = %q, want %q", i, name, got, v)
					}
				}
				if g.Get("Original-Recipient") != "" {
					t.Errorf("group %d: Original-Recipient without ORCPT", i)
				}
				if d := mustDate(t, g.Get("Last-Attempt-Date")); !d.Equal(attempt) {
					t.Errorf("group %d Last-Attempt-Date = %v", i, d)
				}
				retry := g.Get("Will-Retry-Until")
				if want.Action == ActionDelayed {
					if d := mustDate(t, retry); !d.Equal(giveUp) {
						t.Errorf("group %d Will-Retry-Until = %v", i, d)
					}
				} else if retry != "" {
					t.Errorf("group %d: Will-Retry-Until for %s", i, want.Action)
				}
				if !strings.Contains(p.Text, "<"+want.Final+">") {
					t.Errorf("text does not name %s:\n%s", want.Final, p.Text)
				}
				if !strings.Contains(p.Text, want.Diagnostic) {
					t.Errorf("text lacks diagnostic %q", want.Diagnostic)
				}
			}
			if !strings.Contains(p.Text, "0ABCDEFGHJKLMNPQ") {
				t.Error("text does not name the queue ID")
			}
			if p.ReturnedType != "message/rfc822" || string(p.Returned) != original {
				t.Errorf("returned %s %q", p.ReturnedType, p.Returned)
			}

			// The same message read by go-message.
			v := viewWithGoMessage(t, msg)
			if v.contentType != "multipart/report" || v.params["report-type"] != "delivery-status" {
				t.Errorf("go-message: %s %v", v.contentType, v.params)
			}
			if want := []string{"text/plain", "message/delivery-status", "message/rfc822"}; !slices.Equal(v.partTypes, want) {
				t.Errorf("go-message parts %v, want %v", v.partTypes, want)
			}
			if len(v.groups) != 1+len(tt.recips) {
				t.Fatalf("go-message: %d groups, want %d", len(v.groups), 1+len(tt.recips))
			}
			for i, want := range tt.recips {
				g := v.groups[i+1]
				if g.Get("Final-Recipient") != "rfc822; "+want.Final || g.Get("Action") != string(want.Action) {
					t.Errorf("go-message group %d: %v", i, g.Map())
				}
			}
			if string(v.parts[2]) != original {
				t.Errorf("go-message returned part %q", v.parts[2])
			}
		})
	}
}

// TestDeliveryStatusLines checks the message/delivery-status body line by
// line against RFC 3464 sections 2.2 and 2.3, written out by hand.
func TestDeliveryStatusLines(t *testing.T) {
	r := report(failed("bob@example.net"), delayed("carol@example.net"))
	r.Recipients[0].Original = "rfc822;bob@example.net"
	r.EnvID = "QQ314159"
	msg, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	v := viewWithGoMessage(t, msg)
	want := "Original-Envelope-Id: QQ314159\r\n" +
		"Reporting-MTA: dns; mx.example.org\r\n" +
		"Arrival-Date: Tue, 03 Feb 2026 10:00:00 +0000\r\n" +
		"X-Posthorn-Queue-ID: 0ABCDEFGHJKLMNPQ\r\n" +
		"\r\n" +
		"Original-Recipient: rfc822; bob@example.net\r\n" +
		"Final-Recipient: rfc822; bob@example.net\r\n" +
		"Action: failed\r\n" +
		"Status: 5.1.1\r\n" +
		"Remote-MTA: dns; mx.example.net\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user\r\n" +
		"Last-Attempt-Date: Tue, 03 Feb 2026 10:05:30 +0100\r\n" +
		"\r\n" +
		"Final-Recipient: rfc822; carol@example.net\r\n" +
		"Action: delayed\r\n" +
		"Status: 4.4.1\r\n" +
		"Remote-MTA: dns; mx2.example.net\r\n" +
		"Diagnostic-Code: smtp; 421 4.4.1 try again later\r\n" +
		"Last-Attempt-Date: Tue, 03 Feb 2026 10:05:30 +0100\r\n" +
		"Will-Retry-Until: Sun, 08 Feb 2026 10:00:00 +0000\r\n"
	if got := string(v.parts[1]); got != want {
		t.Errorf("delivery-status body:\n%s\nwant:\n%s", got, want)
	}
	// The notice's header, by hand too.
	head, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	wantHead := []string{
		"Date: Tue, 03 Feb 2026 10:06:00 +0000",
		"From: MAILER-DAEMON@mx.example.org",
		"To: alice@example.com",
		"Subject: Undelivered Mail Returned to Sender",
		"Message-ID: <notice.1@mx.example.org>",
		"Auto-Submitted: auto-replied",
		"MIME-Version: 1.0",
		"Content-Type: multipart/report; report-type=delivery-status;",
	}
	lines := strings.Split(head, "\r\n")
	if len(lines) < len(wantHead)+1 {
		t.Fatalf("header too short:\n%s", head)
	}
	for i, w := range wantHead {
		if lines[i] != w {
			t.Errorf("header line %d = %q, want %q", i+1, lines[i], w)
		}
	}
	if !strings.HasPrefix(lines[len(wantHead)], "\tboundary=\"") {
		t.Errorf("no boundary line: %q", lines[len(wantHead)])
	}
}

func TestReturnedPart(t *testing.T) {
	tests := []struct {
		name      string
		full      bool
		maxFull   int
		original  string
		wantType  string
		wantBody  string
		wantText  string
		wantParts int
	}{
		{"header only", false, 0, original, "text/rfc822-headers", originalHeader, "Its header is attached below.", 3},
		{"full", true, 0, original, "message/rfc822", original, "It is attached below.", 3},
		{"full within limit", true, len(original), original, "message/rfc822", original, "It is attached below.", 3},
		{"full over limit", true, len(original) - 1, original, "text/rfc822-headers", originalHeader,
			fmt.Sprintf("It was %d bytes, more than the %d bytes that are returned in full, so only its header is attached below.",
				len(original), len(original)-1), 3},
		{"no original", true, 0, "", "", "", "Your message (queue ID 0ABCDEFGHJKLMNPQ) was received", 2},
		{"header without body", false, 0, "Subject: x\r\n", "text/rfc822-headers", "Subject: x\r\n", "Its header", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(failed("bob@example.net"))
			r.ReturnFull, r.MaxFull, r.Original = tt.full, tt.maxFull, []byte(tt.original)
			msg, err := Build(r)
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, msg)
			p, err := Parse(msg)
			if err != nil {
				t.Fatal(err)
			}
			if p.ReturnedType != tt.wantType || string(p.Returned) != tt.wantBody {
				t.Errorf("returned %q %q, want %q %q", p.ReturnedType, p.Returned, tt.wantType, tt.wantBody)
			}
			if tt.wantType == "" && p.Returned != nil {
				t.Error("a returned part without an original")
			}
			// The text is wrapped: compare with line breaks as spaces.
			if flat := strings.Join(strings.Fields(p.Text), " "); !strings.Contains(flat, tt.wantText) {
				t.Errorf("text lacks %q:\n%s", tt.wantText, p.Text)
			}
			if n := len(viewWithGoMessage(t, msg).partTypes); n != tt.wantParts {
				t.Errorf("%d parts, want %d", n, tt.wantParts)
			}
		})
	}
}

func TestHostileDiagnostic(t *testing.T) {
	tests := []struct {
		name, diag string
		want       string // the Diagnostic-Code value
	}{
		{"CRLF header injection", "550 no\r\nX-Injected: yes", "smtp; 550 no X-Injected: yes"},
		{"new recipient group", "550 no\r\n\r\nFinal-Recipient: rfc822; evil@example.com\r\nAction: delivered",
			"smtp; 550 no Final-Recipient: rfc822; evil@example.com Action: delivered"},
		{"bare LF and CR", "550 a\nb\rc", "smtp; 550 a b c"},
		{"boundary-like line", "550 x\r\n--=_posthorn_00--\r\n", "smtp; 550 x --=_posthorn_00--"},
		{"controls", "550 \x00bell\x07 esc\x1b[31m del\x7f", "smtp; 550 bell esc[31m del"},
		{"invalid UTF-8", "550 \xff\xfe user", "smtp; 550 ?? user"},
		{"UTF-8 in an ASCII notice", "550 Benutzer unbekannt: müller", "smtp; 550 Benutzer unbekannt: m?ller"},
		{"line separator", "550 a\u2028b", "smtp; 550 a?b"},
		{"multiline reply", "550-5.1.1 first\r\n550 5.1.1 second", "smtp; 550-5.1.1 first 550 5.1.1 second"},
		{"not an SMTP reply", "dial tcp 192.0.2.1:25: connection refused", "X-Posthorn; dial tcp 192.0.2.1:25: connection refused"},
		{"only whitespace", "\r\n\t ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(failed("bob@example.net"))
			r.Recipients[0].Diagnostic = tt.diag
			msg, err := Build(r)
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, msg)
			p, err := Parse(msg)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, msg)
			}
			if len(p.Recipients) != 1 {
				t.Fatalf("%d recipient groups, want 1", len(p.Recipients))
			}
			g := p.Recipients[0]
			if got := g.Get("Diagnostic-Code"); got != tt.want {
				t.Errorf("Diagnostic-Code = %q, want %q", got, tt.want)
			}
			wantKeys := []string{"Action", "Final-Recipient", "Last-Attempt-Date", "Remote-Mta", "Status"}
			if tt.want != "" {
				wantKeys = append(wantKeys, "Diagnostic-Code")
			}
			slices.Sort(wantKeys)
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range g {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("fields %v, want %v", keys, wantKeys)
			}
			if g.Get("Action") != "failed" {
				t.Errorf("Action = %q", g.Get("Action"))
			}
			for _, line := range strings.Split(p.Text, "\r\n") {
				if strings.HasPrefix(line, "X-Injected") || strings.HasPrefix(line, "Final-Recipient") {
					t.Errorf("text has an injected line %q", line)
				}
			}
			if p.Header.Get("X-Injected") != "" {
				t.Error("injected into the notice's header")
			}
		})
	}
}

func TestLongDiagnostic(t *testing.T) {
	tests := []struct{ name, diag string }{
		{"one long word", "550 " + strings.Repeat("x", 5000)},
		{"many words", "550 " + strings.Repeat("word ", 2000)},
		{"long UTF-8 word", "550 " + strings.Repeat("é", 3000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(failed("bob@example.net"))
			r.Recipients[0].Diagnostic = tt.diag
			msg, err := Build(r)
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, msg)
			p, err := Parse(msg)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Recipients[0].Get("Diagnostic-Code")
			if !strings.HasPrefix(d, "smtp; 550 ") || !strings.HasSuffix(d, "...") {
				t.Errorf("Diagnostic-Code not cut with a mark: %.40q...%q", d, d[max(0, len(d)-10):])
			}
			if n := len(d) - len("smtp; "); n > 900 {
				t.Errorf("diagnostic is %d octets, more than 900", n)
			}
		})
	}
}

func TestEnvID(t *testing.T) {
	tests := []struct{ name, envid, want string }{
		{"plain", "QQ314159", "QQ314159"},
		{"xtext specials stay decoded", "a+b=c d", "a+b=c d"},
		{"CRLF injection", "id\r\nX-Injected: 1", "id+0D+0AX-Injected:+201"},
		{"non-ASCII", "idé", "id+C3+A9"},
		{"space at the ends", " id ", "+20id+20"},
		{"too long", strings.Repeat("x", 150), strings.Repeat("x", 100)},
		{"too long, cut before an escape", strings.Repeat("x", 99) + "\n", strings.Repeat("x", 99)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(failed("bob@example.net"))
			r.EnvID = tt.envid
			msg, err := Build(r)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.PerMessage.Get("Original-Envelope-Id"); got != tt.want {
				t.Errorf("Original-Envelope-Id = %q, want %q", got, tt.want)
			}
			if p.PerMessage.Get("X-Injected") != "" || len(p.PerMessage) != 4 {
				t.Errorf("per-message fields %v", p.PerMessage)
			}
		})
	}
}

func TestOriginalRecipient(t *testing.T) {
	tests := []struct{ name, orcpt, want string }{
		{"rfc822", "rfc822;alias@example.org", "rfc822; alias@example.org"},
		{"upper-case type, as go-smtp gives it", "RFC822;alias@example.org", "rfc822; alias@example.org"},
		{"spaces", " rfc822 ; alias@example.org ", "rfc822; alias@example.org"},
		{"no type", "alias@example.org", "unknown; alias@example.org"},
		{"injection", "rfc822;a@example.org\r\nAction: delivered", "rfc822; a@example.org+0D+0AAction:+20delivered"},
		{"empty address", "rfc822;", ""},
		{"too long", "rfc822;" + strings.Repeat("a", 600), "rfc822; " + strings.Repeat("a", 500)},
		{"long type", strings.Repeat("t", 40) + ";a@b", "unknown; " + strings.Repeat("t", 40) + ";a@b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(failed("bob@example.net"))
			r.Recipients[0].Original = tt.orcpt
			msg, err := Build(r)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(msg)
			if err != nil {
				t.Fatal(err)
			}
			g := p.Recipients[0]
			if got := g.Get("Original-Recipient"); got != tt.want {
				t.Errorf("Original-Recipient = %q, want %q", got, tt.want)
			}
			if got := g.Values("Action"); len(got) != 1 || got[0] != "failed" {
				t.Errorf("Action = %q", got)
			}
		})
	}
}

// TestInternational checks the RFC 6533 forms: a UTF-8 address makes the
// report message/global-delivery-status with the "utf-8" address type, and
// an original with a UTF-8 header comes back as message/global.
func TestInternational(t *testing.T) {
	utf8Original := "From: Jürgen <jürgen@example.com>\r\nTo: 用户@例子.广告\r\nSubject: hallo\r\n\r\nHallo.\r\n"
	tests := []struct {
		name       string
		final      string
		orcpt      string
		diag       string
		orig       string
		full       bool
		reportType string
		finalField string
		retType    string
	}{
		{"UTF-8 recipient", "用户@例子.广告", "utf-8;用户@例子.广告", "550 5.1.1 用户 unknown", utf8Original, true,
			"global-delivery-status", "utf-8; 用户@例子.广告", "message/global"},
		{"UTF-8 header only", "用户@例子.广告", "", "550 5.1.1 no", utf8Original, false,
			"global-delivery-status", "utf-8; 用户@例子.广告", "message/global-headers"},
		{"ASCII recipient, UTF-8 original", "bob@example.net", "", "550 5.1.1 no", utf8Original, true,
			"delivery-status", "rfc822; bob@example.net", "message/global"},
		{"UTF-8 ORCPT only", "bob@example.net", "utf-8;bøb@example.net", "550 5.1.1 no", original, true,
			"global-delivery-status", "rfc822; bob@example.net", "message/rfc822"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(failed(tt.final))
			r.Recipients[0].Original, r.Recipients[0].Diagnostic = tt.orcpt, tt.diag
			r.Original, r.ReturnFull = []byte(tt.orig), tt.full
			msg, err := Build(r)
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, msg)
			p, err := Parse(msg)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, msg)
			}
			if p.ReportType != tt.reportType {
				t.Errorf("report-type %q, want %q", p.ReportType, tt.reportType)
			}
			g := p.Recipients[0]
			if got := g.Get("Final-Recipient"); got != tt.finalField {
				t.Errorf("Final-Recipient = %q, want %q", got, tt.finalField)
			}
			if tt.reportType == "global-delivery-status" {
				// UTF-8 diagnostics survive in a global report.
				if got := g.Get("Diagnostic-Code"); got != "smtp; "+tt.diag {
					t.Errorf("Diagnostic-Code = %q", got)
				}
			}
			if p.ReturnedType != tt.retType {
				t.Errorf("returned type %q, want %q", p.ReturnedType, tt.retType)
			}
			v := viewWithGoMessage(t, msg)
			if v.params["report-type"] != tt.reportType || v.partTypes[1] != "message/"+tt.reportType {
				t.Errorf("go-message: %v %v", v.params, v.partTypes)
			}
			if !strings.Contains(p.Text, "<"+tt.final+">") {
				t.Errorf("text does not name %s", tt.final)
			}
			if !strings.Contains(string(msg), "Content-Transfer-Encoding: 8bit") {
				t.Error("8-bit content without Content-Transfer-Encoding: 8bit")
			}
		})
	}
}

// TestBoundaryAvoidsContent makes the first boundary tried occur in the
// original and checks that Build picks another.
func TestBoundaryAvoidsContent(t *testing.T) {
	defer func(f func([]byte) (int, error)) { randRead = f }(randRead)
	fill := byte(0x11)
	randRead = func(b []byte) (int, error) {
		for i := range b {
			b[i] = fill
		}
		fill += 0x11
		return len(b), nil
	}
	first := "=_posthorn_" + strings.Repeat("11", 18)
	second := "=_posthorn_" + strings.Repeat("22", 18)
	orig := "Subject: trap\r\n\r\n--" + first + "\r\nContent-Type: text/plain\r\n\r\nfake\r\n--" + first + "--\r\n"

	r := report(failed("bob@example.net"))
	r.Original, r.ReturnFull = []byte(orig), true
	msg, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := strings.Cut(p.Header.Get("Content-Type"), "boundary=")
	if params != `"`+second+`"` {
		t.Errorf("boundary %s, want %s", params, second)
	}
	if string(p.Returned) != orig {
		t.Errorf("returned %q", p.Returned)
	}

	// A source that always gives the clashing boundary: Build gives up.
	randRead = func(b []byte) (int, error) {
		for i := range b {
			b[i] = 0x11
		}
		return len(b), nil
	}
	if _, err := Build(r); err == nil {
		t.Error("Build used a boundary that occurs in the original")
	}
}

func TestGeneratedFields(t *testing.T) {
	r := report(failed("bob@example.net"))
	r.MessageID, r.Date = "", time.Time{}
	before := time.Now().Add(-time.Second)
	msg, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Header.Get("Message-ID")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mx.example.org>") || len(id) < 20 {
		t.Errorf("Message-ID %q", id)
	}
	if d := mustDate(t, p.Header.Get("Date")); d.Before(before.Truncate(time.Second)) || d.After(time.Now()) {
		t.Errorf("Date %v is not now", d)
	}
	msg2, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := Parse(msg2)
	if p2.Header.Get("Message-ID") == id {
		t.Error("two notices got the same Message-ID")
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Report)
	}{
		{"no recipients", func(r *Report) { r.Recipients = nil }},
		{"no To (null sender)", func(r *Report) { r.To = "" }},
		{"no From", func(r *Report) { r.From = "" }},
		{"no ReportingMTA", func(r *Report) { r.ReportingMTA = "" }},
		{"CRLF in To", func(r *Report) { r.To = "a@example.com\r\nBcc: x@example.com" }},
		{"space in ReportingMTA", func(r *Report) { r.ReportingMTA = "mx example" }},
		{"Message-ID without brackets", func(r *Report) { r.MessageID = "x@y" }},
		{"CR in QueueID", func(r *Report) { r.QueueID = "A\rB" }},
		{"long To", func(r *Report) { r.To = strings.Repeat("a", 1000) + "@example.com" }},
		{"long Final", func(r *Report) { r.Recipients[0].Final = strings.Repeat("a", 1000) + "@example.com" }},
		{"long RemoteMTA", func(r *Report) { r.Recipients[0].RemoteMTA = strings.Repeat("a", 1000) }},
		{"empty Final", func(r *Report) { r.Recipients[0].Final = "" }},
		{"LF in Final", func(r *Report) { r.Recipients[0].Final = "a@b\nc" }},
		{"invalid UTF-8 in Final", func(r *Report) { r.Recipients[0].Final = "a\xff@b" }},
		{"space in RemoteMTA", func(r *Report) { r.Recipients[0].RemoteMTA = "a b" }},
		{"unknown action", func(r *Report) { r.Recipients[0].Action = "bounced" }},
		{"bad status", func(r *Report) { r.Recipients[0].Status = "550" }},
		{"status class 3", func(r *Report) { r.Recipients[0].Status = "3.0.0" }},
		{"status with a letter", func(r *Report) { r.Recipients[0].Status = "5.1.x" }},
		{"status with an empty part", func(r *Report) { r.Recipients[0].Status = "5..1" }},
		{"status too long", func(r *Report) { r.Recipients[0].Status = "5.1.1000" }},
		{"failed with 2.0.0", func(r *Report) { r.Recipients[0].Status = "2.0.0" }},
		{"delayed with 5.1.1", func(r *Report) { r.Recipients[0].Action = ActionDelayed }},
		{"delivered with 5.1.1", func(r *Report) { r.Recipients[0].Action = ActionDelivered }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report(failed("bob@example.net"))
			tt.change(r)
			if msg, err := Build(r); err == nil {
				t.Errorf("Build succeeded:\n%s", msg)
			}
		})
	}
	// And the statuses the rules allow.
	for _, c := range []struct {
		a Action
		s string
	}{{ActionFailed, "4.4.7"}, {ActionFailed, "5.7.26"}, {ActionDelayed, "4.4.1"}, {ActionRelayed, "2.0.0"}, {ActionExpanded, "2.1.5"}} {
		r := report(Recipient{Final: "bob@example.net", Action: c.a, Status: c.s})
		if _, err := Build(r); err != nil {
			t.Errorf("%s %s: %v", c.a, c.s, err)
		}
	}
}

// TestTextWrap checks the human-readable part's lines: wrapped at 76
// octets where spaces allow, never near 998.
func TestTextWrap(t *testing.T) {
	long := strings.Repeat("a", 300) + "@example.net"
	r := report(failed(long))
	r.Recipients[0].Diagnostic = "550 5.1.1 " + strings.Repeat("word ", 200)
	msg, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(p.Text, "\r\n") {
		if len(line) > 76 && strings.Contains(strings.TrimSpace(line), " ") {
			t.Errorf("line of %d octets with a space in it: %q", len(line), line)
		}
	}
	if !strings.Contains(p.Text, "<"+long+">") {
		t.Error("long address broken up in the text")
	}
}
