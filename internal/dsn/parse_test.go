package dsn

import (
	"strings"
	"testing"
)

// foreignDSN is a notice as another MTA might write it, by hand: the
// human part is multipart/alternative with base64 text, a field is folded,
// field names are in odd case, and the third part is headers only.
const foreignDSN = "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>\r\n" +
	"To: <alice@example.com>\r\n" +
	"Subject: Returned mail: see transcript for details\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=\"Delivery-Status\";\r\n" +
	"\tboundary=\"outer\"\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=inner\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html\r\n" +
	"\r\n" +
	"<p>html</p>\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"VGhlIG9yaWdpbmFsIG1lc3NhZ2Ugd2FzIHJlY2VpdmVkIGF0IE1vbiwgMiBGZWIgMjAy\r\n" +
	"NiAwODowMDowMCAtMDUwMA==\r\n" +
	"--inner--\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: message/delivery-status\r\n" +
	"\r\n" +
	"Reporting-MTA: dns; relay.example.net\r\n" +
	"original-envelope-id: 0GK500B4HD0888@example.com\r\n" +
	"\r\n" +
	"\r\n" +
	"Original-Recipient: rfc822;jangel1@example.net\r\n" +
	"Final-Recipient: RFC822; jangel1@example.net\r\n" +
	"ACTION: failed\r\n" +
	"Status: 5.2.2 (mailbox full)\r\n" +
	"Diagnostic-Code: smtp; 552 5.2.2 mailbox over quota,\r\n" +
	"    try again later\r\n" +
	"\r\n" +
	"Final-Recipient: rfc822; other@example.net\r\n" +
	"Action: delayed\r\n" +
	"Status: 4.0.0\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: text/rfc822-headers\r\n" +
	"\r\n" +
	"Subject: hello\r\n" +
	"--outer--\r\n"

func TestParseForeign(t *testing.T) {
	p, err := Parse([]byte(foreignDSN))
	if err != nil {
		t.Fatal(err)
	}
	if p.ReportType != "delivery-status" {
		t.Errorf("report-type %q", p.ReportType)
	}
	if p.Header.Get("Subject") != "Returned mail: see transcript for details" {
		t.Errorf("Subject %q", p.Header.Get("Subject"))
	}
	if p.Text != "The original message was received at Mon, 2 Feb 2026 08:00:00 -0500" {
		t.Errorf("text %q", p.Text)
	}
	if got := p.PerMessage.Get("ORIGINAL-ENVELOPE-ID"); got != "0GK500B4HD0888@example.com" {
		t.Errorf("Original-Envelope-Id %q", got)
	}
	if got := p.PerMessage.Get("reporting-mta"); got != "dns; relay.example.net" {
		t.Errorf("Reporting-MTA %q", got)
	}
	if len(p.Recipients) != 2 {
		t.Fatalf("%d recipients", len(p.Recipients))
	}
	g := p.Recipients[0]
	for name, want := range map[string]string{
		"original-recipient": "rfc822;jangel1@example.net",
		"final-recipient":    "RFC822; jangel1@example.net",
		"action":             "failed",
		"status":             "5.2.2 (mailbox full)",
		"diagnostic-code":    "smtp; 552 5.2.2 mailbox over quota, try again later",
	} {
		if got := g.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if p.Recipients[1].Get("Action") != "delayed" {
		t.Errorf("second group %v", p.Recipients[1])
	}
	if p.ReturnedType != "text/rfc822-headers" || string(p.Returned) != "Subject: hello" {
		t.Errorf("returned %q %q", p.ReturnedType, p.Returned)
	}
}

// TestParseLF reads a notice with bare LF line ends, no per-message group,
// a quoted-printable text part and no third part.
func TestParseLF(t *testing.T) {
	msg := "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n" +
		"\n" +
		"--b\n" +
		"Content-Transfer-Encoding: quoted-printable\n" +
		"\n" +
		"Delivery to caf=C3=A9@example.net failed.\n" +
		"--b\n" +
		"Content-Type: message/delivery-status\n" +
		"\n" +
		"Final-Recipient: rfc822; x@example.net\n" +
		"Action: failed\n" +
		"Status: 5.0.0\n" +
		"--b--\n"
	p, err := Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if p.Text != "Delivery to café@example.net failed." {
		t.Errorf("text %q", p.Text)
	}
	if p.PerMessage == nil || len(p.PerMessage) != 0 {
		t.Errorf("per-message %v", p.PerMessage)
	}
	if len(p.Recipients) != 1 || p.Recipients[0].Get("Final-Recipient") != "rfc822; x@example.net" {
		t.Errorf("recipients %v", p.Recipients)
	}
	if p.Returned != nil || p.ReturnedType != "" {
		t.Errorf("returned %q %q", p.ReturnedType, p.Returned)
	}
}

func TestParseErrors(t *testing.T) {
	status := "Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; x@y\r\nAction: failed\r\nStatus: 5.0.0\r\n"
	wrap := func(ct, parts string) string {
		return "Content-Type: " + ct + "\r\n\r\n" + parts
	}
	good := "--b\r\n\r\ntext\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n" + status + "--b--\r\n"
	tests := []struct{ name, msg string }{
		{"empty", ""},
		{"no header end", "Subject: x"},
		{"not multipart", wrap("text/plain", "hello")},
		{"no Content-Type", "Subject: x\r\n\r\nbody"},
		{"mixed", wrap("multipart/mixed; boundary=b", good)},
		{"disposition report", wrap("multipart/report; report-type=disposition-notification; boundary=b", good)},
		{"no boundary", wrap("multipart/report; report-type=delivery-status", good)},
		{"bad parameter", wrap("multipart/report; report-type=delivery-status; boundary=\"b", good)},
		{"no status part", wrap("multipart/report; report-type=delivery-status; boundary=b",
			"--b\r\n\r\ntext\r\n--b--\r\n")},
		{"global type in a plain report", wrap("multipart/report; report-type=delivery-status; boundary=b",
			strings.Replace(good, "message/delivery-status", "message/global-delivery-status", 1))},
		{"per-message only", wrap("multipart/report; report-type=delivery-status; boundary=b",
			"--b\r\n\r\ntext\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n--b--\r\n")},
		{"group without Action", wrap("multipart/report; report-type=delivery-status; boundary=b",
			strings.Replace(good, "Action: failed\r\n", "", 1))},
		{"group without Status", wrap("multipart/report; report-type=delivery-status; boundary=b",
			strings.Replace(good, "Status: 5.0.0\r\n", "", 1))},
		{"malformed field", wrap("multipart/report; report-type=delivery-status; boundary=b",
			strings.Replace(good, "Action: failed", "Action failed", 1))},
		{"bad base64", wrap("multipart/report; report-type=delivery-status; boundary=b",
			"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n--b--\r\n")},
		{"unknown encoding", wrap("multipart/report; report-type=delivery-status; boundary=b",
			"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nx\r\n--b--\r\n")},
		{"unterminated multipart", wrap("multipart/report; report-type=delivery-status; boundary=b",
			"--b\r\n\r\ntext\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"+status)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := Parse([]byte(tt.msg)); err == nil {
				t.Errorf("Parse succeeded: %+v", p)
			}
		})
	}
	// The good one parses, so the failures above are about their changes.
	if _, err := Parse([]byte(wrap("multipart/report; report-type=delivery-status; boundary=b", good))); err != nil {
		t.Errorf("good message: %v", err)
	}
}
