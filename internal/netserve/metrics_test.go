package netserve

import (
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/metrics"
)

// The registry counts what it accepts and refuses, and the sessions live,
// under its Name.
func TestConnectionMetrics(t *testing.T) {
	const name = "netserve-metrics-test"
	h := newHarness(t, &Server{Name: name, MaxConns: 10, MaxConnsPerIP: 2, Refusal: refusal}, false)
	m := metrics.ConnMetrics(name, refusedLabels) // the same counters the Server resolved
	a := h.dial("127.0.0.2")
	b := h.dial("127.0.0.2")
	for _, c := range []*client{a, b} {
		if l := c.line(); l != "hello" {
			t.Fatalf("got %q", l)
		}
	}
	refused := h.dial("127.0.0.2")
	if l := refused.line(); l != "no "+WhyTooManyFromIP {
		t.Fatalf("third connection: %q", l)
	}
	if got := m.Accepted.Value(); got != 2 {
		t.Errorf("accepted %d, want 2", got)
	}
	if got := m.Refused.Of(WhyTooManyFromIP).Value(); got != 1 {
		t.Errorf("refused (too many from IP) %d, want 1", got)
	}
	if got := m.Refused.Of(WhyTooMany).Value(); got != 0 {
		t.Errorf("refused (too many) %d, want 0", got)
	}
	if got := m.Live.Value(); got != 2 {
		t.Errorf("live %v, want 2", got)
	}
	a.nc.Close()
	b.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for m.Live.Value() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("live %v after both clients left, want 0", m.Live.Value())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
