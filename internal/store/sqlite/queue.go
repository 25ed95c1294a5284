package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// newQueueID makes a queue ID when the caller gave none.
func newQueueID() string {
	var b [8]byte
	rand.Read(b[:])
	return "Q" + hex.EncodeToString(b[:])
}

// ListQueue returns every queue entry, oldest first.
func (s *Store) ListQueue(ctx context.Context) ([]store.QueueEntry, error) {
	return s.queryQueue(ctx, "ORDER BY created, id")
}

// queryQueue reads the entries that the rest of a SELECT (where, order,
// limit) names, with their recipients.
func (s *Store) queryQueue(ctx context.Context, rest string, args ...any) ([]store.QueueEntry, error) {
	rows, err := s.rQuery(ctx, "SELECT "+queueColumns+" FROM queue "+rest, args...)
	if err != nil {
		return nil, err
	}
	var out []store.QueueEntry
	for rows.Next() {
		e, err := scanQueue(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, *e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Recipients, err = s.queueRecipients(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queueColumns are the columns scanQueue reads, in its order.
const queueColumns = "id, sender, envid, ret, created, next_attempt, size, blob_id, held, warned"

func scanQueue(row interface{ Scan(...any) error }) (*store.QueueEntry, error) {
	var e store.QueueEntry
	var created, next, blobID int64
	if err := row.Scan(&e.ID, &e.From, &e.EnvID, &e.Ret, &created, &next, &e.Size, &blobID, &e.Held, &e.Warned); err != nil {
		return nil, err
	}
	e.Created, e.NextAttempt = time.Unix(created, 0), time.Unix(next, 0)
	e.BlobID = fmt.Sprint(blobID)
	return &e, nil
}

func (s *Store) queueRecipients(ctx context.Context, id string) ([]store.QueueRecipientState, error) {
	rows, err := s.rQuery(ctx, "SELECT address, orcpt, notify, status, attempts, last_error, last_try FROM queue_rcpts WHERE queue_id = ? ORDER BY address", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.QueueRecipientState
	for rows.Next() {
		var r store.QueueRecipientState
		var last int64
		if err := rows.Scan(&r.Address, &r.ORCPT, &r.Notify, &r.Status, &r.Attempts, &r.LastError, &last); err != nil {
			return nil, err
		}
		if last > 0 {
			r.LastTry = time.Unix(last, 0)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// GetQueueEntry returns one queue entry.
func (s *Store) GetQueueEntry(ctx context.Context, id string) (*store.QueueEntry, error) {
	e, err := scanQueue(s.rQueryRow(ctx, "SELECT "+queueColumns+" FROM queue WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: queue entry %q", store.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if e.Recipients, err = s.queueRecipients(ctx, id); err != nil {
		return nil, err
	}
	return e, nil
}

// OpenQueueMessage opens the bytes of a queued message.
func (s *Store) OpenQueueMessage(ctx context.Context, id string) (store.MessageReader, error) {
	var data []byte
	var file sql.NullString
	err := s.rQueryRow(ctx, "SELECT b.data, b.file FROM queue q JOIN blobs b ON b.id = q.blob_id WHERE q.id = ?", id).Scan(&data, &file)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: queue entry %q", store.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return s.openBlob(data, file)
}

// DueQueue returns the entries due at now that are not held.
func (s *Store) DueQueue(ctx context.Context, now time.Time, limit int) ([]store.QueueEntry, error) {
	return s.queryQueue(ctx, "WHERE next_attempt <= ? AND held = 0 ORDER BY next_attempt, id LIMIT ?", now.Unix(), limit)
}

// UpdateQueueEntry records delivery attempts.
func (s *Store) UpdateQueueEntry(ctx context.Context, id string, u store.QueueUpdate) error {
	return s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		res, err := tx.Exec(qUpdateQueue, u.NextAttempt.Unix(), u.Warned, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: queue entry %q", store.ErrNotFound, id)
		}
		for _, r := range u.Recipients {
			var last int64
			if !r.LastTry.IsZero() {
				last = r.LastTry.Unix()
			}
			if _, err := tx.Exec(qUpdateQueueRcpt, r.Status, r.Attempts, r.LastError, last, id, r.Address); err != nil {
				return err
			}
		}
		return nil
	}})
}

// HoldQueueEntry holds or releases an entry.
func (s *Store) HoldQueueEntry(ctx context.Context, id string, held bool) error {
	return s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		res, err := tx.Exec("UPDATE queue SET held = ? WHERE id = ?", held, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: queue entry %q", store.ErrNotFound, id)
		}
		return nil
	}})
}

// RescheduleQueue makes one entry, or all, due at t.
func (s *Store) RescheduleQueue(ctx context.Context, id string, t time.Time) error {
	return s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		if id == "" {
			_, err := tx.Exec("UPDATE queue SET next_attempt = ?", t.Unix())
			return err
		}
		res, err := tx.Exec("UPDATE queue SET next_attempt = ? WHERE id = ?", t.Unix(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: queue entry %q", store.ErrNotFound, id)
		}
		return nil
	}})
}

// DeleteQueueEntry removes a queue entry.
func (s *Store) DeleteQueueEntry(ctx context.Context, id string) error {
	return s.write(ctx, &writeReq{trash: true, fn: func(tx *wtx) error {
		res, err := tx.Exec(qDeleteQueue, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: queue entry %q", store.ErrNotFound, id)
		}
		return nil
	}})
}

// Check verifies the store's integrity and returns one line per problem.
func (s *Store) Check(ctx context.Context) ([]string, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Every blob's bytes are there and match their size and hash.
	rows, err := s.rQuery(ctx, "SELECT id, size, sha256, data IS NOT NULL, file FROM blobs")
	if err != nil {
		return nil, err
	}
	type blobRow struct {
		id, size int64
		sum      []byte
		inline   bool
		file     sql.NullString
	}
	var blobs []blobRow
	for rows.Next() {
		var b blobRow
		if err := rows.Scan(&b.id, &b.size, &b.sum, &b.inline, &b.file); err != nil {
			rows.Close()
			return nil, err
		}
		blobs = append(blobs, b)
	}
	rows.Close()
	for _, b := range blobs {
		var r io.ReadCloser
		if b.file.Valid && b.file.String != "" {
			fr, err := s.blobs.Open(b.file.String)
			if err != nil {
				add("blob %d: file %s: %v", b.id, b.file.String, err)
				continue
			}
			r = fr
		} else {
			var data []byte
			if err := s.rQueryRow(ctx, "SELECT data FROM blobs WHERE id = ?", b.id).Scan(&data); err != nil {
				return nil, err
			}
			r = memReader{readerOf(data)}
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		r.Close()
		switch {
		case err != nil:
			add("blob %d: reading: %v", b.id, err)
		case n != b.size:
			add("blob %d: %d bytes, want %d", b.id, n, b.size)
		case hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(b.sum):
			add("blob %d: SHA-256 does not match", b.id)
		}
	}

	for _, q := range []struct{ sql, msg string }{
		{"SELECT mailbox_id || ':' || uid FROM messages WHERE blob_id NOT IN (SELECT id FROM blobs)", "message %s: its bytes are missing"},
		{"SELECT id FROM queue WHERE blob_id NOT IN (SELECT id FROM blobs)", "queue entry %s: its bytes are missing"},
		{"SELECT m.mailbox_id || ':' || m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.uid >= b.uidnext OR m.uid = 0", "message %s: UID not below UIDNEXT"},
		{"SELECT m.mailbox_id || ':' || m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.modseq > b.highestmodseq", "message %s: MODSEQ above HIGHESTMODSEQ"},
		{"SELECT mailbox_id || ':' || uid FROM messages WHERE mailbox_id NOT IN (SELECT id FROM mailboxes)", "message %s: no such mailbox"},
		{"SELECT m.mailbox_id || ':' || m.uid FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.size != b.size", "message %s: size differs from its bytes"},
		{`SELECT b.id FROM blobs b LEFT JOIN (SELECT blob_id, count(*) AS n FROM (SELECT blob_id FROM messages UNION ALL SELECT blob_id FROM queue) GROUP BY blob_id) r
			ON r.blob_id = b.id WHERE b.refs != coalesce(r.n, 0)`, "blob %s: reference count is wrong"},
		{`SELECT b.id FROM mailboxes b LEFT JOIN (SELECT mailbox_id, count(*) AS n, sum((flags & 1) = 0) AS unseen,
				sum((flags & 8) != 0) AS deleted, sum(size) AS size FROM messages GROUP BY mailbox_id) m ON m.mailbox_id = b.id
			WHERE b.messages != coalesce(m.n, 0) OR b.unseen != coalesce(m.unseen, 0) OR b.deleted != coalesce(m.deleted, 0) OR b.size != coalesce(m.size, 0)`,
			"mailbox %s: counters do not match its messages"},
	} {
		rows, err := s.rQuery(ctx, q.sql)
		if err != nil {
			return nil, fmt.Errorf("store check: %w", err)
		}
		for rows.Next() {
			var what string
			if err := rows.Scan(&what); err != nil {
				rows.Close()
				return nil, err
			}
			add(q.msg, what)
		}
		rows.Close()
	}
	var ic string
	if err := s.rQueryRow(ctx, "PRAGMA quick_check").Scan(&ic); err != nil {
		return nil, err
	}
	if ic != "ok" {
		add("database: %s", ic)
	}
	return problems, nil
}
