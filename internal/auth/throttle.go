package auth

import (
	"container/list"
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ThrottleConfig sets how failed logins slow down and lock. Zero fields
// take the defaults given with them.
type ThrottleConfig struct {
	// FreeFailures are answered without a delay (2).
	FreeFailures int
	// BaseDelay is the first delay, doubled for each further failure (1 s),
	// up to MaxDelay (30 s).
	BaseDelay, MaxDelay time.Duration
	// LockAfter failures within Window lock the IP or the account for
	// LockFor (10 failures, 10 minutes, 10 minutes).
	LockAfter       int
	Window, LockFor time.Duration
	// FreeParallel attempts in progress at once from one address (or at
	// one account) wait for nothing (10): a mail client opens several
	// connections at once and logs each in. Beyond that, attempts in
	// progress count toward the delay as failures do, so that a guesser
	// cannot run hundreds at once undelayed.
	FreeParallel int
	// MaxTracked bounds the IPs and the account names remembered, each
	// (50,000: some 10 MB at most). When a table is full, the entry
	// forgotten is the one with the fewest failures among the least recently
	// seen few (a locked one last): to push a count out of the table, an
	// attacker must fill it with entries that failed as often.
	MaxTracked int
	// Now and Sleep are the clock, for tests (time.Now, and a sleep that
	// ends early with ctx's error).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func (c *ThrottleConfig) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.FreeFailures, 2)
	def(&c.LockAfter, 10)
	def(&c.MaxTracked, 50000)
	def(&c.FreeParallel, 10)
	defD(&c.BaseDelay, time.Second)
	defD(&c.MaxDelay, 30*time.Second)
	defD(&c.Window, 10*time.Minute)
	defD(&c.LockFor, 10*time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// limiter counts failures per IP and per account name.
//
// An attempt in progress is counted apart from failures (pending): it
// becomes a failure when its password check fails, and is dropped when it
// succeeds or ends without a check. Only failures lock; attempts in
// progress beyond FreeParallel count toward the delay, so a client that
// runs many attempts at once sees the others' counts, while a mail client
// logging in its few connections together is neither delayed nor locked.
type limiter struct {
	cfg   ThrottleConfig
	mu    sync.Mutex
	ips   lru
	accts lru
}

func newLimiter(cfg ThrottleConfig) *limiter {
	cfg.fill()
	return &limiter{cfg: cfg, ips: newLRU(cfg.MaxTracked), accts: newLRU(cfg.MaxTracked)}
}

// counter is the state of one IP or account.
type counter struct {
	key         string
	fails       int       // failures since `since`
	pending     int       // attempts begun and not ended
	since       time.Time // start of the window
	lockedUntil time.Time // zero when not locked
}

// ipKey groups IPv6 clients by /64, what one site or host usually has.
func ipKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String() // "invalid IP" for the zero Addr: one shared counter
}

// acctKey is the account name as the store matches it, bounded in length.
func acctKey(user string) string {
	if len(user) > maxNameLen {
		user = user[:maxNameLen]
	}
	return strings.ToLower(user)
}

// refresh ends an expired lock or window.
func (l *limiter) refresh(c *counter, now time.Time) {
	if !c.lockedUntil.IsZero() {
		if now.Before(c.lockedUntil) {
			return
		}
		c.lockedUntil = time.Time{}
		c.fails = 0
	}
	if c.fails == 0 || now.Sub(c.since) >= l.cfg.Window {
		c.fails = 0
		c.since = now
	}
}

// locked tells whether c is locked now, locking it when it has reached
// LockAfter failures.
func (l *limiter) locked(c *counter, now time.Time) bool {
	if c == nil {
		return false
	}
	if !c.lockedUntil.IsZero() {
		return true
	}
	if c.fails >= l.cfg.LockAfter {
		c.lockedUntil = now.Add(l.cfg.LockFor)
		return true
	}
	return false
}

// delay is the wait before checking a password after n failures.
func (l *limiter) delay(n int) time.Duration {
	n -= l.cfg.FreeFailures
	if n < 0 {
		return 0
	}
	d := l.cfg.BaseDelay
	for ; n > 0 && d < l.cfg.MaxDelay; n-- {
		d *= 2
	}
	return min(d, l.cfg.MaxDelay)
}

// ipLocked reports whether ip is locked, without counting anything.
func (l *limiter) ipLocked(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.ips.get(ipKey(ip), false)
	if c == nil {
		return false
	}
	now := l.cfg.Now()
	l.refresh(c, now)
	return l.locked(c, now)
}

// begin starts an attempt by ip at user: ErrThrottled when either is locked,
// else the delay to wait before checking. The attempt is pending until
// success, failure or abandon ends it.
func (l *limiter) begin(ip netip.Addr, user string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	ic := l.ips.get(ipKey(ip), true)
	var ac *counter
	if user != "" {
		ac = l.accts.get(acctKey(user), true)
	}
	n := 0
	for _, c := range []*counter{ic, ac} {
		if c == nil {
			continue
		}
		l.refresh(c, now)
		n = max(n, c.fails+max(0, c.pending-l.cfg.FreeParallel))
	}
	// Both are looked at (and locked when due) before answering.
	ipLocked, acctLocked := l.locked(ic, now), l.locked(ac, now)
	if ipLocked || acctLocked {
		return 0, ErrThrottled
	}
	ic.pending++
	if ac != nil {
		ac.pending++
	}
	return l.delay(n), nil
}

// success ends an attempt whose password was right: the IP keeps its
// earlier failures, the account's are cleared.
func (l *limiter) success(ip netip.Addr, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end(&l.ips, ipKey(ip), false)
	if user != "" {
		if c := l.accts.get(acctKey(user), false); c != nil {
			c.fails = 0
			l.end(&l.accts, acctKey(user), false)
		}
	}
}

// failed ends an attempt whose password was wrong: a failure of both.
func (l *limiter) failed(ip netip.Addr, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end(&l.ips, ipKey(ip), true)
	if user != "" {
		l.end(&l.accts, acctKey(user), true)
	}
}

// abandon ends an attempt that checked no password (the client left during
// the delay, the store failed): nothing is counted.
func (l *limiter) abandon(ip netip.Addr, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end(&l.ips, ipKey(ip), false)
	if user != "" {
		l.end(&l.accts, acctKey(user), false)
	}
}

// end takes an attempt off a counter, as a failure when failure, and
// forgets the counter when nothing is left in it.
func (l *limiter) end(t *lru, key string, failure bool) {
	c := t.get(key, false)
	if c == nil {
		return
	}
	if c.pending > 0 {
		c.pending--
	}
	if failure && c.lockedUntil.IsZero() {
		c.fails++
	}
	if c.fails == 0 && c.pending == 0 && c.lockedUntil.IsZero() {
		t.remove(key)
	}
}

// fail counts a failure that needed no password check (a malformed message,
// a wrong authzid) for ip and, when not "", user.
func (l *limiter) fail(ip netip.Addr, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	for _, c := range []*counter{l.ips.get(ipKey(ip), true), l.acctOrNil(user)} {
		if c == nil {
			continue
		}
		l.refresh(c, now)
		if c.lockedUntil.IsZero() {
			c.fails++
		}
	}
}

func (l *limiter) acctOrNil(user string) *counter {
	if user == "" {
		return nil
	}
	return l.accts.get(acctKey(user), true)
}

func (l *limiter) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	return l.cfg.Sleep(ctx, d)
}

// lru is a map of counters that forgets the least recently used beyond max.
type lru struct {
	max   int
	m     map[string]*list.Element
	order *list.List // front: most recently used
}

func newLRU(max int) lru {
	return lru{max: max, m: make(map[string]*list.Element), order: list.New()}
}

func (t *lru) get(key string, create bool) *counter {
	if e, ok := t.m[key]; ok {
		t.order.MoveToFront(e)
		return e.Value.(*counter)
	}
	if !create {
		return nil
	}
	for t.order.Len() >= t.max && t.order.Len() > 0 {
		t.evict()
	}
	c := &counter{key: key}
	t.m[key] = t.order.PushFront(c)
	return c
}

// evictSample is how many of the least recently used entries evict looks at.
const evictSample = 8

// evict forgets the entry with the fewest failures among the evictSample
// least recently used, the oldest of equals; a locked entry only when all
// of them are locked. Plain LRU would let a flood of new names or addresses
// push out the count of an account under attack.
func (t *lru) evict() {
	weight := func(c *counter) int {
		if !c.lockedUntil.IsZero() {
			return int(^uint(0) >> 1)
		}
		return c.fails
	}
	victim := t.order.Back()
	e := victim
	for i := 0; i < evictSample && e != nil; i, e = i+1, e.Prev() {
		if weight(e.Value.(*counter)) < weight(victim.Value.(*counter)) {
			victim = e
		}
	}
	t.order.Remove(victim)
	delete(t.m, victim.Value.(*counter).key)
}

func (t *lru) remove(key string) {
	if e, ok := t.m[key]; ok {
		t.order.Remove(e)
		delete(t.m, key)
	}
}

func (t *lru) len() int { return t.order.Len() }
