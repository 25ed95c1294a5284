package imapsearch

import (
	"bytes"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"

	"github.com/posthorn/posthorn/internal/msg"
)

// maxHeaderRead bounds the header bytes read for HEADER, TEXT and
// References: the parser in internal/msg keeps no more than 1 MiB of a
// header either, and a field beyond that is not searched.
const maxHeaderRead = 1 << 20

// wordDecoder decodes RFC 2047 encoded words, with the charsets go-message
// knows beyond the UTF-8, US-ASCII and ISO-8859-1 that mime handles itself.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeader decodes the encoded words of a header value (RFC 2047); a
// value that cannot be decoded is kept as written.
func decodeHeader(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// readHeader reads the raw header of p (at most maxHeaderRead bytes) into
// buf, reusing its storage.
func readHeader(r io.ReaderAt, p *msg.Part, buf []byte) ([]byte, error) {
	n := min(p.BodyStart-p.HeaderStart, maxHeaderRead)
	if n <= 0 {
		return buf[:0], nil
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	m, err := r.ReadAt(buf, p.HeaderStart)
	if m == len(buf) {
		err = nil
	}
	if err == io.EOF {
		err = nil
	}
	return buf[:m], err
}

// eachField calls fn with every field of a raw header, its value unfolded
// (RFC 5322 section 2.2.3: CRLF removed, the whitespace after it kept) and
// trimmed, until fn returns false. scratch is reused for unfolding.
func eachField(h []byte, scratch []byte, fn func(name, value []byte) bool) []byte {
	for len(h) > 0 {
		line, rest := cutLine(h)
		h = rest
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			continue // not a field (a stray continuation or garbage)
		}
		name := bytes.TrimRight(line[:colon], " \t")
		val := trimEOL(line[colon+1:])
		folded := false
		for len(h) > 0 && (h[0] == ' ' || h[0] == '\t') {
			if !folded {
				scratch = append(scratch[:0], val...)
				folded = true
			}
			var cont []byte
			cont, h = cutLine(h)
			scratch = append(scratch, trimEOL(cont)...)
		}
		if folded {
			val = scratch
		}
		if !fn(name, bytes.TrimSpace(val)) {
			break
		}
	}
	return scratch
}

func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1], b[i+1:]
	}
	return b, nil
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// findHeader returns the first value of field name in a raw header.
func findHeader(h []byte, name string) (string, bool) {
	var v string
	found := false
	eachField(h, nil, func(n, val []byte) bool {
		if strings.EqualFold(string(n), name) {
			v, found = string(val), true
			return false
		}
		return true
	})
	return v, found
}

// addressText renders an address list for FROM, TO, CC and BCC: each
// address as `Display Name <mailbox@host>` with the name decoded (RFC
// 2047), groups as `name: ... ;`, so that a search string can match the
// name, the address or both as a client would write them.
func addressText(list []msg.Address) string {
	var b strings.Builder
	for i, a := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		switch {
		case a.Host == "" && a.Mailbox != "":
			b.WriteString(decodeHeader(a.Mailbox))
			b.WriteString(":")
		case a.Host == "" && a.Mailbox == "":
			b.WriteString(";")
		default:
			if a.Name != "" {
				b.WriteString(decodeHeader(a.Name))
				b.WriteString(" ")
			}
			b.WriteString("<")
			if a.Adl != "" {
				b.WriteString(a.Adl)
				b.WriteString(":")
			}
			b.WriteString(a.Mailbox)
			b.WriteString("@")
			b.WriteString(a.Host)
			b.WriteString(">")
		}
	}
	return b.String()
}
