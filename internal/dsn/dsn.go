// Package dsn builds and parses delivery status notifications: the bounce,
// delay and success notices that the outbound queue sends to a message's
// envelope sender (RFC 3464), wrapped in multipart/report (RFC 6522), with the
// international forms of RFC 6533 when an address is not ASCII.
//
// Build writes a notice; Parse reads one, using only the standard library's
// mail and MIME readers, so that tests of Build do not rely on Build's own
// code, and so that notices we receive can be recognised.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Action is the Action field of a per-recipient group (RFC 3464 section 2.3.3).
type Action string

// The actions of RFC 3464 section 2.3.3.
const (
	ActionFailed    Action = "failed"
	ActionDelayed   Action = "delayed"
	ActionDelivered Action = "delivered"
	ActionRelayed   Action = "relayed"
	ActionExpanded  Action = "expanded"
)

// Recipient is what the notice says about one recipient of the original.
type Recipient struct {
	Final          string    // the recipient address as we tried it, "user@example.org"
	Original       string    // RFC 3461 ORCPT, xtext-decoded: "rfc822;user@example.org" (may be empty)
	Action         Action    // what became of it; its Status class must agree
	Status         string    // RFC 3463 code: "5.1.1", "4.4.1", "2.0.0"
	RemoteMTA      string    // host name or IP of the server that answered ("" when none)
	Diagnostic     string    // the SMTP reply as received ("" when none); hostile, cleaned by Build
	LastAttempt    time.Time // zero: omitted
	WillRetryUntil time.Time // written only for ActionDelayed (RFC 3464 section 2.3.9); zero: omitted
}

// Report is one notice about one original message.
type Report struct {
	ReportingMTA string    // our host name
	From         string    // From: of the notice, e.g. "MAILER-DAEMON@mx.example.org"
	To           string    // the original's envelope sender; never empty (RFC 5321 section 4.5.5: no notice to <>)
	EnvID        string    // RFC 3461 ENVID of the original, xtext-decoded ("" when none)
	ArrivalDate  time.Time // when we received the original (zero: omitted)
	QueueID      string    // our queue ID of the original, named in the text
	Recipients   []Recipient
	ReturnFull   bool   // RET=FULL: return the whole original; else only its header
	Original     []byte // the original message (header + body, CRLF lines); nil: no third part
	MaxFull      int    // >0: when ReturnFull and len(Original) > MaxFull, return only the header
	Date         time.Time
	MessageID    string // "<...>"; generated from ReportingMTA when empty
}

// Bounds on what a notice carries from hostile input.
const (
	// maxDiagnostic caps a remote server's reply, in octets, so that the
	// Diagnostic-Code field fits on one line of less than 998 octets even
	// when it cannot be folded (RFC 5322 section 2.1.1).
	maxDiagnostic = 900
	// maxLine is where the text part breaks a word that has no space in it.
	maxLine = 900
	// textWidth is the width the human-readable text is wrapped to.
	textWidth = 76
	// maxField caps the fields that come from our side (addresses, host
	// names, IDs), so that each field line stays below 998 octets.
	maxField = 900
	// maxOrcpt caps a written Original-Recipient address and maxEnvID an
	// Original-Envelope-Id: RFC 3461 sections 4.2 and 4.4 allow 500 and
	// 100 characters; a peer that sends more is cut, not refused.
	maxOrcpt = 500
	maxEnvID = 100
)

// randRead is the source of boundaries and Message-IDs; tests replace it.
var randRead = rand.Read

// dateFormat is the RFC 5322 section 3.3 date-time used by the Date header
// and by the Arrival-Date, Last-Attempt-Date and Will-Retry-Until fields,
// which RFC 3464 defines as RFC 822 date-times.
const dateFormat = "Mon, 02 Jan 2006 15:04:05 -0700"

// Build returns the notice described by r: a complete RFC 5322 message with
// CRLF line ends. It fails only when r itself is wrong (no recipients, a
// missing or malformed field that comes from our own side); text from the
// network (diagnostics, ORCPT, ENVID) is cleaned rather than refused, so
// that a hostile peer cannot stop a bounce.
func Build(r *Report) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	// RFC 6533: a UTF-8 address or host name needs
	// message/global-delivery-status, where fields may hold UTF-8.
	global := !isASCII(r.ReportingMTA)
	recips := make([]recipient, len(r.Recipients))
	for i := range r.Recipients {
		recips[i] = prepare(&r.Recipients[i])
		if recips[i].global || !isASCII(r.Recipients[i].RemoteMTA) {
			global = true
		}
	}
	for i := range recips {
		recips[i].diagnostic = cleanDiagnostic(r.Recipients[i].Diagnostic, global)
	}

	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	msgID := r.MessageID
	if msgID == "" {
		var err error
		if msgID, err = newMessageID(r.ReportingMTA); err != nil {
			return nil, err
		}
	}

	ret := returned(r)
	text := humanText(r, recips, ret)
	status := statusFields(r, recips)

	// The third part (RFC 6522 section 3): the original or its header. Its
	// type is message/global or message/global-headers when the header holds
	// UTF-8 (message/global of RFC 6532, message/global-headers of RFC 6533).
	var retType string
	if ret.body != nil {
		utf8Header := !isASCII(headerOf(r.Original))
		switch {
		case ret.full && utf8Header:
			retType = "message/global"
		case ret.full:
			retType = "message/rfc822"
		case utf8Header:
			retType = "message/global-headers"
		default:
			retType = "text/rfc822-headers"
		}
	}

	boundary, err := newBoundary(text, status, ret.body)
	if err != nil {
		return nil, err
	}
	statusType := "delivery-status"
	if global {
		statusType = "global-delivery-status"
	}
	eightBit := !isASCII(text) || !isASCII(status) || !isASCII(ret.body)

	var b bytes.Buffer
	hdr := func(name, value string) {
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	hdr("Date", date.Format(dateFormat))
	hdr("From", r.From)
	hdr("To", r.To)
	hdr("Subject", subject(r.Recipients))
	hdr("Message-ID", msgID)
	// RFC 3834 section 5: a notice is an automatic reply, which other
	// responders must not answer.
	hdr("Auto-Submitted", "auto-replied")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "multipart/report; report-type="+statusType+";\r\n\tboundary=\""+boundary+"\"")
	if eightBit {
		// RFC 2045 section 6.4: a multipart holding 8bit parts is 8bit.
		hdr("Content-Transfer-Encoding", "8bit")
	}
	b.WriteString("\r\nThis is a MIME-encapsulated delivery status notification (RFC 3464).\r\n")

	// Each part's body is followed by CRLF "--" boundary; that CRLF belongs to
	// the delimiter (RFC 2046 section 5.1.1), so a body that ends in CRLF
	// keeps it.
	part := func(header string, body []byte) {
		b.WriteString("\r\n--")
		b.WriteString(boundary)
		b.WriteString("\r\n")
		b.WriteString(header)
		b.WriteString("\r\n")
		b.Write(body)
	}
	charset, cte := "us-ascii", ""
	if !isASCII(text) {
		charset, cte = "utf-8", "Content-Transfer-Encoding: 8bit\r\n"
	}
	part("Content-Type: text/plain; charset="+charset+"\r\n"+cte+
		"Content-Description: Notification\r\n", text)
	cte = ""
	if !isASCII(status) {
		cte = "Content-Transfer-Encoding: 8bit\r\n"
	}
	part("Content-Type: message/"+statusType+"\r\n"+cte+
		"Content-Description: Delivery report\r\n", status)
	if ret.body != nil {
		desc := "Original message"
		if !ret.full {
			desc = "Original message header"
		}
		cte = ""
		if !isASCII(ret.body) {
			// RFC 2046 section 5.2.1: message/rfc822 is never encoded;
			// 8-bit content is labelled 8bit.
			cte = "Content-Transfer-Encoding: 8bit\r\n"
		}
		part("Content-Type: "+retType+"\r\n"+cte+"Content-Description: "+desc+"\r\n", ret.body)
	}
	b.WriteString("\r\n--")
	b.WriteString(boundary)
	b.WriteString("--\r\n")
	return b.Bytes(), nil
}

// check refuses a report whose own fields (those that come from our side)
// are missing or could break the message's structure.
func (r *Report) check() error {
	if len(r.Recipients) == 0 {
		return errors.New("dsn: report has no recipients")
	}
	for _, f := range []struct{ name, v string }{
		{"ReportingMTA", r.ReportingMTA}, {"From", r.From}, {"To", r.To},
	} {
		if f.v == "" {
			return fmt.Errorf("dsn: %s is empty", f.name)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"ReportingMTA", r.ReportingMTA}, {"MessageID", r.MessageID}, {"QueueID", r.QueueID},
	} {
		if !isToken(f.v) {
			return fmt.Errorf("dsn: %s %q has a space or control character", f.name, f.v)
		}
	}
	for _, f := range []struct{ name, v string }{{"From", r.From}, {"To", r.To}} {
		if !isText(f.v) {
			return fmt.Errorf("dsn: %s %q has a control character or invalid UTF-8", f.name, f.v)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"ReportingMTA", r.ReportingMTA}, {"MessageID", r.MessageID}, {"QueueID", r.QueueID},
		{"From", r.From}, {"To", r.To},
	} {
		if len(f.v) > maxField {
			return fmt.Errorf("dsn: %s is %d octets long, more than %d", f.name, len(f.v), maxField)
		}
	}
	if r.MessageID != "" && (!strings.HasPrefix(r.MessageID, "<") || !strings.HasSuffix(r.MessageID, ">")) {
		return fmt.Errorf("dsn: MessageID %q is not in angle brackets", r.MessageID)
	}
	for i := range r.Recipients {
		if err := r.Recipients[i].check(); err != nil {
			return fmt.Errorf("dsn: recipient %d: %w", i, err)
		}
	}
	return nil
}

func (rc *Recipient) check() error {
	if rc.Final == "" {
		return errors.New("final address is empty")
	}
	if !isText(rc.Final) {
		return fmt.Errorf("final address %q has a control character or invalid UTF-8", rc.Final)
	}
	if len(rc.Final) > maxField || len(rc.RemoteMTA) > maxField {
		return fmt.Errorf("final address or remote MTA longer than %d octets", maxField)
	}
	if !isToken(rc.RemoteMTA) {
		return fmt.Errorf("remote MTA %q has a space or control character", rc.RemoteMTA)
	}
	class, ok := statusClass(rc.Status)
	if !ok {
		return fmt.Errorf("status %q is not an RFC 3463 code", rc.Status)
	}
	// The class of the status (RFC 3463 section 3.1: 2 success, 4
	// persistent transient failure, 5 permanent failure) must agree with
	// the action (RFC 3464 section 2.3.3); a mismatch is a bug in the
	// caller. A message that expires after temporary failures is "failed"
	// with a 4.x.x status (e.g. 4.4.7), so failed takes 4 or 5.
	var want string
	switch rc.Action {
	case ActionFailed:
		want = "45"
	case ActionDelayed:
		want = "4"
	case ActionDelivered, ActionRelayed, ActionExpanded:
		want = "2"
	default:
		return fmt.Errorf("unknown action %q", rc.Action)
	}
	if !strings.ContainsRune(want, rune(class)) {
		return fmt.Errorf("status %s does not fit action %s", rc.Status, rc.Action)
	}
	return nil
}

// statusClass checks the status-code syntax of RFC 3463 section 2
// (class "." subject "." detail; class 2, 4 or 5; subject and detail of
// one to three digits) and returns the class digit.
func statusClass(s string) (byte, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || strings.IndexByte("245", parts[0][0]) < 0 {
		return 0, false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return 0, false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return 0, false
			}
		}
	}
	return parts[0][0], true
}

// recipient holds a Recipient's fields as they will be written.
type recipient struct {
	finalType, final string // address-type and address of Final-Recipient
	origType, orig   string // of Original-Recipient; origType "" when absent
	diagnostic       string // cleaned
	global           bool   // needs message/global-delivery-status
	*Recipient
}

func prepare(rc *Recipient) recipient {
	out := recipient{Recipient: rc, finalType: "rfc822", final: rc.Final}
	if !isASCII(rc.Final) {
		// RFC 6533 section 3: the "utf-8" address type carries a UTF-8
		// address; it is written raw in a global delivery status.
		out.finalType = "utf-8"
		out.global = true
	}
	if rc.Original != "" {
		typ, addr, ok := strings.Cut(rc.Original, ";")
		typ, addr = strings.ToLower(strings.TrimSpace(typ)), strings.TrimSpace(addr)
		if !ok || !isAtom(typ) || len(typ) > 32 {
			// No usable type: RFC 3464 section 2.3.1 allows "unknown".
			typ, addr = "unknown", strings.TrimSpace(rc.Original)
		}
		// The ORCPT came from the network. RFC 3461 section 4.2 requires
		// its decoded value to be printable; one that is not is written in
		// xtext, so that it stays one field and can still be read.
		if !isText(addr) {
			addr = xtext(addr)
		}
		addr = cut(addr, maxOrcpt)
		if addr != "" {
			out.origType, out.orig = typ, addr
			if !isASCII(addr) {
				out.global = true
			}
		}
	}
	return out
}

// retPart is what the third part returns.
type retPart struct {
	body      []byte // nil: no third part
	full      bool   // the whole original, not only its header
	truncated bool   // ReturnFull was asked but MaxFull was exceeded
}

func returned(r *Report) retPart {
	if len(r.Original) == 0 {
		return retPart{}
	}
	if r.ReturnFull && (r.MaxFull <= 0 || len(r.Original) <= r.MaxFull) {
		return retPart{body: r.Original, full: true}
	}
	return retPart{body: headerOf(r.Original), truncated: r.ReturnFull}
}

// headerOf returns the header of msg: its fields up to and including the
// CRLF of the last one, without the blank line that ends it. A message
// without a blank line is all header.
func headerOf(msg []byte) []byte {
	if bytes.HasPrefix(msg, []byte("\r\n")) || bytes.HasPrefix(msg, []byte("\n")) {
		return msg[:0]
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return msg[:i+1]
	}
	return msg
}

// subject picks the Subject by the gravest action in the report.
func subject(rs []Recipient) string {
	var delayed bool
	for _, rc := range rs {
		switch rc.Action {
		case ActionFailed:
			return "Undelivered Mail Returned to Sender"
		case ActionDelayed:
			delayed = true
		}
	}
	if delayed {
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

// statusFields writes the message/delivery-status body of RFC 3464
// section 2.1: the per-message fields, then one group per recipient, each
// group preceded by a blank line, each field ending in CRLF.
func statusFields(r *Report, recips []recipient) []byte {
	var b bytes.Buffer
	field := func(name, value string) {
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	if r.EnvID != "" {
		field("Original-Envelope-Id", envID(r.EnvID))
	}
	field("Reporting-MTA", "dns; "+r.ReportingMTA)
	if !r.ArrivalDate.IsZero() {
		field("Arrival-Date", r.ArrivalDate.Format(dateFormat))
	}
	if r.QueueID != "" {
		// An extension field (RFC 3464 section 2.4), so that a notice that
		// comes back to us names the message it is about.
		field("X-Posthorn-Queue-ID", r.QueueID)
	}
	for _, rc := range recips {
		b.WriteString("\r\n")
		if rc.origType != "" {
			field("Original-Recipient", rc.origType+"; "+rc.orig)
		}
		field("Final-Recipient", rc.finalType+"; "+rc.final)
		field("Action", string(rc.Action))
		field("Status", rc.Status)
		if rc.RemoteMTA != "" {
			field("Remote-MTA", "dns; "+rc.RemoteMTA)
		}
		if rc.diagnostic != "" {
			b.WriteString(fold("Diagnostic-Code: "+diagType(rc.diagnostic)+"; "+rc.diagnostic, 78))
			b.WriteString("\r\n")
		}
		if !rc.LastAttempt.IsZero() {
			field("Last-Attempt-Date", rc.LastAttempt.Format(dateFormat))
		}
		if rc.Action == ActionDelayed && !rc.WillRetryUntil.IsZero() {
			field("Will-Retry-Until", rc.WillRetryUntil.Format(dateFormat))
		}
	}
	return b.Bytes()
}

// diagType names the diagnostic-type of RFC 3464 section 2.3.6: "smtp" for
// what looks like an SMTP reply (three digits, then space, hyphen or end),
// our own extension type for anything else (a connection error, say).
func diagType(d string) string {
	if len(d) >= 3 && d[0] >= '2' && d[0] <= '5' && isDigit(d[1]) && isDigit(d[2]) &&
		(len(d) == 3 || d[3] == ' ' || d[3] == '-') {
		return "smtp"
	}
	return "X-Posthorn"
}

// envID writes the Original-Envelope-Id value. RFC 3461 section 6.3(a)
// wants the ENVID decoded from xtext, and section 4.4 requires the decoded
// value to be printable US-ASCII for that reason. A value that breaks that
// rule (or would lose spaces at its ends when the field is read) is written
// in xtext instead, so that it cannot inject a field and stays readable.
func envID(id string) string {
	ok := id == strings.TrimSpace(id)
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] >= 0x20 && id[i] < 0x7f
	}
	if !ok {
		id = xtext(id)
	}
	return cut(id, maxEnvID)
}

// cut shortens s to at most n octets, without splitting a UTF-8 sequence
// or an xtext "+XX" escape.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	if j := strings.LastIndexByte(s[max(0, i-2):i], '+'); j >= 0 {
		i = max(0, i-2) + j
	}
	return s[:i]
}

// xtext encodes s as RFC 3461 section 4 xtext: "!" to "~" except "+" and
// "=" stand for themselves, every other octet is "+" and two upper-case
// hex digits.
func xtext(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// newBoundary returns a random boundary that occurs in none of the parts
// (RFC 2046 section 5.1.1 requires that it not occur in the encapsulated
// data).
func newBoundary(parts ...[]byte) (string, error) {
	for range 10 {
		var rnd [18]byte
		if _, err := randRead(rnd[:]); err != nil {
			return "", fmt.Errorf("dsn: boundary: %w", err)
		}
		bnd := "=_posthorn_" + hex.EncodeToString(rnd[:])
		clash := false
		for _, p := range parts {
			if bytes.Contains(p, []byte(bnd)) {
				clash = true
				break
			}
		}
		if !clash {
			return bnd, nil
		}
	}
	return "", errors.New("dsn: no boundary found that is absent from the message")
}

func newMessageID(host string) (string, error) {
	var rnd [12]byte
	if _, err := randRead(rnd[:]); err != nil {
		return "", fmt.Errorf("dsn: message ID: %w", err)
	}
	return "<" + time.Now().UTC().Format("20060102150405") + "." + hex.EncodeToString(rnd[:]) +
		"@" + host + ">", nil
}

// cleanDiagnostic makes a remote server's reply safe to write in a field
// and in the text: line breaks and tabs become spaces, other control
// characters go, runs of spaces become one, invalid UTF-8 (and, in an ASCII
// notice, any non-ASCII) becomes "?", and the result is cut to
// maxDiagnostic octets.
func cleanDiagnostic(s string, allowUTF8 bool) string {
	var b strings.Builder
	space := false
	for len(s) > 0 && b.Len() < maxDiagnostic+4 {
		c, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		switch {
		case c == '\r' || c == '\n' || c == '\t' || c == ' ':
			space = b.Len() > 0
			continue
		case c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0):
			continue
		case c == utf8.RuneError && size <= 1, c >= 0x80 && !allowUTF8:
			c = '?'
		case c >= 0x80 && !unicode.IsPrint(c):
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(c)
	}
	out := b.String()
	if len(out) > maxDiagnostic || len(s) > 0 {
		cut := min(len(out), maxDiagnostic-3)
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = strings.TrimRight(out[:cut], " ") + "..."
	}
	return out
}

// fold folds a header line at spaces so that lines stay within width where
// a space allows it (RFC 5322 section 2.2.3); unfolding gives back line.
func fold(line string, width int) string {
	var b strings.Builder
	for len(line) > width {
		i := strings.LastIndexByte(line[:width], ' ')
		if i <= 0 {
			i = strings.IndexByte(line[width:], ' ')
			if i < 0 {
				break
			}
			i += width
		}
		b.WriteString(line[:i])
		b.WriteString("\r\n")
		line = line[i:] // keeps the space, which becomes the fold's WSP
	}
	b.WriteString(line)
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isToken reports whether s has no space, control character or invalid
// UTF-8 (empty is fine).
func isToken(s string) bool {
	return isText(s) && !strings.ContainsRune(s, ' ')
}

// isText reports whether s is valid UTF-8 without control characters.
func isText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\u2028' || c == '\u2029' {
			return false
		}
	}
	return true
}

// isAtom reports whether s is a non-empty run of letters, digits and
// hyphens, as address-type names are.
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || isDigit(c) || c == '-') {
			return false
		}
	}
	return true
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
