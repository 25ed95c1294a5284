package mailimport

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Popa3dUIDLs serves spool with Debian's popa3d and returns its UIDL
// listing. popa3d reads the session on stdin (it runs from inetd), checks
// the password through PAM and reads /var/mail/USER (compiled in: it cannot
// be pointed at another directory). So this needs root: a throwaway system
// user is made for the session and removed after, with its spool file.
func popa3dUIDLs(t *testing.T, spool string) []string {
	t.Helper()
	bin, err := exec.LookPath("popa3d")
	if err != nil {
		t.Skip("popa3d is not installed (apt-get install popa3d)")
	}
	if os.Geteuid() != 0 {
		t.Skip("popa3d needs root: it serves /var/mail/USER of a system user")
	}
	for _, tool := range []string{"useradd", "userdel", "chpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing", tool)
		}
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	name := "phimp" + hex.EncodeToString(rnd[:])
	password := "Pw-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command("useradd", "-M", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Skipf("useradd: %v %s", err, out)
	}
	spoolPath := filepath.Join("/var/mail", name)
	t.Cleanup(func() {
		os.Remove(spoolPath)
		exec.Command("userdel", name).Run()
	})
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v %s", err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.WriteFile(spoolPath, []byte(spool), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(spoolPath, uid, gid); err != nil {
		t.Fatal(err)
	}
	// popa3d waits a second when the spool's mtime is now; an older mtime
	// saves it.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(spoolPath, old, old)
	session := exec.Command(bin)
	session.Stdin = strings.NewReader(fmt.Sprintf("USER %s\r\nPASS %s\r\nUIDL\r\nQUIT\r\n", name, password))
	var out bytes.Buffer
	session.Stdout = &out
	done := make(chan error, 1)
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- session.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("popa3d: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		session.Process.Kill()
		t.Fatal("popa3d did not finish")
	}
	// +OK greeting, +OK USER, +OK PASS, +OK UIDL, lines, ".", +OK QUIT.
	sc := bufio.NewScanner(&out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), "\r"))
	}
	if len(lines) < 5 || !strings.HasPrefix(lines[2], "+OK") || !strings.HasPrefix(lines[3], "+OK") {
		t.Fatalf("popa3d session:\n%s", out.String())
	}
	var ids []string
	for _, l := range lines[4:] {
		if l == "." {
			return ids
		}
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != strconv.Itoa(len(ids)+1) {
			t.Fatalf("popa3d UIDL line %q", l)
		}
		ids = append(ids, f[1])
	}
	t.Fatalf("popa3d UIDL listing not terminated:\n%s", out.String())
	return nil
}

// The unique-ids worked out for an mbox are the ones popa3d itself gives.
func TestUIDLsEqualPopa3d(t *testing.T) {
	want := popa3dUIDLs(t, spoolFixture)
	var got []string
	for _, m := range readAll(t, spoolFixture, MboxRD) {
		got = append(got, m.UIDL)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("UIDLs\n got %q\nwant %q (popa3d)", got, want)
	}
	if len(want) != 4 {
		t.Errorf("popa3d saw %d messages, want 4", len(want))
	}
}
