package msg

import (
	"bytes"
	"strings"
)

// header keeps the first occurrence of the fields the parse needs, unfolded.
type header struct {
	fields []field
	size   int
	cur    int // index of the field being continued, -1 when it is not kept
}

type field struct {
	name  string // lower-case
	value []byte
}

// wanted are the fields kept: the envelope's and the MIME ones.
var wanted = map[string]bool{
	"date": true, "subject": true, "from": true, "sender": true, "reply-to": true,
	"to": true, "cc": true, "bcc": true, "in-reply-to": true, "message-id": true,
	"content-type": true, "content-transfer-encoding": true, "content-id": true,
	"content-description": true, "content-md5": true, "content-disposition": true,
	"content-language": true, "content-location": true,
}

func (h *header) addField(line []byte) {
	h.cur = -1
	colon := bytes.IndexByte(line, ':')
	name := strings.ToLower(string(bytes.TrimRight(line[:colon], " \t")))
	if !wanted[name] || h.size > maxHeaderBytes {
		return
	}
	for _, f := range h.fields {
		if f.name == name {
			return // IMAP takes the first occurrence
		}
	}
	v := trimLineEnd(line[colon+1:])
	h.fields = append(h.fields, field{name, append([]byte(nil), v...)})
	h.cur = len(h.fields) - 1
	h.size += len(v)
}

// continueField unfolds a continuation line into the current field (RFC 5322
// section 2.2.3: the CRLF is removed, the whitespace kept).
func (h *header) continueField(line []byte) {
	if h.cur < 0 || h.size > maxHeaderBytes {
		return
	}
	f := &h.fields[h.cur]
	if len(f.value) > maxFieldBytes {
		return
	}
	v := trimLineEnd(line)
	f.value = append(f.value, v...)
	h.size += len(v)
}

func trimLineEnd(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// get returns a field's value with surrounding whitespace removed.
func (h *header) get(name string) (string, bool) {
	for _, f := range h.fields {
		if f.name == name {
			return strings.TrimSpace(string(f.value)), true
		}
	}
	return "", false
}

func (h *header) str(name string) string {
	v, _ := h.get(name)
	return v
}

func envelopeOf(h *header) Envelope {
	e := Envelope{
		Date:      h.str("date"),
		Subject:   h.str("subject"),
		From:      ParseAddressList(h.str("from")),
		Sender:    ParseAddressList(h.str("sender")),
		ReplyTo:   ParseAddressList(h.str("reply-to")),
		To:        ParseAddressList(h.str("to")),
		Cc:        ParseAddressList(h.str("cc")),
		Bcc:       ParseAddressList(h.str("bcc")),
		InReplyTo: h.str("in-reply-to"),
		MessageID: h.str("message-id"),
	}
	// RFC 9051 section 7.5.2: Sender and Reply-To default to From.
	if len(e.Sender) == 0 {
		e.Sender = e.From
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = e.From
	}
	return e
}

// stripComments removes RFC 5322 comments (parenthesised, nestable) outside
// quoted strings.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (inQuote || depth > 0):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case c == '"' && depth == 0:
			inQuote = !inQuote
			b.WriteByte(c)
		case c == '(' && !inQuote:
			depth++
		case c == ')' && !inQuote && depth > 0:
			depth--
		default:
			if depth == 0 {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// parseValueWithParams reads "value; name=value; name*0=..." (RFC 2045 section
// 5.1 with RFC 2231 continuations and charsets). Parameter names come back
// lower-case, in the order first seen.
func parseValueWithParams(s string) (string, [][2]string) {
	s = stripComments(s)
	parts := splitParams(s)
	value := strings.TrimSpace(parts[0])
	var order []string
	plain := map[string]string{}
	pieces := map[string][]piece{}
	for _, p := range parts[1:] {
		name, v, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		v = unquoteParam(strings.TrimSpace(v))
		if name == "" {
			continue
		}
		// RFC 2231: name*, name*0, name*0*, name*1 ...
		base, section, isSection := strings.Cut(name, "*")
		if !isSection {
			if _, seen := plain[name]; !seen && len(pieces[name]) == 0 {
				order = append(order, name)
			}
			if _, seen := plain[name]; !seen {
				plain[name] = v
			}
			continue
		}
		encoded := strings.HasSuffix(section, "*") || section == ""
		num := strings.TrimSuffix(section, "*")
		n := 0
		if num != "" {
			for _, c := range num {
				if c < '0' || c > '9' || n > 1000 {
					n = -1
					break
				}
				n = n*10 + int(c-'0')
			}
			if n < 0 {
				continue
			}
		}
		if _, seen := plain[base]; !seen && len(pieces[base]) == 0 {
			order = append(order, base)
		}
		if len(pieces[base]) < 100 {
			pieces[base] = append(pieces[base], piece{n, encoded, v})
		}
	}
	var out [][2]string
	for _, name := range order {
		if ps := pieces[name]; len(ps) > 0 {
			// Join the sections in order; decode %XX in encoded ones; the first
			// encoded one carries charset'language' (RFC 2231 section 4).
			sortPieces(ps)
			var b strings.Builder
			charset := ""
			for i, p := range ps {
				v := p.v
				if p.encoded {
					if i == 0 {
						if cs, rest, ok := strings.Cut(v, "'"); ok {
							if _, rest2, ok := strings.Cut(rest, "'"); ok {
								charset, v = cs, rest2
							}
						}
					}
					v = percentDecode(v)
				}
				b.WriteString(v)
			}
			out = append(out, [2]string{name, toUTF8(charset, b.String())})
			continue
		}
		out = append(out, [2]string{name, plain[name]})
	}
	return value, out
}

// piece is one section of an RFC 2231 parameter.
type piece struct {
	n       int
	encoded bool
	v       string
}

func sortPieces(ps []piece) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].n < ps[j-1].n; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// splitParams splits at semicolons outside quoted strings.
func splitParams(s string) []string {
	var out []string
	inQuote := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case ';':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func unquoteParam(v string) string {
	if len(v) < 2 || v[0] != '"' {
		return v
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			i++
			b.WriteByte(v[i])
			continue
		}
		if c == '"' {
			break
		}
		b.WriteByte(c)
	}
	return b.String()
}

func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// toUTF8 converts bytes in charset to UTF-8 for the charsets that need no
// table: UTF-8 and US-ASCII as they are, ISO-8859-1 by code point. Other
// charsets are kept as they are.
func toUTF8(charset, s string) string {
	switch strings.ToLower(charset) {
	case "iso-8859-1", "latin1", "l1":
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteRune(rune(s[i]))
		}
		return b.String()
	}
	return s
}
