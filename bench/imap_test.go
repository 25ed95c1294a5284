package main

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
)

func TestLiteralAtEnd(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int
		ok   bool
	}{
		{"* 1 FETCH (BODY[] {123}\r\n", 123, true},
		{"A1 APPEND INBOX {7+}\r\n", 7, true},
		{"* 1 FETCH (FLAGS (\\Seen))\r\n", 0, false},
		{"* OK {x}\r\n", 0, false},
		{"}\r\n", 0, false},
		{"* 1 FETCH (ENVELOPE (NIL {0}\r\n", 0, true},
	} {
		n, ok := literalAtEnd([]byte(tc.line))
		if n != tc.n || ok != tc.ok {
			t.Errorf("literalAtEnd(%q) = %d, %v; want %d, %v", tc.line, n, ok, tc.n, tc.ok)
		}
	}
}

func TestFetchNumber(t *testing.T) {
	resp := []byte("* 12 FETCH (FLAGS (\\Seen $UID) UID 55 MODSEQ (90210))\r\n")
	for _, tc := range []struct {
		item string
		n    int64
		ok   bool
	}{
		{"UID ", 55, true},
		{"MODSEQ (", 90210, true},
		{"RFC822.SIZE ", 0, false},
	} {
		n, ok := fetchNumber(resp, tc.item)
		if n != tc.n || ok != tc.ok {
			t.Errorf("fetchNumber(%q) = %d, %v; want %d, %v", tc.item, n, ok, tc.n, tc.ok)
		}
	}
	// "$UID)" is a keyword, not the item: the number must follow it.
	if n, ok := fetchNumber([]byte("* 1 FETCH (FLAGS ($XUID 7))\r\n"), "UID "); ok {
		t.Errorf("fetchNumber found UID %d inside a keyword", n)
	}
	if n, ok := fetchNumber([]byte("* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"), "[HIGHESTMODSEQ "); !ok || n != 715194045007 {
		t.Errorf("HIGHESTMODSEQ = %d, %v", n, ok)
	}
}

func TestFetchFlags(t *testing.T) {
	got := fetchFlags([]byte("* 3 FETCH (UID 9 FLAGS (\\Seen $R1S2a \\Flagged) MODSEQ (4))\r\n"))
	for _, f := range []string{"\\seen", "$r1s2a", "\\flagged"} {
		if !got[f] {
			t.Errorf("flag %s missing from %v", f, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("got %d flags, want 3: %v", len(got), got)
	}
	if isFetch([]byte("* 3 EXISTS\r\n")) || !isFetch([]byte("* 3 FETCH (UID 1)\r\n")) {
		t.Error("isFetch is wrong")
	}
}

// TestImapMessages checks what the workloads rely on: the search word is in
// exactly the messages searchHits counts, each message is CRLF only and of
// about the size asked for.
func TestImapMessages(t *testing.T) {
	const n = 300
	with := 0
	for i := 0; i < n; i++ {
		m := imapMessage(i, 4096)
		if bytes.Contains(bytes.ToLower(m), []byte(searchWord)) {
			with++
			if bytes.Contains(bytes.ToLower(m[:bytes.Index(m, []byte("\r\n\r\n"))]), []byte(searchWord)) {
				t.Errorf("message %d has the search word in its header", i)
			}
		}
		if bytes.Contains(bytes.ReplaceAll(m, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("message %d has a bare LF", i)
		}
		if len(m) < 3500 || len(m) > 4700 {
			t.Errorf("message %d is %d bytes, want about 4096", i, len(m))
		}
	}
	if want := searchHits(n); with != want {
		t.Errorf("%d messages hold %q, searchHits says %d", with, searchWord, want)
	}
}

// TestClientRead runs the client's reader and command loop against a
// scripted server over a real socket: literals inside responses, untagged
// responses handed over, a NO turned into an error.
func TestClientRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		r.ReadString('\n') // A1 FETCH
		nc.Write([]byte("* 1 FETCH (UID 4 ENVELOPE (\"x\" {5}\r\na\r\nbc NIL))\r\n* 2 FETCH (UID 5)\r\nA1 OK done\r\n"))
		r.ReadString('\n') // A2 NOOP
		nc.Write([]byte("A2 NO [CANNOT] no\r\n"))
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &imapConn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc)}
	defer nc.Close()
	_, untagged, err := c.cmd("FETCH 1:2 (UID ENVELOPE)")
	if err != nil {
		t.Fatal(err)
	}
	if len(untagged) != 2 || !strings.Contains(string(untagged[0]), "{5}\r\na\r\nbc NIL))") {
		t.Fatalf("untagged = %q", untagged)
	}
	if _, _, err := c.cmd("NOOP"); err == nil || !strings.Contains(err.Error(), "CANNOT") {
		t.Errorf("NO answer: err = %v", err)
	}
}
