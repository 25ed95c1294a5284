package imapsearch

import (
	"testing"
	"unicode/utf8"
)

// The eight-byte path folds exactly as the byte table does, for every
// ASCII byte in every position.
func TestUpperASCII8(t *testing.T) {
	for c := 0; c < utf8.RuneSelf; c++ {
		for pos := 0; pos < 8; pos++ {
			src := []byte("@[`{azAZ")
			src[pos] = byte(c)
			got := appendFold(nil, src)
			for i, b := range src {
				if got[i] != asciiFold[b] {
					t.Fatalf("fold of %q: byte %d = %q, want %q", src, i, got[i], asciiFold[b])
				}
			}
		}
	}
}
