package spool

import (
	"bytes"
	"io"
	"os"
	"testing"
)

func TestSpoolInMemoryAndSpilled(t *testing.T) {
	dir := t.TempDir()
	for _, limit := range []int{1 << 20, 10} {
		s := &Spool{Dir: dir, MemoryLimit: limit}
		var want bytes.Buffer
		for i := 0; i < 50; i++ {
			line := []byte("line of text\r\n")
			want.Write(line)
			if i%2 == 0 {
				s.Write(line)
			} else {
				s.WriteString(string(line))
			}
		}
		if s.Size() != int64(want.Len()) {
			t.Fatalf("limit %d: size %d, want %d", limit, s.Size(), want.Len())
		}
		got, err := io.ReadAll(io.NewSectionReader(s, 0, s.Size()))
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("limit %d: read back %q, %v", limit, got, err)
		}
		inMemory := s.Bytes() != nil
		if inMemory != (limit > want.Len()) {
			t.Errorf("limit %d: in memory = %v", limit, inMemory)
		}
		// A read past the end says EOF; a read across it returns what there is.
		p := make([]byte, 10)
		if n, err := s.ReadAt(p, s.Size()-4); n != 4 || err != io.EOF {
			t.Errorf("limit %d: ReadAt across the end = %d, %v", limit, n, err)
		}
		if _, err := s.ReadAt(p, s.Size()); err != io.EOF {
			t.Errorf("limit %d: ReadAt at the end: %v", limit, err)
		}
		s.Close()
	}
	// Spilled files are unlinked at once: nothing is left in the directory.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("spool left files behind: %v", ents)
	}
}

func TestSpoolReset(t *testing.T) {
	s := &Spool{Dir: t.TempDir(), MemoryLimit: 4}
	s.Write([]byte("0123456789"))
	s.Reset()
	s.Write([]byte("ab"))
	if s.Size() != 2 || string(s.Bytes()) != "ab" {
		t.Errorf("after Reset: size %d bytes %q", s.Size(), s.Bytes())
	}
}
