package imapd

import (
	"strings"
	"testing"
	"time"
)

// Tagged answers are counted by status, a line that does not parse as BAD,
// and the session's end by its reason. Not parallel: the counters are the
// process's.
func TestCommandAndSessionMetrics(t *testing.T) {
	ts := newTestServer(t, serverOptions{allowPlaintext: true}, "pp")
	okC, noC, badC := commandResults.Of("OK"), commandResults.Of("NO"), commandResults.Of("BAD")
	logout, closed := sessionEnds.Of("logout"), sessionEnds.Of("connection closed")
	ok0, no0, bad0, lo0, cl0 := okC.Value(), noC.Value(), badC.Value(), logout.Value(), closed.Value()

	c := ts.dial()
	c.expect("LOGIN pp wrong-password", "NO")
	c.ok("LOGIN pp pw-pp")           // OK
	c.ok("SELECT INBOX")             // OK
	c.expect("SELECT Nowhere", "NO") // NO
	c.expect("FROBNICATE", "BAD")    // BAD: unknown
	c.send("a99 FETCH (")            // BAD: does not parse
	if l := c.line(); !strings.Contains(l, "BAD") {
		t.Fatalf("unparsable command answered %q", l)
	}
	c.cmd("LOGOUT") // answers itself: not counted as a tagged result
	waitCount(t, func() uint64 { return logout.Value() - lo0 }, 1)

	d := ts.dial()
	d.nc.Close()
	waitCount(t, func() uint64 { return closed.Value() - cl0 }, 1)

	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"OK", okC.Value() - ok0, 2},
		{"NO", noC.Value() - no0, 2},
		{"BAD", badC.Value() - bad0, 2},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
}

// waitCount waits for a counter delta that goes up after the client is gone.
func waitCount(t *testing.T, delta func() uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for delta() < want {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := delta(); got != want {
		t.Errorf("counter moved by %d, want %d", got, want)
	}
}
