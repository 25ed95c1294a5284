package imapsearch

import (
	"bytes"
	"encoding/binary"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Case-insensitive matching (RFC 9051 section 6.4.4: "In all search keys
// that use strings, a message matches the key if the string is a substring
// of the associated text... The matching MUST be case-insensitive") uses
// Unicode simple case folding, the relation strings.EqualFold tests. Both
// the needle and the text are mapped rune by rune to one representative of
// their fold orbit, so a plain byte search (bytes.Index, which is
// vectorised) finds exactly the matches EqualFold would accept, and text
// can be folded chunk by chunk as it streams.
//
// The representative is the upper-case ASCII letter when the orbit holds
// one (so that, for ASCII, it is the i;ascii-casemap comparator of RFC 4790
// that SORT uses), else the smallest rune of the orbit. The Kelvin sign
// (U+212A) and long s (U+017F) thus fold to 'K' and 'S'.

// asciiFold maps ASCII bytes to their representative.
var asciiFold [128]byte

func init() {
	for i := range asciiFold {
		c := byte(i)
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		asciiFold[i] = c
	}
}

// foldRune returns r's representative.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		return rune(asciiFold[r])
	}
	min := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return rune(asciiFold[f])
		}
		if f < min {
			min = f
		}
	}
	return min
}

// appendFold appends the folded form of the complete UTF-8 text src to dst.
// Invalid bytes become U+FFFD, so that they can never make a false match at
// a position that is not a rune boundary. ASCII, most of any mail, is
// folded eight bytes at a time.
func appendFold(dst, src []byte) []byte {
	dst = slices.Grow(dst, len(src))
	for i := 0; i < len(src); {
		if i+8 <= len(src) {
			x := binary.LittleEndian.Uint64(src[i:])
			if x&0x8080808080808080 == 0 {
				dst = binary.LittleEndian.AppendUint64(dst, upperASCII8(x))
				i += 8
				continue
			}
		}
		c := src[i]
		if c < utf8.RuneSelf {
			dst = append(dst, asciiFold[c])
			i++
			continue
		}
		r, n := utf8.DecodeRune(src[i:])
		dst = utf8.AppendRune(dst, foldRune(r))
		i += n
	}
	return dst
}

// upperASCII8 upper-cases the eight ASCII bytes of x (no byte has its high
// bit set): for each byte b, b+0x1F has the high bit set iff b >= 'a', and
// b+0x05 iff b > 'z'; neither sum carries into the next byte.
func upperASCII8(x uint64) uint64 {
	const ones = 0x0101010101010101
	geA := x + ones*(0x80-'a')
	gtZ := x + ones*(0x80-'z'-1)
	lower := geA &^ gtZ & (ones * 0x80)
	return x - lower>>2
}

// foldString returns the folded form of s.
func foldString(s string) string {
	return string(appendFold(make([]byte, 0, len(s)), []byte(s)))
}

// completeRunes returns how many leading bytes of b end on a rune boundary:
// a trailing partial UTF-8 sequence (at most 3 bytes) is left for the next
// chunk. Invalid bytes count as complete (they fold to U+FFFD).
func completeRunes(b []byte) int {
	n := len(b)
	for i := 1; i <= 3 && i <= n; i++ {
		c := b[n-i]
		if c < utf8.RuneSelf {
			return n // ASCII: everything before is complete
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[n-i:]) {
				return n
			}
			return n - i
		}
	}
	return n
}

// containsFold reports whether folded needle occurs in text (not folded).
func containsFold(text string, needle []byte) bool {
	if len(needle) == 0 {
		return true
	}
	var buf [256]byte
	return bytes.Contains(appendFold(buf[:0], []byte(text)), needle)
}
