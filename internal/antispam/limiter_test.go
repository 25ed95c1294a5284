package antispam

import (
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
)

func newLimiter(t *testing.T, opt LimiterOptions) *Limiter {
	t.Helper()
	l, err := NewLimiter(opt)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLimiterBucket(t *testing.T) {
	clock := newClock()
	// One a second, three at once.
	l := newLimiter(t, LimiterOptions{PerMinute: 60, Burst: 3, Now: clock.Now, What: "messages"})
	a := netip.MustParseAddr("192.0.2.1")
	type step struct {
		after time.Duration
		ip    netip.Addr
		ok    bool
		wait  time.Duration // when refused
	}
	b := netip.MustParseAddr("192.0.2.2")
	steps := []step{
		{0, a, true, 0}, {0, a, true, 0}, {0, a, true, 0},
		{0, a, false, time.Second},
		{0, b, true, 0}, // another address has its own bucket
		{400 * time.Millisecond, a, false, 600 * time.Millisecond},
		{600 * time.Millisecond, a, true, 0},
		{0, a, false, time.Second},
		{2500 * time.Millisecond, a, true, 0}, {0, a, true, 0},
		{0, a, false, 500 * time.Millisecond},
		// Idle for an hour: the bucket holds 3, not 3,600.
		{time.Hour, a, true, 0}, {0, a, true, 0}, {0, a, true, 0},
		{0, a, false, time.Second},
	}
	for i, s := range steps {
		clock.Advance(s.after)
		ok, wait := l.Allow(s.ip)
		if ok != s.ok || !ok && (wait < s.wait-time.Millisecond || wait > s.wait+time.Millisecond) {
			t.Errorf("step %d (%v): Allow = %v, %v; want %v, %v", i, s.ip, ok, wait, s.ok, s.wait)
		}
	}
	d := l.Check(a)
	if d.Verdict != policy.Reject || d.Code != 451 || d.Enhanced != "4.7.1" ||
		!strings.Contains(d.Text, "messages") || !strings.Contains(d.Text, "[192.0.2.1]") || d.Reason == "" {
		t.Errorf("Check past the limit = %+v", d)
	}
	if d := l.Check(netip.MustParseAddr("192.0.2.3")); d.Verdict != policy.Accept {
		t.Errorf("Check of a new client = %+v", d)
	}
}

func TestLimiterKeys(t *testing.T) {
	tests := []struct {
		name   string
		a, b   string
		shared bool
	}{
		{"one IPv4 address", "192.0.2.1", "192.0.2.1", true},
		{"IPv4 neighbours apart", "192.0.2.1", "192.0.2.2", false},
		{"mapped is IPv4", "::ffff:192.0.2.1", "192.0.2.1", true},
		{"IPv6 /64 shared", "2001:db8:0:1::1", "2001:db8:0:1:ffff:ffff:ffff:ffff", true},
		{"IPv6 /64s apart", "2001:db8:0:1::1", "2001:db8:0:2::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			l := newLimiter(t, LimiterOptions{PerMinute: 1, Burst: 1, Now: clock.Now})
			if ok, _ := l.Allow(netip.MustParseAddr(tt.a)); !ok {
				t.Fatal("first refused")
			}
			ok, _ := l.Allow(netip.MustParseAddr(tt.b))
			if ok == tt.shared {
				t.Errorf("second allowed = %v; the two share a bucket: %v", ok, tt.shared)
			}
		})
	}
}

// The defaults let a benchmark send 10,000 messages a minute from one
// address, evenly or in bursts of 1,000 every six seconds.
func TestLimiterDefaultsAllowBenchmark(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	for _, rate := range []float64{DefaultMessagesPerMinute, DefaultConnectionsPerMinute} {
		clock := newClock()
		l := newLimiter(t, LimiterOptions{PerMinute: rate, Now: clock.Now})
		for i := range 10_000 {
			if ok, _ := l.Allow(ip); !ok {
				t.Fatalf("rate %v: message %d of 10,000 in a minute refused", rate, i)
			}
			clock.Advance(6 * time.Millisecond)
		}
		clock.Advance(time.Minute)
		for burst := range 10 {
			for i := range 1000 {
				if ok, _ := l.Allow(ip); !ok {
					t.Fatalf("rate %v: burst %d, message %d refused", rate, burst, i)
				}
			}
			clock.Advance(6 * time.Second)
		}
		// And they do limit: twice the rate for a minute is refused.
		refused := 0
		for range 2 * int(rate) {
			if ok, _ := l.Allow(ip); !ok {
				refused++
			}
			clock.Advance(time.Minute / time.Duration(2*rate))
		}
		if refused < int(rate)/2 {
			t.Errorf("rate %v: only %d of %d refused at twice the rate", rate, refused, 2*int(rate))
		}
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clock := newClock()
	const maxKeys = 10_000
	l := newLimiter(t, LimiterOptions{PerMinute: 60, Burst: 2, MaxKeys: maxKeys, Now: clock.Now})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		var ip netip.Addr
		if i%2 == 0 {
			ip = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		} else {
			ip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i), 0, 15: 1})
		}
		l.Allow(ip)
		if i%100_000 == 0 {
			clock.Advance(time.Millisecond)
		}
	}
	if n := l.Len(); n > maxKeys {
		t.Errorf("%d keys remembered after 1,000,000, bound %d", n, maxKeys)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// 10,000 buckets of some 100 bytes with their map entries: far below
	// 16 MB, where 1,000,000 would be far above.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Errorf("heap grew by %d bytes for %d keys", grown, l.Len())
	}
	runtime.KeepAlive(l)
}

func TestLimiterEvictsLeastRecent(t *testing.T) {
	clock := newClock()
	const maxKeys = 3200 // 100 a shard
	l := newLimiter(t, LimiterOptions{PerMinute: 1, Burst: 1, MaxKeys: maxKeys, Now: clock.Now})
	a := netip.MustParseAddr("192.0.2.1")
	l.Allow(a)            // a is the first key of all
	for i := range 2000 { // some 62 a shard: no shard overflows yet
		l.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	// Two minutes on, a is back and spends its token: it is now the most
	// recent key, the 2,000 others idle with full buckets again.
	clock.Advance(2 * time.Minute)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("a refused after its bucket refilled")
	}
	// 1,500 new clients overflow the shards (some 62 + 47 keys each, for
	// room for 100): the idle ones go, not a, which stays limited
	// (forgetting it would give it a fresh bucket).
	for i := range 1500 {
		l.Allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	if n := l.Len(); n > maxKeys {
		t.Errorf("%d keys, bound %d", n, maxKeys)
	}
	if ok, _ := l.Allow(a); ok {
		t.Error("a recently limited client was forgotten while idle ones were kept")
	}
}

func TestLimiterOptions(t *testing.T) {
	if _, err := NewLimiter(LimiterOptions{}); err == nil {
		t.Error("a zero rate accepted")
	}
	clock := newClock()
	l := newLimiter(t, LimiterOptions{PerMinute: 600, Now: clock.Now}) // burst: ten seconds' worth
	ip := netip.MustParseAddr("192.0.2.1")
	for i := range 100 {
		if ok, _ := l.Allow(ip); !ok {
			t.Fatalf("refused at %d of the default burst of 100", i)
		}
	}
	if ok, _ := l.Allow(ip); ok {
		t.Error("allowed past the default burst")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := newLimiter(t, LimiterOptions{PerMinute: 1, Burst: 100, MaxKeys: 64})
	shared := netip.MustParseAddr("192.0.2.1")
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				if ok, _ := l.Allow(shared); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				l.Allow(netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)}))
			}
		})
	}
	wg.Wait()
	// The shared client may be evicted by the others and start afresh, but
	// 8,000 attempts at one a minute cannot all pass.
	if allowed == 8000 {
		t.Errorf("all %d attempts allowed", allowed)
	}
	if n := l.Len(); n > 64 {
		t.Errorf("%d keys, bound 64", n)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l, _ := NewLimiter(LimiterOptions{PerMinute: DefaultMessagesPerMinute})
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			l.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		}
	})
}
