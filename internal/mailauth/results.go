package mailauth

import (
	"bytes"
	"strings"
)

// AuthenticationResults renders one Authentication-Results header field
// (RFC 8601 section 2.2) for authservID, ending in CRLF: spf= with
// smtp.mailfrom or smtp.helo, one dkim= per verified signature with
// header.d, header.s, header.a and header.b (RFC 6008), and dmarc= with
// header.from. A method that was not evaluated is left out; with none at
// all the field says "none" (section 2.2).
func (r *Result) AuthenticationResults(authservID string) string {
	var parts []string
	if r.SPF.Result != "" {
		prop := "smtp.mailfrom=" + pvalue(r.SPF.Sender)
		if r.SPF.Identity == "helo" {
			prop = "smtp.helo=" + pvalue(strings.TrimPrefix(r.SPF.Sender, "postmaster@"))
		}
		parts = append(parts, "spf="+string(r.SPF.Result)+" "+comment(r.SPF.Explanation)+prop)
	}
	for _, s := range r.DKIM {
		p := "dkim=" + string(s.Result) + " " + comment(s.Reason) + "header.d=" + pvalue(s.Domain)
		if s.Selector != "" {
			p += " header.s=" + pvalue(s.Selector)
		}
		if s.Algorithm != "" {
			p += " header.a=" + pvalue(s.Algorithm)
		}
		if s.B != "" {
			p += " header.b=" + pvalue(s.B)
		}
		parts = append(parts, p)
	}
	if r.DMARC.Result != "" {
		p := "dmarc=" + string(r.DMARC.Result)
		if r.DMARC.Result == DMARCFail || r.DMARC.Result == DMARCPass {
			p += " (p=" + string(r.DMARC.Policy) + ")"
		}
		if r.DMARC.FromDomain != "" {
			p += " header.from=" + pvalue(r.DMARC.FromDomain)
		}
		parts = append(parts, p)
	}
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(authservID)
	if len(parts) == 0 {
		b.WriteString("; none\r\n")
		return b.String()
	}
	for _, p := range parts {
		// One result per folded line keeps lines short (RFC 5322 2.1.1).
		b.WriteString(";\r\n\t")
		b.WriteString(strings.TrimSpace(p))
	}
	b.WriteString("\r\n")
	return b.String()
}

// comment renders text as an RFC 5322 comment followed by a space, or
// nothing. Parentheses and backslashes are escaped; line breaks and other
// control characters, which could end the field, are dropped.
func comment(text string) string {
	if text == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('(')
	for _, c := range []byte(text) {
		switch {
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
		if b.Len() > 200 {
			b.WriteString("...")
			break
		}
	}
	b.WriteString(") ")
	return b.String()
}

// pvalue renders a property value (RFC 8601 section 2.2): as is when it is
// a token-ish value or an address, else as a quoted string.
func pvalue(v string) string {
	plain := v != ""
	for _, c := range []byte(v) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>,;:\\\"[]?=", c) >= 0 {
			plain = false
			break
		}
	}
	if plain {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(v) {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// authservIDOf returns the authserv-id of an Authentication-Results value:
// its first token after any comments and white space (RFC 8601 section
// 2.2), up to ";", white space or a comment.
func authservIDOf(value string) string {
	s := value
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if !strings.HasPrefix(s, "(") {
			break
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
	if end := strings.IndexAny(s, "; \t\r\n("); end >= 0 {
		s = s[:end]
	}
	return strings.Trim(s, "\"")
}

// RemoveAuthenticationResults returns hdr (a header block) without the
// Authentication-Results fields whose authserv-id is authservID: such a
// field arriving from outside is forged (RFC 8601 section 5). The ID is
// compared case-insensitively; fields of other IDs, and every other field,
// are kept byte for byte.
func RemoveAuthenticationResults(hdr []byte, authservID string) []byte {
	fields := splitFields(hdr)
	out := make([]byte, 0, len(hdr))
	removed := false
	for _, f := range fields {
		if strings.EqualFold(f.Name, "Authentication-Results") && strings.EqualFold(authservIDOf(f.Value()), authservID) {
			removed = true
			continue
		}
		out = append(out, f.Raw...)
	}
	if !removed {
		return hdr
	}
	// Keep whatever followed the fields: the empty line ending the header.
	var n int
	for _, f := range fields {
		n += len(f.Raw)
	}
	return append(out, bytes.Clone(hdr[n:])...)
}
