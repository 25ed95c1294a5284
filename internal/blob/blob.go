// Package blob keeps message bytes that are too big to live inside the store's
// database: one immutable object per message, written once and durably before
// anything refers to it. The file implementation is the default; an
// S3-compatible one can follow the same small interface.
package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Store holds blobs.
type Store interface {
	// Create starts a new blob; nothing is visible until Commit.
	Create(ctx context.Context) (Writer, error)
	// Open opens a committed blob.
	Open(id string) (Reader, error)
	// Delete removes a blob; deleting a missing one is not an error.
	Delete(id string) error
}

// Writer receives the bytes of a new blob.
type Writer interface {
	io.Writer
	// Commit makes the blob durable (written and synced, with its directory
	// entry) and returns its id.
	Commit() (id string, err error)
	// Abort discards it.
	Abort()
}

// Reader reads a blob.
type Reader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	Size() int64
}

// ErrNotFound is returned by Open for a missing blob.
var ErrNotFound = errors.New("blob: not found")

// FileStore keeps blobs as files under a directory, fanned out by the first
// two hex digits of their id: DIR/ab/abcdef....
type FileStore struct {
	dir string
}

// NewFileStore returns a FileStore in dir, creating it.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *FileStore) path(id string) string { return filepath.Join(s.dir, id[:2], id) }

// Create starts a blob in the temporary directory.
func (s *FileStore) Create(ctx context.Context) (Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "new-*")
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &fileWriter{s: s, f: f}, nil
}

type fileWriter struct {
	s   *FileStore
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (w *fileWriter) Commit() (string, error) {
	defer func() {
		if w.f != nil {
			w.f.Close()
			os.Remove(w.f.Name())
		}
	}()
	if w.err != nil {
		return "", fmt.Errorf("blob: writing: %w", w.err)
	}
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("blob: sync: %w", err)
	}
	var raw [16]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	final := w.s.path(id)
	sub := filepath.Dir(final)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return "", fmt.Errorf("blob: %w", err)
	}
	if err := os.Rename(w.f.Name(), final); err != nil {
		return "", fmt.Errorf("blob: %w", err)
	}
	w.f.Close()
	w.f = nil
	// The rename is durable only once the directory is synced.
	if err := syncDir(sub); err != nil {
		os.Remove(final)
		return "", fmt.Errorf("blob: sync dir: %w", err)
	}
	return id, nil
}

func (w *fileWriter) Abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open opens a blob.
func (s *FileStore) Open(id string) (Reader, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	f, err := os.Open(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob: %w", err)
	}
	return &fileReader{File: f, size: st.Size()}, nil
}

type fileReader struct {
	*os.File
	size int64
}

func (r *fileReader) Size() int64 { return r.size }

// Delete removes a blob.
func (s *FileStore) Delete(id string) error {
	if !validID(id) {
		return nil
	}
	err := os.Remove(s.path(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: %w", err)
	}
	return nil
}

// CleanTemp removes temporary files left by a crash before Commit.
func (s *FileStore) CleanTemp() error {
	ents, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		os.Remove(filepath.Join(s.dir, "tmp", e.Name()))
	}
	return nil
}
