package blob

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "hello ")
	io.WriteString(w, "world")
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !validID(id) {
		t.Fatalf("id %q", id)
	}
	r, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	p := make([]byte, 5)
	r.ReadAt(p, 6)
	if string(b) != "hello world" || r.Size() != 11 || string(p) != "world" {
		t.Errorf("read %q size %d at 6 %q", b, r.Size(), p)
	}
	r.Close()
	// Nothing is left in tmp; the blob sits under its fan-out directory.
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp holds %v", ents)
	}
	if _, err := os.Stat(filepath.Join(dir, id[:2], id)); err != nil {
		t.Error(err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Delete: %v", err)
	}
	if err := s.Delete(id); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	// Aborted blobs leave nothing; ids that are not ours are refused.
	w, _ = s.Create(context.Background())
	io.WriteString(w, "x")
	w.Abort()
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("aborted blob left %v", ents)
	}
	for _, bad := range []string{"", "../../etc/passwd", "ZZ" + id[2:], id + "0"} {
		if _, err := s.Open(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%q) = %v", bad, err)
		}
	}
}
