package webmail

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/posthorn/posthorn/internal/msg"
)

// wordDecoder decodes RFC 2047 encoded words in any charset go-message
// knows; an unknown charset leaves the word as it is.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeader decodes a raw header value for display: encoded words
// (RFC 2047), and bytes that are not UTF-8 (8-bit headers in Latin-1)
// replaced.
func decodeHeader(s string) string {
	if strings.Contains(s, "=?") {
		if d, err := wordDecoder.DecodeHeader(s); err == nil {
			s = d
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// displayAddress returns how to show an address (its name, else the
// address) and the address itself.
func displayAddress(a msg.Address) (display, address string) {
	address = a.Mailbox
	if a.Host != "" {
		address += "@" + a.Host
	}
	address = strings.ToValidUTF8(address, "\uFFFD")
	name := strings.TrimSpace(decodeHeader(a.Name))
	if name == "" {
		return address, address
	}
	return name, address
}

// formatAddresses renders an address list for display ("Name <a@b>, c@d").
func formatAddresses(list []msg.Address) string {
	var parts []string
	for _, a := range list {
		if a.Host == "" {
			continue // group markers
		}
		name, address := displayAddress(a)
		if name != address {
			parts = append(parts, name+" <"+address+">")
		} else {
			parts = append(parts, address)
		}
	}
	return strings.Join(parts, ", ")
}

// addressesForHeader renders an address list as header text for a reply's
// recipients, encoded for mail.ParseAddressList later.
func addressesForHeader(list []msg.Address, skip func(address string) bool) []string {
	var out []string
	for _, a := range list {
		if a.Host == "" {
			continue
		}
		name, address := displayAddress(a)
		if skip != nil && skip(address) {
			continue
		}
		if name == address {
			out = append(out, address)
			continue
		}
		out = append(out, (&mail.Address{Name: name, Address: address}).String())
	}
	return out
}

// partReader returns the decoded body of part p of raw (content transfer
// encoding undone; charset not converted).
func partReader(raw io.ReaderAt, p *msg.Part) io.Reader {
	r := io.Reader(io.NewSectionReader(raw, p.BodyStart, p.Size()))
	switch p.Encoding {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &base64Clean{r: bufio.NewReader(r)})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	return r
}

// base64Clean drops what is not base64 alphabet (line ends, spaces, junk)
// so that a sloppily wrapped attachment still decodes; it stops at '='
// padding's end gracefully since the decoder handles padding.
type base64Clean struct{ r *bufio.Reader }

func (b *base64Clean) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := b.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
			p[n] = c
			n++
		}
	}
	return n, nil
}

// maxTextBytes bounds the text of one part rendered in a page.
const maxTextBytes = 4 << 20

// partText returns the text of a text/* part as UTF-8, at most
// maxTextBytes.
func partText(raw io.ReaderAt, p *msg.Part) (string, error) {
	r := partReader(raw, p)
	if cs := p.Param("charset"); cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		if cr, err := charset.Reader(cs, r); err == nil {
			r = cr
		}
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTextBytes))
	if err != nil && len(b) == 0 {
		return "", err
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), nil
}

// partFilename is the name an attachment is saved under.
func partFilename(p *msg.Part) string {
	name := ""
	for _, kv := range p.DispositionParams {
		if kv[0] == "filename" {
			name = kv[1]
		}
	}
	if name == "" {
		name = p.Param("name")
	}
	name = decodeHeader(name)
	// No directories, no control characters.
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, name)
	return strings.TrimSpace(name)
}

// attachmentFile is one file to attach to an outgoing message.
type attachmentFile struct {
	Name        string
	ContentType string
	Data        []byte
}

// outgoing is a message written in the browser.
type outgoing struct {
	From                string // "Name <addr>" or addr
	To, Cc, Bcc         []*mail.Address
	Subject             string
	Text                string
	InReplyTo           string
	References          string
	Attachments         []attachmentFile
	Hostname            string // for the Message-ID
	Date                time.Time
	MessageID           string // made when empty
	IncludeBcc          bool   // in drafts and the Sent copy, not in what is sent
	ForwardedAttachment *attachmentFile
}

// needsEncoding reports whether s cannot go into a header as it is.
func needsEncoding(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] < 0x20 && s[i] != '\t' {
			return true
		}
	}
	return false
}

// encodeWord encodes header text per RFC 2047 when it needs it.
func encodeWord(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if !needsEncoding(s) {
		return s
	}
	return mime.QEncoding.Encode("utf-8", s)
}

func addressList(list []*mail.Address) string {
	parts := make([]string, len(list))
	for i, a := range list {
		if a.Name == "" {
			parts[i] = a.Address
			continue
		}
		parts[i] = a.String() // encodes a non-ASCII name (RFC 2047)
	}
	return strings.Join(parts, ",\r\n ")
}

func newBoundary() string {
	var b [12]byte
	rand.Read(b[:])
	return "=_posthorn_" + hex.EncodeToString(b[:])
}

// newMessageID makes a Message-ID (RFC 5322 section 3.6.4) on our host.
func newMessageID(host string) string {
	var b [16]byte
	rand.Read(b[:])
	return "<" + hex.EncodeToString(b[:]) + "@" + host + ">"
}

// build writes the message: the header fields (RFC 5322 section 3.6:
// Date, From, To, Cc, Subject, Message-ID, In-Reply-To, References), a
// text/plain UTF-8 part in quoted-printable (so long lines survive), and
// the attachments in base64 in a multipart/mixed.
func (o *outgoing) build() []byte {
	var b bytes.Buffer
	if o.Date.IsZero() {
		o.Date = time.Now()
	}
	if o.MessageID == "" {
		o.MessageID = newMessageID(o.Hostname)
	}
	h := func(name, value string) {
		if value != "" {
			b.WriteString(name + ": " + value + "\r\n")
		}
	}
	h("Date", o.Date.Format(time.RFC1123Z))
	h("From", o.From)
	h("To", addressList(o.To))
	h("Cc", addressList(o.Cc))
	if o.IncludeBcc {
		h("Bcc", addressList(o.Bcc))
	}
	h("Subject", encodeWord(o.Subject))
	h("Message-ID", o.MessageID)
	h("In-Reply-To", oneLine(o.InReplyTo))
	h("References", oneLine(o.References))
	h("MIME-Version", "1.0")
	h("User-Agent", "posthorn webmail")
	text := normalizeNewlines(o.Text)
	if len(o.Attachments) == 0 && o.ForwardedAttachment == nil {
		writeTextPart(&b, text)
		return b.Bytes()
	}
	bd := newBoundary()
	h("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": bd}))
	b.WriteString("\r\nThis is a message in MIME format.\r\n")
	b.WriteString("\r\n--" + bd + "\r\n")
	writeTextPart(&b, text)
	if f := o.ForwardedAttachment; f != nil {
		b.WriteString("\r\n--" + bd + "\r\n")
		b.WriteString("Content-Type: message/rfc822\r\n")
		b.WriteString("Content-Disposition: " + dispositionValue("attachment", f.Name) + "\r\n\r\n")
		b.Write(bytes.TrimRight(f.Data, "\r\n"))
		b.WriteString("\r\n")
	}
	for _, a := range o.Attachments {
		b.WriteString("\r\n--" + bd + "\r\n")
		ct := a.ContentType
		if _, _, err := mime.ParseMediaType(ct); err != nil || ct == "" {
			ct = "application/octet-stream"
		}
		b.WriteString("Content-Type: " + ct + "\r\n")
		b.WriteString("Content-Transfer-Encoding: base64\r\n")
		b.WriteString("Content-Disposition: " + dispositionValue("attachment", a.Name) + "\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(a.Data)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		if enc != "" {
			b.WriteString(enc + "\r\n")
		}
	}
	b.WriteString("\r\n--" + bd + "--\r\n")
	return b.Bytes()
}

// dispositionValue is a Content-Disposition with a file name, in RFC 2231
// form when it is not ASCII (mime.FormatMediaType does that).
func dispositionValue(kind, name string) string {
	if name == "" {
		return kind
	}
	v := mime.FormatMediaType(kind, map[string]string{"filename": name})
	if v == "" {
		return kind
	}
	return v
}

func writeTextPart(b *bytes.Buffer, text string) {
	ascii := !needsEncoding(strings.NewReplacer("\r\n", "", "\t", "").Replace(text))
	long := false
	for _, l := range strings.Split(text, "\r\n") {
		if len(l) > 76 || strings.HasPrefix(l, "From ") {
			long = true
			break
		}
	}
	if ascii && !long {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		b.WriteString(text)
	} else {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		w := quotedprintable.NewWriter(b)
		w.Write([]byte(text))
		w.Close()
	}
	if !strings.HasSuffix(b.String(), "\r\n") {
		b.WriteString("\r\n")
	}
}

// normalizeNewlines makes every line end CRLF (browsers send CRLF in
// textareas, but a script or a paste may not).
func normalizeNewlines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// quote prefixes every line with "> " for a reply.
func quote(text string) string {
	text = strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ">") {
			lines[i] = ">" + l
		} else {
			lines[i] = "> " + l
		}
	}
	return strings.Join(lines, "\n")
}

// humanSize shows a size the way people read it.
func humanSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.0f KB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1024*1024))
}

// truncateRunes cuts s at n runes.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
