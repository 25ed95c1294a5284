package sqlite

import (
	"errors"
	"testing"

	"github.com/posthorn/posthorn/internal/store"
)

// "." and ".." are no mailbox names: they would name directories when a
// mailbox becomes a path (export).
func TestDotLevelsRefused(t *testing.T) {
	for _, name := range []string{".", "..", "a/..", "../b", "a/./b"} {
		if _, err := normaliseMailboxName(name); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("%q: %v, want ErrInvalidName", name, err)
		}
	}
	for _, name := range []string{"...", ".hidden", "a.b", "x/..y"} {
		if _, err := normaliseMailboxName(name); err != nil {
			t.Errorf("%q refused: %v", name, err)
		}
	}
}
