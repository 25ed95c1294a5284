package antispam

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openGreylist(t *testing.T, path string, opt GreylistOptions) *Greylist {
	t.Helper()
	g, err := OpenGreylist(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

const day = 24 * time.Hour

type greyStep struct {
	after     time.Duration // clock moved by this first
	ip        string
	from, to  string
	pass      bool
	waitShown string // for a deferral, what the reply says of the wait ("" to skip)
}

func TestGreylist(t *testing.T) {
	tests := []struct {
		name  string
		opt   GreylistOptions
		steps []greyStep
	}{
		{"defaults: first deferred, retry passes, remembered and refreshed, then forgotten", GreylistOptions{}, []greyStep{
			{0, "192.0.2.1", "a@example.org", "b@example.net", false, "300 seconds"},
			{time.Minute, "192.0.2.1", "a@example.org", "b@example.net", false, "240 seconds"},
			{3*time.Minute + 59*time.Second, "192.0.2.1", "a@example.org", "b@example.net", false, "1 seconds"},
			{time.Second, "192.0.2.1", "a@example.org", "b@example.net", true, ""},
			{30 * day, "192.0.2.1", "a@example.org", "b@example.net", true, ""},
			// 35 days after the first pass but 5 after the last use.
			{5 * day, "192.0.2.1", "a@example.org", "b@example.net", true, ""},
			{36*day + time.Second, "192.0.2.1", "a@example.org", "b@example.net", false, "300 seconds"},
		}},
		{"the triplet is per /24, sender and recipient", GreylistOptions{}, []greyStep{
			{0, "192.0.2.1", "a@example.org", "b@example.net", false, ""},
			{6 * time.Minute, "192.0.2.200", "a@example.org", "b@example.net", true, ""}, // same /24
			{0, "192.0.3.1", "a@example.org", "b@example.net", false, ""},                // another /24
			{0, "192.0.2.1", "c@example.org", "b@example.net", false, ""},                // another sender
			{0, "192.0.2.1", "a@example.org", "d@example.net", false, ""},                // another recipient
			{0, "::ffff:192.0.2.9", "A@Example.ORG", "<B@example.net>", true, ""},        // mapped, case, brackets
		}},
		{"IPv6 by /64", GreylistOptions{}, []greyStep{
			{0, "2001:db8:1:2::1", "a@example.org", "b@example.net", false, ""},
			{6 * time.Minute, "2001:db8:1:2:ffff::9", "a@example.org", "b@example.net", true, ""},
			{0, "2001:db8:1:3::1", "a@example.org", "b@example.net", false, ""},
		}},
		{"senders that change per attempt", GreylistOptions{}, []greyStep{
			{0, "192.0.2.1", "bounce-1234-55@list.example", "b@example.net", false, ""},
			{6 * time.Minute, "192.0.2.1", "bounce-98-7@list.example", "b@example.net", true, ""},
			{0, "192.0.2.1", "prvs=0123abcd=user@example.org", "b@example.net", false, ""},
			{6 * time.Minute, "192.0.2.1", "prvs=9999ffff=user@example.org", "b@example.net", true, ""},
			{0, "192.0.2.1", "user@example.org", "b@example.net", true, ""},
			{0, "192.0.2.1", "", "b@example.net", false, ""},
			{6 * time.Minute, "192.0.2.1", "<>", "b@example.net", true, ""},
			{0, "192.0.2.1", "bounce-x@list.example", "b@example.net", false, ""},
		}},
		{"a retry after the window starts over", GreylistOptions{Delay: time.Minute, Expiry: time.Hour}, []greyStep{
			{0, "192.0.2.1", "a@example.org", "b@example.net", false, "60 seconds"},
			{time.Hour + time.Second, "192.0.2.1", "a@example.org", "b@example.net", false, "60 seconds"},
			{30 * time.Second, "192.0.2.1", "a@example.org", "b@example.net", false, "30 seconds"},
			{30 * time.Second, "192.0.2.1", "a@example.org", "b@example.net", true, ""},
		}},
		{"custom pass lifetime", GreylistOptions{Delay: time.Minute, PassLifetime: day}, []greyStep{
			{0, "192.0.2.1", "a@example.org", "b@example.net", false, ""},
			{time.Minute, "192.0.2.1", "a@example.org", "b@example.net", true, ""},
			{day - time.Second, "192.0.2.1", "a@example.org", "b@example.net", true, ""},
			{day, "192.0.2.1", "a@example.org", "b@example.net", false, ""},
		}},
		{"auto-whitelist after two passes", GreylistOptions{AutoWhitelist: 2}, []greyStep{
			{0, "192.0.2.1", "a@example.org", "1@example.net", false, ""},
			{6 * time.Minute, "192.0.2.1", "a@example.org", "1@example.net", true, ""},
			// A triplet that passed before counts once, not at each use.
			{0, "192.0.2.1", "a@example.org", "1@example.net", true, ""},
			{0, "192.0.2.1", "a@example.org", "2@example.net", false, ""},
			{0, "192.0.2.7", "z@example.org", "9@example.net", false, ""},
			{6 * time.Minute, "192.0.2.7", "z@example.org", "9@example.net", true, ""},
			// Two passes: now anything from 192.0.2.0/24 passes at once.
			{0, "192.0.2.1", "new@example.org", "3@example.net", true, ""},
			{0, "192.0.3.1", "new@example.org", "3@example.net", false, ""},
			// Until the network has gone unused for the pass lifetime.
			{37 * day, "192.0.2.1", "new@example.org", "4@example.net", false, ""},
		}},
		{"no auto-whitelist when off", GreylistOptions{}, []greyStep{
			{0, "192.0.2.1", "a@example.org", "1@example.net", false, ""},
			{6 * time.Minute, "192.0.2.1", "a@example.org", "1@example.net", true, ""},
			{0, "192.0.2.1", "a@example.org", "2@example.net", false, ""},
			{6 * time.Minute, "192.0.2.1", "a@example.org", "2@example.net", true, ""},
			{0, "192.0.2.1", "a@example.org", "3@example.net", false, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			opt := tt.opt
			opt.Now = clock.Now
			g := openGreylist(t, filepath.Join(t.TempDir(), "greylist.db"), opt)
			for i, s := range tt.steps {
				clock.Advance(s.after)
				d, err := g.Check(context.Background(), netip.MustParseAddr(s.ip), s.from, s.to)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				checkGrey(t, fmt.Sprintf("step %d (%s %s -> %s)", i, s.ip, s.from, s.to), d, s.pass, s.waitShown)
			}
		})
	}
}

func checkGrey(t *testing.T, what string, d policy.Decision, pass bool, wait string) {
	t.Helper()
	if pass {
		if d.Verdict != policy.Accept {
			t.Errorf("%s: %+v, want a pass", what, d)
		}
		return
	}
	if d.Verdict != policy.Reject || d.Code != 451 || d.Enhanced != "4.7.1" || !strings.HasPrefix(d.Text, "Greylisted") {
		t.Errorf("%s: %+v, want 451 4.7.1 Greylisted", what, d)
	}
	if wait != "" && !strings.Contains(d.Text, " "+wait) {
		t.Errorf("%s: reply %q does not say %q", what, d.Text, wait)
	}
	if !strings.HasPrefix(d.Reason, "greylist: ") {
		t.Errorf("%s: reason %q", what, d.Reason)
	}
}

func TestGreylistSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "greylist.db")
	clock := newClock()
	opt := GreylistOptions{Now: clock.Now, AutoWhitelist: 1}
	ip := netip.MustParseAddr("192.0.2.1")
	ctx := context.Background()

	g, err := OpenGreylist(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := g.Check(ctx, ip, "a@example.org", "b@example.net")
	checkGrey(t, "first", d, false, "")
	d, _ = g.Check(ctx, netip.MustParseAddr("198.51.100.1"), "x@example.org", "y@example.net")
	checkGrey(t, "other first", d, false, "")
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// The retry after a restart passes: the first attempt was remembered.
	clock.Advance(6 * time.Minute)
	g, err = OpenGreylist(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	if tr, _ := g.Len(); tr != 2 {
		t.Errorf("reopened with %d triplets, want 2", tr)
	}
	d, _ = g.Check(ctx, ip, "a@example.org", "b@example.net")
	checkGrey(t, "retry after restart", d, true, "")
	g.Close()

	// And the pass and the auto-whitelisted network after another.
	clock.Advance(10 * day)
	g = openGreylist(t, path, opt)
	d, _ = g.Check(ctx, ip, "a@example.org", "b@example.net")
	checkGrey(t, "passed before restart", d, true, "")
	d, _ = g.Check(ctx, ip, "new@example.org", "b@example.net")
	checkGrey(t, "auto-whitelisted before restart", d, true, "")
	// The other triplet never passed: its window closed and it was purged.
	if tr, cl := g.Len(); tr != 1 || cl != 1 {
		t.Errorf("Len = %d triplets, %d clients; want 1, 1", tr, cl)
	}
}

func TestGreylistPurge(t *testing.T) {
	clock := newClock()
	g := openGreylist(t, filepath.Join(t.TempDir(), "g.db"), GreylistOptions{Now: clock.Now, AutoWhitelist: 3})
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.1")
	for i := range 10 {
		g.Check(ctx, ip, "a@example.org", fmt.Sprintf("%c@example.net", 'a'+i))
	}
	clock.Advance(6 * time.Minute)
	d, _ := g.Check(ctx, ip, "a@example.org", "a@example.net") // passes: one triplet and one client kept long
	checkGrey(t, "retry", d, true, "")
	if tr, cl := g.Len(); tr != 10 || cl != 1 {
		t.Fatalf("Len = %d, %d; want 10, 1", tr, cl)
	}
	if n, err := g.Purge(ctx); err != nil || n != 0 {
		t.Errorf("Purge before anything expired = %d, %v", n, err)
	}
	clock.Advance(4 * time.Hour)
	if n, err := g.Purge(ctx); err != nil || n != 9 {
		t.Errorf("Purge after the window = %d, %v; want the 9 that never passed", n, err)
	}
	clock.Advance(36 * day)
	if n, err := g.Purge(ctx); err != nil || n != 2 {
		t.Errorf("Purge after the pass lifetime = %d, %v; want 2 (a triplet and a network)", n, err)
	}
	if tr, cl := g.Len(); tr != 0 || cl != 0 {
		t.Errorf("Len = %d, %d after purging; want 0, 0", tr, cl)
	}
	var rows int
	if err := g.db.QueryRow(`SELECT (SELECT COUNT(*) FROM triplet) + (SELECT COUNT(*) FROM client)`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("%d rows left in the file (%v)", rows, err)
	}

	// Check purges by itself once an hour.
	for i := range 5 {
		g.Check(ctx, ip, "b@example.org", fmt.Sprintf("%d@example.net", i))
	}
	clock.Advance(5 * time.Hour)
	g.Check(ctx, ip, "c@example.org", "c@example.net")
	if tr, _ := g.Len(); tr != 1 {
		t.Errorf("%d triplets after an hourly purge, want 1", tr)
	}
}

func TestGreylistBounded(t *testing.T) {
	clock := newClock()
	const max = 200
	g := openGreylist(t, filepath.Join(t.TempDir(), "g.db"), GreylistOptions{Now: clock.Now, MaxEntries: max, AutoWhitelist: 100})
	ctx := context.Background()
	// A triplet that passed, which a flood of new ones must not push out.
	keep := netip.MustParseAddr("198.51.100.7")
	g.Check(ctx, keep, "friend@example.org", "b@example.net")
	clock.Advance(6 * time.Minute)
	d, _ := g.Check(ctx, keep, "friend@example.org", "b@example.net")
	checkGrey(t, "friend's retry", d, true, "")

	for i := range 3000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		d, err := g.Check(ctx, ip, fmt.Sprintf("s%d@spam.example", i), "b@example.net")
		if err != nil {
			t.Fatal(err)
		}
		if d.Verdict != policy.Reject {
			t.Fatalf("flood message %d passed: %+v", i, d)
		}
		if tr, _ := g.Len(); tr > max {
			t.Fatalf("%d triplets after %d new ones, bound %d", tr, i+1, max)
		}
	}
	var rows int
	if err := g.db.QueryRow(`SELECT COUNT(*) FROM triplet`).Scan(&rows); err != nil || rows > max {
		t.Errorf("%d rows in the file (%v), bound %d", rows, err, max)
	}
	if tr, _ := g.Len(); tr != rows {
		t.Errorf("Len says %d triplets, the file holds %d", tr, rows)
	}
	d, _ = g.Check(ctx, keep, "friend@example.org", "b@example.net")
	checkGrey(t, "friend after the flood", d, true, "")
	// The most recent of the flood is still waiting for its retry.
	clock.Advance(6 * time.Minute)
	d, _ = g.Check(ctx, netip.AddrFrom4([4]byte{10, 2999 >> 8 & 0xff, 2999 & 0xff, 1}), "s2999@spam.example", "b@example.net")
	checkGrey(t, "last of the flood", d, true, "")
}

func TestGreylistStoreFailureAccepts(t *testing.T) {
	g := openGreylist(t, filepath.Join(t.TempDir(), "g.db"), GreylistOptions{})
	g.db.Close() // the store breaks under it
	d, err := g.Check(context.Background(), netip.MustParseAddr("192.0.2.1"), "a@example.org", "b@example.net")
	if err == nil || d.Verdict != policy.Accept {
		t.Errorf("with a broken store: %+v, %v; want accept and the error", d, err)
	}
}

func TestGreylistOptions(t *testing.T) {
	_, err := OpenGreylist(filepath.Join(t.TempDir(), "g.db"), GreylistOptions{Delay: time.Hour, Expiry: time.Minute})
	if err == nil {
		t.Error("expiry shorter than the delay accepted")
	}
	// A path under a file cannot be made.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := OpenGreylist(filepath.Join(f, "g.db"), GreylistOptions{}); err == nil {
		t.Error("opened a greylist under a regular file")
	}
	g := openGreylist(t, filepath.Join(t.TempDir(), "g.db"), GreylistOptions{})
	d, err := g.Check(context.Background(), netip.Addr{}, "a@example.org", "b@example.net")
	if err != nil || d.Verdict != policy.Accept {
		t.Errorf("client without an address: %+v, %v; want accept", d, err)
	}
}

func TestGreylistConcurrent(t *testing.T) {
	clock := newClock()
	g := openGreylist(t, filepath.Join(t.TempDir(), "g.db"), GreylistOptions{Now: clock.Now, MaxEntries: 50})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				ip := netip.AddrFrom4([4]byte{10, byte(w), byte(i), 1})
				if _, err := g.Check(context.Background(), ip, "a@example.org", "b@example.net"); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					clock.Advance(time.Minute)
				}
			}
		})
	}
	wg.Wait()
	if tr, _ := g.Len(); tr > 50 {
		t.Errorf("%d triplets, bound 50", tr)
	}
}

func TestNormaliseSender(t *testing.T) {
	tests := []struct{ in, want string }{
		{"User@Example.ORG", "user@example.org"},
		{"<a@b.example>", "a@b.example"},
		{"", "<>"},
		{"<>", "<>"},
		{"bounce-123-45@list.example", "bounce-#-#@list.example"},
		{"prvs=1234abcd=user@example.org", "user@example.org"},
		{"prvs=broken", "prvs=broken"},
		{"user2025@host9.example", "user#@host9.example"}, // the domain is left alone
		{"noatsign", "noatsign"},
	}
	for _, tt := range tests {
		if got := normaliseSender(tt.in); got != tt.want {
			t.Errorf("normaliseSender(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExemptAndClientNetwork(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	tests := []struct {
		ip     string
		exempt bool
		net    string
	}{
		{"10.1.2.3", true, "10.1.2.0/24"},
		{"::ffff:10.1.2.3", true, "10.1.2.0/24"},
		{"11.1.2.3", false, "11.1.2.0/24"},
		{"2001:db8:aa:bb:cc::1", true, "2001:db8:aa:bb::/64"},
		{"2001:db9::1", false, "2001:db9::/64"},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		if got := Exempt(ip, nets); got != tt.exempt {
			t.Errorf("Exempt(%s) = %v", tt.ip, got)
		}
		if got := ClientNetwork(ip); got != netip.MustParsePrefix(tt.net) {
			t.Errorf("ClientNetwork(%s) = %v, want %s", tt.ip, got, tt.net)
		}
	}
	if Exempt(netip.MustParseAddr("10.0.0.1"), nil) {
		t.Error("exempt with no networks")
	}
	if ClientNetwork(netip.Addr{}).IsValid() {
		t.Error("a network for no address")
	}
}

// The cost a greylisted recipient adds: a triplet that passed before, and
// a new one.
func BenchmarkGreylistCheck(b *testing.B) {
	g, err := OpenGreylist(filepath.Join(b.TempDir(), "g.db"), GreylistOptions{Delay: time.Nanosecond})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.1")
	g.Check(ctx, ip, "a@example.org", "b@example.net")
	time.Sleep(time.Millisecond)
	b.Run("passed", func(b *testing.B) {
		for b.Loop() {
			if d, err := g.Check(ctx, ip, "a@example.org", "b@example.net"); err != nil || d.Verdict != policy.Accept {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			g.Check(ctx, ip, "a@example.org", fmt.Sprintf("%d-new@example.net", i))
		}
	})
}

// A check that runs out of time (the store is slow or flooded) defers the
// recipient; only a real store error lets mail through.
func TestGreylistOutOfTimeDefers(t *testing.T) {
	g, err := OpenGreylist(filepath.Join(t.TempDir(), "greylist.db"), GreylistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := g.Check(ctx, netip.MustParseAddr("192.0.2.1"), "a@example.org", "b@example.net")
	if err == nil || d.Verdict != policy.Reject || d.Code != 451 {
		t.Errorf("out of time: %+v, %v; want 451 and the error", d, err)
	}
}
