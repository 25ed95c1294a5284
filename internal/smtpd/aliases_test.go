package smtpd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Program and file targets of aliases: refused unless the config allows them;
// when allowed, they get the message, and a program's exit status decides the
// reply (EX_TEMPFAIL: try again later, nothing kept; a permanent failure of one
// target among others: the others still get it).
func TestProgramAndFileAliases(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "program-got")
	mbox := filepath.Join(dir, "archive.mbox")
	tables := map[string]string{
		"local-host-names": "example.org\n",
		"aliases": "prog: \"|cat > " + got + "\"\n" +
			"file: " + mbox + "\n" +
			"tmpfail: \"|exit 75\", pp\n" +
			"permfail: \"|exit 67\", pp\n",
	}
	off := newHarness(t, harnessOpts{tables: tables})
	c := off.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	for _, rcpt := range []string{"prog@example.org", "file@example.org"} {
		if r := c.cmd("RCPT TO:<" + rcpt + ">"); r.code != 550 || r.enhanced() != "5.7.1" {
			t.Errorf("%s with programs and files off: %v", rcpt, r)
		}
	}

	on := newHarness(t, harnessOpts{tables: tables, allowPrograms: true, allowFiles: true})
	c = on.dial("")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<prog@example.org>", 250, "")
	c.expect("RCPT TO:<file@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Fatalf("delivery to a program and a file: %v", r)
	}
	if b, _ := os.ReadFile(got); !strings.Contains(string(b), "Subject: hello") || !strings.HasPrefix(string(b), "Return-Path: <a@remote.example>") {
		t.Errorf("the program got %q", b)
	}
	if b, _ := os.ReadFile(mbox); !strings.HasPrefix(string(b), "From a@remote.example ") || !strings.Contains(string(b), "Subject: hello\n") {
		t.Errorf("the mbox holds %q", b)
	}

	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<tmpfail@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code/100 != 4 {
		t.Errorf("EX_TEMPFAIL from a program: %v, want 4xx", r)
	}
	if n := len(on.messages("pp")); n != 0 {
		t.Errorf("a refused message was kept for pp (%d)", n)
	}
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<permfail@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Errorf("a permanent failure of one target among others: %v, want 250", r)
	}
	if n := len(on.messages("pp")); n != 1 {
		t.Errorf("pp has %d messages, want 1", n)
	}
}
