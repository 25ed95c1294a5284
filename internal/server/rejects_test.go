package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The refusals the SMTP server logs are kept for the status page, newest
// first, at most rejectsKept; other lines are not; the log itself gets
// every line as before, and no Info line when it is set quieter.
func TestRejectRing(t *testing.T) {
	var out bytes.Buffer
	ring := &rejectRing{}
	log := slog.New(rejectHandler{inner: slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}), ring: ring})
	log.Info("smtp transaction", "client_ip", "192.0.2.1", "result", "accepted")
	log.Info("smtp recipient rejected", "client_ip", "192.0.2.2", "rcpt", "nobody@example.org", "reason", "User unknown")
	log.With("client_ip", "192.0.2.3").Info("smtp connection rejected", "reason", "listed by zen.example")
	got := ring.latest()
	if len(got) != 2 || got[0].Client != "192.0.2.3" || got[0].What != "connection rejected" ||
		got[1].Client != "192.0.2.2" || !strings.Contains(got[1].Detail, "rcpt=nobody@example.org") || !strings.Contains(got[1].Detail, "reason=User unknown") {
		t.Fatalf("kept %+v", got)
	}
	if out.Len() != 0 {
		t.Errorf("Info lines reached a Warn log: %s", out.String())
	}
	for i := 0; i < rejectsKept+10; i++ {
		log.Info("smtp sender rejected", "client_ip", "198.51.100.1")
	}
	if n := len(ring.latest()); n != rejectsKept {
		t.Errorf("%d kept, want %d", n, rejectsKept)
	}
	log.Warn("smtp delivery failed", "err", "x")
	if !strings.Contains(out.String(), "smtp delivery failed") {
		t.Errorf("a Warn line did not reach the log: %q", out.String())
	}
}
