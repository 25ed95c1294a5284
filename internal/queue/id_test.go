package queue

import (
	"regexp"
	"testing"
)

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9B-DF-HJ-NP-TV-Za]{16}$`)
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 10000; i++ {
		id := NewID()
		if !re.MatchString(id) {
			t.Fatalf("ID %q has the wrong form", id)
		}
		if seen[id] {
			t.Fatalf("ID %q made twice", id)
		}
		seen[id] = true
		// Within one second the time prefix is equal; across, it grows.
		if prev != "" && id[:8] < prev[:8] {
			t.Fatalf("ID %q sorts before the earlier %q", id, prev)
		}
		prev = id
	}
}
