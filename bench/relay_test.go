package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseMesg(t *testing.T) {
	for _, tc := range []struct {
		rec  string
		want int
		ok   bool
	}{
		{"sess=0 quit=0 mesg=12\r", 12, true},
		{"\nsess=3 quit=2 mesg=5000\r", 5000, true},
		{"mesg=0", 0, true},
		{"sess=1 quit=1\r", 0, false},
		{"sess=1 quit=1 mesg=\r", 0, false},
		{"sess=1 quit=1 mesg=x1\r", 0, false},
		{"", 0, false},
	} {
		got, ok := parseMesg(tc.rec)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseMesg(%q) = %d, %v; want %d, %v", tc.rec, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCountingSinkRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		target  int
		count   int
		reached bool
	}{
		{"reaches", "sess=0 quit=0 mesg=1\rsess=0 quit=0 mesg=2\rsess=1 quit=1 mesg=3\r", 3, 3, true},
		{"short", "sess=0 quit=0 mesg=1\rsess=0 quit=0 mesg=2\r", 3, 2, false},
		{"last record without its return", "sess=0 quit=0 mesg=1\rsess=0 quit=0 mesg=4", 4, 4, true},
		{"counts never go back", "sess=0 quit=0 mesg=5\rsess=0 quit=0 mesg=2\r", 6, 5, false},
		{"garbage between", "smtp-sink: warning: x\nsess=0 quit=0 mesg=2\r\r", 2, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &countingSink{target: tc.target, all: make(chan struct{})}
			s.read(strings.NewReader(tc.out))
			if got := s.count(); got != tc.count {
				t.Errorf("count = %d, want %d", got, tc.count)
			}
			reached := false
			select {
			case <-s.all:
				reached = true
			default:
			}
			if reached != tc.reached {
				t.Errorf("reached = %v, want %v", reached, tc.reached)
			}
			if reached && s.allAt.IsZero() {
				t.Error("all closed without allAt")
			}
		})
	}
}

// TestCountingSinkReal runs the real smtp-sink and smtp-source on 127.0.0.1:
// the sink's counters must reach exactly the number of messages sent.
func TestCountingSinkReal(t *testing.T) {
	for _, tool := range []string{"smtp-sink", "smtp-source"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (apt-get install postfix)", tool)
		}
	}
	const n = 37
	sk, err := startCountingSink(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.stop()
	out, err := exec.Command("smtp-source", "-d", "-s", "4", "-m", strconv.Itoa(n), "-l", "512",
		"-f", relaySender, "-t", relayRcpt, sk.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v: %s", err, out)
	}
	select {
	case <-sk.all:
	case <-time.After(20 * time.Second):
		t.Fatalf("the sink counted %d of %d messages", sk.count(), n)
	}
	// smtp-source has ended: nothing more may arrive.
	time.Sleep(100 * time.Millisecond)
	if got := sk.count(); got != n {
		t.Errorf("the sink counted %d messages, want %d", got, n)
	}
	sk.stop()
	select {
	case <-sk.exited:
	default:
		t.Error("smtp-sink still runs after stop")
	}
}
