// Package sqlite is the embedded implementation of store.Store: SQLite in WAL
// mode with synchronous=FULL (modernc.org/sqlite, pure Go) in the data
// directory, small message bytes inside the database and big ones as files
// through internal/blob.
//
// Every write goes through one writer goroutine that commits the requests
// waiting at that moment in one transaction — one fsync for the lot (group
// commit) — each request inside its own SAVEPOINT so that one failing request
// does not undo the others. A request returns only after that commit, so a
// nil error means the change is on disk. Reads use a separate pool of
// connections: WAL readers do not block the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/posthorn/posthorn/internal/blob"
	"github.com/posthorn/posthorn/internal/store"
)

// Options tune a Store.
type Options struct {
	// InlineMax is the largest message kept inside the database; bigger ones
	// go to blob files. 0 means DefaultInlineMax. SQLite's own measurements
	// ("Internal Versus External BLOBs") put the crossing near 100 KiB.
	InlineMax int64
	Logger    *slog.Logger
}

// DefaultInlineMax is the default Options.InlineMax.
const DefaultInlineMax = 128 << 10

// maxBatch bounds the requests committed together.
const maxBatch = 256

// Store is a store.Store on SQLite.
type Store struct {
	dir       string
	inlineMax int64
	log       *slog.Logger
	rdb       *sql.DB // readers
	wdb       *sql.DB // the writer's single connection
	blobs     *blob.FileStore
	notify    notifier

	reqs    chan *writeReq
	stop    chan struct{}
	stopped chan struct{}
	closeMu sync.Once
	closed  chan struct{}
}

var _ store.Store = (*Store)(nil)

// writeReq is one unit of work for the writer.
type writeReq struct {
	fn      func(tx *sql.Tx) error
	changes []store.Change // filled by fn; published after the commit
	trash   bool           // fn may have unreferenced blob files
	done    chan error
}

func dsn(path string, readOnly bool) string {
	q := "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	if readOnly {
		q += "&_pragma=query_only(1)"
	} else {
		q += "&_txlock=immediate"
	}
	return "file:" + path + q
}

// Open opens (creating if needed) the store in dataDir.
func Open(dataDir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{
		dir:       dataDir,
		inlineMax: opts.InlineMax,
		log:       opts.Logger,
		reqs:      make(chan *writeReq, maxBatch),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
		closed:    make(chan struct{}),
	}
	if s.inlineMax <= 0 {
		s.inlineMax = DefaultInlineMax
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.notify.subs = map[int64]map[*subscriber]struct{}{}
	bs, err := blob.NewFileStore(filepath.Join(dataDir, "blobs"))
	if err != nil {
		return nil, err
	}
	s.blobs = bs
	path := filepath.Join(dataDir, "posthorn.db")
	s.wdb, err = sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	if err := s.migrate(); err != nil {
		s.wdb.Close()
		return nil, err
	}
	s.rdb, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	s.rdb.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)*2))
	s.rdb.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)*2))
	if err := s.emptyTrash(context.Background()); err != nil {
		s.log.Warn("store: removing unreferenced blob files", "err", err)
	}
	bs.CleanTemp()
	go s.writer()
	return s, nil
}

func (s *Store) migrate() error {
	ctx := context.Background()
	var v int
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("store: reading schema version: %w", err)
	}
	switch {
	case v == schemaVersion:
		return nil
	case v > schemaVersion:
		return fmt.Errorf("store: the database has schema version %d, newer than this posthorn (%d)", v, schemaVersion)
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer tx.Rollback()
	// Another process may have created it meanwhile.
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v == schemaVersion {
		return nil
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("store: creating schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return err
	}
	return tx.Commit()
}

// Close stops the writer (after the requests it has) and closes the database.
func (s *Store) Close() error {
	var err error
	s.closeMu.Do(func() {
		close(s.closed)
		close(s.stop)
		<-s.stopped
		err = errors.Join(s.rdb.Close(), s.wdb.Close())
	})
	return err
}

// write runs fn in the writer's next transaction and waits for its commit.
func (s *Store) write(ctx context.Context, req *writeReq) error {
	req.done = make(chan error, 1)
	select {
	case <-s.closed:
		return store.ErrClosed
	case s.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once submitted the request is committed or refused by the writer; wait
	// for that whatever ctx says, so that the caller knows which.
	return <-req.done
}

// writer commits requests in groups.
func (s *Store) writer() {
	defer close(s.stopped)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			// Serve what is already queued, then stop.
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.commit(batch)
	}
}

func (s *Store) commit(batch []*writeReq) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	err := func() error {
		tx, err := s.wdb.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for i, r := range batch {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT req"); err != nil {
				return err
			}
			if errs[i] = r.fn(tx); errs[i] != nil {
				r.changes = nil
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO req"); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE req"); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	trash := false
	for i, r := range batch {
		if err != nil {
			r.done <- fmt.Errorf("store: commit: %w", err)
			continue
		}
		trash = trash || r.trash && errs[i] == nil
		for _, c := range r.changes {
			s.notify.publish(c)
		}
		r.done <- errs[i]
	}
	if err == nil && trash {
		if err := s.emptyTrash(ctx); err != nil {
			s.log.Warn("store: removing unreferenced blob files", "err", err)
		}
	}
}

// emptyTrash deletes the files of blobs that lost their last reference.
func (s *Store) emptyTrash(ctx context.Context) error {
	rows, err := s.wdb.QueryContext(ctx, "SELECT rowid, file FROM blob_trash LIMIT 10000")
	if err != nil {
		return err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var file string
		if err := rows.Scan(&id, &file); err != nil {
			rows.Close()
			return err
		}
		if err := s.blobs.Delete(file); err != nil {
			s.log.Warn("store: deleting blob file", "file", file, "err", err)
			continue
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) == 0 {
		return nil
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, "DELETE FROM blob_trash WHERE rowid = ?", id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func now() int64 { return time.Now().Unix() }
