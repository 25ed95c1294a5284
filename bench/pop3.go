package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

// The POP3 workload: a mailbox of -messages messages of -size bytes, filled
// by each system's own delivery (smtp-source into posthorn's SMTP, and into
// Dovecot's LMTP), then one POP3 session that logs in, RETRs every message
// one after the other (each command waits for the previous answer, as
// fetchmail and poplib do) and QUITs without deleting. Each system gets an
// untimed session first (Dovecot builds its index and marks the messages
// seen in it), then -runs timed ones on the same mailbox.

const popPassword = "bench-password"

// popSystem is a POP3 server with a filled mailbox.
type popSystem interface {
	name() string
	// start makes a fresh instance in dir, fills the mailbox of rcptUser
	// with n messages and returns the POP3 address.
	start(dir string, n int) (string, error)
	peakRSS() int64 // 0 if unknown
	pids() []int    // the server's processes now
	stop()
}

type popResult struct {
	elapsed time.Duration
	bytes   int64 // octets of the messages as received, unstuffed, line ends included
}

func pop3Workload(root, bin string) {
	systems := []popSystem{&posthornPOP3{bin: bin}}
	if why := dovecotPOP3Missing(); why != "" {
		fmt.Println("bench: skipping Dovecot POP3:", why)
	} else {
		systems = append(systems, &dovecotPOP3{})
	}
	fmt.Printf("POP3: one session RETRs all of %d messages (smtp-source -l %d) one after the other, %d timed runs each after a warm-up session, %d cores, load average %s\n",
		*messages, *size, *runs, runtimeCPUs(), noteLoad("POP3 start"))
	results := map[string][]popResult{}
	rss := map[string]int64{}
	pss := map[string]int64{}
	errs := map[string]error{}
	for _, sys := range systems {
		dir := filepath.Join(root, "pop3-"+strings.Fields(sys.name())[0])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fatal(err)
		}
		res, peak, err := pop3Runs(sys, dir)
		pss[sys.name()] = peak
		rss[sys.name()] = sys.peakRSS()
		sys.stop()
		if err != nil {
			errs[sys.name()] = err
			fmt.Printf("  %s: %v\n", sys.name(), err)
			continue
		}
		results[sys.name()] = res
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "system\tsession (median)\tspread\tmsgs/s\tMB/s\tpeak RSS\t")
	medians := map[string]float64{}
	for _, sys := range systems {
		res := results[sys.name()]
		if len(res) == 0 {
			fmt.Fprintf(tw, "%s\tfailed: %v\t\t\t\t\t\n", sys.name(), errs[sys.name()])
			continue
		}
		secs := make([]float64, len(res))
		for i, r := range res {
			secs[i] = r.elapsed.Seconds()
		}
		m := median(secs)
		medians[sys.name()] = m
		lo, hi := minMax(secs)
		mem := "-"
		if r := rss[sys.name()]; r > 0 {
			mem = fmt.Sprintf("%.1f MB", float64(r)/1e6)
		}
		fmt.Fprintf(tw, "%s\t%.3f s\t%.3f–%.3f\t%.0f\t%.1f\t%s\t\n", sys.name(), m, lo, hi,
			float64(*messages)/m, float64(res[0].bytes)/m/1e6, mem)
	}
	tw.Flush()
	ph, dc := medians[(&posthornPOP3{}).name()], medians[(&dovecotPOP3{}).name()]
	if ph > 0 && dc > 0 {
		fmt.Printf("posthorn is %.2f times as fast as Dovecot (session time %.3f s against %.3f s)\n", dc/ph, ph, dc)
	}
	fmt.Printf("load average after the runs: %s\n\n", noteLoad("POP3 end"))

	retr := &summaryRow{figure: fmt.Sprintf("POP3 RETR of %d messages in one session, s", *messages), format: "%.3f", lowerBetter: true, other: "Dovecot"}
	peak := &summaryRow{figure: "memory at peak, POP3 sessions, MB (PSS)", format: "%.1f", lowerBetter: true, other: "Dovecot"}
	for col, name := range map[int]string{colPosthorn: (&posthornPOP3{}).name(), colOther: (&dovecotPOP3{}).name()} {
		for _, r := range results[name] {
			retr.vals[col] = append(retr.vals[col], r.elapsed.Seconds())
		}
		if p := pss[name]; p > 0 {
			peak.vals[col] = []float64{mb(p)}
		}
	}
	addSummary(retr)
	addSummary(peak)
}

// pop3Runs fills sys, runs the warm-up session and the timed ones, and
// returns them with the system's peak memory (PSS summed over its
// processes) during the sessions.
func pop3Runs(sys popSystem, dir string) (_ []popResult, peakPSS int64, err error) {
	addr, err := sys.start(dir, *messages)
	if err != nil {
		return nil, 0, err
	}
	mem := sampleMemory(sys.pids)
	defer func() { _, peakPSS = mem.end() }()
	warm, err := popSession(addr, rcptUser, popPassword, *messages)
	if err != nil {
		return nil, 0, fmt.Errorf("warm-up session: %w", err)
	}
	fmt.Printf("  %s warm-up: %.3f s, %d octets\n", sys.name(), warm.elapsed.Seconds(), warm.bytes)
	var out []popResult
	for r := 0; r < *runs; r++ {
		res, err := popSession(addr, rcptUser, popPassword, *messages)
		if err != nil {
			return nil, 0, fmt.Errorf("run %d: %w", r+1, err)
		}
		if res.bytes != warm.bytes {
			return nil, 0, fmt.Errorf("run %d received %d octets, the warm-up %d", r+1, res.bytes, warm.bytes)
		}
		fmt.Printf("  %s run %d: %.3f s (%.0f msgs/s)\n", sys.name(), r+1, res.elapsed.Seconds(), float64(*messages)/res.elapsed.Seconds())
		out = append(out, res)
	}
	return out, 0, nil
}

// popSession is the client: connect, USER/PASS, RETR 1..n, QUIT, timed from
// the connect to the answer to QUIT. It checks that each message arrives
// whole (as many octets as its +OK said, when it says).
func popSession(addr, user, password string, n int) (popResult, error) {
	var res popResult
	start := time.Now()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return res, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Minute))
	r := bufio.NewReaderSize(nc, 64<<10)
	w := bufio.NewWriter(nc)
	ok := func(what string) (string, error) {
		w.Flush()
		l, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		if !strings.HasPrefix(l, "+OK") {
			return "", fmt.Errorf("%s: %q", what, strings.TrimSpace(l))
		}
		return l, nil
	}
	if _, err := ok("greeting"); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "USER %s\r\n", user)
	if _, err := ok("USER"); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "PASS %s\r\n", password)
	if l, err := ok("PASS"); err != nil {
		return res, err
	} else if !strings.Contains(l, " "+strconv.Itoa(n)+" messages") && !strings.Contains(l, "+OK Logged in") {
		return res, fmt.Errorf("PASS: %q: not %d messages", strings.TrimSpace(l), n)
	}
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "RETR %d\r\n", i)
		l, err := ok("RETR " + strconv.Itoa(i))
		if err != nil {
			return res, err
		}
		var got int64
		for {
			line, err := r.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return res, fmt.Errorf("RETR %d: %w", i, err)
			}
			if err == nil && len(line) == 3 && line[0] == '.' {
				break
			}
			if err == nil && line[0] == '.' {
				line = line[1:]
			}
			got += int64(len(line))
		}
		// "+OK 4321 octets" (RFC 1939 section 7 leaves the text free).
		if f := strings.Fields(l); len(f) >= 3 && f[2] == "octets" {
			if want, err := strconv.ParseInt(f[1], 10, 64); err == nil && want != got {
				return res, fmt.Errorf("RETR %d: %d octets received, the answer said %d", i, got, want)
			}
		}
		res.bytes += got
	}
	fmt.Fprintf(w, "QUIT\r\n")
	if _, err := ok("QUIT"); err != nil {
		return res, err
	}
	res.elapsed = time.Since(start)
	return res, nil
}

// fillBySMTP runs smtp-source for n messages to rcptUser@rcptDomain at addr;
// lmtp speaks LMTP (Dovecot).
func fillBySMTP(addr string, n int, lmtp bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"-d", "-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(n), "-l", strconv.Itoa(*size),
		"-f", sender, "-t", rcptUser + "@" + rcptDomain}
	if lmtp {
		args = append([]string{"-L"}, args...)
	}
	out, err := exec.CommandContext(ctx, "smtp-source", append(args, addr)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("smtp-source: %v: %s", err, out)
	}
	return nil
}

// waitFor polls count until it reaches n.
func waitFor(n int, count func() (int, error)) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		c, err := count()
		if err != nil {
			return err
		}
		if c >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d messages stored", c, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// posthornPOP3 is posthorn with SMTP and POP3 on 127.0.0.1.
type posthornPOP3 struct {
	bin string
	cmd *exec.Cmd
}

func (p *posthornPOP3) name() string { return "posthorn" }

func (p *posthornPOP3) start(dir string, n int) (string, error) {
	smtpAddr, popAddr := freeAddr(), freeAddr()
	if out, err := exec.Command(p.bin, "init", "--hostname", "mx."+rcptDomain, "--domain", rcptDomain, "--dir", dir, "--admin", rcptUser).CombinedOutput(); err != nil {
		return "", fmt.Errorf("posthorn init: %v: %s", err, out)
	}
	cfgPath := filepath.Join(dir, "posthorn.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", err
	}
	const starterListen = `listen = ["0.0.0.0:25", "[::]:25"]`
	if !bytes.Contains(cfg, []byte(starterListen)) {
		return "", fmt.Errorf("%s: no line %s to replace (has posthorn init changed?)", cfgPath, starterListen)
	}
	cfg = bytes.Replace(cfg, []byte(starterListen), []byte(fmt.Sprintf("listen = %q", smtpAddr)), 1)
	// From 127.0.0.1 a password may be sent without TLS, as to Dovecot here.
	pop3 := []byte(fmt.Sprintf("[pop3]\nlisten = %q\n", popAddr))
	if bytes.Contains(cfg, []byte("\n[pop3]\n")) {
		cfg = bytes.Replace(cfg, []byte("\n[pop3]\n"), append([]byte("\n"), pop3...), 1)
	} else {
		cfg = append(append(cfg, '\n'), pop3...)
	}
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return "", err
	}
	add := exec.Command(p.bin, "user", "add", rcptUser, "--password-stdin", "--config", cfgPath)
	add.Stdin = strings.NewReader(popPassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		return "", fmt.Errorf("posthorn user add: %v: %s", err, out)
	}
	p.cmd = exec.Command(p.bin, "serve", "--config", cfgPath)
	logFile, err := os.Create(filepath.Join(dir, "posthorn.log"))
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	p.cmd.Stderr = logFile
	if err := p.cmd.Start(); err != nil {
		return "", err
	}
	if err := waitListening(popAddr, p.cmd); err != nil {
		return "", err
	}
	if err := fillBySMTP(smtpAddr, n, false); err != nil {
		return "", err
	}
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		return "", err
	}
	defer st.Close()
	ctx := context.Background()
	a, err := st.GetAccount(ctx, rcptUser)
	if err != nil {
		return "", err
	}
	err = waitFor(n, func() (int, error) {
		mb, err := st.GetMailbox(ctx, a.ID, store.Inbox)
		if err != nil {
			return 0, err
		}
		return int(mb.Messages), nil
	})
	return popAddr, err
}

func (p *posthornPOP3) peakRSS() int64 {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return peakRSSOf(p.cmd.Process.Pid)
}

func (p *posthornPOP3) pids() []int {
	if p.cmd == nil || p.cmd.Process == nil {
		return []int{}
	}
	return []int{p.cmd.Process.Pid}
}

func (p *posthornPOP3) stop() {
	stopPosthorn(p.cmd)
	p.cmd = nil
}

// dovecotPOP3 is Dovecot with LMTP (to fill the Maildir) and POP3 on
// 127.0.0.1, configured in a temporary directory with its defaults
// otherwise: Maildir, index files, \Seen set by RETR.
type dovecotPOP3 struct {
	conf string
	dir  string
}

func (d *dovecotPOP3) name() string { return "dovecot (pop3)" }

func dovecotPOP3Missing() string {
	for _, tool := range []string{"dovecot", "doveadm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (apt-get install dovecot-core dovecot-pop3d dovecot-lmtpd)"
		}
	}
	for _, f := range []string{"/usr/lib/dovecot/pop3", "/usr/lib/dovecot/lmtp"} {
		if _, err := os.Stat(f); err != nil {
			return f + " is missing (apt-get install dovecot-pop3d dovecot-lmtpd)"
		}
	}
	if os.Geteuid() != 0 {
		return "Dovecot must be started as root"
	}
	return ""
}

func (d *dovecotPOP3) start(dir string, n int) (string, error) {
	lmtpAddr, popAddr := freeAddr(), freeAddr()
	_, lmtpPort, _ := net.SplitHostPort(lmtpAddr)
	_, popPort, _ := net.SplitHostPort(popAddr)
	d.dir = dir
	mail := filepath.Join(dir, "mail")
	dc := filepath.Join(dir, "dovecot")
	for _, p := range []string{dc + "/run", dc + "/state", mail} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", err
		}
	}
	os.Chmod(dir, 0o755)
	run("chown", "mail:mail", mail)
	d.conf = filepath.Join(dc, "dovecot.conf")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = lmtp pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:%[2]s/%%n
first_valid_uid = 1
passdb {
  driver = static
  args = password=%[5]s
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
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[4]s
  }
  inet_listener pop3s {
    port = 0
  }
}
`, dc, mail, lmtpPort, popPort, popPassword)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		return "", err
	}
	// Dovecot forks into the background; its output goes to log_path, and a
	// pipe here would be held open by the daemon.
	if err := exec.Command("dovecot", "-c", d.conf).Run(); err != nil {
		return "", fmt.Errorf("dovecot: %v (see %s/dovecot.log)", err, dc)
	}
	if err := waitListening(lmtpAddr, nil); err != nil {
		return "", err
	}
	if err := fillBySMTP(lmtpAddr, n, true); err != nil {
		return "", err
	}
	// LMTP answers after the message is in the Maildir.
	err := waitFor(n, func() (int, error) {
		ents, err := os.ReadDir(filepath.Join(mail, rcptUser, "new"))
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return len(ents), err
	})
	if err != nil {
		return "", err
	}
	return popAddr, waitListening(popAddr, nil)
}

// peakRSS is not measured for Dovecot: its POP3 session is a pop3 process
// of its own, gone by the time the run ends.
func (d *dovecotPOP3) peakRSS() int64 { return 0 }

func (d *dovecotPOP3) pids() []int {
	if d.dir == "" {
		return []int{}
	}
	return dovecotPids(filepath.Join(d.dir, "dovecot", "run"))
}

func (d *dovecotPOP3) stop() {
	if d.conf != "" {
		exec.Command("doveadm", "-c", d.conf, "stop").Run()
		d.conf = ""
	}
}
