package maildrop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrPermanent, wrapped in an error from Handle, means the message can never
// be taken: the pickup moves its file aside instead of trying again.
var ErrPermanent = errors.New("maildrop: permanent failure")

// DefaultInterval is how often a Pickup scans when Interval is 0.
const DefaultInterval = 10 * time.Second

// StaleTemp is how long a file still being written ("tmp.") may go unchanged
// before the pickup deletes it as left by a writer that died.
const StaleTemp = 24 * time.Hour

// FailedDir returns where a Pickup on dir moves files it cannot take:
// dir/../maildrop-failed.
func FailedDir(dir string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(dir)), "maildrop-failed")
}

// A Pickup scans Dir every Interval and hands each complete file, oldest
// first, to Handle; the file is removed only after Handle returns nil (a
// temporary error leaves it for the next scan, logged; a permanent one —
// Handle returns an error wrapping ErrPermanent — moves the file to
// FailedDir(Dir) and logs it). Files that are not drop files, not regular
// files, or have other hard links are moved there too, without Handle.
// Kick makes it scan now. Run it once; Kick may be called from anywhere.
type Pickup struct {
	Dir      string
	Interval time.Duration
	// Handle takes a message: env (UID and User from the file's owner, not
	// from what the file says), the message bytes, and the file's ID.
	Handle func(ctx context.Context, env *Envelope, msg io.Reader, id string) error
	Log    *slog.Logger

	once sync.Once
	kick chan struct{}
	// stuck holds files taken that could not be removed (the directory is
	// not the pickup's: see Prepare), so that they are not taken again and
	// again while this process runs. Only Run's goroutine uses it.
	stuck map[string]bool
}

func (p *Pickup) init() {
	p.once.Do(func() { p.kick = make(chan struct{}, 1) })
}

// Kick makes the pickup scan now (or as soon as the scan under way ends).
func (p *Pickup) Kick() {
	p.init()
	select {
	case p.kick <- struct{}{}:
	default: // a scan is due already
	}
}

// Run scans at once, then every Interval and on Kick, until ctx is done.
func (p *Pickup) Run(ctx context.Context) {
	p.init()
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.scan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

func (p *Pickup) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// scan takes every complete file in Dir, oldest first.
func (p *Pickup) scan(ctx context.Context) {
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		p.log().Error("maildrop: cannot list the drop directory", "dir", p.Dir, "err", err)
		return
	}
	type file struct {
		name  string
		mtime time.Time
	}
	var files []file
	for _, e := range ents {
		name := e.Name()
		info, err := e.Info()
		if err != nil {
			continue // gone since the listing
		}
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			// Still being written, or left by a writer that died: a
			// half-written file is never taken. Writing keeps the mtime fresh.
			if time.Since(info.ModTime()) > StaleTemp {
				if err := os.Remove(filepath.Join(p.Dir, name)); err == nil {
					p.log().Warn("maildrop: removed a file its writer never finished", "file", name)
				}
			}
		case strings.HasPrefix(name, "."), p.stuck[name]:
		default:
			files = append(files, file{name, info.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mtime.Equal(files[j].mtime) {
			return files[i].mtime.Before(files[j].mtime)
		}
		return files[i].name < files[j].name
	})
	for _, f := range files {
		if ctx.Err() != nil {
			return
		}
		p.take(ctx, f.name)
	}
}

// take hands one file to Handle and removes it, moves it aside, or leaves it.
func (p *Pickup) take(ctx context.Context, id string) {
	path := filepath.Join(p.Dir, id)
	f, env, msg, err := open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return // taken away since the listing
	case errors.Is(err, errFormat), errors.Is(err, fs.ErrPermission):
		// Not a drop file, or one its writer made unreadable: it will
		// never do, and it must not be looked at again and again.
		p.moveAside(id, err)
		return
	case err != nil:
		// Out of descriptors, an I/O error: perhaps better next time.
		p.log().Warn("maildrop: cannot read a file, will try again", "id", id, "err", err)
		return
	}
	defer f.Close()
	err = p.Handle(ctx, env, msg, id)
	switch {
	case err == nil:
		if err := os.Remove(path); err != nil {
			// Taken, but it would be taken again after a restart: say so loudly.
			if p.stuck == nil {
				p.stuck = map[string]bool{}
			}
			p.stuck[id] = true
			p.log().Error("maildrop: message taken but its file cannot be removed; remove it by hand", "id", id, "err", err)
			return
		}
		// A removal lost in a crash would deliver the message twice.
		if err := syncDir(p.Dir); err != nil {
			p.log().Warn("maildrop: fsync of the drop directory", "err", err)
		}
		p.log().Info("maildrop: picked up", "id", id, "uid", env.UID, "user", env.User,
			"from", env.From, "rcpts", len(env.Recipients))
	case errors.Is(err, ErrPermanent):
		p.moveAside(id, err)
	default:
		p.log().Warn("maildrop: will try again", "id", id, "uid", env.UID, "err", err)
	}
}

// moveAside moves a file the pickup cannot take to FailedDir, for the
// administrator to look at.
func (p *Pickup) moveAside(id string, why error) {
	failed := FailedDir(p.Dir)
	if err := os.MkdirAll(failed, 0o700); err != nil {
		p.log().Error("maildrop: cannot take a file, nor move it aside", "id", id, "why", why, "err", err)
		return
	}
	to := filepath.Join(failed, id)
	if err := os.Rename(filepath.Join(p.Dir, id), to); err != nil {
		p.log().Error("maildrop: cannot take a file, nor move it aside", "id", id, "why", why, "err", err)
		return
	}
	if err := syncDir(failed); err != nil {
		p.log().Warn("maildrop: fsync", "dir", failed, "err", err)
	}
	if err := syncDir(p.Dir); err != nil {
		p.log().Warn("maildrop: fsync", "dir", p.Dir, "err", err)
	}
	p.log().Error("maildrop: message refused, file moved aside", "id", id, "to", to, "err", why)
}

// open opens a drop file and reads its envelope. Anyone may create files in
// the drop directory, so it is careful: a symbolic link is not followed, a
// FIFO or device is not read (O_NONBLOCK keeps open from waiting on a FIFO),
// a file with other hard links is refused (it may be someone else's file
// linked in), and the uid is the file's owner's whatever the file says.
func open(path string) (*os.File, *Envelope, io.Reader, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, nil, fmt.Errorf("%w: a symbolic link", errFormat)
		}
		return nil, nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		err = fmt.Errorf("%w: not a regular file (%v)", errFormat, st.Mode().Type())
	case !ok:
		err = fmt.Errorf("maildrop: no owner for %s", path)
	case sys.Nlink != 1:
		err = fmt.Errorf("%w: %d hard links", errFormat, sys.Nlink)
	}
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	env, err := readEnvelope(r)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	owner := int(sys.Uid)
	env.User = userName(owner, env)
	env.UID = owner
	return f, env, r, nil
}

// userName is the login name of uid. When the system knows none, the name the
// file gives is kept only if the file's uid is its owner's.
func userName(uid int, env *Envelope) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	if env.UID == uid {
		return env.User
	}
	return ""
}

// syncDir fsyncs a directory, making the entries created, renamed or removed
// in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
