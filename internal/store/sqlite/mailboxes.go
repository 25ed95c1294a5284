package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/store"
)

// maxMailboxName bounds a mailbox name in bytes.
const maxMailboxName = 1000

// normaliseMailboxName checks a mailbox name and writes INBOX (and the INBOX
// level of its children) in capitals: INBOX is case-insensitive (RFC 9051
// section 5.1).
func normaliseMailboxName(name string) (string, error) {
	if name == "" || len(name) > maxMailboxName || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: mailbox name %q", store.ErrInvalidName, truncate(name))
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return "", fmt.Errorf("%w: mailbox name %q has a control character", store.ErrInvalidName, truncate(name))
		}
	}
	levels := strings.Split(name, "/")
	for _, l := range levels {
		if l == "" {
			return "", fmt.Errorf("%w: mailbox name %q has an empty level", store.ErrInvalidName, truncate(name))
		}
		// "." and ".." would name directories of their own when a
		// mailbox becomes a path (posthorn export maildir|mbox).
		if l == "." || l == ".." {
			return "", fmt.Errorf("%w: mailbox name %q has a level %q", store.ErrInvalidName, truncate(name), l)
		}
	}
	if strings.EqualFold(levels[0], store.Inbox) {
		levels[0] = store.Inbox
	}
	return strings.Join(levels, "/"), nil
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// nextUIDValidity returns a UIDVALIDITY that no mailbox had before: the time
// in seconds, or one more than the last one given, whichever is greater, so
// that a mailbox deleted and created again gets a new one (RFC 9051 2.3.1.1).
func nextUIDValidity(tx *wtx) (uint32, error) {
	var last int64
	if err := tx.QueryRow("SELECT value FROM meta WHERE key = 'uidvalidity'").Scan(&last); err != nil {
		return 0, err
	}
	v := max(now(), last+1)
	if v > 0xffffffff {
		v = last + 1
	}
	if _, err := tx.Exec("UPDATE meta SET value = ? WHERE key = 'uidvalidity'", v); err != nil {
		return 0, err
	}
	return uint32(v), nil
}

func createMailbox(tx *wtx, accountID int64, name, specialUse string) (int64, error) {
	uv, err := nextUIDValidity(tx)
	if err != nil {
		return 0, err
	}
	id, err := nextID(tx, "last_mailbox_id")
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec("INSERT INTO mailboxes(id, account_id, name, uidvalidity, special_use) VALUES (?, ?, ?, ?, ?)",
		id, accountID, name, uv, specialUse); err != nil {
		return 0, err
	}
	return id, nil
}

// nextID takes the next id of accounts or mailboxes from the counter in
// meta (key last_account_id or last_mailbox_id), never one given before:
// a session may still hold a deleted row's id (migration 5).
func nextID(tx *wtx, key string) (int64, error) {
	var id int64
	if err := tx.QueryRow("UPDATE meta SET value = value + 1 WHERE key = ? RETURNING value", key).Scan(&id); err != nil {
		return 0, fmt.Errorf("store: taking an id (%s): %w", key, err)
	}
	return id, nil
}

const mailboxColumns = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed, messages, unseen, deleted, size"

func scanMailbox(row interface{ Scan(...any) error }) (*store.Mailbox, error) {
	var m store.Mailbox
	if err := row.Scan(&m.ID, &m.AccountID, &m.Name, &m.UIDValidity, &m.UIDNext, &m.HighestModSeq,
		&m.SpecialUse, &m.Subscribed, &m.Messages, &m.Unseen, &m.Deleted, &m.Size); err != nil {
		return nil, err
	}
	return &m, nil
}

// ListMailboxes returns an account's mailboxes by name.
func (s *Store) ListMailboxes(ctx context.Context, accountID int64) ([]store.Mailbox, error) {
	rows, err := s.rQuery(ctx, "SELECT "+mailboxColumns+" FROM mailboxes WHERE account_id = ? ORDER BY name", accountID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

// GetMailbox returns an account's mailbox by name.
func (s *Store) GetMailbox(ctx context.Context, accountID int64, name string) (*store.Mailbox, error) {
	n, err := normaliseMailboxName(name)
	if err != nil {
		return nil, err
	}
	m, err := scanMailbox(s.rQueryRow(ctx, "SELECT "+mailboxColumns+" FROM mailboxes WHERE account_id = ? AND name = ?", accountID, n))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: mailbox %q", store.ErrNotFound, truncate(name))
	}
	return m, err
}

// GetMailboxByID returns a mailbox by ID. Callers that got the ID from a client
// must check AccountID against the logged-in account.
func (s *Store) GetMailboxByID(ctx context.Context, mailboxID int64) (*store.Mailbox, error) {
	m, err := scanMailbox(s.rQueryRow(ctx, "SELECT "+mailboxColumns+" FROM mailboxes WHERE id = ?", mailboxID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, mailboxID)
	}
	return m, err
}

// CreateMailbox creates a mailbox.
func (s *Store) CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (*store.Mailbox, error) {
	n, err := normaliseMailboxName(name)
	if err != nil {
		return nil, err
	}
	switch specialUse {
	case "", store.SpecialSent, store.SpecialDrafts, store.SpecialJunk, store.SpecialTrash, store.SpecialArchive, `\All`, `\Flagged`:
	default:
		return nil, fmt.Errorf("%w: special use %q", store.ErrInvalidName, specialUse)
	}
	req := &writeReq{}
	var id int64
	req.fn = func(tx *wtx) error {
		var exists int
		if err := tx.QueryRow("SELECT count(*) FROM mailboxes WHERE account_id = ? AND name = ?", accountID, n).Scan(&exists); err != nil {
			return err
		}
		if exists > 0 {
			return fmt.Errorf("%w: mailbox %q", store.ErrExists, truncate(n))
		}
		if err := tx.QueryRow("SELECT count(*) FROM accounts WHERE id = ?", accountID).Scan(&exists); err != nil || exists == 0 {
			return fmt.Errorf("%w: account %d", store.ErrNotFound, accountID)
		}
		var err error
		if id, err = createMailbox(tx, accountID, n, specialUse); err != nil {
			return err
		}
		req.changes = []store.Change{{AccountID: accountID, MailboxID: id, Kind: store.ChangeMailboxes}}
		return nil
	}
	if err := s.write(ctx, req); err != nil {
		return nil, err
	}
	return s.GetMailboxByID(ctx, id)
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves its
// messages into a new mailbox of the new name and leaves INBOX empty (RFC 9051
// section 6.3.6); INBOX's children keep their names then.
func (s *Store) RenameMailbox(ctx context.Context, accountID int64, oldName, newName string) error {
	from, err := normaliseMailboxName(oldName)
	if err != nil {
		return err
	}
	to, err := normaliseMailboxName(newName)
	if err != nil {
		return err
	}
	if to == store.Inbox || strings.HasPrefix(to, from+"/") && from != store.Inbox {
		return fmt.Errorf("%w: cannot rename %q to %q", store.ErrInvalidName, truncate(from), truncate(to))
	}
	req := &writeReq{}
	req.fn = func(tx *wtx) error {
		s.targets.clear() // mailboxes or accounts change
		var srcID int64
		if err := tx.QueryRow("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", accountID, from).Scan(&srcID); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: mailbox %q", store.ErrNotFound, truncate(from))
			}
			return err
		}
		var exists int
		if err := tx.QueryRow("SELECT count(*) FROM mailboxes WHERE account_id = ? AND name = ?", accountID, to).Scan(&exists); err != nil {
			return err
		}
		if exists > 0 {
			return fmt.Errorf("%w: mailbox %q", store.ErrExists, truncate(to))
		}
		req.changes = []store.Change{{AccountID: accountID, Kind: store.ChangeMailboxes}}
		if from == store.Inbox {
			dstID, err := createMailbox(tx, accountID, to, "")
			if err != nil {
				return err
			}
			uids, err := allUIDs(tx, srcID)
			if err != nil {
				return err
			}
			_, _, ch, err := s.moveTx(tx, srcID, uids, dstID)
			req.changes = append(req.changes, ch...)
			return err
		}
		// The children first, so that a name cannot collide midway.
		rows, err := tx.Query("SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?", accountID, len(from)+1, from+"/")
		if err != nil {
			return err
		}
		type kid struct {
			id   int64
			name string
		}
		var kids []kid
		for rows.Next() {
			var k kid
			if err := rows.Scan(&k.id, &k.name); err != nil {
				rows.Close()
				return err
			}
			kids = append(kids, k)
		}
		rows.Close()
		for _, k := range kids {
			newKid := to + k.name[len(from):]
			if len(newKid) > maxMailboxName {
				return fmt.Errorf("%w: %q would be too long", store.ErrInvalidName, truncate(newKid))
			}
			if err := tx.QueryRow("SELECT count(*) FROM mailboxes WHERE account_id = ? AND name = ?", accountID, newKid).Scan(&exists); err != nil {
				return err
			}
			if exists > 0 {
				return fmt.Errorf("%w: mailbox %q", store.ErrExists, truncate(newKid))
			}
			if _, err := tx.Exec("UPDATE mailboxes SET name = ? WHERE id = ?", newKid, k.id); err != nil {
				return err
			}
		}
		_, err = tx.Exec("UPDATE mailboxes SET name = ? WHERE id = ?", to, srcID)
		return err
	}
	return s.write(ctx, req)
}

// DeleteMailbox deletes a mailbox and its messages. INBOX cannot be deleted.
// Children are left as they are (RFC 9051 section 6.3.5 lets the server keep
// them).
func (s *Store) DeleteMailbox(ctx context.Context, accountID int64, name string) error {
	n, err := normaliseMailboxName(name)
	if err != nil {
		return err
	}
	if n == store.Inbox {
		return fmt.Errorf("%w: INBOX cannot be deleted", store.ErrInvalidName)
	}
	req := &writeReq{trash: true}
	req.fn = func(tx *wtx) error {
		s.targets.clear() // mailboxes or accounts change
		var id int64
		if err := tx.QueryRow("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", accountID, n).Scan(&id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: mailbox %q", store.ErrNotFound, truncate(n))
			}
			return err
		}
		for _, q := range []string{
			"DELETE FROM messages WHERE mailbox_id = ?",
			"DELETE FROM expunged WHERE mailbox_id = ?",
			"DELETE FROM mailboxes WHERE id = ?",
		} {
			if _, err := tx.Exec(q, id); err != nil {
				return err
			}
		}
		req.changes = []store.Change{{AccountID: accountID, MailboxID: id, Kind: store.ChangeMailboxes}}
		return nil
	}
	return s.write(ctx, req)
}

// SetSubscribed subscribes or unsubscribes a mailbox.
func (s *Store) SetSubscribed(ctx context.Context, accountID int64, name string, subscribed bool) error {
	n, err := normaliseMailboxName(name)
	if err != nil {
		return err
	}
	return s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		res, err := tx.Exec("UPDATE mailboxes SET subscribed = ? WHERE account_id = ? AND name = ?", subscribed, accountID, n)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("%w: mailbox %q", store.ErrNotFound, truncate(n))
		}
		return nil
	}})
}

func allUIDs(tx *wtx, mailboxID int64) ([]uint32, error) {
	return scanUIDs(tx.Query("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", mailboxID))
}

// scanUIDs reads a one-column result of UIDs and closes it.
func scanUIDs(rows *sql.Rows, err error) ([]uint32, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
