package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// postfixInstance is a Postfix of its own in a temporary directory: its
// config directory, queue and data directories, its smtpd on one 127.0.0.1
// address, logging to a file. Both Postfix columns (→Dovecot and relayhost)
// are built on it.
type postfixInstance struct {
	conf   string // the config directory, for postfix -c
	master *exec.Cmd
}

// postfixMissing says why Postfix cannot run here, or "".
func postfixMissing() string {
	if _, err := exec.LookPath("postfix"); err != nil {
		return "postfix is not installed (apt-get install postfix)"
	}
	if os.Geteuid() != 0 {
		return "Postfix must be started as root"
	}
	return ""
}

// startPostfix configures and starts Postfix in dir with its smtpd on
// smtpAddr. mainCf is added to the common main.cf: where mail goes.
// Durability is Postfix's default (queue files fsynced before the 250).
func startPostfix(dir, smtpAddr, mainCf string) (*postfixInstance, error) {
	p := &postfixInstance{conf: filepath.Join(dir, "pf")}
	for _, d := range []string{p.conf, dir + "/spool", dir + "/data"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	os.Chmod(dir, 0o755)
	run("chown", "postfix", dir+"/data")
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(master), "\n") {
		f := strings.Fields(l)
		if len(f) >= 8 && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			if f[0] == "smtp" && f[1] == "inet" {
				f[0] = smtpAddr
			}
			if f[4] == "y" || f[4] == "-" {
				f[4] = "n" // no chroot: the temporary directory is not set up for one
			}
			l = strings.Join(f, " ")
		}
		lines = append(lines, l)
	}
	if !strings.Contains(string(master), "postlogd") {
		lines = append(lines, "postlog unix-dgram n - n - 1 postlogd")
	}
	if err := os.WriteFile(filepath.Join(p.conf, "master.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	common := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.%[2]s
mydestination =
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = /dev/stdout
smtputf8_enable = no
`, dir, rcptDomain)
	if err := os.WriteFile(filepath.Join(p.conf, "main.cf"), []byte(common+mainCf), 0o644); err != nil {
		return nil, err
	}
	// In the foreground Postfix logs to its standard output (there is no
	// syslog here); that goes to a file, as its maillog would.
	p.master = exec.Command("postfix", "-c", p.conf, "start-fg")
	logFile, err := os.Create(filepath.Join(dir, "maillog"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	p.master.Stdout, p.master.Stderr = logFile, logFile
	if err := p.master.Start(); err != nil {
		return nil, err
	}
	if err := waitListening(smtpAddr, p.master); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// pids are Postfix's processes: its master and everything under it.
func (p *postfixInstance) pids() []int {
	if p == nil || p.master == nil || p.master.Process == nil {
		return []int{}
	}
	return descendants(p.master.Process.Pid)
}

// stop stops Postfix, killing its master if it does not end within 10 s.
func (p *postfixInstance) stop() {
	if p == nil {
		return
	}
	exec.Command("postfix", "-c", p.conf, "stop").Run()
	if p.master != nil && p.master.Process != nil {
		done := make(chan struct{})
		go func() { p.master.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.master.Process.Kill()
			<-done
		}
	}
}

func run(name string, args ...string) {
	exec.Command(name, args...).Run()
}
