package maps

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Tables is one consistent snapshot of every table. It is never changed after
// it is made; a reload makes a new one. A missing file is an empty table.
type Tables struct {
	Access         *Access
	Aliases        *Aliases
	Virtusertable  *Virtusertable
	LocalHostNames *DomainList
	RelayDomains   *DomainList
	Mailertable    *Mailertable
}

// maxTableFile bounds the size of a table file.
const maxTableFile = 64 << 20

// parseFile parses the bytes of one table file into t.
func parseFile(t *Tables, name, path string, data []byte) error {
	r := bytes.NewReader(data)
	var err error
	switch name {
	case FileAccess:
		var v *Access
		if v, err = ParseAccess(path, r); err == nil {
			t.Access = v
		}
	case FileAliases:
		var v *Aliases
		if v, err = ParseAliases(path, r); err == nil {
			t.Aliases = v
		}
	case FileVirtusertable:
		var v *Virtusertable
		if v, err = ParseVirtusertable(path, r); err == nil {
			t.Virtusertable = v
		}
	case FileLocalHostNames:
		var v *DomainList
		if v, err = ParseDomainList(path, r); err == nil {
			t.LocalHostNames = v
		}
	case FileRelayDomains:
		var v *DomainList
		if v, err = ParseDomainList(path, r); err == nil {
			t.RelayDomains = v
		}
	case FileMailertable:
		var v *Mailertable
		if v, err = ParseMailertable(path, r); err == nil {
			t.Mailertable = v
		}
	}
	return err
}

// empty returns tables with every table present and empty.
func empty() *Tables {
	t := &Tables{}
	for _, name := range Files {
		parseFile(t, name, name, nil)
	}
	return t
}

// readTable reads a table file; a missing file reads as empty.
func readTable(path string) ([]byte, fileStamp, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileStamp{}, nil
	}
	if err != nil {
		return nil, fileStamp{}, err
	}
	if st.Size() > maxTableFile {
		return nil, fileStamp{}, &ParseError{path, 0, "file too large"}
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileStamp{}, nil
	}
	return data, stampOf(st), err
}

// Load reads every table in dir. It returns all of them, with an empty table in
// place of each one that has an error, and every error found (errors.Join), so
// that `posthorn check` can report them all.
func Load(dir string) (*Tables, error) {
	t := empty()
	var errs []error
	for _, name := range Files {
		path := filepath.Join(dir, name)
		data, _, err := readTable(path)
		if err == nil {
			err = parseFile(t, name, path, data)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return t, errors.Join(errs...)
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	exists bool
	size   int64
	mtime  time.Time
	inode  uint64
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// loaded records the version of a table now in force.
func (w *Watcher) loaded(name string, stamp fileStamp, data []byte) {
	w.stamps[name] = stamp
	w.sums[name] = crc32.Checksum(data, castagnoli)
	w.recheck[name] = stamp.exists && time.Since(stamp.mtime) < w.interval+time.Second
}

// changedUnderSameStamp reads a recently written file again and reports
// whether its bytes differ from those in force although its stat is the same.
// Once its mtime is old enough, it stops being read.
func (w *Watcher) changedUnderSameStamp(name, path string, stamp fileStamp) bool {
	data, now, err := readTable(path)
	if err != nil || now != stamp {
		return false // the next stat will see the change
	}
	if crc32.Checksum(data, castagnoli) != w.sums[name] {
		return true
	}
	w.recheck[name] = time.Since(stamp.mtime) < w.interval+time.Second
	return false
}

func stampOf(st fs.FileInfo) fileStamp {
	s := fileStamp{exists: true, size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.inode = sys.Ino
	}
	return s
}

func statStamp(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	return stampOf(st), nil
}

// Watcher keeps the current Tables and reloads a table when its file changes
// (and has stayed changed for one polling interval: a change is in force after
// one to two intervals). A table whose new text has an error is not replaced:
// its previous version stays in force, and the error is logged with file and
// line.
type Watcher struct {
	dir      string
	interval time.Duration
	log      *slog.Logger

	cur    atomic.Pointer[Tables]
	mu     sync.Mutex // serialises reloads
	stamps map[string]fileStamp
	seen   map[string]fileStamp // a change seen once, loaded if it is still there next time
	failed map[string]failure   // the version of a file last refused: not read again until it changes
	// A file loaded while its mtime was recent may still be written within the
	// same timestamp granule without its stat changing: its checksum is kept and
	// it is read again on the next check (recheck) until its mtime is older
	// than one interval.
	sums    map[string]uint32
	recheck map[string]bool
}

// failure is a version of a table file that could not be loaded.
type failure struct {
	stamp fileStamp
	err   error
}

// NewWatcher loads the tables in dir. It fails if any of them has an error: a
// server should not start on broken tables.
func NewWatcher(dir string, interval time.Duration, log *slog.Logger) (*Watcher, error) {
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{dir: dir, interval: interval, log: log, stamps: map[string]fileStamp{}, seen: map[string]fileStamp{}, failed: map[string]failure{},
		sums: map[string]uint32{}, recheck: map[string]bool{}}
	t := empty()
	var errs []error
	for _, name := range Files {
		path := filepath.Join(dir, name)
		data, stamp, err := readTable(path)
		if err == nil {
			err = parseFile(t, name, path, data)
		}
		if err != nil {
			errs = append(errs, err)
		}
		w.loaded(name, stamp, data)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	w.cur.Store(t)
	return w, nil
}

// Current returns the tables in force.
func (w *Watcher) Current() *Tables { return w.cur.Load() }

// Run checks the files every interval until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.reload(true)
		}
	}
}

// Reload checks every file now and reloads those that changed (SIGHUP). It
// returns the errors of tables that could not be reloaded (they keep their
// previous version).
func (w *Watcher) Reload() error { return w.reload(false) }

// reload reloads changed tables. When settle is set (the periodic check), a
// changed file is loaded only once it has stayed the same for one interval: an
// editor that rewrites a file in place must not get half of it into force,
// where a missing alias would refuse mail with a permanent error.
func (w *Watcher) reload(settle bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var next *Tables
	var errs []error
	for _, name := range Files {
		path := filepath.Join(w.dir, name)
		stamp, err := statStamp(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rewritten := false // the same stat as the version in force, other bytes
		if stamp == w.stamps[name] {
			delete(w.seen, name)
			delete(w.failed, name) // back to the version in force
			if !w.recheck[name] || !w.changedUnderSameStamp(name, path, stamp) {
				continue
			}
			rewritten = true
		}
		if f, ok := w.failed[name]; ok && f.stamp == stamp && !rewritten {
			errs = append(errs, f.err) // still broken: no need to read it again
			continue
		}
		if settle && !rewritten && w.seen[name] != stamp {
			w.seen[name] = stamp // load it next time if it stays so
			continue
		}
		delete(w.seen, name)
		data, readStamp, err := readTable(path)
		if err == nil && readStamp != stamp {
			// Changed while we looked: take it on the next round.
			continue
		}
		if after, _ := statStamp(path); err == nil && after != readStamp {
			continue // changed while being read
		}
		if next == nil {
			cp := *w.cur.Load()
			next = &cp
		}
		if err == nil {
			err = parseFile(next, name, path, data)
		}
		if err != nil {
			errs = append(errs, err)
			w.failed[name] = failure{stamp, err}
			if rewritten {
				// Not to read and refuse the same bytes on every check.
				w.sums[name] = crc32.Checksum(data, castagnoli)
			}
			attrs := []any{"table", name, "file", path}
			var pe *ParseError
			if errors.As(err, &pe) {
				attrs = append(attrs, "line", pe.Line)
			}
			w.log.Error("table not reloaded: its previous version stays in force", append(attrs, "err", err.Error())...)
			continue
		}
		delete(w.failed, name)
		w.loaded(name, stamp, data)
		w.log.Info("table reloaded", "table", name, "file", path)
	}
	if next != nil {
		w.cur.Store(next)
	}
	return errors.Join(errs...)
}
