package imapd

// Raw protocol dialogues (send these bytes, expect those lines) for what
// imapclient cannot say: MULTIAPPEND, SAVEDATE, UNCHANGEDSINCE with
// MODIFIED, ESEARCH and SEARCHRES, COMPRESS, two sessions on one mailbox,
// QRESYNC after a disconnect, hostile input, and crafted mailbox names
// between two accounts. Expectations come from the RFCs cited.

import (
	"bufio"
	"compress/flate"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// number extracts the first number after key in lines ("UIDVALIDITY").
func dlgNumber(t testing.TB, lines []string, key string) uint64 {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(key) + `[ (]+(\d+)`)
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in %q", key, lines)
	return 0
}

// linesWith returns the lines containing s.
func dlgLines(lines []string, s string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// appendSync sends an APPEND with a synchronising literal: it waits for
// the continuation request (RFC 9051 section 7.5) before the data.
func (c *client) dlgAppendSync(mailbox, extra, text string) ([]string, string) {
	c.t.Helper()
	c.seq++
	tag := fmt.Sprintf("a%d", c.seq)
	c.send(fmt.Sprintf("%s APPEND %s %s{%d}", tag, mailbox, extra, len(text)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		c.t.Fatalf("APPEND: got %q, want a continuation request", l)
	}
	c.send(text)
	return c.until(tag)
}

func TestDialogueEnable(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "en")
	c := ts.login("en")
	// RFC 5161 section 3.1: ENABLED lists only what was enabled, unknown
	// extensions are ignored; a second ENABLE of the same lists nothing.
	lines := c.ok("ENABLE CONDSTORE X-GOOD-IDEA")
	if !slices.Equal(lines, []string{"* ENABLED CONDSTORE"}) {
		t.Errorf("ENABLE CONDSTORE X-GOOD-IDEA: %q", lines)
	}
	lines = c.ok("ENABLE CONDSTORE")
	if !slices.Equal(lines, []string{"* ENABLED"}) {
		t.Errorf("second ENABLE CONDSTORE: %q", lines)
	}
	// ENABLE before login is refused (RFC 5161 section 3.1).
	c2 := ts.dial()
	c2.expect("ENABLE CONDSTORE", "BAD")
}

func TestDialogueMultiAppend(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "ma")
	c := ts.login("ma")
	m1 := clMsgText("a@example.org", "first", "Fri, 20 Nov 2026 10:00:00 +0000", "one")
	m2 := clMsgText("b@example.org", "second", "Fri, 20 Nov 2026 11:00:00 +0000", "two")
	validity := ts.mailbox("ma", "INBOX").UIDValidity
	// MULTIAPPEND (RFC 3502) with LITERAL+ (RFC 7888): one APPENDUID with
	// a UID set (RFC 4315 section 3).
	c.seq++
	c.send(fmt.Sprintf("a%d APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Flagged $X) \"05-Mar-2025 10:11:12 +0100\" {%d+}\r\n%s",
		c.seq, len(m1), m1, len(m2), m2))
	_, status := c.until(fmt.Sprintf("a%d", c.seq))
	uids := ts.uids("ma", "INBOX")
	if len(uids) != 2 {
		t.Fatalf("MULTIAPPEND: %s; INBOX has %v", status, uids)
	}
	want := fmt.Sprintf("OK [APPENDUID %d %d:%d]", validity, uids[0], uids[1])
	if !strings.HasPrefix(status, want) {
		t.Errorf("MULTIAPPEND answered %q, want %q...", status, want)
	}
	c.ok("SELECT INBOX")
	lines := c.ok("FETCH 1:2 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (Subject)])")
	mustHave(t, lines, `* 1 FETCH (FLAGS (\Seen)`, `Subject: first`, `Subject: second`, `"05-Mar-2025 10:11:12 +0100"`)
	if l := dlgLines(lines, "* 2 FETCH"); len(l) != 1 || !strings.Contains(l[0], `\Flagged`) || !strings.Contains(l[0], `$X`) {
		t.Errorf("second message: %q", l)
	}
	// A MULTIAPPEND with one bad message appends none (RFC 3502 section
	// 6.3.11: all or nothing).
	c.seq++
	tag := fmt.Sprintf("a%d", c.seq)
	c.send(fmt.Sprintf("%s APPEND INBOX {%d+}\r\n%s (\\Bogus) {%d+}\r\n%s", tag, len(m1), m1, len(m2), m2))
	_, status = c.until(tag)
	if strings.HasPrefix(status, "OK") {
		t.Errorf("MULTIAPPEND with \\Bogus answered %q", status)
	}
	if n := len(ts.uids("ma", "INBOX")); n != 2 {
		t.Errorf("a failed MULTIAPPEND left %d messages, want 2", n)
	}
	// A synchronising literal works as well.
	lines, status = c.dlgAppendSync("INBOX", "", m1)
	if !strings.HasPrefix(status, "OK [APPENDUID") {
		t.Errorf("APPEND with a synchronising literal: %q", status)
	}
	// The selected mailbox learns of its appended messages.
	mustHave(t, append(lines, c.ok("NOOP")...), "* 3 EXISTS")
}

func TestDialogueSaveDateModSeq(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "sd")
	ts.deliver("sd", "", simpleMessage)
	ts.deliver("sd", "", simpleMessage)
	c := ts.login("sd")
	lines := c.ok("SELECT INBOX (CONDSTORE)")
	highest := dlgNumber(t, lines, "HIGHESTMODSEQ")
	before := time.Now().Add(-time.Minute)
	lines = c.ok("FETCH 1:2 (UID SAVEDATE MODSEQ)")
	re := regexp.MustCompile(`^\* (\d) FETCH \(.*SAVEDATE "([^"]+)".*MODSEQ \((\d+)\)`)
	var mods []uint64
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("FETCH SAVEDATE MODSEQ: %q", l)
			continue
		}
		d, err := time.Parse("_2-Jan-2006 15:04:05 -0700", m[2])
		if err != nil || d.Before(before) || d.After(time.Now().Add(time.Minute)) {
			t.Errorf("SAVEDATE %q (%v), want about now (RFC 8514)", m[2], err)
		}
		n, _ := strconv.ParseUint(m[3], 10, 64)
		mods = append(mods, n)
	}
	if len(mods) != 2 || mods[0] > highest || mods[1] > highest || mods[0] == 0 {
		t.Errorf("MODSEQs %v, HIGHESTMODSEQ %d", mods, highest)
	}
	// A STORE raises the MODSEQ above every earlier one (RFC 7162 section
	// 3.1.1) and is reported with it.
	lines = c.ok(`STORE 1 +FLAGS (\Answered)`)
	m := regexp.MustCompile(`MODSEQ \((\d+)\)`).FindStringSubmatch(strings.Join(lines, "\n"))
	if m == nil {
		t.Fatalf("STORE after SELECT (CONDSTORE) lacks MODSEQ: %q", lines)
	}
	if n, _ := strconv.ParseUint(m[1], 10, 64); n <= highest {
		t.Errorf("MODSEQ after STORE %d, not above %d", n, highest)
	}
	// CHANGEDSINCE (RFC 7162 section 3.1.4.1) returns only message 1.
	lines = c.ok(fmt.Sprintf("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", highest))
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* 1 FETCH") || !strings.Contains(lines[0], "MODSEQ") {
		t.Errorf("FETCH CHANGEDSINCE: %q", lines)
	}
	// SEARCH MODSEQ (RFC 7162 section 3.1.5).
	lines = c.ok(fmt.Sprintf("SEARCH MODSEQ %d", highest+1))
	if len(lines) != 1 || !regexp.MustCompile(`^\* SEARCH 1 \(MODSEQ \d+\)$`).MatchString(lines[0]) {
		t.Errorf("SEARCH MODSEQ: %q", lines)
	}
}

func TestDialogueUnchangedSince(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "uc")
	for i := 0; i < 3; i++ {
		ts.deliver("uc", "", simpleMessage)
	}
	c := ts.login("uc")
	c.ok("ENABLE CONDSTORE")
	c.ok("SELECT INBOX")
	lines := c.ok("FETCH 1:3 (MODSEQ)")
	re := regexp.MustCompile(`^\* (\d) FETCH \(MODSEQ \((\d+)\)\)$`)
	mod := map[int]uint64{}
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			mod[n], _ = strconv.ParseUint(m[2], 10, 64)
		}
	}
	if len(mod) != 3 {
		t.Fatalf("FETCH MODSEQ: %q", lines)
	}
	// Message 2 changes; a STORE UNCHANGEDSINCE the old value must then
	// fail for 2 only: OK [MODIFIED 2] (RFC 7162 section 3.1.3).
	c.ok(`STORE 2 +FLAGS.SILENT (\Seen)`)
	top := max(mod[1], mod[2], mod[3])
	lines, status := c.cmd(fmt.Sprintf(`STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\Flagged)`, top))
	if !strings.HasPrefix(status, "OK [MODIFIED 2]") {
		t.Errorf("STORE UNCHANGEDSINCE: %q, want OK [MODIFIED 2] (after %q)", status, lines)
	}
	mustHave(t, lines, "* 1 FETCH", "* 3 FETCH")
	for _, l := range dlgLines(lines, "* 2 FETCH") {
		if strings.Contains(l, `\Flagged`) {
			t.Errorf("message 2 got \\Flagged despite UNCHANGEDSINCE: %q", l)
		}
	}
	lines = c.ok("FETCH 1:3 FLAGS")
	for i, want := range []bool{true, false, true} {
		l := dlgLines(lines, fmt.Sprintf("* %d FETCH", i+1))
		if len(l) != 1 || strings.Contains(l[0], `\Flagged`) != want {
			t.Errorf("message %d: %q, \\Flagged want %v", i+1, l, want)
		}
	}
	// UNCHANGEDSINCE 0 never succeeds.
	_, status = c.cmd(`UID STORE 1:* (UNCHANGEDSINCE 0) +FLAGS (\Draft)`)
	if !strings.HasPrefix(status, "OK [MODIFIED ") {
		t.Errorf("UNCHANGEDSINCE 0: %q", status)
	}
}

func TestDialogueESearchSearchRes(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "es")
	var uids []uint32
	for i := 0; i < 6; i++ {
		var flags []string
		if i%2 == 0 {
			flags = []string{`\Flagged`}
		}
		uids = append(uids, ts.deliver("es", "", clMsgText("a@example.org", fmt.Sprint("n", i), "Fri, 20 Nov 2026 10:00:00 +0000", "x"), flags...))
	}
	c := ts.login("es")
	c.ok("SELECT INBOX")
	// ESEARCH (RFC 4731): one ESEARCH response carrying the tag.
	c.seq++
	tag := fmt.Sprintf("a%d", c.seq)
	c.send(tag + " SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED")
	lines, status := c.until(tag)
	if !strings.HasPrefix(status, "OK") || len(lines) != 1 {
		t.Fatalf("SEARCH RETURN: %q %q", lines, status)
	}
	for _, want := range []string{`* ESEARCH (TAG "` + tag + `")`, "MIN 1", "MAX 5", "COUNT 3", "ALL 1,3,5"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("ESEARCH %q lacks %q", lines[0], want)
		}
	}
	if strings.Contains(lines[0], " UID") {
		t.Errorf("non-UID ESEARCH says UID: %q", lines[0])
	}
	lines = c.ok("UID SEARCH RETURN (COUNT) UNFLAGGED")
	if len(lines) != 1 || !strings.Contains(lines[0], " UID COUNT 3") {
		t.Errorf("UID SEARCH RETURN (COUNT): %q", lines)
	}
	// No match: ESEARCH without MIN/MAX/ALL (RFC 4731 section 3.1).
	lines = c.ok("SEARCH RETURN (MIN MAX ALL) SUBJECT nothing-like-this")
	if len(lines) != 1 || strings.Contains(lines[0], "MIN") || strings.Contains(lines[0], "ALL") {
		t.Errorf("empty ESEARCH: %q", lines)
	}
	// SEARCHRES (RFC 5182): RETURN (SAVE) keeps the result for "$"; with
	// SAVE alone no ESEARCH is sent.
	lines = c.ok("SEARCH RETURN (SAVE) FLAGGED")
	if len(lines) != 0 {
		t.Errorf("SEARCH RETURN (SAVE) sent %q", lines)
	}
	lines = c.ok("FETCH $ (UID)")
	var got []string
	for _, l := range lines {
		got = append(got, l[:strings.Index(l, " FETCH")])
	}
	if !slices.Equal(got, []string{"* 1", "* 3", "* 5"}) {
		t.Errorf("FETCH $: %q", lines)
	}
	c.ok(`STORE $ +FLAGS.SILENT (\Seen)`)
	lines = c.ok("SEARCH SEEN")
	if !slices.Equal(lines, []string{"* SEARCH 1 3 5"}) {
		t.Errorf("SEARCH SEEN after STORE $: %q", lines)
	}
	// "$" in a search, combined with another key.
	lines = c.ok("UID SEARCH UID $ SUBJECT n2")
	if !slices.Equal(lines, []string{fmt.Sprintf("* SEARCH %d", uids[2])}) {
		t.Errorf("UID SEARCH UID $ SUBJECT n2: %q", lines)
	}
	// An expunged message leaves the saved result (RFC 5182 section 2.1).
	c.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	c.ok("EXPUNGE")
	lines = c.ok("UID FETCH $ (FLAGS)")
	if len(lines) != 2 || has(lines, fmt.Sprintf("UID %d ", uids[0])) {
		t.Errorf("FETCH $ after EXPUNGE: %q", lines)
	}
	// WITHIN (RFC 5032): all were delivered "now"... by the test's
	// InternalDate of 2026-11-20, so OLDER than a day matches only if that
	// is in the past; YOUNGER than 100 years matches everything.
	lines = c.ok("SEARCH YOUNGER 3153600000")
	if !slices.Equal(lines, []string{"* SEARCH 1 2 3 4 5"}) {
		t.Errorf("SEARCH YOUNGER: %q", lines)
	}
}

func TestDialogueLsub(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "ls")
	c := ts.login("ls")
	c.ok("CREATE news/comp/mail/mime")
	c.ok("CREATE news/comp/mail/misc")
	c.ok("CREATE news/other")
	for _, l := range c.ok(`LIST "" *`) {
		name := l[strings.LastIndex(l, `"/" `)+4:]
		c.ok("UNSUBSCRIBE " + name)
	}
	c.ok("SUBSCRIBE news/comp/mail/mime")
	c.ok("SUBSCRIBE news/comp/mail/misc")
	lines := c.ok(`LSUB "news/" "comp/mail/*"`)
	if !slices.Equal(lines, []string{`* LSUB () "/" news/comp/mail/mime`, `* LSUB () "/" news/comp/mail/misc`}) {
		t.Errorf("LSUB news/ comp/mail/*: %q", lines)
	}
	// "%" lists the unsubscribed parent of subscribed children (its
	// \Noselect flag: TestLsubParentNoselect).
	lines = c.ok(`LSUB "news/" "comp/%"`)
	if len(lines) != 1 || !strings.HasSuffix(lines[0], ` "/" news/comp/mail`) {
		t.Errorf("LSUB news/ comp/%%: %q", lines)
	}
	if lines := c.ok(`LSUB "news/" other`); len(lines) != 0 {
		t.Errorf("LSUB of an unsubscribed mailbox: %q", lines)
	}
}

// TestLsubParentNoselect: RFC 3501 section 6.3.9: when "foo/bar" is
// subscribed and "foo" is not, LSUB with "%" returns foo and "it MUST be
// flagged with the \Noselect attribute". The server sends
//
//	C: a1 LSUB "" %
//	S: * LSUB () "/" a
//
// where it must send * LSUB (\Noselect) "/" a.
func TestLsubParentNoselect(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "lb")
	c := ts.login("lb")
	c.ok("CREATE a/b")
	c.ok("UNSUBSCRIBE a")
	c.ok("UNSUBSCRIBE a/b")
	c.ok("SUBSCRIBE a/b")
	lines := dlgLines(c.ok(`LSUB "" %`), ` "/" a`)
	if len(lines) != 1 || !strings.Contains(strings.ToLower(lines[0]), `\noselect`) {
		t.Errorf(`LSUB "" %%: %q, want * LSUB (\Noselect) "/" a`, lines)
	}
}

// dlgDeflateWriter flushes the compressor after each write: a command goes
// out whole.
type dlgDeflateWriter struct{ fw *flate.Writer }

func (f dlgDeflateWriter) Write(p []byte) (int, error) {
	n, err := f.fw.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.fw.Flush()
}

func TestDialogueCompress(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "co")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", ts.logs.String())
		}
	})
	ts.deliver("co", "", clNestedMessage)
	c := ts.login("co")
	c.ok("COMPRESS DEFLATE")
	// RFC 4978 section 3: raw DEFLATE both ways from here on.
	fw, _ := flate.NewWriter(c.nc, flate.BestSpeed)
	c.w = dlgDeflateWriter{fw}
	c.r = bufio.NewReader(flate.NewReader(c.nc))
	lines := c.ok("CAPABILITY")
	if has(lines, "COMPRESS=DEFLATE") {
		t.Errorf("COMPRESS=DEFLATE still advertised after COMPRESS: %q", lines)
	}
	mustHave(t, c.ok("SELECT INBOX"), "* 1 EXISTS")
	lines = c.ok("FETCH 1 BODY.PEEK[]")
	if len(lines) != 1 || !strings.Contains(lines[0], clNestedMessage) {
		t.Errorf("FETCH through DEFLATE: %q", lines)
	}
	// A second COMPRESS is refused with COMPRESSIONACTIVE.
	c.expect("COMPRESS DEFLATE", "NO [COMPRESSIONACTIVE]")
	c.ok("LOGOUT")
}

// TestDialogueSCRAMRaw runs SCRAM-SHA-256 (RFC 7677, RFC 5802) by hand:
// the final empty client response is an empty line (RFC 9051 section
// 6.2.2).
func TestDialogueSCRAMRaw(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "sc")
	for _, tc := range []struct {
		name string
		ir   bool // the client-first message as SASL-IR (RFC 4959)
	}{{"sasl-ir", true}, {"no-ir", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial()
			cl, _ := scram.SHA256.NewClient("sc", "pw-sc", "")
			conv := cl.NewConversation()
			first, _ := conv.Step("")
			enc := base64.StdEncoding.EncodeToString
			if tc.ir {
				c.send("s1 AUTHENTICATE SCRAM-SHA-256 " + enc([]byte(first)))
			} else {
				c.send("s1 AUTHENTICATE SCRAM-SHA-256")
				if l := c.line(); l != "+ " && l != "+" {
					t.Fatalf("no empty challenge: %q", l)
				}
				c.send(enc([]byte(first)))
			}
			step := func() string {
				l := c.line()
				if !strings.HasPrefix(l, "+ ") {
					t.Fatalf("want a challenge, got %q", l)
				}
				b, err := base64.StdEncoding.DecodeString(l[2:])
				if err != nil {
					t.Fatalf("challenge %q: %v", l, err)
				}
				return string(b)
			}
			final, err := conv.Step(step())
			if err != nil {
				t.Fatal(err)
			}
			c.send(enc([]byte(final)))
			if _, err := conv.Step(step()); err != nil || !conv.Valid() {
				t.Fatalf("server-final does not verify: %v", err)
			}
			c.send("")
			_, status := c.until("s1")
			if !strings.HasPrefix(status, "OK") {
				t.Fatalf("SCRAM: %q", status)
			}
			c.ok("SELECT INBOX")
		})
	}
}

// TestDialogueTwoSessions checks what one session sees of another's
// changes, and when (RFC 9051 sections 5.2 and 7.4.1).
func TestDialogueTwoSessions(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "two")
	var u []uint32
	for i := 0; i < 5; i++ {
		u = append(u, ts.deliver("two", "", clMsgText("a@example.org", fmt.Sprint("s", i), "Fri, 20 Nov 2026 10:00:00 +0000", "x")))
	}
	a, b := ts.login("two"), ts.login("two")
	a.ok("SELECT INBOX")
	b.ok("SELECT INBOX")

	// Flags set by B reach A as FETCH on NOOP.
	b.ok(`STORE 2 +FLAGS (\Flagged)`)
	lines := a.ok("NOOP")
	if l := dlgLines(lines, "* 2 FETCH"); len(l) != 1 || !strings.Contains(l[0], `\Flagged`) {
		t.Errorf("A's NOOP after B's STORE: %q", lines)
	}
	if l := a.ok("NOOP"); len(l) != 0 {
		t.Errorf("a second NOOP repeats: %q", l)
	}

	// B expunges message 3: A is not told during FETCH, STORE or SEARCH
	// (RFC 9051 section 7.4.1), and the numbers A knows still hold.
	b.ok(`STORE 3 +FLAGS.SILENT (\Deleted)`)
	mustHave(t, b.ok("EXPUNGE"), "* 3 EXPUNGE")
	lines = a.ok("FETCH 1:5 (UID)")
	mustNotHave(t, lines, "EXPUNGE", "VANISHED")
	if l := dlgLines(lines, "* 4 FETCH"); len(l) != 1 || !strings.Contains(l[0], fmt.Sprintf("UID %d", u[3])) {
		t.Errorf("during FETCH, message 4 is not UID %d any more: %q", u[3], lines)
	}
	mustNotHave(t, a.ok(`STORE 5 +FLAGS (\Seen)`), "EXPUNGE")
	lines = a.ok("SEARCH ALL")
	mustNotHave(t, lines, "EXPUNGE")
	if s := dlgLines(lines, "* SEARCH"); len(s) != 1 || strings.Contains(s[0], " 3") && !strings.Contains(s[0], "5") {
		t.Errorf("SEARCH ALL: %q", lines)
	}
	lines = a.ok("NOOP")
	if !slices.Equal(dlgLines(lines, "EXPUNGE"), []string{"* 3 EXPUNGE"}) {
		t.Errorf("A's NOOP after B's EXPUNGE: %q", lines)
	}
	// A's STORE on message 5 (now 4) is seen by B.
	if l := dlgLines(b.ok("NOOP"), "* 4 FETCH"); len(l) != 1 || !strings.Contains(l[0], `\Seen`) {
		t.Errorf("B's NOOP after A's STORE: %q", l)
	}

	// A delivery shows as EXISTS to both.
	ts.deliver("two", "", simpleMessage)
	mustHave(t, a.ok("NOOP"), "* 5 EXISTS")
	mustHave(t, b.ok("CHECK"), "* 5 EXISTS")

	// B's MOVE is an EXPUNGE for A; with QRESYNC a VANISHED (RFC 7162
	// section 3.2.10).
	b.ok("MOVE 1 Archive")
	lines = a.ok("NOOP")
	if !slices.Equal(dlgLines(lines, "EXPUNGE"), []string{"* 1 EXPUNGE"}) {
		t.Errorf("A after B's MOVE: %q", lines)
	}
	b.ok("NOOP")
	q := ts.login("two")
	q.ok("ENABLE QRESYNC")
	q.ok("SELECT INBOX")
	b.ok(fmt.Sprintf("UID MOVE %d Trash", u[1]))
	lines = q.ok("NOOP")
	mustNotHave(t, lines, "EXPUNGE")
	if !slices.Equal(dlgLines(lines, "VANISHED"), []string{fmt.Sprintf("* VANISHED %d", u[1])}) {
		t.Errorf("QRESYNC session after B's MOVE: %q", lines)
	}
	// A UID command may announce expunges (RFC 9051 section 7.4.1).
	lines = a.ok("UID FETCH 1:* (FLAGS)")
	mustHave(t, lines, "* 1 EXPUNGE")
}

// TestDialogueQResync: a client that knew the mailbox at some MODSEQ
// reconnects with SELECT (QRESYNC ...) and learns exactly what changed
// meanwhile (RFC 7162 section 3.2.5.1).
func TestDialogueQResync(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "qr")
	var u []uint32
	for i := 0; i < 6; i++ {
		u = append(u, ts.deliver("qr", "", clMsgText("a@example.org", fmt.Sprint("q", i), "Fri, 20 Nov 2026 10:00:00 +0000", "x")))
	}
	a := ts.login("qr")
	a.ok("ENABLE QRESYNC")
	// A change before the client's sync point is not reported again.
	a.ok("SELECT INBOX")
	a.ok(`STORE 1 +FLAGS (\Answered)`)
	lines := a.ok("SELECT INBOX")
	validity := dlgNumber(t, lines, "UIDVALIDITY")
	known := dlgNumber(t, lines, "HIGHESTMODSEQ")
	a.ok("LOGOUT")

	// Meanwhile: flags on u[1] and u[4], u[2] and u[3] expunged, one
	// delivery.
	b := ts.login("qr")
	b.ok("SELECT INBOX")
	b.ok(fmt.Sprintf(`UID STORE %d,%d +FLAGS (\Seen)`, u[1], u[4]))
	b.ok(fmt.Sprintf(`UID STORE %d:%d +FLAGS (\Deleted)`, u[2], u[3]))
	b.ok("EXPUNGE")
	u6 := ts.deliver("qr", "", simpleMessage)
	b.ok("LOGOUT")

	c := ts.login("qr")
	c.ok("ENABLE QRESYNC")
	lines = c.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d %d:%d))", validity, known, u[0], u[5]))
	mustHave(t, lines, "* 5 EXISTS")
	if v := dlgLines(lines, "VANISHED"); !slices.Equal(v, []string{fmt.Sprintf("* VANISHED (EARLIER) %d:%d", u[2], u[3])}) {
		t.Errorf("VANISHED: %q, want (EARLIER) %d:%d", v, u[2], u[3])
	}
	fetches := dlgLines(lines, " FETCH ")
	byUID := map[uint32]string{}
	for _, f := range fetches {
		m := regexp.MustCompile(`UID (\d+)`).FindStringSubmatch(f)
		if m == nil {
			t.Errorf("FETCH without UID under QRESYNC: %q", f)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		byUID[uint32(n)] = f
	}
	// Seq numbers after the expunge: u0=1 u1=2 u4=3 u5=4 u6=5.
	for uid, want := range map[uint32]string{u[1]: "* 2 FETCH", u[4]: "* 3 FETCH"} {
		f, ok := byUID[uid]
		if !ok || !strings.HasPrefix(f, want) || !strings.Contains(f, `\Seen`) || !strings.Contains(f, "MODSEQ (") {
			t.Errorf("UID %d: %q, want %s with \\Seen and MODSEQ", uid, f, want)
		}
	}
	for uid := range byUID {
		if uid != u[1] && uid != u[4] && uid != u6 {
			t.Errorf("FETCH for unchanged UID %d: %q", uid, byUID[uid])
		}
	}
	// A wrong UIDVALIDITY: a plain SELECT, nothing reported.
	lines = c.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", validity+1, known))
	mustNotHave(t, lines, "VANISHED", " FETCH ")

	// QRESYNC without ENABLE is refused (RFC 7162 section 3.2.5).
	d := ts.login("qr")
	d.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", validity, known), "BAD")

	// UID FETCH ... (CHANGEDSINCE m VANISHED) (RFC 7162 section 3.2.6).
	lines = c.ok(fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", known))
	if v := dlgLines(lines, "VANISHED"); !slices.Equal(v, []string{fmt.Sprintf("* VANISHED (EARLIER) %d:%d", u[2], u[3])}) {
		t.Errorf("UID FETCH (VANISHED): %q", lines)
	}
}

// TestDialogueModSeqMonotonic: every MODSEQ a session is shown is above
// the ones shown before for the same message, and HIGHESTMODSEQ never
// goes down (RFC 7162 section 3.1.1), while two sessions store flags.
func TestDialogueModSeqMonotonic(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "mo")
	for i := 0; i < 4; i++ {
		ts.deliver("mo", "", simpleMessage)
	}
	a, b := ts.login("mo"), ts.login("mo")
	a.ok("ENABLE CONDSTORE")
	b.ok("ENABLE CONDSTORE")
	lines := a.ok("SELECT INBOX")
	highest := dlgNumber(t, lines, "HIGHESTMODSEQ")
	b.ok("SELECT INBOX")
	re := regexp.MustCompile(`^\* (\d+) FETCH .*MODSEQ \((\d+)\)`)
	last := map[string]uint64{}
	check := func(who string, lines []string) {
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				n, _ := strconv.ParseUint(m[2], 10, 64)
				if n <= last[who+m[1]] && !strings.Contains(l, "FLAGS") {
					continue
				}
				if n < last[who+m[1]] {
					t.Errorf("%s: message %s MODSEQ went from %d to %d", who, m[1], last[who+m[1]], n)
				}
				last[who+m[1]] = n
			}
		}
	}
	flags := []string{`\Seen`, `\Flagged`, `$A`, `\Answered`}
	for i := 0; i < 12; i++ {
		f := flags[i%len(flags)]
		op := "+"
		if i%3 == 2 {
			op = "-"
		}
		check("a", a.ok(fmt.Sprintf("STORE %d %sFLAGS (%s)", i%4+1, op, f)))
		check("b", b.ok(fmt.Sprintf("STORE %d %sFLAGS (%s)", (i+1)%4+1, op, f)))
		check("a", a.ok("NOOP"))
		check("b", b.ok("FETCH 1:* (MODSEQ)"))
		s := a.ok("STATUS INBOX (HIGHESTMODSEQ)")
		h := dlgNumber(t, s, "HIGHESTMODSEQ")
		if h < highest {
			t.Errorf("HIGHESTMODSEQ went from %d to %d", highest, h)
		}
		highest = h
	}
}

// dlgBadCase is one hostile command and what must come back.
type dlgBadCase struct {
	name, send string
	want       string // prefix of the tagged answer
}

func TestDialogueBadInput(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "bi")
	ts.deliver("bi", "", simpleMessage)
	ts.deliver("bi", "", simpleMessage)

	t.Run("literal-bomb", func(t *testing.T) {
		// A 1 TB literal: refused at once, nothing read or allocated (a
		// continuation request would make the client send it).
		c := ts.login("bi")
		c.send("x1 APPEND INBOX {999999999999}")
		l := c.line()
		if strings.HasPrefix(l, "+") {
			t.Fatalf("continuation request for a 1 TB literal: %q", l)
		}
		if !strings.HasPrefix(l, "x1 NO") && !strings.HasPrefix(l, "x1 BAD") && !strings.HasPrefix(l, "* BYE") {
			t.Fatalf("1 TB literal answered %q", l)
		}
		if strings.HasPrefix(l, "x1 ") {
			c.ok("NOOP") // still usable
		}
		// A non-synchronising one (LITERAL+) in a LOGIN before auth.
		d := ts.dial()
		d.send("x2 LOGIN {999999999999+}")
		l = d.line()
		if !strings.HasPrefix(l, "x2 BAD") && !strings.HasPrefix(l, "x2 NO") && !strings.HasPrefix(l, "* BYE") {
			t.Errorf("non-synchronising 1 TB literal answered %q", l)
		}
	})

	t.Run("commands", func(t *testing.T) {
		c := ts.login("bi")
		c.ok("SELECT INBOX")
		deep := strings.Repeat("(", 100) + strings.Repeat(")", 100)
		for _, tc := range []dlgBadCase{
			{"deep-parens", "SEARCH " + deep, "BAD"},
			{"deep-parens-fetch", "FETCH 1 " + deep, "BAD"},
			{"seq-zero", "FETCH 0 FLAGS", "BAD"},
			{"seq-alpha", "FETCH a:b FLAGS", "BAD"},
			{"seq-overflow", "FETCH 4294967296 FLAGS", "BAD"},
			{"seq-past-end", "FETCH 3 FLAGS", "BAD"},
			{"uid-zero", "UID FETCH 0 FLAGS", "BAD"},
			{"seq-empty-range", "FETCH 1: FLAGS", "BAD"},
			{"unknown-command", "FROBNICATE now", "BAD"},
			{"unknown-fetch-item", "FETCH 1 (FLAGS WHATEVER)", "BAD"},
			{"unknown-search-key", "SEARCH FOOBAR", "BAD"},
			{"wrong-state-login", "LOGIN bi pw-bi", "BAD"},
			{"wrong-state-auth", "AUTHENTICATE PLAIN", "BAD"},
			{"eight-bit", "\xff\xfe\x80 NOOP", "BAD"},
			{"missing-arg", "SELECT", "BAD"},
			{"store-bad-flag-list", "STORE 1 +FLAGS (\\Seen", "BAD"},
			{"bad-date", "SEARCH SINCE 31-Foo-2020", "BAD"},
		} {
			lines, status := c.cmd(tc.send)
			if !strings.HasPrefix(status, tc.want) {
				t.Errorf("%s: %q answered %q (after %q), want %s", tc.name, tc.send, status, lines, tc.want)
			} else if len(strings.TrimSpace(strings.TrimPrefix(status, tc.want))) == 0 {
				t.Errorf("%s: %q answered %q without a text", tc.name, tc.send, status)
			}
			mustNotHave(t, lines, "FETCH (")
		}
		// Garbage without a tag still gets an untagged or tagged BAD.
		c.send("\x01\x02\x03")
		if l := c.line(); !strings.Contains(l, "BAD") {
			t.Errorf("control garbage answered %q", l)
		}
		c.ok("NOOP")
	})

	t.Run("wrong-state", func(t *testing.T) {
		c := ts.dial()
		for _, cmd := range []string{"SELECT INBOX", "FETCH 1 FLAGS", "LIST \"\" *", "CREATE x", "IDLE"} {
			c.expect(cmd, "BAD")
		}
		c.ok("LOGIN bi pw-bi")
		for _, cmd := range []string{"FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "CLOSE", "SEARCH ALL", "UID FETCH 1 FLAGS"} {
			c.expect(cmd, "BAD")
		}
		c.expect("STARTTLS", "BAD")
	})

	t.Run("long-line", func(t *testing.T) {
		c := ts.login("bi")
		c.send("l1 NOOP " + strings.Repeat("x", 200<<10))
		l := c.line()
		if !strings.HasPrefix(l, "l1 BAD") && !strings.HasPrefix(l, "* BAD") && !strings.HasPrefix(l, "* BYE") {
			t.Fatalf("200 KiB line answered %q", l)
		}
		if strings.HasPrefix(l, "* BYE") {
			return
		}
		c.ok("NOOP")
	})

	t.Run("too-many-errors", func(t *testing.T) {
		ts := newTestServer(t, serverOptions{maxErrors: 5}, "te")
		c := ts.login("te")
		var last string
		for i := 0; i < 5; i++ {
			c.send(fmt.Sprintf("e%d BOGUS", i))
			last = c.line()
		}
		l := c.line()
		if !strings.HasPrefix(l, "* BYE") {
			t.Fatalf("after 5 BAD commands: %q then %q, want * BYE", last, l)
		}
		c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.r.ReadByte(); err != io.EOF {
			t.Errorf("connection still open after BYE: %v", err)
		}
	})
}

// TestDialogueCraftedNames: account A plays with hostile mailbox names;
// account B's mailboxes and messages stay as they were and are never
// listed to A.
func TestDialogueCraftedNames(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "alice", "bob")
	bobInbox := ts.deliver("bob", "", clMsgText("x@example.org", "bob's secret", "Fri, 20 Nov 2026 10:00:00 +0000", "for bob only"))
	b := ts.login("bob")
	b.ok("CREATE Private")
	bobPrivate := ts.deliver("bob", "Private", clMsgText("x@example.org", "bob's private", "Fri, 20 Nov 2026 10:00:00 +0000", "private"))
	bobList := b.ok(`LIST "" *`)

	a := ts.login("alice")
	long := strings.Repeat("n", 2000)
	names := []string{
		`"../bob"`, `"../bob/INBOX"`, `"../../bob/Private"`, `"bob/Private"`, `"/bob/Private"`,
		`"%"`, `"*"`, `"Private*"`, `"~bob"`, `"#shared/bob"`, `"user/bob"`, `"user.bob"`,
		"{5+}\r\nab\x00cd", "{8+}\r\nPriv\x00ate", `"` + long + `"`, `"&Jjo"`, `"&Jjo-x&"`, `"&AGEAYgBj-"`, `".."`, `"."`,
		`"Private"`, `"INBOX/../../bob"`,
	}
	seen := map[string]string{}
	for _, n := range names {
		short := n
		if len(short) > 40 {
			short = short[:40] + "..."
		}
		for _, cmd := range []string{"CREATE " + n, "SELECT " + n, "EXAMINE " + n, "STATUS " + n + " (MESSAGES)",
			`LIST "" ` + n, "LIST " + n + ` "*"`, "SUBSCRIBE " + n, "RENAME " + n + " Renamed", "RENAME Renamed " + n,
			"DELETE " + n, "GETQUOTAROOT " + n} {
			if os.Getenv("POSTHORN_IMAP_VERBOSE") == "1" {
				t.Logf("C: %q", cmd)
			}
			lines, status := a.cmd(cmd)
			seen[short+" "+strings.Fields(cmd)[0]] = status
			if strings.HasPrefix(status, "BAD") {
				a.ok("NOOP") // BAD in a row would end the session
			}
			for _, l := range lines {
				if strings.Contains(l, "bob's") || strings.Contains(l, "for bob only") {
					t.Errorf("%q shows bob's data: %q", cmd, l)
				}
			}
			if strings.HasPrefix(status, "OK") && (strings.HasPrefix(cmd, "SELECT") || strings.HasPrefix(cmd, "EXAMINE")) {
				// Whatever A selected is A's: it must not hold bob's messages.
				for _, l := range a.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (Subject)])") {
					if strings.Contains(l, "bob's") {
						t.Errorf("%q selected bob's mailbox: %q", cmd, l)
					}
				}
				a.ok("UNSELECT")
			}
		}
		// APPEND to the name: lands in A's account if anywhere.
		m := clMsgText("a@example.org", "from alice", "Fri, 20 Nov 2026 10:00:00 +0000", "alice")
		a.cmd(fmt.Sprintf("APPEND %s {%d+}\r\n%s", n, len(m), m))
		a.ok("NOOP")
	}
	// NUL in a name must not be stored (RFC 9051 section 5.1: a mailbox
	// name is a string of CHAR8 without NUL; astring excludes it).
	for _, l := range a.ok(`LIST "" *`) {
		if strings.ContainsRune(l, 0) {
			t.Errorf("a mailbox name with NUL was created: %q", l)
		}
		if strings.Contains(l, long) {
			t.Errorf("a 2000-octet mailbox name was created")
		}
	}
	// Wildcards, NUL and invalid modified UTF-7 never make a mailbox.
	for _, n := range []string{`"%"`, `"*"`, `"Private*"`, `"&Jjo"`, `"&Jjo-x&"`, "{5+}\r\nab\x00cd"} {
		for _, cmd := range []string{"CREATE ", "RENAME INBOX "} {
			if _, status := a.cmd(cmd + n); strings.HasPrefix(status, "OK") {
				t.Errorf("%s%q succeeded", cmd, n)
			}
			a.ok("NOOP")
		}
	}
	// Bob's account is unchanged.
	if got := ts.uids("bob", "INBOX"); !slices.Equal(got, []uint32{bobInbox}) {
		t.Errorf("bob's INBOX now %v", got)
	}
	if got := ts.uids("bob", "Private"); !slices.Equal(got, []uint32{bobPrivate}) {
		t.Errorf("bob's Private now %v", got)
	}
	if got := b.ok(`LIST "" *`); !slices.Equal(got, bobList) {
		t.Errorf("bob's LIST changed:\n%q\nnow\n%q", bobList, got)
	}
	// Alice's mailboxes, whatever their names, hold only her messages:
	// none of bob's subjects anywhere.
	for _, l := range a.ok(`LIST "" *`) {
		i := strings.LastIndex(l, `"/" `)
		if i < 0 || strings.Contains(l, `\Noselect`) || strings.Contains(l, `\NonExistent`) {
			continue
		}
		if _, status := a.cmd("EXAMINE " + l[i+4:]); !strings.HasPrefix(status, "OK") {
			continue
		}
		if lines, status := a.cmd("SEARCH SUBJECT bob's"); !strings.HasPrefix(status, "OK") || !slices.Equal(lines, []string{"* SEARCH"}) {
			t.Errorf("alice's %s: SEARCH SUBJECT bob's = %q %q", l[i+4:], lines, status)
		}
	}
	if os.Getenv("POSTHORN_IMAP_VERBOSE") == "1" {
		keys := clSortedKeys(seen)
		for _, k := range keys {
			t.Logf("%s -> %s", k, seen[k])
		}
	}
}

// TestDialogueLiteralPlus: LITERAL+ is advertised, so non-synchronising
// literals of any size up to the limits are taken (RFC 7888 section 4;
// only LITERAL- caps them at 4096 octets).
func TestDialogueLiteralPlus(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "lp")
	c := ts.login("lp")
	lines := c.ok("CAPABILITY")
	if !has(lines, "LITERAL+") {
		t.Skip("LITERAL+ not advertised")
	}
	for _, n := range []int{10, 5000, 100 << 10} {
		m := clMsgText("a@example.org", fmt.Sprint("size ", n), "Fri, 20 Nov 2026 10:00:00 +0000", strings.Repeat("y", n))
		c.ok(fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(m), m))
		// A non-synchronising literal in another command too.
		c.ok(fmt.Sprintf("CREATE {%d+}\r\nbox%d", len(fmt.Sprint("box", n)), n))
	}
	if n := len(ts.uids("lp", "INBOX")); n != 3 {
		t.Errorf("%d messages appended, want 3", n)
	}
	// Over APPENDLIMIT, a synchronising literal is refused before the
	// data is sent (RFC 7889 section 4): NO [TOOBIG], not "+".
	ts2 := newTestServer(t, serverOptions{appendLimit: 1000}, "lq")
	d := ts2.login("lq")
	d.send("t1 APPEND INBOX {2000}")
	if l := d.line(); !strings.HasPrefix(l, "t1 NO [TOOBIG]") {
		t.Errorf("APPEND over APPENDLIMIT: %q, want t1 NO [TOOBIG]", l)
	}
	d.ok("NOOP")
}

// TestRenameNoselectParent: RFC 3501 section 6.3.5's example renames
// a \Noselect name whose inferiors are renamed with it ("A684 RENAME foo
// zowie" then LIST shows zowie and zowie/bar). Here foo is left when
// DELETE foo removes the mailbox but keeps its child (RFC 9051 section
// 6.3.4: "the name will acquire the \Noselect mailbox name attribute"):
//
//	C: a1 CREATE foo/bar
//	C: a2 DELETE foo
//	S: a2 OK
//	C: a3 LIST "" foo*
//	S: * LIST (\Noselect \HasChildren) "/" foo
//	C: a4 RENAME foo zowie
//	S: a4 NO [NONEXISTENT] No such mailbox
//
// where a4 should succeed and rename foo/bar to zowie/bar.
func TestRenameNoselectParent(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "rn")
	c := ts.login("rn")
	c.ok("CREATE foo/bar")
	u := ts.deliver("rn", "foo/bar", simpleMessage)
	c.ok("DELETE foo")
	lines := c.ok(`LIST "" foo*`)
	if l := dlgLines(lines, `"/" foo`); len(l) != 2 || !strings.Contains(l[0], `\Noselect`) {
		t.Fatalf(`after DELETE foo: LIST "" foo* = %q, want foo \Noselect and foo/bar`, lines)
	}
	c.expect("RENAME foo zowie", "OK")
	if got := ts.uids("rn", "zowie/bar"); !slices.Equal(got, []uint32{u}) {
		t.Errorf("zowie/bar holds %v, want [%d]", got, u)
	}
}
