package imapd

import (
	"strings"
	"testing"
)

func TestLoginSelectFetch(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	u1 := ts.deliver("pp", "", simpleMessage)
	c := ts.login("pp")
	lines := c.ok("SELECT INBOX")
	mustHave(t, lines, "* 1 EXISTS", "UIDVALIDITY", "UIDNEXT 2", "HIGHESTMODSEQ", `\Seen`)
	lines = c.ok("FETCH 1 (UID FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])")
	if len(lines) != 1 {
		t.Fatalf("lines %q", lines)
	}
	l := lines[0]
	for _, want := range []string{"* 1 FETCH (", "UID " + itoa(int(u1)), "FLAGS ()", `"Hello there"`,
		`(("Alice" NIL "alice" "example.org"))`, "BODY[HEADER.FIELDS (Subject)] {24}\r\nSubject: Hello there\r\n\r\n"} {
		if !strings.Contains(l, want) {
			t.Errorf("FETCH answer %q lacks %q", l, want)
		}
	}
	// A non-peek BODY[] sets \Seen and says so.
	lines = c.ok("FETCH 1 BODY[TEXT]")
	mustHave(t, lines, "BODY[TEXT] {28}\r\nHi Bob,\r\nthis is the body.\r\n", `FLAGS (\Seen)`)
	c.ok("LOGOUT")
}
