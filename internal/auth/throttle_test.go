package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const s = time.Second

// Failures from one address, each for another user name, slow down and
// then lock the address; the lock ends after LockFor.
func TestThrottlePerIP(t *testing.T) {
	a := newTestAuth(t, Options{})
	checks := 0
	a.verify = func(hash, password string) (bool, error) { checks++; return Verify(hash, password) }
	for i := 0; i < 10; i++ {
		user := fmt.Sprintf("guess%d", i)
		if _, err := a.CheckPassword(ctx, tlsClient, user, "x"); !errors.Is(err, ErrMismatch) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	want := []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s, 30 * s}
	if got := a.clock.takeSleeps(); !reflect.DeepEqual(got, want) {
		t.Errorf("delays %v, want %v (none for the first two)", got, want)
	}
	// The 11th attempt within the window is refused without a password check,
	// even with the right password of a real account.
	checks = 0
	if _, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword); !errors.Is(err, ErrThrottled) {
		t.Fatalf("11th attempt: %v", err)
	}
	if _, err := a.Start(ctx, tlsClient, Plain); !errors.Is(err, ErrThrottled) {
		t.Errorf("Start while locked: %v", err)
	}
	if checks != 0 {
		t.Errorf("%d password checks while locked", checks)
	}
	if !strings.Contains(a.log.String(), `msg="auth failed" ip=192.0.2.7 service=smtp mech=password user=pp reason=throttled`) {
		t.Errorf("no throttled line in the log:\n%s", a.log)
	}
	// Another address is not affected.
	other := Client{Addr: netip.MustParseAddr("192.0.2.8"), TLS: true}
	if _, err := a.CheckPassword(ctx, other, "pp", ppPassword); err != nil {
		t.Errorf("another address: %v", err)
	}
	// Still locked just before the 10 minutes are up, free after.
	a.clock.advance(10*time.Minute - time.Second)
	if _, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword); !errors.Is(err, ErrThrottled) {
		t.Errorf("before the lock ends: %v", err)
	}
	a.clock.advance(time.Second)
	a.clock.takeSleeps()
	if _, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword); err != nil {
		t.Errorf("after the lock: %v", err)
	}
	if got := a.clock.takeSleeps(); len(got) != 0 {
		t.Errorf("delays after the lock ended: %v", got)
	}
}

// Failures for one account from many addresses lock the account: the right
// password from a new address is then refused too, and other accounts are
// not affected. A success before the lock clears the account's count.
func TestThrottlePerAccount(t *testing.T) {
	a := newTestAuth(t, Options{})
	client := func(i int) Client {
		return Client{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), TLS: true}
	}
	fail := func(n, first int) {
		for i := 0; i < n; i++ {
			if _, err := a.CheckPassword(ctx, client(first+i), "pp", "wrong"); !errors.Is(err, ErrMismatch) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
		}
	}
	fail(5, 1)
	if got := a.clock.takeSleeps(); !reflect.DeepEqual(got, []time.Duration{1 * s, 2 * s, 4 * s}) {
		t.Errorf("delays %v", got)
	}
	// The owner logs in: the account's count is cleared.
	if _, err := a.CheckPassword(ctx, client(100), "pp", ppPassword); err != nil {
		t.Fatal(err)
	}
	a.clock.takeSleeps()
	fail(2, 10)
	if got := a.clock.takeSleeps(); len(got) != 0 {
		t.Errorf("delays after a success: %v", got)
	}
	fail(8, 20) // 10 in all since the success
	if _, err := a.CheckPassword(ctx, client(200), "PP", ppPassword); !errors.Is(err, ErrThrottled) {
		t.Errorf("locked account, right password, new address: %v", err)
	}
	if _, err := a.CheckPassword(ctx, client(201), "bob", bobPassword); err != nil {
		t.Errorf("another account: %v", err)
	}
	// SCRAM is throttled the same way.
	if _, _, err := scramLogin(a.Authenticator, client(202), "pp", ppPassword, false); !errors.Is(err, ErrThrottled) {
		t.Errorf("SCRAM on a locked account: %v", err)
	}
}

// A success from an address does not clear the address's failures: one
// valid login must not reset the guesses at other accounts.
func TestSuccessKeepsIPCount(t *testing.T) {
	a := newTestAuth(t, Options{})
	for i := 0; i < 4; i++ {
		a.CheckPassword(ctx, tlsClient, fmt.Sprintf("u%d", i), "x")
		if _, err := a.CheckPassword(ctx, tlsClient, "bob", bobPassword); err != nil {
			t.Fatal(err)
		}
	}
	got := a.clock.takeSleeps()
	// Failures so far before each attempt: 0,1 (success), 1,2 (success) ...
	want := []time.Duration{1 * s, 1 * s, 2 * s, 2 * s, 4 * s}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
}

// Failures older than the window are forgotten.
func TestThrottleWindow(t *testing.T) {
	clock := newClock()
	l := newLimiter(ThrottleConfig{Now: clock.Now})
	ip := netip.MustParseAddr("192.0.2.1")
	for i := 0; i < 9; i++ {
		if _, err := l.begin(ip, "pp"); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(10 * time.Minute)
	if d, err := l.begin(ip, "pp"); err != nil || d != 0 {
		t.Errorf("after the window: %v %v", d, err)
	}
}

// Attempts running at once: up to FreeParallel (10) wait for nothing,
// beyond that each sees the ones begun before it as failures.
func TestThrottleConcurrentAttempts(t *testing.T) {
	l := newLimiter(ThrottleConfig{})
	ip := netip.MustParseAddr("192.0.2.1")
	var got []time.Duration
	for i := 0; i < 16; i++ {
		d, err := l.begin(ip, fmt.Sprintf("u%d", i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	want := make([]time.Duration, 12) // 10 free, then 2 free failures' worth
	want = append(want, 1*s, 2*s, 4*s, 8*s)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
	// Abandoned attempts (no password checked) are taken back.
	for i := 0; i < 16; i++ {
		l.abandon(ip, fmt.Sprintf("u%d", i))
	}
	if d, _ := l.begin(ip, "u9"); d != 0 {
		t.Errorf("after abandoning all: delay %v", d)
	}
	l.abandon(ip, "u9")
	// Twenty right logins at once, as a mail client opening its
	// connections: none locks the address or the account.
	for i := 0; i < 20; i++ {
		if _, err := l.begin(ip, "pp"); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	for i := 0; i < 20; i++ {
		l.success(ip, "pp")
	}
	if d, err := l.begin(ip, "pp"); err != nil || d != 0 {
		t.Errorf("after 20 right logins at once: %v %v", d, err)
	}
	l.success(ip, "pp")
	// Wrong passwords at once still lock: ten failures, then throttled.
	for i := 0; i < 10; i++ {
		l.begin(ip, "pp")
	}
	for i := 0; i < 10; i++ {
		l.failed(ip, "pp")
	}
	if _, err := l.begin(ip, "qq"); !errors.Is(err, ErrThrottled) {
		t.Errorf("after 10 failures at once: %v, want ErrThrottled", err)
	}
	// Under the race detector: many goroutines at once, from another
	// address.
	ip = netip.MustParseAddr("192.0.2.2")
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("r%d", i)
			if _, err := l.begin(ip, u); err == nil {
				l.success(ip, u)
			}
		}()
	}
	wg.Wait()
}

// IPv6 clients are counted per /64; IPv4 per address, mapped or not.
func TestThrottleIPKeys(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"2001:db8::1", "2001:db8::ffff:2", true},
		{"2001:db8::1", "2001:db8:0:1::1", false},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
	} {
		ka, kb := ipKey(netip.MustParseAddr(tc.a)), ipKey(netip.MustParseAddr(tc.b))
		if (ka == kb) != tc.same {
			t.Errorf("%s (%s) and %s (%s): same %v, want %v", tc.a, ka, tc.b, kb, ka == kb, tc.same)
		}
	}
}

// A hostile client with many addresses and names cannot grow the tables
// beyond MaxTracked.
func TestThrottleMemoryBounded(t *testing.T) {
	l := newLimiter(ThrottleConfig{MaxTracked: 100})
	for i := 0; i < 20000; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.begin(ip, fmt.Sprintf("user%d", i))
		l.fail(ip, fmt.Sprintf("other%d", i))
	}
	if l.ips.len() > 100 || l.accts.len() > 100 || len(l.ips.m) != l.ips.len() || len(l.accts.m) != l.accts.len() {
		t.Errorf("tables hold %d IPs and %d accounts (maps %d, %d)", l.ips.len(), l.accts.len(), len(l.ips.m), len(l.accts.m))
	}
	// A count under attack survives a flood of fresh names with fewer
	// failures: the flood pushes itself out.
	clock := newClock()
	l = newLimiter(ThrottleConfig{MaxTracked: 100, Now: clock.Now})
	target := netip.MustParseAddr("192.0.2.99")
	for i := 0; i < 5; i++ {
		l.begin(target, "pp")
		l.failed(target, "pp")
	}
	for i := 0; i < 20000; i++ {
		l.begin(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), fmt.Sprintf("user%d", i))
	}
	if d, err := l.begin(netip.MustParseAddr("192.0.2.100"), "pp"); err != nil || d != 8*s {
		t.Errorf("pp after the flood: delay %v %v, want 8s (5 failures kept)", d, err)
	}
	if d, _ := l.begin(target, "bob"); d != 8*s {
		t.Errorf("the address after the flood: delay %v, want 8s", d)
	}
	if l.ips.len() > 100 || l.accts.len() > 100 {
		t.Errorf("tables hold %d IPs and %d accounts", l.ips.len(), l.accts.len())
	}

	// A huge name is kept short.
	l.begin(netip.MustParseAddr("192.0.2.1"), strings.Repeat("x", 100000))
	for k := range l.accts.m {
		if len(k) > maxNameLen {
			t.Errorf("key of %d bytes kept", len(k))
		}
	}
}

// Leaving during the delay ends the attempt without a password check and
// without counting it.
func TestThrottleCanceledDuringDelay(t *testing.T) {
	a := newTestAuth(t, Options{})
	for i := 0; i < 2; i++ {
		a.CheckPassword(ctx, tlsClient, "pp", "wrong")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.CheckPassword(cctx, tlsClient, "pp", ppPassword); err == nil || errors.Is(err, ErrMismatch) {
		t.Errorf("canceled login: %v", err)
	}
	a.clock.takeSleeps()
	a.CheckPassword(ctx, tlsClient, "pp", "wrong")
	if got := a.clock.takeSleeps(); !reflect.DeepEqual(got, []time.Duration{1 * s}) {
		t.Errorf("the canceled attempt was counted: delays %v", got)
	}
}
