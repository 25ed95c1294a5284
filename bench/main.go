// Command bench measures posthorn side by side with Postfix and with Postfix's
// smtp-sink, the protocol-only ceiling of the machine: the same workload
// against each, one after the other, repeated, printing the median, the spread
// and the ratios in one table per workload, then one summary table of every
// figure of every workload run (summary.go), in Markdown too for the README.
//
//	go run ./bench [-workload all|accept|relay|pop3|imap] [-runs 3] [-messages 5000] [-sessions 20] [-size 4096]
//	               [-imap-messages 50000] [-imap-duration 30s] [-imap-idle 10000]
//
// Four workloads:
//
//   - accept: SMTP accept-and-store. smtp-source into smtp-sink, into posthorn
//     (a local mailbox), and into Postfix delivering to Dovecot over LMTP; timed
//     until the mailbox holds every message.
//   - relay: smtp-source from a client allowed to relay, for a remote domain,
//     through posthorn (smart_host) and through Postfix (relayhost) to a
//     discarding smtp-sink, and straight into that sink (the ceiling); timed
//     until the sink has counted every message.
//   - pop3: a mailbox of -messages messages filled through posthorn's SMTP
//     and through Dovecot's LMTP, then one POP3 session that RETRs them all,
//     timed against posthorn and against Dovecot's POP3 (dovecot-pop3d).
//   - imap: against posthorn's IMAP and Dovecot's (dovecot-imapd): SELECT +
//     UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE) of -imap-messages
//     messages, UID SEARCH BODY on them, 20 sessions of mixed commands with
//     consistency checks, and the memory of -imap-idle connections in IDLE
//     (imap.go says more).
//
// It needs Postfix's smtp-source and smtp-sink (Debian package postfix), and for
// the Postfix columns Postfix and Dovecot themselves (postfix, dovecot-core,
// dovecot-lmtpd) and root, since Postfix runs as root. Missing pieces are
// skipped with a line saying how to install them. Everything it starts
// listens on 127.0.0.1 and is stopped at the end; every run is bounded in
// time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

var (
	runs     = flag.Int("runs", 3, "runs of each measurement (the median is shown)")
	messages = flag.Int("messages", 5000, "messages per run")
	sessions = flag.Int("sessions", 20, "parallel SMTP sessions")
	size     = flag.Int("size", 4096, "message size in bytes")
	keep     = flag.Bool("keep", false, "keep the temporary directories")
	workload = flag.String("workload", "all", "which workload: accept (SMTP accept-and-store), relay (through a smart host to a sink), pop3 (RETR of a whole mailbox), imap (fetch, search, mixed sessions, idle memory), or all")
)

const (
	rcptDomain = "example.org"
	rcptUser   = "bench"
	sender     = "sender@remote.example"
)

// system is one server under test.
type system interface {
	name() string
	// start prepares a fresh instance and returns the SMTP address.
	start(dir string) (string, error)
	// stored returns how many messages have reached the mailbox.
	stored() (int, error)
	// peakRSS returns the server's peak resident memory in bytes, 0 if unknown.
	peakRSS() int64
	// pids are the server's processes now; none for the sink, whose
	// memory is not measured.
	pids() []int
	stop()
}

type measurement struct {
	rates []float64 // messages per second, one per run
	rss   []int64
	// PSS summed over the system's processes in MB: a second after the
	// start, and the highest sampled during the run.
	idle, peak []float64
	err        error
}

func main() {
	flag.Parse()
	switch *workload {
	case "all", "accept", "relay", "pop3", "imap":
	default:
		fmt.Fprintf(os.Stderr, "bench: -workload %q: want accept, relay, pop3, imap or all\n", *workload)
		os.Exit(2)
	}
	if _, err := exec.LookPath("smtp-source"); err != nil {
		fmt.Println("bench: smtp-source is missing: apt-get install postfix (it brings smtp-source and smtp-sink)")
		os.Exit(1)
	}
	root, err := os.MkdirTemp("", "posthorn-bench-")
	if err != nil {
		fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(root)
	}
	// Postfix and Dovecot run parts of themselves as their own users, who must
	// reach their directories in here.
	os.Chmod(root, 0o755)
	bin := filepath.Join(root, "posthorn")
	build := exec.Command("go", "build", "-o", bin, "./cmd/posthorn")
	build.Dir = moduleRoot()
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fatal(fmt.Errorf("building posthorn: %w", err))
	}

	started, loadBefore := time.Now(), loadAvg()
	fmt.Printf("bench: %d cores, load average %s at the start\n", runtimeCPUs(), loadBefore)
	if *workload == "all" || *workload == "accept" {
		acceptWorkload(root, bin)
	}
	if *workload == "all" || *workload == "relay" {
		relayWorkload(root, bin)
	}
	if *workload == "all" || *workload == "pop3" {
		pop3Workload(root, bin)
	}
	if *workload == "all" || *workload == "imap" {
		imapWorkload(root, bin)
	}
	if len(ceilingRuns) > 0 {
		r := &summaryRow{figure: "protocol-only ceiling: smtp-source -> smtp-sink, msgs/s", format: "%.0f"}
		r.vals[colSink] = ceilingRuns
		addSummary(r)
	}
	writeSummary(started, loadBefore)
}

// ceilingRuns are the rates of smtp-source straight into smtp-sink, from
// the accept and relay workloads (the same smtp-source command).
var ceilingRuns []float64

// acceptWorkload measures SMTP accept-and-store: how fast each system takes
// mail for a local mailbox and has it stored.
func acceptWorkload(root, bin string) {
	systems := []system{&sink{}, &posthorn{bin: bin}}
	if why := postfixDovecotMissing(); why != "" {
		fmt.Println("bench: skipping Postfix→Dovecot:", why)
	} else {
		systems = append(systems, &postfixDovecot{})
	}

	fmt.Printf("SMTP accept-and-store: smtp-source -d -s %d -m %d -l %d, %d runs each, %d cores, load average %s\n",
		*sessions, *messages, *size, *runs, runtimeCPUs(), noteLoad("accept start"))
	results := map[string]*measurement{}
	for _, sys := range systems {
		m := &measurement{}
		results[sys.name()] = m
		for r := 0; r < *runs; r++ {
			dir := filepath.Join(root, fmt.Sprintf("accept-%s-%d", strings.Fields(sys.name())[0], r))
			os.MkdirAll(dir, 0o755)
			res, err := runOnce(sys, dir)
			if err != nil {
				m.err = err
				fmt.Printf("  %s run %d: %v\n", sys.name(), r+1, err)
				break
			}
			mem := ""
			if res.peakPSS > 0 {
				mem = fmt.Sprintf(" (memory: %.1f MB idle, %.1f MB at peak, PSS summed over its processes)", mb(res.idlePSS), mb(res.peakPSS))
				m.idle = append(m.idle, mb(res.idlePSS))
				m.peak = append(m.peak, mb(res.peakPSS))
			}
			fmt.Printf("  %s run %d: %.0f msgs/s%s\n", sys.name(), r+1, res.rate, mem)
			m.rates = append(m.rates, res.rate)
			m.rss = append(m.rss, res.rss)
		}
	}
	printTable(systems, results)
	fmt.Printf("load average after the runs: %s\n\n", noteLoad("accept end"))

	ph, pd, sk := results[(&posthorn{}).name()], results[(&postfixDovecot{}).name()], results[(&sink{}).name()]
	rate := &summaryRow{figure: "SMTP accept-and-store, msgs/s", format: "%.0f", other: "Postfix->Dovecot"}
	idle := &summaryRow{figure: "memory idle after start, MB (PSS)", format: "%.1f", lowerBetter: true, other: "Postfix+Dovecot"}
	peak := &summaryRow{figure: "memory at peak, SMTP accept, MB (PSS)", format: "%.1f", lowerBetter: true, other: "Postfix+Dovecot",
		note: "PSS summed over the processes, sampled every 100 ms; posthorn's the higher of that and its VmHWM"}
	for col, m := range map[int]*measurement{colPosthorn: ph, colOther: pd, colSink: sk} {
		if m == nil {
			continue
		}
		rate.vals[col] = m.rates
		if col != colSink {
			idle.vals[col], peak.vals[col] = m.idle, m.peak
		}
	}
	if sk != nil {
		ceilingRuns = append(ceilingRuns, sk.rates...)
	}
	addSummary(rate)
	addSummary(idle)
	addSummary(peak)
}

// acceptRun is one run of the accept workload.
type acceptRun struct {
	rate             float64 // messages per second
	rss              int64   // peak RSS of the server (posthorn: VmHWM)
	idlePSS, peakPSS int64   // summed over the system's processes; 0 for the sink
}

func runOnce(sys system, dir string) (res acceptRun, err error) {
	addr, err := sys.start(dir)
	defer sys.stop()
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var mem *memSampler
	if sys.pids() != nil {
		// Idle: up, listening, nothing sent yet.
		time.Sleep(time.Second)
		_, res.idlePSS = memoryOf(sys.pids())
		mem = sampleMemory(sys.pids)
	}
	start := time.Now()
	src := exec.CommandContext(ctx, "smtp-source", "-d",
		"-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(*messages), "-l", strconv.Itoa(*size),
		"-f", sender, "-t", rcptUser+"@"+rcptDomain, addr)
	out, err := src.CombinedOutput()
	if mem != nil {
		// A single process's VmHWM is its exact peak, which samples can
		// miss in a run of a second or two: the higher of the two counts.
		defer func() {
			_, p := mem.end()
			res.peakPSS = max(p, res.rss)
		}()
	}
	if err != nil {
		return res, fmt.Errorf("smtp-source: %v: %s", err, out)
	}
	// For a store-and-forward system (Postfix) the message is stored only when
	// the mailbox has it; wait for that.
	for {
		n, err := sys.stored()
		if err != nil {
			return res, err
		}
		if n >= *messages {
			break
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("only %d of %d messages stored", n, *messages)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	res.rate = float64(*messages) / elapsed.Seconds()
	res.rss = sys.peakRSS()
	return res, nil
}

func printTable(systems []system, results map[string]*measurement) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "system\tmsgs/s (median)\tspread\tpeak RSS\t")
	for _, sys := range systems {
		m := results[sys.name()]
		if len(m.rates) == 0 {
			fmt.Fprintf(tw, "%s\tfailed: %v\t\t\t\n", sys.name(), m.err)
			continue
		}
		lo, hi := minMax(m.rates)
		rss := "-"
		if r := maxInt(m.rss); r > 0 {
			rss = fmt.Sprintf("%.1f MB", float64(r)/1e6)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f–%.0f\t%s\t\n", sys.name(), median(m.rates), lo, hi, rss)
	}
	tw.Flush()
	ph := results[(&posthorn{}).name()]
	if ph == nil || len(ph.rates) == 0 {
		return
	}
	for _, other := range []string{(&sink{}).name(), (&postfixDovecot{}).name()} {
		if o := results[other]; o != nil && len(o.rates) > 0 {
			fmt.Printf("posthorn / %s: %.2f\n", other, median(ph.rates)/median(o.rates))
		}
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (float64, float64) {
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func maxInt(v []int64) int64 {
	var m int64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// loadAvg returns the 1-minute load average as /proc/loadavg has it: other
// work on the machine during a run shows in it and skews the figures.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func runtimeCPUs() int {
	n := 0
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(addr string, proc *exec.Cmd) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// peakRSSOf reads VmHWM of a process.
func peakRSSOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// sink is Postfix's smtp-sink: it speaks SMTP and stores nothing.
type sink struct {
	cmd   *exec.Cmd
	count int
}

func (s *sink) name() string { return "smtp-sink (stores nothing)" }

func (s *sink) start(dir string) (string, error) {
	addr := freeAddr()
	args := []string{"-c", addr, "1000"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	s.cmd = exec.Command("smtp-sink", args...)
	if err := s.cmd.Start(); err != nil {
		return "", err
	}
	return addr, waitListening(addr, s.cmd)
}

func (s *sink) stored() (int, error) { return *messages, nil }
func (s *sink) pids() []int          { return nil }
func (s *sink) peakRSS() int64       { return 0 }
func (s *sink) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// posthorn is the system under test, built from this checkout.
type posthorn struct {
	bin  string
	dir  string
	cmd  *exec.Cmd
	st   store.Store
	mbox int64
}

func (p *posthorn) name() string { return "posthorn" }

func (p *posthorn) start(dir string) (string, error) {
	p.dir = dir
	cmd, addr, err := startPosthorn(p.bin, dir, "")
	p.cmd = cmd
	if err != nil {
		return "", err
	}
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		return "", err
	}
	p.st = st
	ctx := context.Background()
	a, err := st.GetAccount(ctx, rcptUser)
	if err != nil {
		return "", err
	}
	mb, err := st.GetMailbox(ctx, a.ID, store.Inbox)
	if err != nil {
		return "", err
	}
	p.mbox = mb.ID
	return addr, nil
}

// startPosthorn writes a fresh installation into dir (posthorn init, the
// account rcptUser), with smart_host set when smartHost is not empty, starts
// "posthorn serve" on a free 127.0.0.1 port and returns it with that address.
// The returned command, once started, must be stopped even on an error.
func startPosthorn(bin, dir, smartHost string) (*exec.Cmd, string, error) {
	addr := freeAddr()
	if out, err := exec.Command(bin, "init", "--hostname", "mx."+rcptDomain, "--domain", rcptDomain, "--dir", dir, "--admin", rcptUser).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("posthorn init: %v: %s", err, out)
	}
	cfgPath := filepath.Join(dir, "posthorn.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, "", err
	}
	const starterListen = `listen = ["0.0.0.0:25", "[::]:25"]`
	if !strings.Contains(string(cfg), starterListen) {
		return nil, "", fmt.Errorf("%s: no line %s to replace (has posthorn init changed?)", cfgPath, starterListen)
	}
	ours := fmt.Sprintf("listen = %q", addr)
	if smartHost != "" {
		// Under [smtp], next to listen: everything not local goes there.
		ours += fmt.Sprintf("\nsmart_host = %q", smartHost)
	}
	text := strings.Replace(string(cfg), starterListen, ours, 1)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		return nil, "", err
	}
	add := exec.Command(bin, "user", "add", rcptUser, "--password-stdin", "--config", cfgPath)
	add.Stdin = strings.NewReader("bench-password\n")
	if out, err := add.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("posthorn user add: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	// Its log, one line per transaction as Postfix writes its maillog.
	logFile, err := os.Create(filepath.Join(dir, "posthorn.log"))
	if err != nil {
		return nil, "", err
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	return cmd, addr, waitListening(addr, cmd)
}

// stopPosthorn ends a server as an administrator would (SIGTERM), and kills it
// if it is still there after 40 s (it allows transactions 30 s to finish).
func stopPosthorn(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (p *posthorn) stored() (int, error) {
	mb, err := p.st.GetMailboxByID(context.Background(), p.mbox)
	if err != nil {
		return 0, err
	}
	return int(mb.Messages), nil
}

func (p *posthorn) peakRSS() int64 { return peakRSSOf(p.cmd.Process.Pid) }

func (p *posthorn) pids() []int {
	if p.cmd == nil || p.cmd.Process == nil {
		return []int{}
	}
	return []int{p.cmd.Process.Pid}
}

func (p *posthorn) stop() {
	if p.st != nil {
		p.st.Close()
		p.st = nil
	}
	stopPosthorn(p.cmd)
	p.cmd = nil
}

// postfixDovecot is Postfix accepting mail and handing it to Dovecot over LMTP,
// each with its default durability, configured in a temporary directory.
type postfixDovecot struct {
	pf      *postfixInstance
	dcConf  string
	mailDir string
}

func (p *postfixDovecot) name() string { return "postfix -> dovecot (LMTP)" }

func postfixDovecotMissing() string {
	for _, tool := range []string{"dovecot", "doveadm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (apt-get install dovecot-core dovecot-lmtpd)"
		}
	}
	return postfixMissing()
}

func (p *postfixDovecot) start(dir string) (string, error) {
	smtpAddr, lmtpAddr := freeAddr(), freeAddr()
	_, lmtpPort, _ := net.SplitHostPort(lmtpAddr)
	p.mailDir = filepath.Join(dir, "mail")
	dc := filepath.Join(dir, "dovecot")
	for _, d := range []string{dc + "/run", dc + "/state", p.mailDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	os.Chmod(dir, 0o755)
	run("chown", "mail:mail", p.mailDir)
	p.dcConf = filepath.Join(dc, "dovecot.conf")
	dovecotConf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
mail_location = maildir:%[2]s/%%n
first_valid_uid = 1
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=mail gid=mail home=%[2]s/%%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[3]s
  }
}
`, dc, p.mailDir, lmtpPort)
	if err := os.WriteFile(p.dcConf, []byte(dovecotConf), 0o644); err != nil {
		return "", err
	}
	// Dovecot forks into the background; its output goes to log_path, and a
	// pipe here would be held open by the daemon.
	if err := exec.Command("dovecot", "-c", p.dcConf).Run(); err != nil {
		return "", fmt.Errorf("dovecot: %v (see %s/dovecot.log)", err, dc)
	}
	pf, err := startPostfix(dir, smtpAddr, fmt.Sprintf(`virtual_mailbox_domains = %s
virtual_transport = lmtp:inet:%s
`, rcptDomain, lmtpAddr))
	p.pf = pf
	if err != nil {
		return "", err
	}
	return smtpAddr, nil
}

func (p *postfixDovecot) stored() (int, error) {
	ents, err := os.ReadDir(filepath.Join(p.mailDir, rcptUser, "new"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return len(ents), err
}

func (p *postfixDovecot) peakRSS() int64 { return 0 }

func (p *postfixDovecot) pids() []int {
	out := p.pf.pids()
	if p.dcConf != "" {
		out = append(out, dovecotPids(filepath.Join(filepath.Dir(p.dcConf), "run"))...)
	}
	return out
}

// dovecotPids are Dovecot's master (its pid in base_dir's master.pid) and
// every process under it.
func dovecotPids(baseDir string) []int {
	b, err := os.ReadFile(filepath.Join(baseDir, "master.pid"))
	if err != nil {
		return []int{}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return []int{}
	}
	return descendants(pid)
}

func (p *postfixDovecot) stop() {
	p.pf.stop()
	p.pf = nil
	if p.dcConf != "" {
		exec.Command("doveadm", "-c", p.dcConf, "stop").Run()
		p.dcConf = ""
	}
}
