package auth

import (
	"net/netip"
	"testing"

	"github.com/posthorn/posthorn/internal/metrics"
)

// Each failed login is counted once under its protocol and reason; a
// success is not counted.
func TestLoginFailureMetrics(t *testing.T) {
	a := newTestAuth(t, Options{Throttle: ThrottleConfig{LockAfter: 3}})
	get := func(proto string) metrics.Fixed { return metrics.LoginFailures(proto, failureReasons) }
	c := Client{Addr: netip.MustParseAddr("198.51.100.9"), TLS: true, Service: "pop3"}
	type key struct{ proto, reason string }
	keys := []key{
		{"pop3", "wrong password"}, {"pop3", "unknown user"}, {"pop3", "malformed"},
		{"pop3", "throttled"}, {"imap", "wrong password"}, {"other", "wrong password"}, {"pop3", "something else"},
	}
	before := map[key]uint64{}
	for _, k := range keys {
		before[k] = get(k.proto).Of(k.reason).Value()
	}
	a.CheckPassword(ctx, c, "pp", "wrong")     // wrong password
	a.CheckPassword(ctx, c, "nobody", "wrong") // unknown user
	a.CheckPassword(ctx, c, "", "x")           // malformed: the third failure, the IP is locked
	a.CheckPassword(ctx, c, "pp", "wrong")     // throttled
	a.CheckPassword(ctx, c, "pp", ppPassword)  // throttled, right password or not
	imapClient := Client{Addr: netip.MustParseAddr("198.51.100.10"), TLS: true, Service: "imap"}
	a.CheckPassword(ctx, imapClient, "bob", "wrong") // imap, wrong password
	if _, err := a.CheckPassword(ctx, imapClient, "bob", bobPassword); err != nil {
		t.Fatal(err) // a success: not counted
	}
	odd := Client{Addr: netip.MustParseAddr("198.51.100.11"), TLS: true, Service: "gopher"}
	a.CheckPassword(ctx, odd, "pp", "wrong") // an unknown protocol counts as other

	want := map[key]uint64{
		{"pop3", "wrong password"}: 1, {"pop3", "unknown user"}: 1, {"pop3", "malformed"}: 1,
		{"pop3", "throttled"}: 2, {"imap", "wrong password"}: 1, {"other", "wrong password"}: 1,
		{"pop3", "something else"}: 0,
	}
	for _, k := range keys {
		if got := get(k.proto).Of(k.reason).Value() - before[k]; got != want[k] {
			t.Errorf("%s %q: %d, want %d", k.proto, k.reason, got, want[k])
		}
	}
}
