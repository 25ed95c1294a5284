package pop3d

import (
	"strings"
	"testing"
	"time"
)

// A session's end is counted by its reason. Not parallel: the counters are
// the process's.
func TestSessionEndMetrics(t *testing.T) {
	ts := newTestServer(t, serverOptions{idle: 300 * time.Millisecond}, "pp")
	quit, closed, timeout := sessionEnds.Of("quit"), sessionEnds.Of("closed"), sessionEnds.Of("idle timeout")
	q0, c0, t0 := quit.Value(), closed.Value(), timeout.Value()

	c := ts.dial(nil)
	if r := c.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("QUIT: %q", r)
	}
	c.expectClosed()
	ts.dial(nil).nc.Close()
	idle := ts.dial(nil)
	if l := idle.line(); !strings.HasPrefix(l, "-ERR") { // after the idle timeout
		t.Fatalf("idle client got %q", l)
	}
	idle.expectClosed()

	deadline := time.Now().Add(5 * time.Second)
	for quit.Value()-q0 < 1 || closed.Value()-c0 < 1 || timeout.Value()-t0 < 1 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, d := range []struct {
		name      string
		got, want uint64
	}{
		{"quit", quit.Value() - q0, 1},
		{"closed", closed.Value() - c0, 1},
		{"timeout", timeout.Value() - t0, 1},
	} {
		if d.got != d.want {
			t.Errorf("%s: %d, want %d", d.name, d.got, d.want)
		}
	}
}

// Commands are counted by answer: +OK, or -ERR for a failed one.
func TestCommandMetrics(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	okC, errC := commandResults.Of("ok"), commandResults.Of("err")
	ok0, err0 := okC.Value(), errC.Value()
	c := ts.dial(nil)
	c.cmd("USER pp")
	c.cmd("BOGUS")
	c.cmd("STAT") // before login: -ERR
	c.cmd("QUIT")
	c.expectClosed()
	if got := okC.Value() - ok0; got != 2 {
		t.Errorf("%d commands counted ok, want 2 (USER, QUIT)", got)
	}
	if got := errC.Value() - err0; got != 2 {
		t.Errorf("%d commands counted err, want 2 (BOGUS, STAT before login)", got)
	}
}
