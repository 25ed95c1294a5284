package antispam

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/posthorn/posthorn/internal/policy"
)

// Greylisting defaults, as postgrey's and most greylisters': a retry is
// accepted from 5 minutes after the first attempt until 4 hours after it
// (most MTAs retry within an hour; a spam run rarely retries at all), and a
// triplet that passed is remembered for 36 days from its last use, so that
// monthly mail is not delayed again.
const (
	DefaultGreylistDelay        = 5 * time.Minute
	DefaultGreylistExpiry       = 4 * time.Hour
	DefaultGreylistPassLifetime = 36 * 24 * time.Hour
	DefaultGreylistMaxEntries   = 500_000
)

// purgeEvery is how often Check purges expired entries by itself.
const purgeEvery = time.Hour

// GreylistOptions configures a Greylist; zero fields take the defaults.
type GreylistOptions struct {
	Delay        time.Duration // a retry earlier than this after the first attempt is deferred again
	Expiry       time.Duration // a retry later than this after the first attempt starts over
	PassLifetime time.Duration // how long a passed triplet (and client network) is remembered after its last use
	// AutoWhitelist, when above zero, lets every message from a client
	// network through once that many triplets from it have passed — a
	// network that has shown it retries properly need not show it again
	// for each new sender or recipient. Zero turns it off.
	AutoWhitelist int
	// MaxEntries bounds each of the store's two tables; beyond it the
	// entries closest to expiry (first of all those that never passed) go.
	MaxEntries int
	Now        func() time.Time // the clock; nil means time.Now
}

// Greylist is the triplet greylist (the (client network, sender, recipient)
// triplet of Harris' "The Next Step in the Spam Control War: Greylisting",
// 2003; RFC 6647 describes the practice: a temporary refusal a real MTA
// retries through, section 4, and the client passes remembered, section 5)
// with its own SQLite file. It is safe for concurrent use.
//
// The file holds no addresses: a triplet is kept as a hash, a client network
// as its prefix.
type Greylist struct {
	opt GreylistOptions
	db  *sql.DB

	mu         sync.Mutex
	triplets   int // rows in triplet, counted here so that bounding costs no COUNT(*)
	clients    int
	lastPurge  time.Time
	closedOnce sync.Once
}

const greylistSchema = `
CREATE TABLE IF NOT EXISTS triplet (
	key     BLOB PRIMARY KEY,  -- SHA-256 (first 16 bytes) of network, sender and recipient
	first   INTEGER NOT NULL,  -- Unix milliseconds of the attempt that opened the window
	passed  INTEGER NOT NULL,  -- 0 waiting for a retry, 1 passed
	expires INTEGER NOT NULL   -- Unix milliseconds; a waiting entry's window closes here
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS triplet_expires ON triplet(expires);
CREATE TABLE IF NOT EXISTS client (
	net     TEXT PRIMARY KEY,  -- the client network, "192.0.2.0/24"
	passes  INTEGER NOT NULL,  -- triplets from it that passed
	expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS client_expires ON client(expires);
`

// OpenGreylist opens (creating if needed) the greylist kept in the SQLite
// file at path — a file of its own, apart from the mail store, since a lost
// greylist only delays some mail once more. Close it when done.
func OpenGreylist(path string, opt GreylistOptions) (*Greylist, error) {
	if opt.Delay <= 0 {
		opt.Delay = DefaultGreylistDelay
	}
	if opt.Expiry <= 0 {
		opt.Expiry = DefaultGreylistExpiry
	}
	if opt.Expiry < opt.Delay {
		return nil, fmt.Errorf("greylist: expiry %v is shorter than the delay %v", opt.Expiry, opt.Delay)
	}
	if opt.PassLifetime <= 0 {
		opt.PassLifetime = DefaultGreylistPassLifetime
	}
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = DefaultGreylistMaxEntries
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("greylist: %w", err)
	}
	// Created here so that it is the owner's alone (SQLite would make it 0644).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("greylist: %w", err)
	}
	f.Close()
	// WAL with synchronous=NORMAL: a commit costs no fsync; a power cut may
	// lose the last few entries, which only means one more delay.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("greylist: %w", err)
	}
	// One connection: every use holds g.mu anyway, and so no two
	// connections of ours ever wait on each other's lock.
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	g := &Greylist{opt: opt, db: db}
	if err := g.init(); err != nil {
		db.Close()
		return nil, err
	}
	return g, nil
}

func (g *Greylist) init() error {
	if _, err := g.db.Exec(greylistSchema); err != nil {
		return fmt.Errorf("greylist: creating tables: %w", err)
	}
	if err := g.db.QueryRow(`SELECT COUNT(*) FROM triplet`).Scan(&g.triplets); err != nil {
		return fmt.Errorf("greylist: %w", err)
	}
	if err := g.db.QueryRow(`SELECT COUNT(*) FROM client`).Scan(&g.clients); err != nil {
		return fmt.Errorf("greylist: %w", err)
	}
	return nil
}

// Close closes the file.
func (g *Greylist) Close() error {
	var err error
	g.closedOnce.Do(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		err = g.db.Close()
	})
	return err
}

// normaliseSender folds what changes from one delivery attempt to the next in
// some senders' addresses, which would otherwise make every retry a new
// triplet: case, a BATV tag (prvs=TAG=user@domain, draft-levine-smtp-batv)
// and digit runs in the local part (VERP and bounce-tracking addresses such as
// bounce-12345-67@list.example) become '#'. The null sender is "<>".
func normaliseSender(s string) string {
	s = strings.ToLower(strings.Trim(s, "<>"))
	if s == "" {
		return "<>"
	}
	local, domain := s, ""
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		local, domain = s[:i], s[i:]
	}
	if rest, ok := strings.CutPrefix(local, "prvs="); ok {
		if i := strings.IndexByte(rest, '='); i >= 0 {
			local = rest[i+1:]
		}
	}
	var b strings.Builder
	digits := false
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteByte(c)
	}
	return b.String() + domain
}

func tripletKey(n netip.Prefix, sender, rcpt string) []byte {
	h := sha256.New()
	h.Write([]byte(n.String()))
	h.Write([]byte{0})
	h.Write([]byte(normaliseSender(sender)))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(strings.Trim(rcpt, "<>"))))
	return h.Sum(nil)[:16]
}

// Greylisting's reply: 451 4.7.1 (RFC 5321 section 4.2.2, "requested action
// aborted: local error in processing"; RFC 3463 X.7.1, not authorised yet).
const greylistCode, greylistEnhanced = 451, "4.7.1"

// Check judges one recipient of a message: the triplet of the client's
// network (ClientNetwork), the envelope sender (null: "") and the recipient.
//
//   - an unknown triplet, or one whose window closed before a retry, is
//     deferred with 451 4.7.1 and its window opens now;
//   - a retry before Delay is deferred again (the window stays);
//   - a retry between Delay and Expiry after the first attempt passes, and
//     the triplet is remembered for PassLifetime, renewed at each use;
//   - with AutoWhitelist, a client network with that many passed triplets
//     passes whatever the triplet.
//
// On an error of the store the decision is Accept (a broken greylist must not
// stop mail) and the error is returned for the log.
func (g *Greylist) Check(ctx context.Context, ip netip.Addr, sender, rcpt string) (policy.Decision, error) {
	n := ClientNetwork(ip)
	if !n.IsValid() {
		return accept("greylist: no client address"), nil
	}
	key := tripletKey(n, sender, rcpt)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.opt.Now()
	ms := now.UnixMilli()
	d, err := g.check(ctx, n, key, now, ms)
	if err != nil && ctx.Err() != nil {
		// Out of time waiting (the store is slow or flooded): deferring
		// is what greylisting does anyway, and accepting would let a
		// flood through unchecked.
		return policy.Decision{Verdict: policy.Reject, Code: greylistCode, Enhanced: greylistEnhanced,
			Text: "Greylisting is busy, please try again later", Reason: "greylist: out of time"}, fmt.Errorf("greylist: %w", err)
	}
	if err != nil {
		return accept("greylist: store failed, accepted"), fmt.Errorf("greylist: %w", err)
	}
	if now.Sub(g.lastPurge) >= purgeEvery {
		if _, err := g.purge(ctx, ms); err != nil {
			return d, fmt.Errorf("greylist: purging: %w", err)
		}
		g.lastPurge = now
	}
	return d, nil
}

func (g *Greylist) check(ctx context.Context, n netip.Prefix, key []byte, now time.Time, ms int64) (policy.Decision, error) {
	passUntil := now.Add(g.opt.PassLifetime).UnixMilli()
	what := "triplet " + n.String()
	if g.opt.AutoWhitelist > 0 {
		var passes int
		err := g.db.QueryRowContext(ctx, `SELECT passes FROM client WHERE net = ? AND expires > ?`, n.String(), ms).Scan(&passes)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return policy.Decision{}, err
		}
		if passes >= g.opt.AutoWhitelist {
			if _, err := g.db.ExecContext(ctx, `UPDATE client SET expires = ? WHERE net = ?`, passUntil, n.String()); err != nil {
				return policy.Decision{}, err
			}
			return accept(fmt.Sprintf("greylist: client network %s auto-whitelisted (%d triplets passed)", n, passes)), nil
		}
	}
	var first, expires int64
	var passed bool
	err := g.db.QueryRowContext(ctx, `SELECT first, passed, expires FROM triplet WHERE key = ?`, key).Scan(&first, &passed, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows) || err == nil && expires <= ms:
		// New, or its window (or its pass) ran out: start over.
		res, err := g.db.ExecContext(ctx, `DELETE FROM triplet WHERE key = ?`, key)
		if err != nil {
			return policy.Decision{}, err
		}
		k, _ := res.RowsAffected()
		g.triplets -= int(k)
		if err := g.room(ctx, ms); err != nil {
			return policy.Decision{}, err
		}
		if _, err := g.db.ExecContext(ctx, `INSERT INTO triplet (key, first, passed, expires) VALUES (?, ?, 0, ?)`,
			key, ms, now.Add(g.opt.Expiry).UnixMilli()); err != nil {
			return policy.Decision{}, err
		}
		g.triplets++
		return g.deferred(what+" first seen", g.opt.Delay), nil
	case err != nil:
		return policy.Decision{}, err
	case passed:
		if _, err := g.db.ExecContext(ctx, `UPDATE triplet SET expires = ? WHERE key = ?`, passUntil, key); err != nil {
			return policy.Decision{}, err
		}
		return accept("greylist: " + what + " passed before"), nil
	}
	waited := time.Duration(ms-first) * time.Millisecond
	if waited < g.opt.Delay {
		return g.deferred(fmt.Sprintf("%s retried after %v, too early", what, waited), g.opt.Delay-waited), nil
	}
	if _, err := g.db.ExecContext(ctx, `UPDATE triplet SET passed = 1, expires = ? WHERE key = ?`, passUntil, key); err != nil {
		return policy.Decision{}, err
	}
	if g.opt.AutoWhitelist > 0 {
		if g.clients >= g.opt.MaxEntries {
			if err := g.evict(ctx, "client", ms, g.clients-g.opt.MaxEntries+1); err != nil {
				return policy.Decision{}, err
			}
		}
		res, err := g.db.ExecContext(ctx, `UPDATE client SET passes = CASE WHEN expires > ?1 THEN passes + 1 ELSE 1 END, expires = ?2 WHERE net = ?3`,
			ms, passUntil, n.String())
		if err != nil {
			return policy.Decision{}, err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			if _, err := g.db.ExecContext(ctx, `INSERT INTO client (net, passes, expires) VALUES (?, 1, ?)`, n.String(), passUntil); err != nil {
				return policy.Decision{}, err
			}
			g.clients++
		}
	}
	return accept(fmt.Sprintf("greylist: %s passed after %v", what, waited.Round(time.Second))), nil
}

func (g *Greylist) deferred(reason string, wait time.Duration) policy.Decision {
	wait = max(wait.Round(time.Second), time.Second)
	return refuse(greylistCode, greylistEnhanced,
		fmt.Sprintf("Greylisted, please try again in %d seconds", int(wait/time.Second)),
		"greylist: "+reason)
}

// room makes room for one more triplet: past the bound, expired entries go,
// then the ones closest to expiry (waiting entries expire within Expiry,
// passed ones only after PassLifetime, so the waiting go first), a hundredth
// more than needed so that this does not run for every new triplet.
func (g *Greylist) room(ctx context.Context, ms int64) error {
	if g.triplets < g.opt.MaxEntries {
		return nil
	}
	if _, err := g.purge(ctx, ms); err != nil {
		return err
	}
	if g.triplets < g.opt.MaxEntries {
		return nil
	}
	return g.evict(ctx, "triplet", ms, g.triplets-g.opt.MaxEntries+1+g.opt.MaxEntries/100)
}

func (g *Greylist) evict(ctx context.Context, table string, ms int64, n int) error {
	keyCol := "key"
	if table == "client" {
		keyCol = "net"
	}
	res, err := g.db.ExecContext(ctx, `DELETE FROM `+table+` WHERE `+keyCol+` IN (SELECT `+keyCol+` FROM `+table+` ORDER BY expires LIMIT ?)`, n)
	if err != nil {
		return err
	}
	k, _ := res.RowsAffected()
	if table == "client" {
		g.clients -= int(k)
	} else {
		g.triplets -= int(k)
	}
	return nil
}

// Purge removes the expired entries (Check also does it by itself, hourly)
// and says how many went.
func (g *Greylist) Purge(ctx context.Context) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.purge(ctx, g.opt.Now().UnixMilli())
	if err != nil {
		return n, fmt.Errorf("greylist: purging: %w", err)
	}
	return n, nil
}

func (g *Greylist) purge(ctx context.Context, ms int64) (int, error) {
	res, err := g.db.ExecContext(ctx, `DELETE FROM triplet WHERE expires <= ?`, ms)
	if err != nil {
		return 0, err
	}
	t, _ := res.RowsAffected()
	g.triplets -= int(t)
	res, err = g.db.ExecContext(ctx, `DELETE FROM client WHERE expires <= ?`, ms)
	if err != nil {
		return int(t), err
	}
	c, _ := res.RowsAffected()
	g.clients -= int(c)
	return int(t + c), nil
}

// Len says how many triplets and client networks the store holds.
func (g *Greylist) Len() (triplets, clients int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.triplets, g.clients
}
