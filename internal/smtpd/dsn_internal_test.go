package smtpd

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// RFC 3461 section 4: xtext decoding, strictly.
func TestDecodeXtext(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"plain", "plain", true},
		{"a+2Bb", "a+b", true},
		{"+3D", "=", true},
		{"+20+7E+21", " ~!", true},
		{"+FF", "\xff", true}, // any octet; callers check what they allow
		{"!#~\"<>", "!#~\"<>", true},
		{"a+", "", false},
		{"a+4", "", false},
		{"a+4g", "", false},
		{"a+4a", "", false}, // lower-case hex (section 4: "upper case")
		{"a=b", "", false},
		{"a b", "", false},
		{"a\tb", "", false},
		{"a\x7fb", "", false},
		{"caf\xc3\xa9", "", false},
		{"++41", "", false},
	} {
		got, err := decodeXtext(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("decodeXtext(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// RFC 6533 section 3: utf-8-addr-xtext and utf-8-addr-unitext.
func TestDecodeUTF8Addr(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a@b", "a@b", true},
		{"jörg@b", "jörg@b", true},
		{`j\x{F6}rg`, "jörg", true},
		{`j\x{f6}rg`, "jörg", true}, // ABNF hex digits are case-insensitive
		{`\x{5C}\x{2B}\x{3D}\x{20}`, `\+= `, true},
		{`\x{7F}`, "\x7f", true},
		{`\x{100}`, "\u0100", true},
		{`\x{FFFF}`, "\uffff", true},
		{`\x{10000}`, "\U00010000", true},
		{`\x{10FFFF}`, "\U0010FFFF", true},
		{`\x{00F6}`, "", false},   // not the shortest form
		{`\x{0100}`, "", false},   // not the shortest form
		{`\x{6}`, "", false},      // two digits at least
		{`\x{00}`, "", false},     // NUL
		{`\x{41}`, "", false},     // 'A' stands for itself
		{`\x{D800}`, "", false},   // surrogate
		{`\x{110000}`, "", false}, // beyond Unicode
		{`\x{1000000}`, "", false},
		{`\x{}`, "", false},
		{`\x{G0}`, "", false},
		{`\x{F6`, "", false},
		{`\xF6`, "", false},
		{`\`, "", false},
		{"a+41", "", false},
		{"a=b", "", false},
		{"a b", "", false},
		{"\xf6", "", false}, // not UTF-8
		{"", "", false},
	} {
		got, err := decodeUTF8Addr(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("decodeUTF8Addr(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// encodeXtext is the test's own encoder: the shortest xtext for s.
func encodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 33 && c <= 126 && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// FuzzDSNParams feeds hostile values to the DSN parsers: no panics, and what
// they accept keeps their promises.
func FuzzDSNParams(f *testing.F) {
	for _, s := range []string{
		"rfc822;a@b.example", "utf-8;j\\x{F6}rg@b.example", "RFC822;a+2Bb@c", "x400;c=us",
		"a+2Bb", "+", "+4", "SUCCESS,FAILURE", "NEVER", "never,delay", "\\x{D800}", "\\x{110000}",
		"utf-8;\\x{", "rfc822;\"a+20b\"@c", "rfc822;@a:b@c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := decodeXtext(s); err == nil {
			// Decoding and encoding again is stable.
			if d2, err := decodeXtext(encodeXtext(d)); err != nil || d2 != d {
				t.Errorf("xtext %q -> %q does not round-trip: %q %v", s, d, d2, err)
			}
		}
		if id, err := parseEnvID(s); err == nil {
			if id == "" || len(id) > maxEnvID || !isPrintableASCII(id) {
				t.Errorf("ENVID %q accepted as %q", s, id)
			}
		}
		if n, err := parseNotify(s); err == nil {
			elems := strings.Split(n, ",")
			for _, e := range elems {
				if e != "SUCCESS" && e != "FAILURE" && e != "DELAY" && !(e == "NEVER" && len(elems) == 1) {
					t.Errorf("NOTIFY %q accepted as %q", s, n)
				}
			}
		}
		if o, err := parseORCPT(s); err == nil {
			typ, a, _ := strings.Cut(o, ";")
			switch {
			case !utf8.ValidString(o), !isORCPTAddress(a):
				t.Errorf("ORCPT %q accepted as %q", s, o)
			case typ == "rfc822" && !isPrintableASCII(a):
				t.Errorf("ORCPT %q accepted as non-ASCII rfc822 %q", s, o)
			case typ != "rfc822" && typ != "utf-8":
				t.Errorf("ORCPT %q accepted with type %q", s, typ)
			}
		}
	})
}
