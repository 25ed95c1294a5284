// Package spool holds the bytes of a message while it is being received (SMTP
// DATA/BDAT, the sendmail command, IMAP APPEND): in memory while it is small, in a
// temporary file once it grows, so that many large messages at once cannot
// exhaust memory. A Spool is a store.Body.
package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// DefaultMemoryLimit is how many bytes stay in memory before a Spool moves to a
// file.
const DefaultMemoryLimit = 1 << 20

// Spool is a growing byte buffer that spills to a file in Dir past MemoryLimit.
// It is not safe for concurrent writes; reads (ReadAt) after writing are.
type Spool struct {
	Dir         string // where the temporary file goes ("" = os.TempDir())
	MemoryLimit int    // 0 = DefaultMemoryLimit

	buf  []byte
	f    *os.File
	size int64
	err  error
}

// Write appends p.
func (s *Spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	limit := s.MemoryLimit
	if limit == 0 {
		limit = DefaultMemoryLimit
	}
	if s.f == nil && len(s.buf)+len(p) > limit {
		if err := s.spill(); err != nil {
			s.err = err
			return 0, err
		}
	}
	if s.f == nil {
		s.grow()
	}
	if s.f != nil {
		n, err := s.f.Write(p)
		s.size += int64(n)
		if err != nil {
			s.err = fmt.Errorf("spool: %w", err)
			return n, s.err
		}
		return n, nil
	}
	s.buf = append(s.buf, p...)
	s.size += int64(len(p))
	return len(p), nil
}

// WriteString appends str.
func (s *Spool) WriteString(str string) (int, error) {
	if s.f == nil && s.err == nil {
		s.grow()
		limit := s.MemoryLimit
		if limit == 0 {
			limit = DefaultMemoryLimit
		}
		if len(s.buf)+len(str) <= limit {
			s.buf = append(s.buf, str...)
			s.size += int64(len(str))
			return len(str), nil
		}
	}
	return s.Write([]byte(str))
}

func (s *Spool) spill() error {
	f, err := os.CreateTemp(s.Dir, "spool-*")
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// The file is only ours: unlink it at once so that nothing is left behind
	// after a crash; the open descriptor keeps the bytes readable.
	os.Remove(f.Name())
	if _, err := f.Write(s.buf); err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	s.f, s.buf = f, nil
	return nil
}

// Size is the number of bytes written.
func (s *Spool) Size() int64 { return s.size }

// Err is the first write error, if any.
func (s *Spool) Err() error { return s.err }

// Bytes returns the contents when they are in memory, and nil once spilled.
func (s *Spool) Bytes() []byte {
	if s.f != nil {
		return nil
	}
	return s.buf
}

// ReadAt reads from the written bytes.
func (s *Spool) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("spool: negative offset")
	}
	if s.f != nil {
		if off >= s.size {
			return 0, io.EOF
		}
		if max := s.size - off; int64(len(p)) > max {
			n, err := s.f.ReadAt(p[:max], off)
			if err == nil {
				err = io.EOF
			}
			return n, err
		}
		return s.f.ReadAt(p, off)
	}
	if off >= int64(len(s.buf)) {
		return 0, io.EOF
	}
	n := copy(p, s.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Reset empties the spool for reuse, keeping its memory buffer.
func (s *Spool) Reset() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.buf = s.buf[:0]
	s.size = 0
	s.err = nil
}

// Close releases the file, if any, and gives the memory back for reuse: the
// bytes must not be used after Close.
func (s *Spool) Close() error {
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if s.buf != nil && cap(s.buf) <= maxPooled {
		b := s.buf[:0]
		bufPool.Put(&b)
	}
	s.buf = nil
	s.size = 0
	return err
}

// Buffers of finished spools are reused: most messages are small, and a
// fresh buffer grown by append for each was a tenth of the allocations of a
// delivery.
const (
	initialBuffer = 16 << 10
	maxPooled     = 256 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, initialBuffer); return &b }}

func (s *Spool) grow() {
	if s.buf == nil {
		s.buf = *bufPool.Get().(*[]byte)
	}
}
