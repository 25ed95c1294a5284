package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/posthorn/posthorn/internal/config"
)

// The IMAP workloads (issue 5, Speed): the same client against posthorn's
// IMAP server and Dovecot's (dovecot-imapd), one system after the other.
//
//   - fetch: a mailbox of -imap-messages messages of -size bytes, the same
//     bytes into both: posthorn's filled by APPEND from -sessions sessions
//     at once, through its own protocol; Dovecot's written into its Maildir
//     as its APPEND would have saved them and indexed by doveadm index,
//     untimed (its APPEND slows to some 30 messages a second past 40,000
//     messages in one Maildir). One session SELECTs INBOX and sends UID FETCH 1:* (FLAGS ENVELOPE
//     BODYSTRUCTURE), timed from SELECT to the tagged OK, after an untimed
//     run that warms the caches. Every answer must hold one FETCH per
//     message.
//   - search: UID SEARCH BODY with a word that one message in ten holds in
//     its text part; the count must be exact on both. Dovecot has no FTS
//     plugin, so it reads the messages as posthorn does.
//   - mixed: 20 sessions for -imap-duration, each looping SELECT, FETCH of
//     flags, STORE +FLAGS and -FLAGS, APPEND, STORE \Deleted and UID
//     EXPUNGE of one of its own messages, NOOP; operations per second, with
//     CONDSTORE enabled so that every MODSEQ a session sees is checked never
//     to go backwards, and every flag it left set checked at the end.
//   - idle: -imap-idle connections logged in and in IDLE, from 127.0.0.2 to
//     127.0.0.9, then the server's resident memory; then one APPEND, and the
//     time until every connection has its EXISTS. posthorn serve's [imap]
//     max_connections and max_connections_per_ip are raised to hold them,
//     as Dovecot's process limits are; Dovecot's count is capped where the
//     machine cannot hold a process for each (dovecotIdleCap).

var (
	imapMessages = flag.Int("imap-messages", 50000, "messages in the IMAP fetch and search mailbox")
	imapDuration = flag.Duration("imap-duration", 30*time.Second, "length of each run of the mixed IMAP workload")
	imapIdle     = flag.Int("imap-idle", 10000, "connections in IDLE for the IMAP memory figure")
)

const (
	imapPassword   = "bench-password"
	searchWord     = "quokka" // in the text of one message in searchEvery
	searchEvery    = 10
	mixedSessions  = 20
	mixedMailbox   = "Mixed"
	idleMailbox    = "Idle"
	loginsAtOnce   = 50
	imapCmdTimeout = 5 * time.Minute
)

// How the client logs in to the system under test, set before its runs.
// posthorn's login throttle (internal/auth) lets up to 10 logins at once
// for one account wait for nothing (ThrottleConfig.FreeParallel); past
// that, logins in progress delay the next as failures do. Every login here
// is for the one account, so posthorn's go 10 at once and Dovecot's
// loginsAtOnce. posthorn's use SCRAM-SHA-256, whose salted password the
// client derives once (as mail clients keep it), so that 10,000 logins do
// not each cost an argon2id check; Dovecot checks a static plain-text
// password.
var (
	loginGate  = make(chan struct{}, loginsAtOnce)
	loginSCRAM bool
)

// posthornLoginsAtOnce is auth.ThrottleConfig.FreeParallel's default.
const posthornLoginsAtOnce = 10

func setLogin(scram bool, atOnce int) {
	loginSCRAM = scram
	loginGate = make(chan struct{}, atOnce)
}

// imapSystem is an IMAP server under test, one instance for all workloads.
type imapSystem interface {
	name() string
	// start makes a fresh instance in dir with the account rcptUser
	// (password imapPassword) and returns its IMAP address on 127.0.0.1.
	start(dir string) (string, error)
	// pids are the server's processes now (Dovecot has one per session).
	pids() []int
	stop()
}

// directFiller is a system whose INBOX the bench fills by writing its
// storage itself rather than by APPEND: Dovecot, whose APPEND into a
// Maildir of tens of thousands of messages slows to some 30 a second.
type directFiller interface {
	// fillDirect puts messages 0..n-1 (imapMessage) into INBOX and has the
	// server index them, untimed.
	fillDirect(n int) error
}

func imapMissing() string {
	for _, tool := range []string{"dovecot", "doveadm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (apt-get install dovecot-core dovecot-imapd)"
		}
	}
	if _, err := os.Stat("/usr/lib/dovecot/imap"); err != nil {
		return "/usr/lib/dovecot/imap is missing (apt-get install dovecot-imapd)"
	}
	if os.Geteuid() != 0 {
		return "Dovecot must be started as root"
	}
	return ""
}

// imapFigures are one system's results, one entry per timed run.
type imapFigures struct {
	fill                time.Duration
	fetch, search       []float64 // seconds
	searchHits          int
	mixed               []float64 // operations per second
	mixedChecks         int       // MODSEQs and flags checked
	peakPSS             int64     // during fetch, search and mixed, summed over the processes
	idleConns, idleWant int
	idleNote            string
	rssBefore, rssIdle  int64
	pssBefore, pssIdle  int64
	existsAll           time.Duration // until every IDLE connection had its EXISTS
	existsSeen          int
	errs                []string
}

// note adds to the idle workload's note and prints it.
func (f *imapFigures) note(s string) {
	if f.idleNote != "" {
		f.idleNote += "; "
	}
	f.idleNote += s
	fmt.Println("   ", s)
}

func (f *imapFigures) fail(what string, err error) {
	msg := fmt.Sprintf("%s: %v", what, err)
	f.errs = append(f.errs, msg)
	fmt.Println("   ", msg)
}

func imapWorkload(root, bin string) {
	if *runs < 3 {
		fmt.Printf("bench: -runs %d: the IMAP workloads take at least 3 runs\n", *runs)
		*runs = 3
	}
	systems := []imapSystem{&posthornIMAP{bin: bin}}
	if why := imapMissing(); why != "" {
		fmt.Println("bench: skipping Dovecot IMAP:", why)
	} else {
		systems = append(systems, &dovecotIMAP{})
	}
	idleWant := raiseFileLimit(*imapIdle)
	fmt.Printf("IMAP: %d messages of %d bytes, %d timed runs each after a warm-up, %d cores, load average %s\n",
		*imapMessages, *size, *runs, runtimeCPUs(), noteLoad("IMAP start"))
	results := map[string]*imapFigures{}
	for _, sys := range systems {
		f := &imapFigures{idleWant: idleWant}
		results[sys.name()] = f
		dir := filepath.Join(root, "imap-"+strings.Fields(sys.name())[0])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fatal(err)
		}
		fmt.Printf("  %s:\n", sys.name())
		if _, ok := sys.(*posthornIMAP); ok {
			setLogin(true, posthornLoginsAtOnce)
		} else {
			setLogin(false, loginsAtOnce)
			if n, why := dovecotIdleCap(idleWant); n < idleWant {
				f.idleWant = n
				f.note(why)
			}
		}
		addr, err := sys.start(dir)
		if err != nil {
			f.fail("start", err)
			sys.stop()
			continue
		}
		imapRuns(sys, addr, f)
		sys.stop()
	}
	printIMAPTables(systems, results)
	fmt.Printf("load average after the runs: %s\n\n", noteLoad("IMAP end"))
	imapSummary(results)
}

// imapSummary adds the IMAP figures to the summary table.
func imapSummary(results map[string]*imapFigures) {
	ph, dc := results[(&posthornIMAP{}).name()], results[(&dovecotIMAP{}).name()]
	fetch := &summaryRow{figure: fmt.Sprintf("IMAP SELECT + UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE), %d messages, s", *imapMessages),
		format: "%.3f", lowerBetter: true, other: "Dovecot"}
	search := &summaryRow{figure: fmt.Sprintf("IMAP UID SEARCH BODY, %d messages, s", *imapMessages), format: "%.3f", lowerBetter: true, other: "Dovecot"}
	mixed := &summaryRow{figure: fmt.Sprintf("IMAP mixed, %d sessions, ops/s", mixedSessions), format: "%.0f", other: "Dovecot"}
	peak := &summaryRow{figure: "memory at peak, IMAP fetch/search/mixed, MB (PSS)", format: "%.1f", lowerBetter: true, other: "Dovecot"}
	idleTotal := &summaryRow{figure: "memory with the idle IMAP connections, MB (PSS)", format: "%.1f", lowerBetter: true, other: "Dovecot"}
	idlePer := &summaryRow{figure: "memory per idle IMAP connection, KB (PSS)", format: "%.1f", lowerBetter: true, other: "Dovecot"}
	var counts []string
	for col, f := range map[int]*imapFigures{colPosthorn: ph, colOther: dc} {
		if f == nil {
			continue
		}
		fetch.vals[col], search.vals[col], mixed.vals[col] = f.fetch, f.search, f.mixed
		if f.peakPSS > 0 {
			peak.vals[col] = []float64{mb(f.peakPSS)}
		}
		if f.idleConns > 0 && f.pssIdle > 0 {
			idleTotal.vals[col] = []float64{mb(f.pssIdle)}
			idlePer.vals[col] = []float64{float64(f.pssIdle-f.pssBefore) / float64(f.idleConns) / 1e3}
		}
	}
	if ph != nil {
		counts = append(counts, fmt.Sprintf("posthorn %d", ph.idleConns))
	}
	if dc != nil {
		counts = append(counts, fmt.Sprintf("Dovecot %d", dc.idleConns))
	}
	idleTotal.note = fmt.Sprintf("connections in IDLE: %s of %d asked for", strings.Join(counts, ", "), *imapIdle)
	if dc != nil && dc.idleConns < *imapIdle && dc.idleConns > 0 {
		idleTotal.note += "; the totals are not comparable, the per-connection figures are"
	}
	for _, r := range []*summaryRow{fetch, search, mixed, peak, idleTotal, idlePer} {
		addSummary(r)
	}
}

// dovecotIdleCap is how many IDLE connections Dovecot can be given here:
// it forks an imap process per connection, which costs about 0.6 MB of
// proportional set and some 5 MB resident (counting the pages it shares),
// and a process slot. It keeps 4 GiB of memory and 2,000 process ids free
// for the rest of the machine.
func dovecotIdleCap(want int) (int, string) {
	const perConn = 1 << 20 // PSS, page tables and kernel stack, rounded up
	n := want
	why := ""
	if avail := memAvailable(); avail > 0 {
		if m := int((avail - 4<<30) / perConn); m < n {
			n, why = max(m, 0), fmt.Sprintf("%.1f GiB of memory available, about 1 MiB for each Dovecot process", float64(avail)/(1<<30))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if pm, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if m := pm - 2000 - countProcs(); m < n {
				n, why = max(m, 0), fmt.Sprintf("pid_max %d, %d processes running", pm, countProcs())
			}
		}
	}
	if n >= want {
		return want, ""
	}
	return n, fmt.Sprintf("Dovecot's idle connections capped at %d of %d: %s (it forks one imap process per connection); compare per connection", n, want, why)
}

func countProcs() int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

func imapRuns(sys imapSystem, addr string, f *imapFigures) {
	start := time.Now()
	if df, ok := sys.(directFiller); ok {
		if err := df.fillDirect(*imapMessages); err != nil {
			f.fail("fill", err)
			return
		}
		f.fill = time.Since(start)
		fmt.Printf("    filled INBOX with %d messages written into its Maildir and indexed by doveadm index in %.1f s (untimed)\n",
			*imapMessages, f.fill.Seconds())
	} else {
		if err := imapFill(addr, "INBOX", *imapMessages, 0, *sessions); err != nil {
			f.fail("fill", err)
			return
		}
		f.fill = time.Since(start)
		fmt.Printf("    filled INBOX with %d messages by APPEND from %d sessions in %.1f s (%.0f msgs/s)\n",
			*imapMessages, *sessions, f.fill.Seconds(), float64(*imapMessages)/f.fill.Seconds())
	}

	mem := sampleMemory(sys.pids)
	for r := 0; r <= *runs; r++ {
		d, err := fetchRun(addr, *imapMessages)
		if err != nil {
			f.fail("fetch", err)
			break
		}
		if r == 0 {
			fmt.Printf("    fetch warm-up: %.3f s\n", d.Seconds())
			continue
		}
		fmt.Printf("    fetch run %d: %.3f s\n", r, d.Seconds())
		f.fetch = append(f.fetch, d.Seconds())
	}

	want := searchHits(*imapMessages)
	for r := 0; r <= *runs; r++ {
		d, n, err := searchRun(addr)
		if err == nil && n != want {
			err = fmt.Errorf("UID SEARCH BODY %s found %d messages, want %d", searchWord, n, want)
		}
		if err != nil {
			f.fail("search", err)
			break
		}
		f.searchHits = n
		if r == 0 {
			fmt.Printf("    search warm-up: %.3f s, %d hits\n", d.Seconds(), n)
			continue
		}
		fmt.Printf("    search run %d: %.3f s\n", r, d.Seconds())
		f.search = append(f.search, d.Seconds())
	}

	if err := imapSetup(addr); err != nil {
		f.fail("mixed setup", err)
	} else {
		for r := 1; r <= *runs; r++ {
			rate, checks, err := mixedRun(addr, r)
			if err != nil {
				f.fail(fmt.Sprintf("mixed run %d", r), err)
				break
			}
			fmt.Printf("    mixed run %d: %.0f ops/s, %d checks passed\n", r, rate, checks)
			f.mixed = append(f.mixed, rate)
			f.mixedChecks += checks
		}
	}
	_, f.peakPSS = mem.end()
	fmt.Printf("    memory at peak during fetch, search and mixed: %.1f MB (PSS summed over its processes)\n", mb(f.peakPSS))
	idleRun(sys, addr, f)
}

// raiseFileLimit raises the soft limit on open files to what want
// connections need, up to the hard limit, and returns how many connections
// fit.
func raiseFileLimit(want int) int {
	const spare = 256
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("bench: getrlimit:", err)
		return want
	}
	need := uint64(want + spare)
	if lim.Cur < need {
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Println("bench: setrlimit:", err)
			syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	fmt.Printf("bench: open files: soft limit %d, hard limit %d\n", lim.Cur, lim.Max)
	if lim.Cur < need {
		n := int(lim.Cur) - spare
		fmt.Printf("bench: the idle workload opens %d connections, not %d: the file limit allows no more\n", n, want)
		return max(n, 0)
	}
	return want
}

// imapMessage is message i: about size bytes, CRLF, of three shapes
// (text/plain, multipart/alternative, multipart/mixed with an attachment)
// so that BODYSTRUCTURE has work to do. The text of one message in
// searchEvery holds searchWord; nothing else does.
func imapMessage(i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <sender%d@remote.example>\r\n", i%97)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Minute).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: Sender %d <sender%d@remote.example>\r\n", i%97, i%97)
	fmt.Fprintf(&b, "To: Bench User <%s@%s>\r\n", rcptUser, rcptDomain)
	if i%3 == 0 {
		fmt.Fprintf(&b, "Cc: \"Someone, Else\" <else%d@remote.example>, other@remote.example\r\n", i%13)
	}
	if i%5 == 0 {
		fmt.Fprintf(&b, "Subject: =?utf-8?q?R=C3=A9sum=C3=A9_number?= %d\r\n", i)
	} else {
		fmt.Fprintf(&b, "Subject: Report number %d about the (weekly) \"figures\"\r\n", i)
	}
	fmt.Fprintf(&b, "Message-ID: <%d.bench@remote.example>\r\n", i)
	if i > 0 && i%4 == 1 {
		fmt.Fprintf(&b, "In-Reply-To: <%d.bench@remote.example>\r\n", i-1)
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	text := func(n int) string {
		var t strings.Builder
		if i%searchEvery == 3 {
			t.WriteString("The " + searchWord + " is in this one.\r\n")
		}
		for t.Len() < n {
			t.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n")
		}
		return t.String()
	}
	room := max(size-b.Len()-400, 200)
	switch i % 3 {
	case 0:
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		b.WriteString(text(room))
	case 1:
		b.WriteString("Content-Type: multipart/alternative; boundary=\"=alt=\"\r\n\r\n")
		b.WriteString("--=alt=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		b.WriteString(text(room * 2 / 3))
		b.WriteString("--=alt=\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>")
		b.WriteString(strings.Repeat("Lorem ipsum dolor sit amet. ", room/3/28))
		b.WriteString("</p></body></html>\r\n--=alt=--\r\n")
	case 2:
		b.WriteString("Content-Type: multipart/mixed; boundary=\"=mix=\"\r\n\r\n")
		b.WriteString("--=mix=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		b.WriteString(text(room / 2))
		b.WriteString("--=mix=\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n" +
			"Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		for n := 0; n < room/2; n += 78 {
			b.WriteString("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n")
		}
		b.WriteString("--=mix=--\r\n")
	}
	return b.Bytes()
}

// searchHits is how many of messages 0..n-1 hold searchWord.
func searchHits(n int) int {
	c := 0
	for i := 0; i < n; i++ {
		if i%searchEvery == 3 {
			c++
		}
	}
	return c
}

// imapFill APPENDs messages first..first+n-1 to box from par sessions.
func imapFill(addr, box string, n, first, par int) error {
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for s := 0; s < par; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			c, err := imapLogin(addr, "")
			if err != nil {
				errs <- err
				return
			}
			defer c.close()
			for i := s; i < n; i += par {
				if _, err := c.append(box, "", imapMessage(first+i, *size)); err != nil {
					errs <- fmt.Errorf("APPEND %d: %w", first+i, err)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	c, err := imapLogin(addr, "")
	if err != nil {
		return err
	}
	defer c.close()
	_, untagged, err := c.cmd("STATUS " + box + " (MESSAGES)")
	if err != nil {
		return err
	}
	for _, u := range untagged {
		if i := bytes.Index(u, []byte("(MESSAGES ")); i >= 0 {
			got, _ := strconv.Atoi(strings.TrimRight(string(u[i+10:]), ")\r\n"))
			if got < first+n {
				return fmt.Errorf("%s holds %d messages after the fill, want %d", box, got, first+n)
			}
			return nil
		}
	}
	return fmt.Errorf("STATUS %s: no MESSAGES in the answer", box)
}

// fetchRun is the fetch workload: SELECT INBOX and UID FETCH 1:* (FLAGS
// ENVELOPE BODYSTRUCTURE), timed from SELECT to the tagged OK of the FETCH.
func fetchRun(addr string, n int) (time.Duration, error) {
	c, err := imapLogin(addr, "")
	if err != nil {
		return 0, err
	}
	defer c.close()
	start := time.Now()
	if _, _, err := c.cmd("SELECT INBOX"); err != nil {
		return 0, err
	}
	got := 0
	if _, err := c.cmdFunc("UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)", func(resp []byte) {
		if isFetch(resp) && bytes.Contains(resp, []byte("BODYSTRUCTURE (")) && bytes.Contains(resp, []byte("ENVELOPE (")) {
			got++
		}
	}); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if got != n {
		return 0, fmt.Errorf("UID FETCH 1:* answered %d FETCH responses with ENVELOPE and BODYSTRUCTURE, want %d", got, n)
	}
	return d, nil
}

// searchRun times UID SEARCH BODY searchWord on INBOX and returns the hits.
func searchRun(addr string) (time.Duration, int, error) {
	c, err := imapLogin(addr, "")
	if err != nil {
		return 0, 0, err
	}
	defer c.close()
	if _, _, err := c.cmd("SELECT INBOX"); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	_, untagged, err := c.cmd("UID SEARCH BODY " + searchWord)
	d := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	hits := 0
	for _, u := range untagged {
		if rest, ok := bytes.CutPrefix(u, []byte("* SEARCH")); ok {
			hits += len(bytes.Fields(rest))
		}
	}
	return d, hits, nil
}

// imapSetup makes the mailboxes of the mixed and idle workloads.
func imapSetup(addr string) error {
	c, err := imapLogin(addr, "")
	if err != nil {
		return err
	}
	for _, box := range []string{mixedMailbox, idleMailbox} {
		if _, _, err := c.cmd("CREATE " + box); err != nil {
			c.close()
			return err
		}
	}
	c.close()
	if err := imapFill(addr, mixedMailbox, 200, 0, 4); err != nil {
		return err
	}
	return imapFill(addr, idleMailbox, 10, 0, 1)
}

// mixedRun runs mixedSessions sessions for imapDuration and returns the
// operations per second and the number of consistency checks passed.
func mixedRun(addr string, run int) (float64, int, error) {
	var ops, checks atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, mixedSessions)
	// Every session logs in first; the clock starts when all have.
	conns := make([]*imapConn, mixedSessions)
	for s := range conns {
		c, err := imapLogin(addr, "")
		if err != nil {
			for _, c := range conns[:s] {
				c.close()
			}
			return 0, 0, err
		}
		conns[s] = c
	}
	start := time.Now()
	deadline := start.Add(*imapDuration)
	for s := 0; s < mixedSessions; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			n, ch, err := mixedSession(conns[s], run, s, deadline)
			ops.Add(int64(n))
			checks.Add(int64(ch))
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", s, err)
			}
		}(s)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	var all []string
	for err := range errs {
		all = append(all, err.Error())
	}
	if len(all) > 0 {
		sort.Strings(all)
		return 0, 0, fmt.Errorf("%d of %d sessions failed; first: %s", len(all), mixedSessions, all[0])
	}
	return float64(ops.Load()) / elapsed.Seconds(), int(checks.Load()), nil
}

// mixedSession is one session of the mixed workload. It works on the
// messages it appended itself, so that what it expects of their flags is
// known, and reads every other message.
func mixedSession(c *imapConn, run, s int, deadline time.Time) (ops, checks int, err error) {
	defer c.close()
	if _, _, err := c.cmd("ENABLE CONDSTORE"); err != nil {
		return 0, 0, err
	}
	rng := rand.New(rand.NewPCG(uint64(run), uint64(s)))
	kw := func(j int) string { return fmt.Sprintf("$R%dS%d%c", run, s, 'a'+j) }
	const nkw = 3
	own := map[uint32]map[string]bool{} // UID -> our keywords set on it
	var ownList []uint32
	modseq := map[uint32]uint64{}
	var highest uint64
	var bad []string
	observe := func(resp []byte) {
		if !isFetch(resp) {
			return
		}
		uid, ok1 := fetchNumber(resp, "UID ")
		ms, ok2 := fetchNumber(resp, "MODSEQ (")
		if !ok1 || !ok2 {
			return
		}
		if prev := modseq[uint32(uid)]; uint64(ms) < prev {
			bad = append(bad, fmt.Sprintf("UID %d: MODSEQ %d after %d", uid, ms, prev))
		}
		modseq[uint32(uid)] = uint64(ms)
		checks++
	}
	c.observe = observe
	pickOwn := func() uint32 { return ownList[rng.IntN(len(ownList))] }
	dropOwn := func(uid uint32) {
		delete(own, uid)
		for i, u := range ownList {
			if u == uid {
				ownList = append(ownList[:i], ownList[i+1:]...)
				break
			}
		}
	}
	for time.Now().Before(deadline) && len(bad) == 0 {
		_, untagged, err := c.cmd("SELECT " + mixedMailbox)
		if err != nil {
			return ops, checks, err
		}
		ops++
		exists := 0
		for _, u := range untagged {
			if n, ok := fetchNumber(u, "[HIGHESTMODSEQ "); ok {
				if uint64(n) < highest {
					bad = append(bad, fmt.Sprintf("HIGHESTMODSEQ %d after %d", n, highest))
				}
				highest = uint64(n)
				checks++
			}
			if f := bytes.Fields(u); len(f) == 3 && string(f[2]) == "EXISTS" {
				exists, _ = strconv.Atoi(string(f[1]))
			}
		}
		if exists > 0 {
			a := 1 + rng.IntN(exists)
			if _, _, err := c.cmd(fmt.Sprintf("FETCH %d:%d (UID FLAGS MODSEQ)", a, min(a+9, exists))); err != nil {
				return ops, checks, err
			}
			ops++
		}
		if len(ownList) > 0 {
			uid, j := pickOwn(), rng.IntN(nkw)
			if _, _, err := c.cmd(fmt.Sprintf("UID STORE %d +FLAGS (%s)", uid, kw(j))); err != nil {
				return ops, checks, err
			}
			own[uid][kw(j)] = true
			uid, j = pickOwn(), rng.IntN(nkw)
			if _, _, err := c.cmd(fmt.Sprintf("UID STORE %d -FLAGS (%s)", uid, kw(j))); err != nil {
				return ops, checks, err
			}
			delete(own[uid], kw(j))
			ops += 2
		}
		uid, err := c.append(mixedMailbox, kw(0), imapMessage(1000000+run*10000+s, *size))
		if err != nil {
			return ops, checks, err
		}
		ops++
		if uid == 0 {
			return ops, checks, errors.New("APPEND: no APPENDUID in the answer")
		}
		own[uid] = map[string]bool{kw(0): true}
		ownList = append(ownList, uid)
		if len(ownList) > 5 {
			old := ownList[0]
			if _, _, err := c.cmd(fmt.Sprintf("UID STORE %d +FLAGS.SILENT (\\Deleted)", old)); err != nil {
				return ops, checks, err
			}
			if _, _, err := c.cmd(fmt.Sprintf("UID EXPUNGE %d", old)); err != nil {
				return ops, checks, err
			}
			dropOwn(old)
			ops += 2
		}
		if _, _, err := c.cmd("NOOP"); err != nil {
			return ops, checks, err
		}
		ops++
	}
	// Every keyword this session left on its messages is there, and none
	// that it took off.
	if len(ownList) > 0 && len(bad) == 0 {
		set := make([]string, len(ownList))
		for i, u := range ownList {
			set[i] = strconv.FormatUint(uint64(u), 10)
		}
		seen := map[uint32]bool{}
		_, err := c.cmdFunc("UID FETCH "+strings.Join(set, ",")+" (UID FLAGS)", func(resp []byte) {
			uid, ok := fetchNumber(resp, "UID ")
			if !isFetch(resp) || !ok {
				return
			}
			want, mine := own[uint32(uid)]
			if !mine {
				return
			}
			seen[uint32(uid)] = true
			flags := fetchFlags(resp)
			for j := 0; j < nkw; j++ {
				if has := flags[strings.ToLower(kw(j))]; has != want[kw(j)] {
					bad = append(bad, fmt.Sprintf("UID %d: flag %s present %v, want %v", uid, kw(j), has, want[kw(j)]))
				}
				checks++
			}
		})
		if err != nil {
			return ops, checks, err
		}
		for _, u := range ownList {
			if !seen[u] {
				bad = append(bad, fmt.Sprintf("UID %d: appended and not expunged, but not there", u))
			}
		}
	}
	if len(bad) > 0 {
		return ops, checks, fmt.Errorf("%d consistency errors; first: %s", len(bad), bad[0])
	}
	return ops, checks, nil
}

// idleConn is one connection of the idle workload.
type idleConn struct {
	c      *imapConn
	exists chan struct{} // closed at the first EXISTS past the mailbox size
}

// idleRun opens f.idleWant connections in IDLE on idleMailbox, measures
// the server's memory, APPENDs one message and times the EXISTS to all.
func idleRun(sys imapSystem, addr string, f *imapFigures) {
	fmt.Printf("    load average before the idle connections: %s\n", noteLoad("before "+strings.Fields(sys.name())[0]+"'s IDLE"))
	f.rssBefore, f.pssBefore = memoryOf(sys.pids())
	var (
		mu      sync.Mutex
		conns   []*idleConn
		refused atomic.Int64
		failed  atomic.Int64
		lastErr atomic.Value
	)
	defer func() {
		for _, ic := range conns {
			ic.c.close()
		}
	}()
	sem := make(chan struct{}, loginsAtOnce)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(4 * time.Minute)
	for i := 0; i < f.idleWant; i++ {
		if time.Now().After(deadline) || refused.Load() >= 50 || failed.Load() >= 50 {
			break
		}
		if i%1000 == 0 && i > 0 && memAvailable() < 3<<30 {
			f.note(fmt.Sprintf("stopped at %d connections: less than 3 GiB of memory left on the machine", i))
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			local := fmt.Sprintf("127.0.0.%d", 2+i%8)
			ic, err := idleOpen(addr, local)
			if err != nil {
				if strings.Contains(err.Error(), "BYE") {
					refused.Add(1)
				} else {
					failed.Add(1)
				}
				lastErr.Store(err.Error())
				return
			}
			mu.Lock()
			conns = append(conns, ic)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	f.idleConns = len(conns)
	took := time.Since(start)
	fmt.Printf("    idle: %d of %d connections in IDLE after %.1f s", len(conns), f.idleWant, took.Seconds())
	fmt.Println()
	if r, fl := refused.Load(), failed.Load(); r+fl > 0 {
		f.note(fmt.Sprintf("%d refused, %d failed; last: %v", r, fl, lastErr.Load()))
	}
	time.Sleep(2 * time.Second) // let the server settle
	f.rssIdle, f.pssIdle = memoryOf(sys.pids())
	fmt.Printf("    server memory: %.1f MB resident before, %.1f MB with the connections (proportional set %.1f MB)\n",
		float64(f.rssBefore)/1e6, float64(f.rssIdle)/1e6, float64(f.pssIdle)/1e6)
	if len(conns) == 0 {
		return
	}
	// A delivery (an APPEND from another session) must reach every IDLE.
	c, err := imapLogin(addr, "")
	if err != nil {
		f.fail("idle APPEND", err)
		return
	}
	defer c.close()
	at := time.Now()
	if _, err := c.append(idleMailbox, "", imapMessage(2000000, *size)); err != nil {
		f.fail("idle APPEND", err)
		return
	}
	limit := time.After(40 * time.Second)
	for _, ic := range conns {
		select {
		case <-ic.exists:
			f.existsSeen++
		case <-limit:
		}
	}
	f.existsAll = time.Since(at)
	fmt.Printf("    %d of %d connections had the EXISTS of a new message after %.2f s\n", f.existsSeen, len(conns), f.existsAll.Seconds())
}

// idleOpen logs in from local, SELECTs idleMailbox and starts IDLE.
func idleOpen(addr, local string) (*idleConn, error) {
	c, err := imapLogin(addr, local)
	if err != nil {
		return nil, err
	}
	_, untagged, err := c.cmd("SELECT " + idleMailbox)
	if err != nil {
		c.close()
		return nil, err
	}
	exists := -1
	for _, u := range untagged {
		if f := bytes.Fields(u); len(f) == 3 && string(f[2]) == "EXISTS" {
			exists, _ = strconv.Atoi(string(f[1]))
		}
	}
	c.w.WriteString("I IDLE\r\n")
	c.w.Flush()
	for {
		resp, err := c.read()
		if err != nil {
			c.close()
			return nil, fmt.Errorf("IDLE: %w", err)
		}
		if bytes.HasPrefix(resp, []byte("+")) {
			break
		}
		if bytes.HasPrefix(resp, []byte("I ")) {
			c.close()
			return nil, fmt.Errorf("IDLE: %q", bytes.TrimSpace(resp))
		}
	}
	ic := &idleConn{c: c, exists: make(chan struct{})}
	c.nc.SetDeadline(time.Time{})
	go func() {
		for {
			resp, err := c.read()
			if err != nil {
				return
			}
			if f := bytes.Fields(resp); len(f) == 3 && string(f[2]) == "EXISTS" {
				if n, _ := strconv.Atoi(string(f[1])); n > exists {
					close(ic.exists)
					// Keep reading, so that the server is never blocked.
					for {
						if _, err := c.read(); err != nil {
							return
						}
					}
				}
			}
		}
	}()
	return ic, nil
}

// memoryOf sums VmRSS and Pss (from smaps_rollup) of the processes.
func memoryOf(pids []int) (rss, pss int64) {
	for _, pid := range pids {
		rss += procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		pss += procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	}
	return rss, pss
}

// procField reads a "Name: N kB" line of a /proc file, in bytes.
func procField(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == name {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func memAvailable() int64 { return procField("/proc/meminfo", "MemAvailable:") }

// descendants returns root and every process under it.
func descendants(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(string(f[1]))
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func printIMAPTables(systems []imapSystem, results map[string]*imapFigures) {
	ph, dc := results[(&posthornIMAP{}).name()], results[(&dovecotIMAP{}).name()]
	table := func(title, unit string, get func(*imapFigures) []float64, format string, higherBetter bool) {
		fmt.Printf("\nIMAP %s\n", title)
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "system\t%s (median)\tspread\t\n", unit)
		for _, sys := range systems {
			f := results[sys.name()]
			if f == nil || len(get(f)) == 0 {
				continue
			}
			v := get(f)
			lo, hi := minMax(v)
			fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"–"+format+"\t\n", sys.name(), median(v), lo, hi)
		}
		tw.Flush()
		if ph != nil && dc != nil && len(get(ph)) > 0 && len(get(dc)) > 0 {
			r := median(get(dc)) / median(get(ph))
			if higherBetter {
				r = 1 / r
			}
			fmt.Printf("posthorn is %.2f times as fast as Dovecot\n", r)
		}
	}
	table(fmt.Sprintf("fetch: SELECT + UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE), %d messages, cache warm", *imapMessages),
		"seconds", func(f *imapFigures) []float64 { return f.fetch }, "%.3f", false)
	table(fmt.Sprintf("search: UID SEARCH BODY %s, %d messages, %d hits, no FTS", searchWord, *imapMessages, searchHits(*imapMessages)),
		"seconds", func(f *imapFigures) []float64 { return f.search }, "%.3f", false)
	table(fmt.Sprintf("mixed: %d sessions for %s (SELECT, FETCH, STORE ±FLAGS, APPEND, EXPUNGE, NOOP), CONDSTORE", mixedSessions, *imapDuration),
		"ops/s", func(f *imapFigures) []float64 { return f.mixed }, "%.0f", true)
	for _, sys := range systems {
		if f := results[sys.name()]; f != nil && f.mixedChecks > 0 {
			fmt.Printf("%s: %d MODSEQ and flag checks passed, none failed\n", sys.name(), f.mixedChecks)
		}
	}

	fmt.Printf("\nIMAP idle: connections logged in and in IDLE (one run), server memory (VmRSS summed over its processes)\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "system\tconnections\tRSS before\tRSS in IDLE\tper connection\tPSS in IDLE\tEXISTS to all\t")
	for _, sys := range systems {
		f := results[sys.name()]
		if f == nil || f.rssIdle == 0 {
			continue
		}
		per := "-"
		if f.idleConns > 0 {
			per = fmt.Sprintf("%.1f KB", float64(f.rssIdle-f.rssBefore)/float64(f.idleConns)/1e3)
		}
		exists := "-"
		if f.idleConns > 0 {
			exists = fmt.Sprintf("%.2f s (%d seen)", f.existsAll.Seconds(), f.existsSeen)
		}
		fmt.Fprintf(tw, "%s\t%d of %d\t%.1f MB\t%.1f MB\t%s\t%.1f MB\t%s\t\n", sys.name(), f.idleConns, f.idleWant,
			float64(f.rssBefore)/1e6, float64(f.rssIdle)/1e6, per, float64(f.pssIdle)/1e6, exists)
	}
	tw.Flush()
	for _, sys := range systems {
		if f := results[sys.name()]; f != nil && f.idleNote != "" {
			fmt.Printf("%s: %s\n", sys.name(), f.idleNote)
		}
	}
	for _, sys := range systems {
		if f := results[sys.name()]; f != nil {
			for _, e := range f.errs {
				fmt.Printf("%s failed: %s\n", sys.name(), e)
			}
		}
	}
}

// --- the client ---

// imapConn is a small IMAP client: one command at a time, responses read
// whole with their literals.
type imapConn struct {
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	tag     int
	caps    string
	buf     []byte
	observe func(resp []byte) // sees every untagged response, when set
}

// imapLogin connects to addr (from the local address local when not
// empty) and logs in as rcptUser.
func imapLogin(addr, local string) (*imapConn, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &imapConn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), w: bufio.NewWriterSize(nc, 64<<10)}
	nc.SetDeadline(time.Now().Add(imapCmdTimeout))
	greet, err := c.read()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !bytes.HasPrefix(greet, []byte("* OK")) {
		nc.Close()
		return nil, fmt.Errorf("greeting: %q", bytes.TrimSpace(greet))
	}
	gate := loginGate
	gate <- struct{}{}
	if loginSCRAM {
		err = c.scram(rcptUser, imapPassword)
	} else {
		_, _, err = c.cmd(fmt.Sprintf("LOGIN %s %s", rcptUser, imapPassword))
	}
	<-gate
	if err != nil {
		nc.Close()
		return nil, err
	}
	_, untagged, err := c.cmd("CAPABILITY")
	if err != nil {
		nc.Close()
		return nil, err
	}
	for _, u := range untagged {
		if bytes.HasPrefix(u, []byte("* CAPABILITY ")) {
			c.caps = string(u)
		}
	}
	return c, nil
}

func (c *imapConn) close() {
	c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	c.w.WriteString("Z LOGOUT\r\n")
	c.w.Flush()
	c.nc.Close()
}

// read returns the next response, literals included, valid until the next
// read.
func (c *imapConn) read() ([]byte, error) {
	c.buf = c.buf[:0]
	for {
		line, err := c.r.ReadSlice('\n')
		c.buf = append(c.buf, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, err
		}
		n, ok := literalAtEnd(line)
		if !ok {
			return c.buf, nil
		}
		at := len(c.buf)
		c.buf = append(c.buf, make([]byte, n)...)
		if _, err := ioReadFull(c.r, c.buf[at:]); err != nil {
			return nil, err
		}
	}
}

// literalAtEnd reports the size of a literal announced at the end of a
// line: "{123}\r\n".
func literalAtEnd(line []byte) (int, bool) {
	l := bytes.TrimRight(line, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(string(l[i+1:len(l)-1]), "+"))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func ioReadFull(r *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// cmdFunc sends a command and hands each untagged response to fn; it
// returns the tagged line, an error unless it is OK.
func (c *imapConn) cmdFunc(command string, fn func(resp []byte)) ([]byte, error) {
	c.tag++
	tag := "A" + strconv.Itoa(c.tag)
	c.w.WriteString(tag + " " + command + "\r\n")
	return c.finish(tag, command, fn)
}

func (c *imapConn) finish(tag, command string, fn func(resp []byte)) ([]byte, error) {
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	c.nc.SetDeadline(time.Now().Add(imapCmdTimeout))
	for {
		resp, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", firstWord(command), err)
		}
		if bytes.HasPrefix(resp, []byte(tag+" ")) {
			rest := resp[len(tag)+1:]
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return nil, fmt.Errorf("%s: %q", firstWord(command), bytes.TrimSpace(resp))
			}
			return append([]byte(nil), resp...), nil
		}
		if bytes.HasPrefix(resp, []byte("* BYE")) {
			return nil, fmt.Errorf("%s: %q", firstWord(command), bytes.TrimSpace(resp))
		}
		if c.observe != nil {
			c.observe(resp)
		}
		if fn != nil {
			fn(resp)
		}
	}
}

func firstWord(command string) string {
	f := strings.Fields(command)
	if len(f) > 1 && f[0] == "UID" {
		return f[0] + " " + f[1]
	}
	if len(f) > 0 {
		return f[0]
	}
	return command
}

// cmd is cmdFunc keeping copies of the untagged responses.
func (c *imapConn) cmd(command string) (tagged []byte, untagged [][]byte, err error) {
	tagged, err = c.cmdFunc(command, func(resp []byte) {
		untagged = append(untagged, append([]byte(nil), resp...))
	})
	return tagged, untagged, err
}

// append APPENDs msg to box with the keyword flag (if not empty) and
// returns the UID of APPENDUID (RFC 4315), 0 if the answer has none. The
// literal is non-synchronizing where LITERAL+ is offered (both servers do).
func (c *imapConn) append(box, flag string, msg []byte) (uint32, error) {
	c.tag++
	tag := "A" + strconv.Itoa(c.tag)
	flags := ""
	if flag != "" {
		flags = "(" + flag + ") "
	}
	command := fmt.Sprintf("%s APPEND %s %s", tag, box, flags)
	if strings.Contains(c.caps, "LITERAL+") {
		fmt.Fprintf(c.w, "%s{%d+}\r\n", command, len(msg))
	} else {
		fmt.Fprintf(c.w, "%s{%d}\r\n", command, len(msg))
		c.w.Flush()
		resp, err := c.read()
		if err != nil {
			return 0, err
		}
		if !bytes.HasPrefix(resp, []byte("+")) {
			return 0, fmt.Errorf("APPEND: %q", bytes.TrimSpace(resp))
		}
	}
	c.w.Write(msg)
	c.w.WriteString("\r\n")
	tagged, err := c.finish(tag, "APPEND", nil)
	if err != nil {
		return 0, err
	}
	// "A1 OK [APPENDUID 38505 3955] APPEND completed"
	if i := bytes.Index(tagged, []byte("[APPENDUID ")); i >= 0 {
		f := bytes.Fields(tagged[i+len("[APPENDUID "):])
		if len(f) >= 2 {
			uid, err := strconv.ParseUint(strings.TrimSuffix(string(f[1]), "]"), 10, 32)
			if err == nil {
				return uint32(uid), nil
			}
		}
	}
	return 0, nil
}

// isFetch reports whether resp is "* n FETCH (...".
func isFetch(resp []byte) bool {
	f := bytes.SplitN(resp, []byte(" "), 4)
	return len(f) >= 4 && string(f[0]) == "*" && string(f[2]) == "FETCH"
}

// fetchNumber returns the number after item ("UID ", "MODSEQ (") in a
// response; item must be preceded by a space or "(".
func fetchNumber(resp []byte, item string) (int64, bool) {
	for off := 0; ; {
		i := bytes.Index(resp[off:], []byte(item))
		if i < 0 {
			return 0, false
		}
		i += off
		if i > 0 && (resp[i-1] == ' ' || resp[i-1] == '(' || resp[i-1] == '[') {
			j := i + len(item)
			k := j
			for k < len(resp) && resp[k] >= '0' && resp[k] <= '9' {
				k++
			}
			if k > j {
				n, err := strconv.ParseInt(string(resp[j:k]), 10, 64)
				return n, err == nil
			}
		}
		off = i + len(item)
	}
}

// fetchFlags returns the FLAGS of a FETCH response, lower-cased.
func fetchFlags(resp []byte) map[string]bool {
	out := map[string]bool{}
	i := bytes.Index(resp, []byte("FLAGS ("))
	if i < 0 {
		return out
	}
	rest := resp[i+len("FLAGS ("):]
	if j := bytes.IndexByte(rest, ')'); j >= 0 {
		for _, f := range bytes.Fields(rest[:j]) {
			out[strings.ToLower(string(f))] = true
		}
	}
	return out
}

// --- the systems ---

// posthornIMAP is posthorn serve with IMAP on 127.0.0.1.
type posthornIMAP struct {
	bin string
	cmd *exec.Cmd
}

func (p *posthornIMAP) name() string { return "posthorn" }

func (p *posthornIMAP) start(dir string) (string, error) {
	smtpAddr, imapAddr := freeAddr(), freeAddr()
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
	// The idle workload logs in from 127.0.0.2-9, which are not loopback to
	// posthorn: let LOGIN through without TLS there, as Dovecot is told.
	// Its -imap-idle connections come from those 8 addresses: the caps
	// (20,000 in all, 100 per address by default) are raised to hold them,
	// as Dovecot's process and per-user limits are.
	perIP := (*imapIdle+7)/8 + 100
	for _, sec := range []struct{ head, body string }{
		{"[imap]", fmt.Sprintf("listen = %q\nmax_connections = %d\nmax_connections_per_ip = %d",
			imapAddr, max(config.DefaultIMAPMaxConnections, *imapIdle+500), max(config.DefaultIMAPMaxConnectionsPerIP, perIP))},
		{"[auth]", "allow_plaintext = true"},
	} {
		h := []byte("\n" + sec.head + "\n")
		if bytes.Contains(cfg, h) {
			cfg = bytes.Replace(cfg, h, []byte("\n"+sec.head+"\n"+sec.body+"\n"), 1)
		} else {
			cfg = append(cfg, []byte("\n"+sec.head+"\n"+sec.body+"\n")...)
		}
	}
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return "", err
	}
	add := exec.Command(p.bin, "user", "add", rcptUser, "--password-stdin", "--config", cfgPath)
	add.Stdin = strings.NewReader(imapPassword + "\n")
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
	return imapAddr, waitListening(imapAddr, p.cmd)
}

func (p *posthornIMAP) pids() []int {
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	return []int{p.cmd.Process.Pid}
}

func (p *posthornIMAP) stop() {
	stopPosthorn(p.cmd)
	p.cmd = nil
}

// dovecotIMAP is Dovecot's IMAP in a temporary directory: Maildir, its
// index files, one imap process per session (its default), with the
// process and per-user connection limits raised for the idle workload.
type dovecotIMAP struct {
	conf, base string
	mail       string // the Maildirs, one per user under it
}

func (d *dovecotIMAP) name() string { return "dovecot (imap)" }

func (d *dovecotIMAP) start(dir string) (string, error) {
	imapAddr := freeAddr()
	_, imapPort, _ := net.SplitHostPort(imapAddr)
	mail := filepath.Join(dir, "mail")
	dc := filepath.Join(dir, "dovecot")
	for _, p := range []string{dc + "/run", dc + "/state", mail} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", err
		}
	}
	os.Chmod(dir, 0o755)
	run("chown", "mail:mail", mail)
	d.mail = mail
	d.base = dc + "/run"
	d.conf = filepath.Join(dc, "dovecot.conf")
	limit := *imapIdle + 500
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:%[2]s/%%n
first_valid_uid = 1
default_process_limit = %[5]d
default_client_limit = %[6]d
protocol imap {
  mail_max_userip_connections = %[5]d
}
service imap {
  # Its own default, 1024, not default_process_limit's.
  process_limit = %[5]d
}
passdb {
  driver = static
  args = password=%[4]s
}
userdb {
  driver = static
  args = uid=mail gid=mail home=%[2]s/%%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[3]s
  }
  inet_listener imaps {
    port = 0
  }
}
`, dc, mail, imapPort, imapPassword, limit, 2*limit+100)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		return "", err
	}
	// Dovecot forks into the background; its output goes to log_path, and a
	// pipe here would be held open by the daemon.
	if err := exec.Command("dovecot", "-c", d.conf).Run(); err != nil {
		return "", fmt.Errorf("dovecot: %v (see %s/dovecot.log)", err, dc)
	}
	return imapAddr, waitListening(imapAddr, nil)
}

func (d *dovecotIMAP) pids() []int {
	b, err := os.ReadFile(filepath.Join(d.base, "master.pid"))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil
	}
	return descendants(pid)
}

// fillDirect writes messages 0..n-1 into the user's Maildir INBOX as
// Dovecot's own APPEND would have saved them — line ends LF
// (mail_save_crlf = no, its default), the size and the CRLF size in the
// file name (S=, W=), in cur/ with no flags — one second apart, oldest
// first; then has Dovecot index them (doveadm index), untimed. Filling by
// APPEND gives the same mailbox, but Dovecot's APPEND slows to some 30
// messages a second past 40,000 messages in one Maildir.
func (d *dovecotIMAP) fillDirect(n int) error {
	box := filepath.Join(d.mail, rcptUser)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
			return err
		}
	}
	base := time.Now().Add(-time.Duration(n) * time.Second).Truncate(time.Second)
	for i := 0; i < n; i++ {
		msg := imapMessage(i, *size)
		lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
		at := base.Add(time.Duration(i) * time.Second)
		name := fmt.Sprintf("%d.M%dP%d.bench,S=%d,W=%d:2,", at.Unix(), i, os.Getpid(), len(lf), len(msg))
		tmp := filepath.Join(box, "tmp", name)
		if err := os.WriteFile(tmp, lf, 0o600); err != nil {
			return err
		}
		// The file's time is the message's INTERNALDATE.
		if err := os.Chtimes(tmp, at, at); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(box, "cur", name)); err != nil {
			return err
		}
	}
	if out, err := exec.Command("chown", "-R", "mail:mail", box).CombinedOutput(); err != nil {
		return fmt.Errorf("chown: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "doveadm", "-c", d.conf, "index", "-u", rcptUser, "INBOX").CombinedOutput(); err != nil {
		return fmt.Errorf("doveadm index: %v: %s", err, out)
	}
	return nil
}

func (d *dovecotIMAP) stop() {
	if d.conf != "" {
		exec.Command("doveadm", "-c", d.conf, "stop").Run()
		d.conf = ""
	}
}

// saltedPasswords caches SCRAM's SaltedPassword by salt and iterations, as a
// mail client keeps it: PBKDF2 runs once, not at each login.
var saltedPasswords sync.Map

// scram logs in with AUTHENTICATE SCRAM-SHA-256 (RFC 5802, RFC 7677), the
// first message sent as an initial response (SASL-IR, RFC 4959).
func (c *imapConn) scram(user, password string) error {
	nonce := make([]byte, 18)
	for i := range nonce {
		nonce[i] = byte(rand.IntN(256))
	}
	clientNonce := base64.RawStdEncoding.EncodeToString(nonce)
	bare := "n=" + user + ",r=" + clientNonce
	c.tag++
	tag := "A" + strconv.Itoa(c.tag)
	fmt.Fprintf(c.w, "%s AUTHENTICATE SCRAM-SHA-256 %s\r\n", tag, base64.StdEncoding.EncodeToString([]byte("n,,"+bare)))
	c.w.Flush()
	challenge := func() ([]byte, error) {
		resp, err := c.read()
		if err != nil {
			return nil, err
		}
		if !bytes.HasPrefix(resp, []byte("+ ")) {
			return nil, fmt.Errorf("AUTHENTICATE: %q", bytes.TrimSpace(resp))
		}
		return base64.StdEncoding.DecodeString(string(bytes.TrimSpace(resp[2:])))
	}
	serverFirst, err := challenge()
	if err != nil {
		return err
	}
	var serverNonce, salt64 string
	iter := 0
	for _, kv := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(kv, "r="):
			serverNonce = kv[2:]
		case strings.HasPrefix(kv, "s="):
			salt64 = kv[2:]
		case strings.HasPrefix(kv, "i="):
			iter, _ = strconv.Atoi(kv[2:])
		}
	}
	if !strings.HasPrefix(serverNonce, clientNonce) || iter <= 0 {
		return fmt.Errorf("AUTHENTICATE: server-first-message %q", serverFirst)
	}
	key := salt64 + "/" + strconv.Itoa(iter)
	sp, ok := saltedPasswords.Load(key)
	if !ok {
		salt, err := base64.StdEncoding.DecodeString(salt64)
		if err != nil {
			return err
		}
		k, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
		if err != nil {
			return err
		}
		sp, _ = saltedPasswords.LoadOrStore(key, k)
	}
	mac := func(k []byte, msg string) []byte {
		h := hmac.New(sha256.New, k)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(sp.([]byte), "Client Key")
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + serverNonce
	authMessage := bare + "," + string(serverFirst) + "," + withoutProof
	sig := mac(storedKey[:], authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	final := withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
	fmt.Fprintf(c.w, "%s\r\n", base64.StdEncoding.EncodeToString([]byte(final)))
	c.w.Flush()
	// The server-final-message comes as a challenge (answered empty) or in
	// the tagged OK.
	resp, err := c.read()
	if err != nil {
		return err
	}
	if bytes.HasPrefix(resp, []byte("+")) {
		c.w.WriteString("\r\n")
		c.w.Flush()
		if resp, err = c.read(); err != nil {
			return err
		}
	}
	for bytes.HasPrefix(resp, []byte("* ")) {
		if resp, err = c.read(); err != nil {
			return err
		}
	}
	if !bytes.HasPrefix(resp, []byte(tag+" OK")) {
		return fmt.Errorf("AUTHENTICATE: %q", bytes.TrimSpace(resp))
	}
	return nil
}
