package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// fakeAccounts is an in-memory Accounts, so that the mechanisms can be
// tested without a database (the SQLite store is used in auth_test.go).
type fakeAccounts struct {
	mu       sync.Mutex
	accts    map[string]*store.Account
	getErr   error // returned by GetAccount when set
	upgrades int
	// beforeUpgrade runs inside UpgradePassword, before the comparison, to
	// play a password change made meanwhile.
	beforeUpgrade func()
}

func (f *fakeAccounts) GetAccount(ctx context.Context, name string) (*store.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, f.getErr
	}
	a, ok := f.accts[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("%w: account %q", store.ErrNotFound, name)
	}
	c := *a
	return &c, nil
}

func (f *fakeAccounts) UpgradePassword(ctx context.Context, name, oldHash, hash, scram string) error {
	if f.beforeUpgrade != nil {
		f.beforeUpgrade()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accts[name]
	if !ok {
		return store.ErrNotFound
	}
	if a.PasswordHash != oldHash {
		return store.ErrModified
	}
	f.upgrades++
	a.PasswordHash, a.SCRAMSHA256 = hash, scram
	return nil
}

func (f *fakeAccounts) set(name, hash, scram string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.accts == nil {
		f.accts = map[string]*store.Account{}
	}
	f.accts[name] = &store.Account{ID: int64(len(f.accts) + 1), Name: name, PasswordHash: hash, SCRAMSHA256: scram}
}

func (f *fakeAccounts) get(name string) store.Account {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.accts[name]
}

// Credentials are costly to make (argon2id, PBKDF2): made once per password.
var (
	credMu    sync.Mutex
	credCache = map[string][2]string{}
)

func creds(t testing.TB, password string) (hash, scram string) {
	t.Helper()
	credMu.Lock()
	defer credMu.Unlock()
	if c, ok := credCache[password]; ok {
		return c[0], c[1]
	}
	h, s, err := NewCredentials(password)
	if err != nil {
		t.Fatal(err)
	}
	credCache[password] = [2]string{h, s}
	return h, s
}

// Passwords of the test accounts.
const (
	ppPassword  = "correct horse battery staple"
	bobPassword = "bob's own secret"
)

// newFakes returns accounts pp and bob, both with SCRAM credentials.
func newFakes(t testing.TB) *fakeAccounts {
	f := &fakeAccounts{}
	h, s := creds(t, ppPassword)
	f.set("pp", h, s)
	h, s = creds(t, bobPassword)
	f.set("bob", h, s)
	return f
}

// fakeClock is the throttle's clock: Sleep records and advances time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) takeSleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sleeps
	c.sleeps = nil
	return s
}

// logBuf collects log lines, safe for concurrent writers.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testAuth is an Authenticator on fakes with a fake clock and a log buffer.
type testAuth struct {
	*Authenticator
	accts *fakeAccounts
	clock *fakeClock
	log   *logBuf
}

func newTestAuth(t testing.TB, opts Options) *testAuth {
	ta := &testAuth{accts: newFakes(t), clock: newClock(), log: &logBuf{}}
	opts.Logger = slog.New(slog.NewTextHandler(ta.log, nil))
	opts.Throttle.Now = ta.clock.Now
	opts.Throttle.Sleep = ta.clock.Sleep
	ta.Authenticator = New(ta.accts, opts)
	return ta
}

var (
	ctx        = context.Background()
	remote     = netip.MustParseAddr("192.0.2.7")
	tlsClient  = Client{Addr: remote, TLS: true, Service: "smtp"}
	loopClient = Client{Addr: netip.MustParseAddr("127.0.0.1"), Service: "pop3"}
)

// noLock keeps the throttle's lock out of tests that fail many logins on
// purpose (the delays still run, on the fake clock).
var noLock = Options{Throttle: ThrottleConfig{LockAfter: 1 << 20}}

// run drives a mechanism with the given client responses (the first is the
// initial response; nil for none) and returns the challenges it sent, the
// account and the error. It stops at done or at an error.
func run(a *Authenticator, c Client, mech string, responses ...[]byte) (challenges []string, acct *store.Account, err error) {
	m, err := a.Start(ctx, c, mech)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; ; i++ {
		var resp []byte
		if i < len(responses) {
			resp = responses[i]
		} else {
			resp = []byte{}
		}
		ch, done, err := m.Next(resp)
		if err != nil {
			if !done {
				return challenges, nil, errors.New("error without done")
			}
			return challenges, m.Account(), err
		}
		if done {
			return challenges, m.Account(), nil
		}
		challenges = append(challenges, string(ch))
		if i > 10 {
			return challenges, nil, errors.New("too many steps")
		}
	}
}

func plainMsg(authzid, user, password string) []byte {
	return []byte(authzid + "\x00" + user + "\x00" + password)
}
