package smtpd

// The parameters of the DSN extension (RFC 3461): RET and ENVID on MAIL,
// NOTIFY and ORCPT on RCPT. They are checked here and kept with the message;
// the outbound queue uses them when it reports on delivery. Each parser
// returns the value in the form the store keeps, or an error whose text is
// safe to put in the 501 reply.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/addr"
)

const (
	maxEnvID = 100 // RFC 3461 section 4.4, counted after xtext decoding
	maxORCPT = 500 // RFC 3461 section 4.2: the whole parameter, "ORCPT=" included
)

// decodeXtext decodes RFC 3461 section 4 xtext: characters 33-126 except '+'
// and '=' stand for themselves, "+XX" (two upper-case hex digits) for the
// octet XX. Anything else is malformed: a lenient decoder would let two
// servers read one value two ways.
func decodeXtext(s string) (string, error) {
	if strings.IndexByte(s, '+') < 0 {
		// The common case: nothing encoded; only check the characters.
		for i := 0; i < len(s); i++ {
			if !isXchar(s[i]) {
				return "", errors.New(badXtextChar(s[i]))
			}
		}
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
				return "", errors.New(`"+" must be followed by two upper-case hex digits`)
			}
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case isXchar(c):
			b.WriteByte(c)
		default:
			return "", errors.New(badXtextChar(c))
		}
	}
	return b.String(), nil
}

// isXchar reports whether c stands for itself in xtext.
func isXchar(c byte) bool { return c >= 33 && c <= 126 && c != '+' && c != '=' }

func badXtextChar(c byte) string {
	if c > 32 && c < 127 {
		return fmt.Sprintf("%q must be encoded as +%02X", c, c)
	}
	return fmt.Sprintf("character 0x%02X must be encoded as +%02X", c, c)
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// isPrintableASCII reports whether s holds only graphic characters and spaces
// of US-ASCII, what RFC 3461 sections 4.2 and 4.4 allow in an ENVID and in an
// original recipient address once decoded.
func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// parseRet checks MAIL's RET= (RFC 3461 section 4.3) and returns FULL or HDRS.
func parseRet(v string) (string, error) {
	switch u := strings.ToUpper(v); u {
	case "FULL", "HDRS":
		return u, nil
	}
	return "", errors.New("RET must be FULL or HDRS")
}

// parseEnvID checks and decodes MAIL's ENVID= (RFC 3461 section 4.4).
func parseEnvID(v string) (string, error) {
	if v == "" {
		return "", errors.New("ENVID is empty")
	}
	id, err := decodeXtext(v)
	if err != nil {
		return "", fmt.Errorf("ENVID is not valid xtext: %w", err)
	}
	if len(id) > maxEnvID {
		return "", fmt.Errorf("ENVID is longer than %d characters", maxEnvID)
	}
	if !isPrintableASCII(id) {
		return "", errors.New("ENVID must decode to printable US-ASCII")
	}
	return id, nil
}

// parseNotify checks RCPT's NOTIFY= (RFC 3461 section 4.1): NEVER alone, or a
// comma list of SUCCESS, FAILURE and DELAY. It returns the list upper-cased,
// in the client's order, each value once.
func parseNotify(v string) (string, error) {
	if v == "" {
		return "", errors.New("NOTIFY is empty")
	}
	elems := strings.Split(strings.ToUpper(v), ",")
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		switch e {
		case "NEVER":
			if len(elems) > 1 {
				return "", errors.New("NOTIFY=NEVER cannot be combined with other values")
			}
		case "SUCCESS", "FAILURE", "DELAY":
		case "":
			return "", errors.New("NOTIFY has an empty list element")
		default:
			return "", fmt.Errorf("NOTIFY value %s is not NEVER, SUCCESS, FAILURE or DELAY", sanitize(e, 20))
		}
		dup := false
		for _, o := range out {
			dup = dup || o == e
		}
		if !dup {
			out = append(out, e)
		}
	}
	return strings.Join(out, ","), nil
}

// parseORCPT checks and decodes RCPT's ORCPT= (RFC 3461 section 4.2), of the
// form addr-type ";" encoded address, and returns "rfc822;addr" or
// "utf-8;addr" with the address decoded. Other address types are refused:
// nothing downstream could relay or report them.
//
// An "rfc822" address is xtext and must decode to printable US-ASCII (section
// 4.2). A "utf-8" address (RFC 6533 section 3) is utf-8-addr-xtext, or, as we
// advertise SMTPUTF8, utf-8-addr-unitext with raw UTF-8. Either must be an
// address: RFC 3461 does not require that, but a value that is not one is of
// no use in a report and more likely a broken client.
func parseORCPT(v string) (string, error) {
	if len("ORCPT=")+len(v) > maxORCPT {
		return "", fmt.Errorf("ORCPT is longer than %d characters", maxORCPT)
	}
	typ, enc, ok := strings.Cut(v, ";")
	if !ok || typ == "" || enc == "" {
		return "", errors.New("ORCPT must be addr-type;address")
	}
	var a string
	switch strings.ToLower(typ) {
	case "rfc822":
		dec, err := decodeXtext(enc)
		if err != nil {
			return "", fmt.Errorf("ORCPT address is not valid xtext: %w", err)
		}
		if !isPrintableASCII(dec) {
			return "", errors.New(`ORCPT rfc822 address must decode to printable US-ASCII (use the "utf-8" type)`)
		}
		a = dec
	case "utf-8":
		dec, err := decodeUTF8Addr(enc)
		if err != nil {
			return "", fmt.Errorf("ORCPT utf-8 address is malformed: %w", err)
		}
		a = dec
	default:
		return "", fmt.Errorf("ORCPT address type %s is not supported (rfc822 or utf-8)", sanitize(typ, 20))
	}
	if !isORCPTAddress(a) {
		return "", errors.New("ORCPT does not hold a valid address")
	}
	return strings.ToLower(typ) + ";" + a, nil
}

// isORCPTAddress checks an original recipient as RCPT checks a path, without
// the source route (an addr-spec has none): qualified, or "postmaster".
func isORCPTAddress(s string) bool {
	if strings.HasPrefix(s, "@") {
		return false
	}
	a, err := addr.ParsePath(s, false)
	if err != nil {
		return false
	}
	return a.Domain != "" || strings.EqualFold(a.Local, "postmaster")
}

// decodeUTF8Addr decodes RFC 6533 section 3 utf-8-addr-xtext and
// utf-8-addr-unitext: printable ASCII except SP, '+', '=' and '\' stands for
// itself, as does (unitext) any non-ASCII UTF-8; "\x{HEXPOINT}" stands for
// one of those excluded ASCII characters or a non-ASCII code point, in its
// shortest form (at least two digits).
func decodeUTF8Addr(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("not valid UTF-8")
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			rest, ok := strings.CutPrefix(s[i:], `\x{`)
			end := strings.IndexByte(rest, '}')
			if !ok || end < 0 {
				return "", errors.New(`"\" must start \x{HEXPOINT}`)
			}
			r, err := parseHexpoint(rest[:end])
			if err != nil {
				return "", err
			}
			b.WriteRune(r)
			i += len(`\x{`) + end + 1
		case c >= 0x80:
			r, n := utf8.DecodeRuneInString(s[i:])
			b.WriteRune(r)
			i += n
		case c > 0x20 && c < 0x7f && c != '+' && c != '=':
			b.WriteByte(c)
			i++
		default:
			return "", fmt.Errorf(`character 0x%02X must be encoded as \x{%02X}`, c, c)
		}
	}
	if b.Len() == 0 {
		return "", errors.New("empty address")
	}
	return b.String(), nil
}

// parseHexpoint reads the HEXPOINT of RFC 6533's EmbeddedUnicodeChar: a code
// point that may not appear literally, in hex without leading zeros (two
// digits at least), neither a surrogate nor beyond U+10FFFF.
func parseHexpoint(h string) (rune, error) {
	bad := fmt.Errorf(`\x{%s} is not a valid HEXPOINT`, sanitize(h, 8))
	if len(h) < 2 || len(h) > 6 {
		return 0, bad
	}
	n, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return 0, bad
	}
	// The shortest form only: one code point, one spelling.
	if want := max(2, len(strconv.FormatUint(n, 16))); len(h) != want {
		return 0, bad
	}
	r := rune(n)
	switch {
	case r == 0 || r > utf8.MaxRune || r >= 0xd800 && r <= 0xdfff:
		return 0, bad
	case r < 0x80 && r > 0x20 && r < 0x7f && r != '+' && r != '=' && r != '\\':
		// A character that stands for itself must not be encoded.
		return 0, bad
	}
	return r, nil
}
