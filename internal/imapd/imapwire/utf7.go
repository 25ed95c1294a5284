package imapwire

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Modified UTF-7 for mailbox names (RFC 3501 section 5.1.3): printable
// ASCII stands for itself except "&", written "&-"; other characters are
// UTF-16 in modified BASE64 (with "," for "/") between "&" and "-".

const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

var errUTF7 = errors.New("invalid modified UTF-7 mailbox name")

// EncodeMailbox returns name (UTF-8) in modified UTF-7.
func EncodeMailbox(name string) string {
	var b strings.Builder
	var pending []uint16
	flush := func() {
		if len(pending) == 0 {
			return
		}
		b.WriteByte('&')
		var bits, n uint32
		for _, u := range pending {
			for _, by := range [2]byte{byte(u >> 8), byte(u)} {
				bits = bits<<8 | uint32(by)
				n += 8
				for n >= 6 {
					n -= 6
					b.WriteByte(b64chars[(bits>>n)&63])
				}
			}
		}
		if n > 0 {
			b.WriteByte(b64chars[(bits<<(6-n))&63])
		}
		b.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range name {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		pending = utf16.AppendRune(pending, r)
	}
	flush()
	return b.String()
}

// DecodeMailbox decodes a modified UTF-7 name to UTF-8. It is strict, as
// RFC 3501 section 5.1.3 requires one encoding per name: 8-bit octets,
// "&" not closed by "-", bad BASE64, non-zero padding bits, a shifted
// run that encodes printable ASCII, two adjacent shifted runs, and
// unpaired surrogates are all refused.
func DecodeMailbox(s string) (string, error) {
	var b strings.Builder
	lastShiftEnd := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return "", errUTF7
		}
		run := s[i+1 : i+1+j]
		if run == "" {
			b.WriteByte('&')
			i += 1
			continue
		}
		if lastShiftEnd == i {
			// "&AAA-&BBB-" should have been one run.
			return "", errUTF7
		}
		var bits, n uint32
		var units []uint16
		for k := 0; k < len(run); k++ {
			v := strings.IndexByte(b64chars, run[k])
			if v < 0 {
				return "", errUTF7
			}
			bits = bits<<6 | uint32(v)
			n += 6
			if n >= 16 {
				n -= 16
				units = append(units, uint16(bits>>n))
				bits &= 1<<n - 1
			}
		}
		if n >= 6 || bits != 0 || len(units) == 0 {
			return "", errUTF7
		}
		for k := 0; k < len(units); k++ {
			u := units[k]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if k+1 == len(units) {
					return "", errUTF7
				}
				r = utf16.DecodeRune(rune(u), rune(units[k+1]))
				if r == utf8.RuneError {
					return "", errUTF7
				}
				k++
			default:
				r = rune(u)
				if r >= 0x20 && r <= 0x7e {
					return "", errUTF7
				}
			}
			b.WriteRune(r)
		}
		i += 1 + j
		lastShiftEnd = i + 1
	}
	return b.String(), nil
}
