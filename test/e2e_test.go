package test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

func TestInitCheckNewaliases(t *testing.T) {
	in := newInstance(t, "pp")
	out := in.run("", "check", "--config", in.cfg)
	for _, want := range []string{"config " + in.cfg + ": ok", "hostname   mx.example.org", "local domains     mx.example.org example.org", "aliases"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	// newaliases prints Sendmail's summary. Count the starter file ourselves.
	text, _ := os.ReadFile(filepath.Join(in.dir, "aliases"))
	n, longest, total := 0, 0, 0
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		lhs, rhs, _ := strings.Cut(line, ":")
		rhs = strings.TrimSpace(rhs)
		n++
		longest = max(longest, len(rhs))
		total += len(lhs) + len(rhs) // Sendmail counts names and targets

	}
	want := fmt.Sprintf("%s: %d aliases, longest %d bytes, %d bytes total\n", filepath.Join(in.dir, "aliases"), n, longest, total)
	if got := in.run("", "newaliases", "--config", in.cfg); got != want {
		t.Errorf("newaliases printed %q, want %q", got, want)
	}
	// The starter aliases end at the admin account.
	if !regexp.MustCompile(`(?m)^root:\s+pp$`).Match(text) || !strings.Contains(string(text), "postmaster:") {
		t.Errorf("starter aliases do not lead root to pp:\n%s", text)
	}
	// init refuses to overwrite.
	if r := in.exec("", "init", "--hostname", "h.example", "--domain", "example", "--dir", in.dir); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("init over an existing setup: %+v", r)
	}
}

func TestConfigAndTableErrorsNameFileAndLine(t *testing.T) {
	in := newInstance(t)
	text := mustRead(t, in.cfg)
	in.writeFile("posthorn.toml", strings.Replace(text, "[smtp]\n", "[smtp]\nmax_mesage_bytes = 1000\n", 1))
	line := strings.Count(text[:strings.Index(text, "[smtp]\n")], "\n") + 2
	r := in.exec("", "check", "--config", in.cfg)
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("%s:%d: unknown key \"smtp.max_mesage_bytes\"", in.cfg, line)) {
		t.Errorf("typo'd key: exit %d, stderr %q", r.code, r.stderr)
	}
	// serve refuses to start with it too.
	if r := in.exec("", "serve", "--config", in.cfg); r.code != 1 || !strings.Contains(r.stderr, "max_mesage_bytes") {
		t.Errorf("serve with a typo'd key: exit %d, %q", r.code, r.stderr)
	}

	in = newInstance(t)
	in.writeFile("virtusertable", "# comment\ninfo@example.org pp\nbroken@example.org\n")
	r = in.exec("", "check", "--config", in.cfg)
	if r.code != 1 || !strings.Contains(r.stderr, filepath.Join(in.dir, "virtusertable")+":3") {
		t.Errorf("broken table: exit %d, stderr %q", r.code, r.stderr)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUserCommands(t *testing.T) {
	in := newInstance(t)
	// Flags after the arguments work, the password comes from stdin, and the
	// trailing newline is not part of it.
	in.run("hunter2\n", "user", "add", "pp", "--password-stdin", "--config", in.cfg)
	in.run("pw\n", "--config="+in.cfg, "user", "add", "--password-stdin", "bob")
	if r := in.exec("x\n", "user", "add", "pp", "--password-stdin", "--config", in.cfg); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("duplicate add: %+v", r)
	}
	if r := in.exec("x\n", "user", "add", "Bad/Name", "--password-stdin", "--config", in.cfg); r.code != 1 {
		t.Errorf("bad name accepted: %+v", r)
	}
	if r := in.exec("", "user", "add", "carol", "--config", in.cfg); r.code != 1 || !strings.Contains(r.stderr, "--password-stdin") {
		t.Errorf("no terminal, no --password-stdin: %+v", r)
	}
	out := in.run("", "user", "list", "--config", in.cfg)
	if !regexp.MustCompile(`(?m)^bob\s`).MatchString(out) || !regexp.MustCompile(`(?m)^pp\s`).MatchString(out) {
		t.Errorf("user list:\n%s", out)
	}
	in.run("newpass\n", "user", "passwd", "pp", "--password-stdin", "--config", in.cfg)
	in.run("", "user", "del", "bob", "--config", in.cfg)
	if out := in.run("", "user", "list", "--config", in.cfg); strings.Contains(out, "bob") {
		t.Errorf("bob still listed:\n%s", out)
	}
	if r := in.exec("", "user", "del", "bob", "--config", in.cfg); r.code != 1 {
		t.Errorf("deleting a missing account: %+v", r)
	}
	// Passwords never appear in the store's file as they are.
	data, _ := os.ReadFile(filepath.Join(in.dir, "data", "posthorn.db"))
	wal, _ := os.ReadFile(filepath.Join(in.dir, "data", "posthorn.db-wal"))
	if strings.Contains(string(data)+string(wal), "hunter2") || strings.Contains(string(data)+string(wal), "newpass") {
		t.Error("a password is stored in clear")
	}
}

func TestSwaksDeliversThroughTheTables(t *testing.T) {
	in := newInstance(t, "pp", "bob")
	in.writeFile("virtusertable", "info@example.org\tpp\nsales@example.org\tbob\nleaked@example.org\terror:nouser No such user here\n")
	in.start()

	// The guide's aliases: www -> webmaster -> root -> pp.
	out, code := in.swaks("--to", "www@example.org", "--from", "someone@remote.example", "--local-interface", "127.0.0.2",
		"--header", "Subject: via aliases", "--body", "hello pp")
	if code != 0 || !strings.Contains(out, "250 2.0.0") {
		t.Fatalf("swaks: exit %d\n%s", code, out)
	}
	out, code = in.swaks("--to", "sales@example.org", "--from", "someone@remote.example", "--local-interface", "127.0.0.2", "--pipeline")
	if code != 0 {
		t.Fatalf("swaks --pipeline: exit %d\n%s", code, out)
	}
	// error:nouser gives its text back.
	out, code = in.swaks("--to", "leaked@example.org", "--from", "someone@remote.example", "--local-interface", "127.0.0.2")
	if code == 0 || !strings.Contains(out, "550") || !strings.Contains(out, "No such user here") {
		t.Errorf("error:nouser: exit %d\n%s", code, out)
	}
	// STARTTLS with the certificate of the dev setup is tested in TestDevServer;
	// here there is none, so swaks --tls must fail rather than send in clear.
	if _, code := in.swaks("--to", "pp@example.org", "--tls", "--local-interface", "127.0.0.2"); code == 0 {
		t.Error("swaks --tls succeeded without a certificate")
	}

	pp := in.messages("pp")
	if len(pp) != 1 || !strings.Contains(pp[0], "Subject: via aliases") || !strings.HasPrefix(pp[0], "Return-Path: <someone@remote.example>\r\nReceived: from ") {
		t.Errorf("pp's messages: %q", pp)
	}
	if len(in.messages("bob")) != 1 {
		t.Error("bob did not get sales@")
	}
}

func TestNoOpenRelay(t *testing.T) {
	in := newInstance(t, "pp")
	in.writeFile("access", "127.0.0.3\tRELAY\n")
	in.start()
	out, code := in.swaks("--to", "victim@remote.example", "--from", "spammer@elsewhere.example", "--local-interface", "127.0.0.2")
	if code == 0 || !strings.Contains(out, "550 5.7.1 Relaying denied") {
		t.Errorf("relay from an outside client: exit %d\n%s", code, out)
	}
	for _, rcpt := range []string{"victim%remote.example@example.org", "@example.org:victim@remote.example", "remote.example!victim@example.org", `"victim@remote.example"@example.org`} {
		if _, code := in.swaks("--to", rcpt, "--from", "spammer@elsewhere.example", "--local-interface", "127.0.0.2"); code == 0 {
			t.Errorf("relayed to %s", rcpt)
		}
	}
	// The access table's RELAY lets 127.0.0.3 (the guide's "192.168.69 RELAY").
	out, code = in.swaks("--to", "friend@remote.example", "--from", "me@example.org", "--local-interface", "127.0.0.3")
	if code != 0 {
		t.Fatalf("relay from 127.0.0.3: exit %d\n%s", code, out)
	}
	q := in.run("", "mailq", "--config", in.cfg)
	if !strings.Contains(q, "friend@remote.example") || strings.Contains(q, "victim") || !strings.Contains(q, "Total requests: 1") {
		t.Errorf("mailq:\n%s", q)
	}
}

func TestTableChangeWithoutRestart(t *testing.T) {
	in := newInstance(t, "pp")
	in.start()
	if _, code := in.swaks("--to", "shop-x7k2@example.org", "--local-interface", "127.0.0.2"); code == 0 {
		t.Fatal("unknown address accepted")
	}
	in.writeFile("virtusertable", "shop-x7k2@example.org\tpp\n")
	deadline := time.Now().Add(2 * time.Second)
	for {
		out, code := in.swaks("--to", "shop-x7k2@example.org", "--local-interface", "127.0.0.2", "--quit-after", "RCPT")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new virtusertable entry was not in force within 2 s:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDevServer(t *testing.T) {
	requireTool(t, "swaks")
	if c, err := net.DialTimeout("tcp", "127.0.0.1:2525", time.Second); err == nil {
		c.Close()
		t.Skip("127.0.0.1:2525 is busy: something else runs there")
	}
	dir := filepath.Join(t.TempDir(), "dev")
	var password string
	for round := 0; round < 2; round++ {
		cmd := exec.Command(binary, "serve", "--dev", dir)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var printed strings.Builder
		var pw string
		for sc.Scan() {
			printed.WriteString(sc.Text() + "\n")
			if m := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				pw = m[1]
			}
			if strings.HasPrefix(sc.Text(), "Stop with") {
				break
			}
		}
		go func() {
			for sc.Scan() {
			}
		}()
		if pw == "" || !strings.Contains(printed.String(), "SMTP:     127.0.0.1:2525") {
			cmd.Process.Kill()
			t.Fatalf("serve --dev printed:\n%s", printed.String())
		}
		if round == 0 {
			password = pw
		} else if pw != password {
			t.Errorf("second run printed password %q, first %q: the directory was not reused", pw, password)
		}
		out, err := exec.Command("swaks", "--server", "127.0.0.1:2525", "--to", "demo@posthorn.test", "--tls",
			"--header", fmt.Sprintf("Subject: round %d", round)).CombinedOutput()
		if err != nil {
			t.Errorf("swaks --tls to the dev server: %v\n%s", err, out)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	in := &instance{t: t, dir: dir}
	msgs := in.messages("demo")
	if len(msgs) != 2 || !strings.Contains(msgs[0], "with ESMTPS") {
		t.Errorf("demo's INBOX: %q", msgs)
	}
}

// TestCrashLosesNothingAcknowledged delivers under load from several clients,
// kills the server with SIGKILL at a random moment, 20 times (issue 8),
// restarts it, and checks that every message that got its 250 is in the
// mailbox exactly once and that the store's own check passes.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	in := newInstance(t, "pp")
	var acked sync.Map // Message-ID -> true
	var n atomic.Int64
	const rounds = 20
	for round := 0; round < rounds; round++ {
		in.start()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("<r%d-w%d-%d@crash.test>", round, w, n.Add(1))
					c, err := gosmtp.Dial(in.smtp)
					if err != nil {
						return
					}
					msg := "From: a@remote.example\r\nTo: pp@example.org\r\nMessage-ID: " + id + "\r\nSubject: crash\r\n\r\n" + strings.Repeat("body line\r\n", 200)
					err = c.SendMail("a@remote.example", []string{"pp@example.org"}, strings.NewReader(msg))
					c.Close()
					if err == nil {
						acked.Store(id, true)
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(50+rand.IntN(500)) * time.Millisecond)
		in.kill()
		close(stop)
		wg.Wait()
	}
	in.start()
	count := map[string]int{}
	for _, m := range in.messages("pp") {
		if id := regexp.MustCompile(`(?m)^Message-ID: (\S+)\r$`).FindStringSubmatch(m); id != nil {
			count[id[1]]++
		}
	}
	total := 0
	acked.Range(func(k, _ any) bool {
		total++
		if count[k.(string)] != 1 {
			t.Errorf("acknowledged message %s is there %d times", k, count[k.(string)])
		}
		return true
	})
	if total == 0 {
		t.Fatal("no message was acknowledged: the test proved nothing")
	}
	t.Logf("%d messages acknowledged across %d SIGKILLs, %d in the mailbox", total, rounds, len(count))
	in.stop()
	if out := in.run("", "check", "--data", "--config", in.cfg); !strings.Contains(out, "store in") {
		t.Errorf("check --data:\n%s", out)
	}
}

// Started as root with run_as, the server opens its port and then runs as
// that user, who owns the data.
func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	in := newInstance(t, "pp")
	// Let nobody reach the instance's directory and own its data.
	for d := in.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	filepath.Walk(filepath.Join(in.dir, "data"), func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Chown(p, uid, gid)
		}
		return nil
	})
	text := mustRead(t, in.cfg)
	in.writeFile("posthorn.toml", strings.Replace(text, "# run_as = \"posthorn\"", "run_as = \"nobody\"", 1))
	in.start()
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.proc.Process.Pid))
	if !regexp.MustCompile(`(?m)^Uid:\s+` + nobody.Uid + `\s`).Match(status) {
		t.Errorf("the server does not run as nobody:\n%s", status)
	}
	if out, code := in.swaks("--to", "pp@example.org", "--local-interface", "127.0.0.2"); code != 0 {
		t.Errorf("delivery as nobody: exit %d\n%s", code, out)
	}
	if n := len(in.messages("pp")); n != 1 {
		t.Errorf("pp has %d messages", n)
	}
}
