package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

var accountNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func validAccountName(name string) bool { return accountNameRE.MatchString(name) }

// CreateAccount makes an account with the default mailboxes.
func (s *Store) CreateAccount(ctx context.Context, name, passwordHash string) (*store.Account, error) {
	if !validAccountName(name) {
		return nil, fmt.Errorf("%w: account %q", store.ErrInvalidName, name)
	}
	acct := &store.Account{Name: name, PasswordHash: passwordHash, Created: time.Unix(now(), 0)}
	err := s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		var exists int
		if err := tx.QueryRow("SELECT count(*) FROM accounts WHERE name = ?", name).Scan(&exists); err != nil {
			return err
		}
		if exists > 0 {
			return fmt.Errorf("%w: account %q", store.ErrExists, name)
		}
		id, err := nextID(tx, "last_account_id")
		if err != nil {
			return err
		}
		if _, err := tx.Exec("INSERT INTO accounts(id, name, password_hash, created) VALUES (?, ?, ?, ?)", id, name, passwordHash, acct.Created.Unix()); err != nil {
			return err
		}
		acct.ID = id
		for _, mb := range store.DefaultMailboxes {
			if _, err := createMailbox(tx, acct.ID, mb.Name, mb.SpecialUse); err != nil {
				return err
			}
		}
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return acct, nil
}

// accountColumns reads an account; its usage is the sum of its mailboxes' sizes.
const accountColumns = "id, name, password_hash, scram_sha256, quota_bytes, (SELECT coalesce(sum(size), 0) FROM mailboxes WHERE account_id = accounts.id), admin, created"

func scanAccount(row interface{ Scan(...any) error }) (*store.Account, error) {
	var a store.Account
	var created int64
	if err := row.Scan(&a.ID, &a.Name, &a.PasswordHash, &a.SCRAMSHA256, &a.QuotaBytes, &a.UsedBytes, &a.Admin, &created); err != nil {
		return nil, err
	}
	a.Created = time.Unix(created, 0)
	return &a, nil
}

// GetAccount returns an account by name.
func (s *Store) GetAccount(ctx context.Context, name string) (*store.Account, error) {
	a, err := scanAccount(s.rQueryRow(ctx, "SELECT "+accountColumns+" FROM accounts WHERE name = ?", strings.ToLower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: account %q", store.ErrNotFound, name)
	}
	return a, err
}

// ListAccounts returns every account, by name.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := s.rQuery(ctx, "SELECT "+accountColumns+" FROM accounts ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

// updateAccount runs one UPDATE on an account and reports ErrNotFound.
func (s *Store) updateAccount(ctx context.Context, name, set string, arg any) error {
	return s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		s.targets.clear() // mailboxes or accounts change
		res, err := tx.Exec("UPDATE accounts SET "+set+" = ? WHERE name = ?", arg, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: account %q", store.ErrNotFound, name)
		}
		return nil
	}})
}

// SetPassword replaces an account's password hash and SCRAM-SHA-256
// credential in one statement.
func (s *Store) SetPassword(ctx context.Context, name, passwordHash, scramSHA256 string) error {
	return s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		res, err := tx.Exec("UPDATE accounts SET password_hash = ?, scram_sha256 = ? WHERE name = ?", passwordHash, scramSHA256, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: account %q", store.ErrNotFound, name)
		}
		return nil
	}})
}

// UpgradePassword is SetPassword while the hash is still oldHash: the
// comparison and the change are one statement, so a concurrent SetPassword
// either comes before (and this one reports ErrModified) or after.
func (s *Store) UpgradePassword(ctx context.Context, name, oldHash, passwordHash, scramSHA256 string) error {
	return s.write(ctx, &writeReq{fn: func(tx *wtx) error {
		res, err := tx.Exec("UPDATE accounts SET password_hash = ?, scram_sha256 = ? WHERE name = ? AND password_hash = ?",
			passwordHash, scramSHA256, name, oldHash)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		var exists int
		if err := tx.QueryRow("SELECT count(*) FROM accounts WHERE name = ?", name).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return fmt.Errorf("%w: account %q", store.ErrNotFound, name)
		}
		return fmt.Errorf("%w: password of %q", store.ErrModified, name)
	}})
}

// SetQuota sets an account's quota in bytes (0: none).
func (s *Store) SetQuota(ctx context.Context, name string, quotaBytes int64) error {
	return s.updateAccount(ctx, name, "quota_bytes", quotaBytes)
}

// SetAdmin marks an account as an administrator or not.
func (s *Store) SetAdmin(ctx context.Context, name string, admin bool) error {
	return s.updateAccount(ctx, name, "admin", admin)
}

// DeleteAccount removes an account with its mailboxes and messages.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	req := &writeReq{trash: true}
	req.fn = func(tx *wtx) error {
		s.targets.clear() // mailboxes or accounts change
		var id int64
		if err := tx.QueryRow("SELECT id FROM accounts WHERE name = ?", name).Scan(&id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: account %q", store.ErrNotFound, name)
			}
			return err
		}
		// Messages first: their trigger needs the mailbox row to find the account.
		for _, q := range []string{
			"DELETE FROM messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)",
			"DELETE FROM expunged WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)",
			"DELETE FROM mailboxes WHERE account_id = ?",
			"DELETE FROM accounts WHERE id = ?",
		} {
			if _, err := tx.Exec(q, id); err != nil {
				return err
			}
		}
		req.changes = []store.Change{{AccountID: id, Kind: store.ChangeMailboxes}}
		return nil
	}
	return s.write(ctx, req)
}

// notifier hands changes to subscribed sessions.
type notifier struct {
	mu   sync.Mutex
	subs map[int64]map[*subscriber]struct{}
}

type subscriber struct{ ch chan store.Change }

// Subscribe returns a channel of changes to an account's mailboxes.
func (s *Store) Subscribe(accountID int64) (<-chan store.Change, func()) {
	sub := &subscriber{ch: make(chan store.Change, 64)}
	n := &s.notify
	n.mu.Lock()
	if n.subs[accountID] == nil {
		n.subs[accountID] = map[*subscriber]struct{}{}
	}
	n.subs[accountID][sub] = struct{}{}
	n.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.subs[accountID], sub)
			if len(n.subs[accountID]) == 0 {
				delete(n.subs, accountID)
			}
			n.mu.Unlock()
		})
	}
}

// publish sends a change to every subscriber of its account without blocking:
// a subscriber whose channel is full loses it and must re-read (documented on
// store.Store.Subscribe).
func (n *notifier) publish(c store.Change) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for sub := range n.subs[c.AccountID] {
		select {
		case sub.ch <- c:
		default:
		}
	}
}
