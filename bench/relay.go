package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The relay workload: mail for a remote domain from a client allowed to relay
// (127.0.0.1), through the system under test to a next hop that discards it.
const (
	relayRcpt   = "rcpt@remote.example"
	relaySender = "sender@bench.example"
)

// relaySystem is one system on the relay path: it takes mail on the address
// start returns and passes it to nextHop.
type relaySystem interface {
	name() string
	start(dir, nextHop string) (string, error)
	peakRSS() int64 // 0 if unknown
	pids() []int    // nil for the ceiling, whose memory is not measured
	stop()
}

// relayResult is one run: when smtp-source was done and when the sink had
// every message, from the start of smtp-source.
type relayResult struct {
	accepted, relayed time.Duration
	rss               int64
	peakPSS           int64 // summed over the system's processes, sampled
	extra             int   // messages the sink received beyond -messages (duplicates)
}

func relayWorkload(root, bin string) {
	systems := []relaySystem{&ceiling{}, &posthornRelay{bin: bin}}
	if why := postfixMissing(); why != "" {
		fmt.Println("bench: skipping Postfix relayhost:", why)
	} else {
		systems = append(systems, &postfixRelay{})
	}
	fmt.Printf("Relay through a smart host: smtp-source -d -s %d -m %d -l %d to %s, next hop smtp-sink, %d runs each (in turn), %d cores, load average %s\n",
		*sessions, *messages, *size, relayRcpt, *runs, runtimeCPUs(), noteLoad("relay start"))
	results := map[string][]relayResult{}
	errs := map[string]error{}
	// Round by round rather than system by system, so that a machine that
	// slows down (or warms up) during the runs does so for every column alike.
	for r := 0; r < *runs; r++ {
		for _, sys := range systems {
			if errs[sys.name()] != nil {
				continue
			}
			dir := filepath.Join(root, fmt.Sprintf("relay-%s-%d", strings.Fields(sys.name())[0], r))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				fatal(err)
			}
			res, err := relayOnce(sys, dir)
			if err != nil {
				errs[sys.name()] = err
				fmt.Printf("  %s run %d: %v\n", sys.name(), r+1, err)
				continue
			}
			note := ""
			if res.extra > 0 {
				note = fmt.Sprintf(", %d duplicates at the sink", res.extra)
			}
			fmt.Printf("  %s run %d: %.0f msgs/s (smtp-source done after %.2f s, the sink had all %d after %.2f s%s)\n",
				sys.name(), r+1, rate(res.relayed), res.accepted.Seconds(), *messages, res.relayed.Seconds(), note)
			results[sys.name()] = append(results[sys.name()], res)
		}
	}
	printRelayTable(systems, results, errs)
	fmt.Printf("load average after the runs: %s\n", noteLoad("relay end"))

	relayed := &summaryRow{figure: "relay through a smart host, msgs/s", format: "%.0f", other: "Postfix"}
	peak := &summaryRow{figure: "memory at peak, relay, MB (PSS)", format: "%.1f", lowerBetter: true, other: "Postfix",
		note: "as for SMTP accept"}
	for col, name := range map[int]string{colPosthorn: (&posthornRelay{}).name(), colOther: (&postfixRelay{}).name(), colSink: (ceiling{}).name()} {
		for _, r := range results[name] {
			relayed.vals[col] = append(relayed.vals[col], rate(r.relayed))
			if r.peakPSS > 0 {
				peak.vals[col] = append(peak.vals[col], mb(r.peakPSS))
			}
		}
	}
	ceilingRuns = append(ceilingRuns, relayed.vals[colSink]...)
	addSummary(relayed)
	addSummary(peak)
}

func rate(d time.Duration) float64 { return float64(*messages) / d.Seconds() }

// relayOnce starts a fresh sink and a fresh instance of sys in dir, sends the
// workload and waits until the sink has counted every message.
func relayOnce(sys relaySystem, dir string) (relayResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sk, err := startCountingSink(dir, *messages)
	if err != nil {
		return relayResult{}, err
	}
	defer sk.stop()
	addr, err := sys.start(dir, sk.addr)
	defer sys.stop()
	if err != nil {
		return relayResult{}, err
	}
	var mem *memSampler
	if sys.pids() != nil {
		mem = sampleMemory(sys.pids)
		defer func() {
			if mem != nil {
				mem.end()
			}
		}()
	}
	start := time.Now()
	src := exec.CommandContext(ctx, "smtp-source", "-d",
		"-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(*messages), "-l", strconv.Itoa(*size),
		"-f", relaySender, "-t", relayRcpt, addr)
	if out, err := src.CombinedOutput(); err != nil {
		return relayResult{}, fmt.Errorf("smtp-source: %v: %s", err, out)
	}
	res := relayResult{accepted: time.Since(start)}
	select {
	case <-sk.all:
		// The sink may have had all before smtp-source ended (it counts at
		// ".", the client still waits for its 250 and QUITs): the run is done
		// when both are.
		res.relayed = max(sk.allAt.Sub(start), res.accepted)
	case <-sk.exited:
		return relayResult{}, fmt.Errorf("smtp-sink ended after %d of %d messages: %v", sk.count(), *messages, sk.err)
	case <-ctx.Done():
		return relayResult{}, fmt.Errorf("timed out: the sink has %d of %d messages", sk.count(), *messages)
	}
	res.rss = sys.peakRSS()
	if mem != nil {
		_, res.peakPSS = mem.end()
		res.peakPSS = max(res.peakPSS, res.rss) // VmHWM, where known: exact
		mem = nil
	}
	// Duplicates show when the system has stopped (a retry after a lost 250).
	sys.stop()
	if n := sk.count(); n > *messages {
		res.extra = n - *messages
	}
	return res, nil
}

// countingSink is smtp-sink with its running counters (-c) read from its
// standard output: "sess=N quit=N mesg=N" and a carriage return, written
// (and flushed) whenever a session ends, QUIT comes, or "." is received.
type countingSink struct {
	cmd    *exec.Cmd
	addr   string
	target int

	mu     sync.Mutex
	mesg   int
	allAt  time.Time     // when mesg reached target; set before all is closed
	all    chan struct{} // closed when mesg reaches target
	exited chan struct{} // closed when smtp-sink has ended
	err    error         // why it ended; read after exited
}

func startCountingSink(dir string, target int) (*countingSink, error) {
	s := &countingSink{addr: freeAddr(), target: target, all: make(chan struct{}), exited: make(chan struct{})}
	args := []string{"-c", s.addr, "1000"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	s.cmd = exec.Command("smtp-sink", args...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if stderr, err := os.Create(filepath.Join(dir, "smtp-sink.err")); err == nil {
		defer stderr.Close()
		s.cmd.Stderr = stderr
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.read(out)
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	if err := waitListening(s.addr, s.cmd); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// read follows the counters until smtp-sink's output ends.
func (s *countingSink) read(out io.Reader) {
	br := bufio.NewReader(out)
	for {
		rec, err := br.ReadString('\r')
		if n, ok := parseMesg(rec); ok {
			s.mu.Lock()
			if n > s.mesg {
				s.mesg = n
			}
			if s.mesg >= s.target && s.allAt.IsZero() {
				s.allAt = time.Now()
				close(s.all)
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// parseMesg reads the message count from one counter record,
// "sess=3 quit=3 mesg=10".
func parseMesg(rec string) (int, bool) {
	for _, f := range strings.Fields(rec) {
		if v, ok := strings.CutPrefix(f, "mesg="); ok {
			n, err := strconv.Atoi(v)
			return n, err == nil
		}
	}
	return 0, false
}

func (s *countingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mesg
}

func (s *countingSink) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
}

// ceiling is no system at all: smtp-source straight into the sink.
type ceiling struct{}

func (ceiling) name() string                              { return "smtp-sink alone (ceiling)" }
func (ceiling) start(dir, nextHop string) (string, error) { return nextHop, nil }
func (ceiling) peakRSS() int64                            { return 0 }
func (ceiling) pids() []int                               { return nil }
func (ceiling) stop()                                     {}

// posthornRelay is posthorn with smart_host pointing at the sink; 127.0.0.1
// may relay without a table entry. Default durability: each message is in
// the queue, fsynced, before its 250.
type posthornRelay struct {
	bin string
	cmd *exec.Cmd
}

func (p *posthornRelay) name() string { return "posthorn (smart_host)" }

func (p *posthornRelay) start(dir, nextHop string) (string, error) {
	host, port, err := net.SplitHostPort(nextHop)
	if err != nil {
		return "", err
	}
	cmd, addr, err := startPosthorn(p.bin, dir, fmt.Sprintf("[%s]:%s", host, port))
	p.cmd = cmd
	return addr, err
}

func (p *posthornRelay) peakRSS() int64 {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return peakRSSOf(p.cmd.Process.Pid)
}

func (p *posthornRelay) pids() []int {
	if p.cmd == nil || p.cmd.Process == nil {
		return []int{}
	}
	return []int{p.cmd.Process.Pid}
}

func (p *posthornRelay) stop() {
	stopPosthorn(p.cmd)
	p.cmd = nil
}

// postfixRelay is Postfix with relayhost pointing at the sink, mynetworks
// 127.0.0.0/8, otherwise Postfix's defaults (queue files fsynced before the
// 250, at most 20 connections to the relayhost).
type postfixRelay struct {
	pf *postfixInstance
}

func (p *postfixRelay) name() string { return "postfix (relayhost)" }

func (p *postfixRelay) start(dir, nextHop string) (string, error) {
	host, port, err := net.SplitHostPort(nextHop)
	if err != nil {
		return "", err
	}
	smtpAddr := freeAddr()
	pf, err := startPostfix(dir, smtpAddr, fmt.Sprintf("relayhost = [%s]:%s\n", host, port))
	p.pf = pf
	if err != nil {
		return "", err
	}
	return smtpAddr, nil
}

func (p *postfixRelay) peakRSS() int64 { return 0 }

func (p *postfixRelay) pids() []int { return p.pf.pids() }

func (p *postfixRelay) stop() {
	p.pf.stop()
	p.pf = nil
}

func printRelayTable(systems []relaySystem, results map[string][]relayResult, errs map[string]error) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "system\trelayed msgs/s (median)\tspread\taccepted msgs/s (median)\tpeak RSS\t")
	medians := map[string]float64{}
	for _, sys := range systems {
		rs := results[sys.name()]
		if len(rs) == 0 {
			err := errs[sys.name()]
			if err == nil {
				err = errors.New("no run")
			}
			fmt.Fprintf(tw, "%s\tfailed: %v\t\t\t\t\n", sys.name(), err)
			continue
		}
		var relayed, accepted []float64
		var rss []int64
		for _, r := range rs {
			relayed = append(relayed, rate(r.relayed))
			accepted = append(accepted, rate(r.accepted))
			rss = append(rss, r.rss)
		}
		medians[sys.name()] = median(relayed)
		lo, hi := minMax(relayed)
		mem := "-"
		if m := maxInt(rss); m > 0 {
			mem = fmt.Sprintf("%.1f MB", float64(m)/1e6)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f–%.0f\t%.0f\t%s\t\n", sys.name(), median(relayed), lo, hi, median(accepted), mem)
	}
	tw.Flush()
	ceil, ph, pf := (ceiling{}).name(), (&posthornRelay{}).name(), (&postfixRelay{}).name()
	short := map[string]string{ceil: "ceiling", ph: "posthorn", pf: "Postfix"}
	for _, p := range [][2]string{{ph, ceil}, {pf, ceil}, {ph, pf}} {
		a, okA := medians[p[0]]
		b, okB := medians[p[1]]
		if okA && okB {
			fmt.Printf("%s / %s: %.2f\n", short[p[0]], short[p[1]], a/b)
		}
	}
	if a, ok := medians[ph]; ok {
		if b, ok := medians[ceil]; ok {
			verdict := "met"
			if a/b < 0.25 {
				verdict = "NOT met"
			}
			fmt.Printf("target posthorn >= 0.25 of the ceiling: %s\n", verdict)
		}
	}
}
