package imapd

import "testing"

// Keywords sort without regard to case, shorter first on a common prefix.
func TestCompareFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		sign int
	}{
		{"$Junk", "$junk", 0}, {"Alpha", "beta", -1}, {"beta", "ALPHA", 1}, {"ab", "ABC", -1}, {"", "a", -1},
	} {
		got := compareFold(tc.a, tc.b)
		if (got < 0) != (tc.sign < 0) || (got > 0) != (tc.sign > 0) {
			t.Errorf("compareFold(%q, %q) = %d, want sign %d", tc.a, tc.b, got, tc.sign)
		}
	}
}
