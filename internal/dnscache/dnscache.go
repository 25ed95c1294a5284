// Package dnscache keeps DNS answers for a short while in memory, in front of
// a dnsutil.Resolver: every message from outside costs the SPF, DKIM and DMARC
// checks several TXT lookups (RFC 7208, RFC 6376 section 3.6.2, RFC 7489
// section 6.6.3) of the same few names, and a round trip to the resolver for
// each was most of what the checks cost. Negative answers (no such name) are
// kept too (RFC 2308 lets resolvers do so); temporary failures are not, so
// that the next message asks again.
//
// net.Resolver does not give TTLs, so answers are kept for a fixed time,
// shorter than the TTLs of mail records in practice (minutes to hours).
package dnscache

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
)

// Defaults of Resolver.
const (
	DefaultTTL        = time.Minute
	DefaultMaxEntries = 10_000
)

// Resolver is a dnsutil.Resolver that caches TXT, A/AAAA and MX answers.
// PTR lookups go through uncached (one per connection). Safe for concurrent
// use.
type Resolver struct {
	Next       dnsutil.Resolver
	TTL        time.Duration // DefaultTTL when 0
	MaxEntries int           // DefaultMaxEntries when 0
	Now        func() time.Time

	mu sync.Mutex
	m  map[key]entry
}

type key struct {
	kind byte // 't' TXT, 'i' IP, 'm' MX
	name string
}

type entry struct {
	txt []string
	ips []netip.Addr
	mx  []*net.MX
	err error
	at  time.Time
}

// New returns a caching Resolver in front of next.
func New(next dnsutil.Resolver) *Resolver { return &Resolver{Next: next} }

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Resolver) get(k key) (entry, bool) {
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	r.mu.Lock()
	e, ok := r.m[k]
	r.mu.Unlock()
	if !ok || r.now().Sub(e.at) >= ttl {
		return entry{}, false
	}
	return e, true
}

// put keeps an answer, or a not-found error; other errors are not kept.
func (r *Resolver) put(k key, e entry) {
	if e.err != nil && !dnsutil.IsNotFound(e.err) {
		return
	}
	max := r.MaxEntries
	if max == 0 {
		max = DefaultMaxEntries
	}
	e.at = r.now()
	r.mu.Lock()
	if r.m == nil || len(r.m) >= max {
		// Start over rather than track ages: the names that matter come
		// back at once.
		r.m = make(map[key]entry)
	}
	r.m[k] = e
	r.mu.Unlock()
}

// LookupTXT implements dnsutil.Resolver. The slice returned is shared: the
// caller must not change it.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	k := key{'t', name}
	if e, ok := r.get(k); ok {
		return e.txt, e.err
	}
	txt, err := r.Next.LookupTXT(ctx, name)
	r.put(k, entry{txt: txt, err: err})
	return txt, err
}

// LookupIP implements dnsutil.Resolver.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	k := key{'i', host}
	if e, ok := r.get(k); ok {
		return e.ips, e.err
	}
	ips, err := r.Next.LookupIP(ctx, host)
	r.put(k, entry{ips: ips, err: err})
	return ips, err
}

// LookupMX implements dnsutil.Resolver.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	k := key{'m', domain}
	if e, ok := r.get(k); ok {
		return e.mx, e.err
	}
	mx, err := r.Next.LookupMX(ctx, domain)
	r.put(k, entry{mx: mx, err: err})
	return mx, err
}

// LookupPTR implements dnsutil.Resolver, without caching.
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	return r.Next.LookupPTR(ctx, ip)
}
