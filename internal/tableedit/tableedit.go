// Package tableedit changes the Sendmail table files in maps_dir the way a
// careful person with an editor would: one entry at a time, every comment,
// blank line and the order of the others kept, the whole new text checked
// with the same parser that loads it (internal/maps) before anything is
// written, and the file replaced atomically (a temporary file in the same
// directory, fsynced, renamed over the old one, the directory fsynced), with
// the old file's mode and owner. The running server's maps.Watcher sees the
// new file (its inode changes) and loads it like any hand edit; this package
// does not reload anything itself.
//
// The webmail's disposable addresses and admin pages edit the tables through
// it, so that the files stay the one source of truth.
package tableedit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/posthorn/posthorn/internal/maps"
)

// maxFile bounds the size of a table file read here (maps reads up to 64 MiB).
const maxFile = 64 << 20

// ErrChanged is returned when the entry an edit names is no longer where it
// was (the file was changed since the page showing it was made).
var ErrChanged = errors.New("tableedit: the table changed meanwhile; look again")

// ErrUnknownTable is returned for a name that is not one of maps.Files.
var ErrUnknownTable = errors.New("tableedit: not a table")

// File is the text of a table file, as lines without their "\n".
type File struct {
	Name  string // the table's name (maps.FileVirtusertable, ...)
	Lines []string
}

// Entry is one entry of a table: a line, or for aliases a line and its
// continuation lines.
type Entry struct {
	Line  int    // first line, 1-based
	N     int    // how many lines
	Text  string // the lines, joined with "\n"
	Key   string // makemap tables: the key; aliases: the name; class files: the words
	Value string // the right-hand side ("" for class files)
}

// Validate parses data as the table name, with the parser that loads it. The
// error is the parser's (*maps.ParseError: "virtusertable:3: ...").
func Validate(name string, data []byte) error {
	r := bytes.NewReader(data)
	var err error
	switch name {
	case maps.FileAccess:
		_, err = maps.ParseAccess(name, r)
	case maps.FileAliases:
		_, err = maps.ParseAliases(name, r)
	case maps.FileVirtusertable:
		_, err = maps.ParseVirtusertable(name, r)
	case maps.FileLocalHostNames, maps.FileRelayDomains:
		_, err = maps.ParseDomainList(name, r)
	case maps.FileMailertable:
		_, err = maps.ParseMailertable(name, r)
	default:
		return fmt.Errorf("%w: %q", ErrUnknownTable, name)
	}
	return err
}

func known(name string) bool {
	for _, f := range maps.Files {
		if f == name {
			return true
		}
	}
	return false
}

// Read reads the table name in dir. A missing file reads as empty.
func Read(dir, name string) (*File, error) {
	if !known(name) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTable, name)
	}
	data, _, err := readFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return &File{Name: name, Lines: splitLines(data)}, nil
}

func readFile(path string) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.Size() > maxFile {
		return nil, nil, fmt.Errorf("%s: file too large", path)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), st, nil
}

func splitLines(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	s := strings.TrimSuffix(string(data), "\n")
	return strings.Split(s, "\n")
}

// Bytes is the file's text, each line ending in "\n".
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.Lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// isComment reports whether a line holds no entry: blank, or a comment.
// makemap tables and aliases take '#' only at the start of the line (after
// blanks for makemap); class files take it anywhere, which Entries handles.
func isComment(line string) bool {
	t := strings.TrimSpace(line)
	return t == "" || t[0] == '#'
}

// Entries returns the entries of the file, in order.
func (f *File) Entries() []Entry {
	var out []Entry
	for i := 0; i < len(f.Lines); i++ {
		line := strings.TrimRight(f.Lines[i], "\r")
		switch f.Name {
		case maps.FileLocalHostNames, maps.FileRelayDomains:
			words, _, _ := strings.Cut(line, "#")
			if strings.TrimSpace(words) == "" {
				continue
			}
			out = append(out, Entry{Line: i + 1, N: 1, Text: f.Lines[i], Key: strings.Join(strings.Fields(words), " ")})
		case maps.FileAliases:
			if isComment(line) || line[0] == ' ' || line[0] == '\t' {
				continue
			}
			// The entry goes on over lines that start with a blank or follow
			// a line ending in a backslash (aliases(5)).
			n := 1
			for i+n < len(f.Lines) {
				prev := strings.TrimRight(f.Lines[i+n-1], "\r")
				next := strings.TrimRight(f.Lines[i+n], "\r")
				if strings.HasSuffix(prev, "\\") || next != "" && (next[0] == ' ' || next[0] == '\t') {
					n++
					continue
				}
				break
			}
			text := strings.Join(f.Lines[i:i+n], "\n")
			name, value, _ := strings.Cut(line, ":")
			rest := value
			for _, l := range f.Lines[i+1 : i+n] {
				rest += " " + strings.TrimSpace(l)
			}
			out = append(out, Entry{Line: i + 1, N: n, Text: text, Key: strings.Trim(strings.TrimSpace(name), `"`), Value: strings.TrimSpace(rest)})
			i += n - 1
		default:
			if isComment(line) {
				continue
			}
			t := strings.TrimSpace(line)
			key, value := t, ""
			if j := strings.IndexAny(t, " \t"); j >= 0 {
				key, value = t[:j], strings.TrimSpace(t[j:])
			}
			out = append(out, Entry{Line: i + 1, N: 1, Text: f.Lines[i], Key: key, Value: value})
		}
	}
	return out
}

// Find returns the entry that starts at line and reads text, or ErrChanged.
func (f *File) Find(line int, text string) (Entry, error) {
	for _, e := range f.Entries() {
		if e.Line == line {
			if e.Text == text {
				return e, nil
			}
			break
		}
	}
	return Entry{}, ErrChanged
}

// FindKey returns the last entry whose key is key (case-insensitively), the
// one that counts when a key is repeated.
func (f *File) FindKey(key string) (Entry, bool) {
	var found Entry
	ok := false
	for _, e := range f.Entries() {
		if strings.EqualFold(e.Key, key) {
			found, ok = e, true
		}
	}
	return found, ok
}

// Replace puts text (one or more lines; "" for none) in place of e's lines,
// and of the n lines just above it when above > 0 (a comment that goes with
// the entry).
func (f *File) Replace(e Entry, above int, text string) {
	start := e.Line - 1 - above
	end := e.Line - 1 + e.N
	var repl []string
	if text != "" {
		repl = strings.Split(text, "\n")
	}
	lines := append([]string{}, f.Lines[:start]...)
	lines = append(lines, repl...)
	f.Lines = append(lines, f.Lines[end:]...)
}

// Remove removes e's lines.
func (f *File) Remove(e Entry) { f.Replace(e, 0, "") }

// Append adds text (one or more lines) at the end.
func (f *File) Append(text string) {
	f.Lines = append(f.Lines, strings.Split(text, "\n")...)
}

// locks serialises the edits of one file in this process, so that two pages
// changing virtusertable at once both have their change kept.
var locks sync.Map // path -> *sync.Mutex

func lockFor(path string) *sync.Mutex {
	m, _ := locks.LoadOrStore(path, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// Update reads the table name in dir, lets change edit it, checks the result
// with the table's parser and writes it atomically. Nothing is written when
// change returns an error or the new text does not parse (that error is
// returned, as the parser words it). The new text is in force once the
// server's watcher has seen it (one to two polling intervals).
func Update(dir, name string, change func(f *File) error) error {
	if !known(name) {
		return fmt.Errorf("%w: %q", ErrUnknownTable, name)
	}
	path := filepath.Join(dir, name)
	mu := lockFor(path)
	mu.Lock()
	defer mu.Unlock()
	data, st, err := readFile(path)
	if err != nil {
		return err
	}
	f := &File{Name: name, Lines: splitLines(data)}
	if err := change(f); err != nil {
		return err
	}
	out := f.Bytes()
	if bytes.Equal(out, data) && st != nil {
		return nil
	}
	if err := Validate(name, out); err != nil {
		return err
	}
	return writeAtomic(path, out, st)
}

// writeAtomic writes data to a temporary file next to path and renames it
// over path, so that a reader (the watcher, a crash) sees the old file or
// the new one, never a part. The mode and owner of the old file are kept.
func writeAtomic(path string, data []byte, old fs.FileInfo) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	mode := fs.FileMode(0o644)
	if old != nil {
		mode = old.Mode().Perm()
		if sys, ok := old.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			if err = tmp.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
				return err
			}
		}
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename is durable once the directory is.
	d, derr := os.Open(dir)
	if derr != nil {
		return nil
	}
	defer d.Close()
	d.Sync()
	return nil
}
