// Package test holds posthorn's end-to-end tests: they build the binary, start
// it on 127.0.0.1 with a temporary config, and talk to it with real clients
// (swaks, Go's SMTP client) the way a user would.
package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

// binary is the posthorn binary built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "posthorn-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "posthorn")
	build := exec.Command("go", "build", "-o", binary, "../cmd/posthorn")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building posthorn:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool skips the test when a client program is missing, or fails it when
// POSTHORN_REQUIRE_INTEROP=1 (as in CI).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("POSTHORN_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s is not installed and POSTHORN_REQUIRE_INTEROP=1 (apt-get install %s)", name, name)
		}
		t.Skipf("%s is not installed (apt-get install %s); skipping", name, name)
	}
	return p
}

// freePort returns a 127.0.0.1 address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	// Below Linux's ephemeral range (32768-60999): a port the kernel
	// hands out as :0 may also be handed to an outgoing connection of
	// another test between our check and the server's bind; a port below
	// the range is only taken by someone asking for it by number.
	portsMu.Lock()
	defer portsMu.Unlock()
	for tries := 0; tries < 1000; tries++ {
		p := 20000 + rand.IntN(12700)
		if portsGiven[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[p] = true
		return ln.Addr().String()
	}
	t.Fatal("no free port found")
	return ""
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// instance is a posthorn installation in a temporary directory.
type instance struct {
	t       *testing.T
	dir     string // holds posthorn.toml and the tables
	cfg     string // path of posthorn.toml
	data    string // data_dir when moved from dir/data (the disk-full test)
	smtp    string // SMTP listen address
	proc    *exec.Cmd
	stderr  *lockedBuffer
	stopped chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newInstance runs `posthorn init` into a temp dir, points [smtp] listen at a
// free port and adds the given accounts (password "secret-<name>").
func newInstance(t *testing.T, accounts ...string) *instance {
	t.Helper()
	return newInstanceWith(t, instanceOptions{}, accounts...)
}

// mergeConfig adds the keys of extra to a config text: keys before any table
// header go to [dns] (historically the starter's last table), and keys under
// "[table]" go right after that table's header when the config has one, so
// that no table is defined twice.
func mergeConfig(cfg, extra string) string {
	table := "dns"
	adds := map[string][]string{}
	var order []string
	for _, l := range strings.Split(extra, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			table = strings.Trim(t, "[]")
			continue
		}
		if t == "" {
			continue
		}
		if _, ok := adds[table]; !ok {
			order = append(order, table)
		}
		adds[table] = append(adds[table], l)
	}
	lines := strings.Split(cfg, "\n")
	for _, table := range order {
		header := "[" + table + "]"
		found := false
		for i, l := range lines {
			if strings.TrimSpace(l) == header {
				rest := append(append([]string{}, adds[table]...), lines[i+1:]...)
				lines = append(lines[:i+1], rest...)
				found = true
				break
			}
		}
		if !found {
			lines = append(lines, header)
			lines = append(lines, adds[table]...)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// instanceOptions change what newInstanceWith sets up.
type instanceOptions struct {
	hostname, domain string // "mx.example.org", "example.org"
	listen           string // SMTP listen address (a free port on 127.0.0.1)
	extra            string // appended to posthorn.toml, whose last table is [dns]
}

func newInstanceWith(t *testing.T, o instanceOptions, accounts ...string) *instance {
	t.Helper()
	if o.hostname == "" {
		o.hostname, o.domain = "mx.example.org", "example.org"
	}
	if o.listen == "" {
		o.listen = freePort(t)
	}
	if o.extra == "" {
		// Never ask the real DNS or send mail out: a fake resolver in which
		// remote.example's MX is 127.0.0.1, where port 1 refuses, so that
		// relayed mail waits in the queue.
		dns := dnstest.Start(t)
		dns.MustAdd(t, "remote.example. 60 IN MX 10 mx.remote.example.", "mx.remote.example. 60 IN A 127.0.0.1")
		o.extra = fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = 1\n", dns.Addr)
	}
	dir := t.TempDir()
	in := &instance{t: t, dir: dir, cfg: filepath.Join(dir, "posthorn.toml"), smtp: o.listen}
	in.run("", "init", "--hostname", o.hostname, "--domain", o.domain, "--dir", dir, "--admin", "pp")
	text, err := os.ReadFile(in.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(text), `listen = ["0.0.0.0:25", "[::]:25"]`, fmt.Sprintf("listen = %q", in.smtp), 1)
	if cfg == string(text) {
		t.Fatal("could not find the listen line in the starter config")
	}
	in.writeFile("posthorn.toml", mergeConfig(cfg, o.extra))
	for _, a := range accounts {
		in.runStdin("secret-"+a+"\n", "user", "add", a, "--password-stdin", "--config", in.cfg)
	}
	return in
}

func (in *instance) writeFile(name, text string) {
	in.t.Helper()
	tmp := filepath.Join(in.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		in.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(in.dir, name)); err != nil {
		in.t.Fatal(err)
	}
}

// result is what a command did.
type result struct {
	code           int
	stdout, stderr string
}

// exec runs posthorn with args and returns its exit code and output.
func (in *instance) exec(stdin string, args ...string) result {
	in.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// run runs posthorn and fails the test unless it exits 0.
func (in *instance) run(stdin string, args ...string) string {
	in.t.Helper()
	r := in.exec(stdin, args...)
	if r.code != 0 {
		in.t.Fatalf("posthorn %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (in *instance) runStdin(stdin string, args ...string) string {
	in.t.Helper()
	return in.run(stdin, args...)
}

// start starts `posthorn serve` and waits until SMTP answers.
func (in *instance) start() {
	in.t.Helper()
	in.stderr = &lockedBuffer{}
	in.proc = exec.Command(binary, "serve", "--config", in.cfg)
	in.proc.Stdout = in.stderr
	in.proc.Stderr = in.stderr
	if err := in.proc.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.stopped = make(chan struct{})
	go func(p *exec.Cmd, done chan struct{}) { p.Wait(); close(done) }(in.proc, in.stopped)
	in.t.Cleanup(in.kill)
	deadline := time.Now().Add(15 * time.Second)
	for {
		// Up means greeting: the kernel accepts connections as soon as the
		// port is bound, before the server has opened its store.
		c, err := net.DialTimeout("tcp", in.smtp, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Write([]byte("QUIT\r\n"))
			c.Close()
			if strings.HasPrefix(line, "220") {
				return
			}
		}
		select {
		case <-in.stopped:
			in.t.Fatalf("posthorn serve exited:\n%s", in.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("posthorn serve did not listen on %s:\n%s", in.smtp, in.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL, as a crash would.
func (in *instance) kill() {
	if in.proc == nil || in.proc.Process == nil {
		return
	}
	in.proc.Process.Signal(syscall.SIGKILL)
	<-in.stopped
	in.proc = nil
}

// stop stops the server with SIGTERM and waits.
func (in *instance) stop() {
	in.t.Helper()
	in.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.stopped:
	case <-time.After(30 * time.Second):
		in.t.Fatal("posthorn did not stop on SIGTERM")
	}
	in.proc = nil
}

// swaks runs swaks against the instance and returns its transcript and exit code.
func (in *instance) swaks(args ...string) (string, int) {
	in.t.Helper()
	requireTool(in.t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swaks", append([]string{"--server", in.smtp, "--timeout", "20"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatal(err)
	}
	return string(out), code
}

// messages returns the bytes of the messages in an account's INBOX, read from
// the store on disk (a second reader next to the running server).
func (in *instance) messages(account string) []string {
	in.t.Helper()
	data := in.data
	if data == "" {
		data = filepath.Join(in.dir, "data")
	}
	st, err := sqlite.Open(data, sqlite.Options{})
	if err != nil {
		in.t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	a, err := st.GetAccount(ctx, account)
	if err != nil {
		in.t.Fatalf("account %s: %v", account, err)
	}
	mb, err := st.GetMailbox(ctx, a.ID, store.Inbox)
	if err != nil {
		in.t.Fatal(err)
	}
	infos, err := st.ListMessages(ctx, mb.ID, 0, false)
	if err != nil {
		in.t.Fatal(err)
	}
	var out []string
	for _, m := range infos {
		r, err := st.OpenMessage(ctx, mb.ID, m.UID)
		if err != nil {
			in.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			in.t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}
