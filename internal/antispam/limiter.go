package antispam

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
)

// Rate-limit defaults: well above the 10,000 messages a minute a benchmark
// sends from one address (ARCHITECTURE.md), over as many connections, with
// ten seconds' worth as the burst.
const (
	DefaultConnectionsPerMinute = 20_000
	DefaultMessagesPerMinute    = 20_000
	DefaultLimiterMaxKeys       = 100_000
)

// LimiterOptions configures a Limiter; zero fields take the defaults.
type LimiterOptions struct {
	PerMinute float64 // tokens added per minute; required (see the Default* constants)
	Burst     int     // the bucket's size; zero means ten seconds' worth (at least 1)
	// MaxKeys bounds the clients remembered. Past it the least recently
	// seen go — first those idle long enough for a full bucket, whose
	// forgetting changes nothing. Zero means DefaultLimiterMaxKeys.
	MaxKeys int
	What    string           // what is counted, for replies: "connections", "messages"
	Now     func() time.Time // the clock; nil means time.Now
}

// Limiter is a token bucket per client: per IPv4 address and per IPv6 /64
// (an IPv6 host picks its addresses from a /64). It is safe for concurrent
// use; its keys are spread over shards so that clients do not wait on each
// other's lock.
type Limiter struct {
	opt    LimiterOptions
	rate   float64 // tokens per nanosecond
	seed   maphash.Seed
	shards [limiterShards]limiterShard
}

const limiterShards = 32

type limiterShard struct {
	mu   sync.Mutex
	max  int
	m    map[netip.Addr]*bucket
	head bucket // sentinel of the recency list: head.next is the most recent
}

type bucket struct {
	key        netip.Addr
	tokens     float64
	last       time.Time
	prev, next *bucket
}

// NewLimiter returns a Limiter. PerMinute must be above zero.
func NewLimiter(opt LimiterOptions) (*Limiter, error) {
	if opt.PerMinute <= 0 {
		return nil, fmt.Errorf("limiter: rate %v per minute is not above zero", opt.PerMinute)
	}
	if opt.Burst <= 0 {
		opt.Burst = max(1, int(opt.PerMinute/6))
	}
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = DefaultLimiterMaxKeys
	}
	if opt.What == "" {
		opt.What = "requests"
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	l := &Limiter{opt: opt, rate: opt.PerMinute / float64(time.Minute), seed: maphash.MakeSeed()}
	per := max(1, opt.MaxKeys/limiterShards) // so that the shards hold at most MaxKeys in all (when at least limiterShards)
	for i := range l.shards {
		s := &l.shards[i]
		s.max = per
		s.m = map[netip.Addr]*bucket{}
		s.head.next, s.head.prev = &s.head, &s.head
	}
	return l, nil
}

// limiterKey is the address a client is counted under.
func limiterKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		return ClientNetwork(ip).Addr()
	}
	return ip
}

// Allow takes one token from ip's bucket and reports whether there was one;
// when not, it also says how long until there will be.
func (l *Limiter) Allow(ip netip.Addr) (bool, time.Duration) {
	key := limiterKey(ip)
	s := &l.shards[maphash.Comparable(l.seed, key)%limiterShards]
	now := l.opt.Now()
	burst := float64(l.opt.Burst)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[key]
	if b == nil {
		if len(s.m) >= s.max {
			s.evict(now, burst/l.rate)
		}
		b = &bucket{key: key, tokens: burst, last: now}
		s.m[key] = b
	} else {
		b.unlink()
		if el := now.Sub(b.last); el > 0 {
			b.tokens = min(burst, b.tokens+float64(el)*l.rate)
			b.last = now
		}
	}
	b.pushFront(&s.head)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate)
}

// evict makes room for one key: from the least recently seen end, it drops
// every bucket idle long enough to be full again (such a client is treated
// alike whether remembered or not), and at least one.
func (s *limiterShard) evict(now time.Time, refill float64) {
	for b := s.head.prev; b != &s.head; b = s.head.prev {
		if len(s.m) < s.max && float64(now.Sub(b.last)) < refill {
			return
		}
		b.unlink()
		delete(s.m, b.key)
	}
}

func (b *bucket) unlink() {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, nil
}

func (b *bucket) pushFront(head *bucket) {
	b.prev, b.next = head, head.next
	head.next.prev = b
	head.next = b
}

// Len says how many clients the limiter remembers.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Check is Allow as a decision: past the limit, 451 4.7.1 (RFC 3463 X.7.1;
// temporary, so a well-behaved client comes back later) naming the limit. At
// the greeting the SMTP server says it with 421 and closes (RFC 5321 section
// 3.8).
func (l *Limiter) Check(ip netip.Addr) policy.Decision {
	ok, wait := l.Allow(ip)
	if ok {
		return accept("")
	}
	return refuse(451, "4.7.1",
		fmt.Sprintf("Too many %s from [%s], slow down (at most %g a minute)", l.opt.What, ip.Unmap(), l.opt.PerMinute),
		fmt.Sprintf("rate limit: %s from %s above %g a minute, next in %v", l.opt.What, limiterKey(ip), l.opt.PerMinute, wait.Round(time.Millisecond)))
}
