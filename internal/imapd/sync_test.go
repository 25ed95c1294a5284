package imapd

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"encoding/hex"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// An expunge made by one session reaches the other only where RFC 9051
// section 7.4.1 allows: not during FETCH, STORE or SEARCH, but on NOOP;
// its sequence numbers stay valid meanwhile.
func TestExpungeNotDuringFetch(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	for i := 0; i < 3; i++ {
		ts.deliver("pp", "", simpleMessage)
	}
	a, b := ts.login("pp"), ts.login("pp")
	a.ok("SELECT INBOX")
	b.ok("SELECT INBOX")
	a.ok(`STORE 2 +FLAGS.SILENT (\Deleted)`)
	a.ok("EXPUNGE")

	lines := b.ok("FETCH 3 (UID FLAGS)")
	mustNotHave(t, lines, "EXPUNGE")
	mustHave(t, lines, "* 3 FETCH (UID 3 FLAGS ())")
	lines = b.ok("SEARCH ALL")
	mustNotHave(t, lines, "EXPUNGE")
	mustHave(t, lines, "* SEARCH 1 3") // message 2 is gone from the store, 3 keeps its number
	lines = b.ok(`STORE 3 +FLAGS (\Flagged)`)
	mustNotHave(t, lines, "EXPUNGE")
	lines = b.ok("NOOP")
	mustHave(t, lines, "* 2 EXPUNGE")
	// Now message 3 has become 2.
	lines = b.ok("FETCH 2 (UID FLAGS)")
	mustHave(t, lines, `* 2 FETCH (UID 3 FLAGS (\Flagged))`)
	// A UID FETCH may carry the EXPUNGE (RFC 9051 section 7.4.1).
	a.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	a.ok("EXPUNGE")
	lines = b.ok("UID FETCH 1:* FLAGS")
	mustHave(t, lines, "* 1 EXPUNGE")
}

// Flags set and messages delivered by others arrive on NOOP; with
// CONDSTORE enabled the FETCH carries MODSEQ.
func TestOthersChangesOnNoop(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", "", simpleMessage)
	a, b := ts.login("pp"), ts.login("pp")
	a.ok("SELECT INBOX")
	b.ok("ENABLE CONDSTORE")
	b.ok("SELECT INBOX")
	a.ok(`STORE 1 +FLAGS.SILENT ($Important)`)
	ts.deliver("pp", "", simpleMessage)
	lines := b.ok("NOOP")
	mustHave(t, lines, "* 2 EXISTS", `* 1 FETCH (UID 1 FLAGS ($Important) MODSEQ (`, `* FLAGS (`, `$Important`)
	// Nothing twice.
	lines = b.ok("NOOP")
	if len(lines) != 0 {
		t.Errorf("second NOOP told %q", lines)
	}
}

// IDLE reports a delivery within a second (issue 5), and DONE ends it.
func TestIdleSeesDelivery(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.login("pp")
	c.ok("SELECT INBOX")
	c.send("i1 IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE answered %q", l)
	}
	start := time.Now()
	ts.deliver("pp", "", simpleMessage)
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	if l := c.line(); l != "* 1 EXISTS" {
		t.Fatalf("during IDLE got %q", l)
	}
	t.Logf("EXISTS after %v", time.Since(start))
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.send("DONE")
	if _, status := c.until("i1"); !strings.HasPrefix(status, "OK") {
		t.Fatalf("IDLE ended with %q", status)
	}
	c.ok("NOOP")
}

// A server shutdown reaches a session in IDLE at once, with BYE.
func TestShutdownDuringIdle(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.login("pp")
	c.send("i1 IDLE")
	c.line()
	go ts.srv.Shutdown(ctx)
	c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if l := c.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q, want BYE", l)
	}
}

// QRESYNC (RFC 7162 section 3.2.5): a client back after a disconnect
// learns exactly what changed: the expunged UIDs, the messages whose
// flags changed, and (through EXISTS/UIDNEXT) the new ones.
func TestQResyncSelect(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	for i := 0; i < 5; i++ {
		ts.deliver("pp", "", simpleMessage)
	}
	c := ts.login("pp")
	c.ok("ENABLE QRESYNC")
	lines := c.ok("SELECT INBOX")
	var validity, modseq string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 3 && f[2] == "[UIDVALIDITY" {
			validity = strings.TrimSuffix(f[3], "]")
		}
		if f := strings.Fields(l); len(f) > 3 && f[2] == "[HIGHESTMODSEQ" {
			modseq = strings.TrimSuffix(f[3], "]")
		}
	}
	if validity == "" || modseq == "" {
		t.Fatalf("no UIDVALIDITY/HIGHESTMODSEQ in %q", lines)
	}
	c.ok("LOGOUT")

	o := ts.login("pp")
	o.ok("SELECT INBOX")
	o.ok(`UID STORE 2 +FLAGS.SILENT (\Seen)`)
	o.ok(`UID STORE 4 +FLAGS.SILENT (\Deleted)`)
	o.ok("UID EXPUNGE 4")
	ts.deliver("pp", "", simpleMessage)

	c = ts.login("pp")
	c.ok("ENABLE QRESYNC")
	lines = c.ok("SELECT INBOX (QRESYNC (" + validity + " " + modseq + " 1:5))")
	mustHave(t, lines, "* VANISHED (EARLIER) 4", `UID 2 FLAGS (\Seen) MODSEQ (`, "* 5 EXISTS")
	for _, l := range lines {
		if strings.Contains(l, "FETCH") && !strings.Contains(l, "UID 2 ") {
			t.Errorf("unexpected %q", l)
		}
	}
	// With the client's UIDs unknown, a wrong UIDVALIDITY gives no VANISHED.
	c.ok("ENABLE QRESYNC")
	lines = c.ok("SELECT INBOX (QRESYNC (1 " + modseq + "))")
	mustNotHave(t, lines, "VANISHED")
}

// STORE with UNCHANGEDSINCE refuses to change a message modified since
// (RFC 7162 section 3.1.3).
func TestStoreUnchangedSince(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", "", simpleMessage)
	ts.deliver("pp", "", simpleMessage)
	c := ts.login("pp")
	c.ok("SELECT INBOX")
	lines := c.ok("FETCH 1:2 (MODSEQ)")
	if len(lines) != 2 {
		t.Fatalf("%q", lines)
	}
	ms := strings.Trim(strings.Fields(lines[0])[4], "()")
	c.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	_, status := c.cmd(`STORE 1:2 (UNCHANGEDSINCE ` + ms + `) +FLAGS (\Seen)`)
	if !strings.HasPrefix(status, "OK [MODIFIED 2]") {
		t.Fatalf("got %q", status)
	}
	lines = c.ok("FETCH 1:2 FLAGS")
	mustHave(t, lines, `* 1 FETCH (FLAGS (\Seen))`, `* 2 FETCH (FLAGS (\Flagged))`)
}

// LOGIN is refused in clear from an address other than 127.0.0.1/::1,
// and LOGINDISABLED is advertised there; after STARTTLS it works.
func TestLoginDisabledWithoutTLS(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	defer nc.Close()
	c := &client{t: t, nc: nc, r: bufio.NewReader(nc), w: nc}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	g := c.line()
	if !strings.Contains(g, "LOGINDISABLED") || !strings.Contains(g, "STARTTLS") {
		t.Errorf("greeting %q", g)
	}
	c.expect("LOGIN pp pw-pp", "NO [PRIVACYREQUIRED]")
	c.expect("AUTHENTICATE PLAIN AHBwAHB3LXBw", "NO [PRIVACYREQUIRED]")
	c.ok("STARTTLS")
	tc := tls.Client(nc, &tls.Config{RootCAs: ts.roots, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.r, c.w = bufio.NewReader(tc), tc
	lines := c.ok("CAPABILITY")
	mustNotHave(t, lines, "LOGINDISABLED", "STARTTLS")
	c.ok("LOGIN pp pw-pp")
	c.ok("SELECT INBOX")
}

// Another account's password or name never opens this one.
func TestLoginWrongPassword(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp", "qq")
	c := ts.dial()
	c.expect("LOGIN pp pw-qq", "NO [AUTHENTICATIONFAILED]")
	c.expect("SELECT INBOX", "BAD")
	c.ok("AUTHENTICATE PLAIN " + "AHBwAHB3LXBw") // \0pp\0pw-pp
	c.ok("SELECT INBOX")
}

// COMPRESS=DEFLATE (RFC 4978): after OK both directions are raw DEFLATE.
func TestCompress(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", "", simpleMessage)
	c := ts.login("pp")
	c.ok("COMPRESS DEFLATE")
	fw, _ := flate.NewWriter(c.nc, flate.DefaultCompression)
	c.w = flushWriter{fw}
	c.r = bufio.NewReader(flate.NewReader(c.nc))
	c.ok("SELECT INBOX")
	lines := c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
	mustHave(t, lines, "Subject: Hello there")
	c.expect("COMPRESS DEFLATE", "NO [COMPRESSIONACTIVE]")
}

type flushWriter struct{ fw *flate.Writer }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.fw.Write(p)
	if err == nil {
		err = f.fw.Flush()
	}
	return n, err
}

// A literal bomb is refused from its digits, the session goes on.
func TestLiteralBomb(t *testing.T) {
	ts := newTestServer(t, serverOptions{appendLimit: 1 << 20}, "pp")
	c := ts.login("pp")
	c.send("a1 APPEND INBOX {999999999999}")
	_, status := c.until("a1")
	if !strings.HasPrefix(status, "NO [TOOBIG]") && !strings.HasPrefix(status, "BAD") {
		t.Fatalf("got %q", status)
	}
	c.send("a2 APPEND INBOX {2000000}")
	_, status = c.until("a2")
	if !strings.HasPrefix(status, "NO [TOOBIG]") {
		t.Fatalf("over APPENDLIMIT: got %q", status)
	}
	c.ok("NOOP")
}

// APPEND is durable before OK and answers APPENDUID; MULTIAPPEND adds
// all or none.
func TestAppend(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.login("pp")
	c.send(`a1 APPEND Drafts (\Draft) "20-Nov-2026 10:00:00 +0000" {` + itoa(len(simpleMessage)) + `}`)
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("got %q", l)
	}
	c.send(simpleMessage)
	_, status := c.until("a1")
	if !strings.HasPrefix(status, "OK [APPENDUID ") {
		t.Fatalf("got %q", status)
	}
	if got := ts.uids("pp", "Drafts"); len(got) != 1 {
		t.Fatalf("Drafts has %v", got)
	}
	// MULTIAPPEND whose second message is refused: nothing is added.
	c.send("a2 APPEND INBOX {5+}\r\nHello (\\Bogus) {5+}\r\nWorld")
	_, status = c.until("a2")
	if !strings.HasPrefix(status, "BAD") {
		t.Fatalf("got %q", status)
	}
	if got := ts.uids("pp", "INBOX"); len(got) != 0 {
		t.Fatalf("INBOX has %v after a refused MULTIAPPEND", got)
	}
	c.expect("APPEND Nowhere {5+}\r\nHello", "NO [TRYCREATE]")
}

// QUOTA (RFC 9208): the account's quota is reported in KiB, and APPEND and
// COPY over it are refused with OVERQUOTA, storing nothing.
func TestQuota(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	ts.deliver("pp", "", simpleMessage)
	if err := ts.st.SetQuota(ctx, "pp", 4096); err != nil {
		t.Fatal(err)
	}
	c := ts.login("pp")
	lines := c.ok("GETQUOTAROOT INBOX")
	mustHave(t, lines, `* QUOTAROOT INBOX ""`, `* QUOTA "" (STORAGE 1 4)`)
	big := strings.Repeat("x", 5000)
	c.send("a1 APPEND INBOX {" + itoa(len(big)) + "+}")
	c.send(big)
	if _, status := c.until("a1"); !strings.HasPrefix(status, "NO [OVERQUOTA]") {
		t.Fatalf("APPEND over quota: %q", status)
	}
	c.ok("SELECT INBOX")
	// Each copy counts its size (about 180 octets) against the 4 KiB.
	for i := 0; i < 40; i++ {
		if _, status := c.cmd("COPY 1 Archive"); strings.HasPrefix(status, "NO [OVERQUOTA]") {
			return
		}
	}
	t.Fatal("COPY never reached the quota")
}

// Idle timeouts: before login the short one, after login the long one;
// both end with BYE (RFC 9051 section 5.4).
func TestIdleTimeouts(t *testing.T) {
	ts := newTestServer(t, serverOptions{preauth: 200 * time.Millisecond, idle: 600 * time.Millisecond}, "pp")
	c := ts.dial()
	if l := c.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q", l)
	}
	c = ts.login("pp")
	time.Sleep(300 * time.Millisecond) // past the pre-login timeout: still in
	c.ok("NOOP")
	if l := c.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q", l)
	}
}

// A message that arrives while the client runs other commands is
// announced with their answers, not only on NOOP; "*" in an empty
// mailbox is no error.
func TestUpdatesWithAnyCommand(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.login("pp")
	c.ok("SELECT INBOX")
	if lines := c.ok("FETCH 1:* FLAGS"); len(lines) != 0 {
		t.Errorf("FETCH on an empty mailbox: %q", lines)
	}
	c.expect("FETCH 1 FLAGS", "BAD")
	ts.deliver("pp", "", simpleMessage)
	lines := c.ok(`LIST "" INBOX`)
	mustHave(t, lines, "* 1 EXISTS")
}

// A client that flushes its compressed commands with zlib's
// Z_PARTIAL_FLUSH (no sync marker after the block: mbsync, Thunderbird)
// is answered at once. The bytes are Python zlib's, compressobj(6,
// DEFLATED, -15) then flush(Z_PARTIAL_FLUSH), of "a1 NOOP\r\n" and then
// "a2 NOOP\r\n".
func TestCompressPartialFlush(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.login("pp")
	c.ok("COMPRESS DEFLATE")
	r := bufio.NewReader(flate.NewReader(c.nc))
	for _, hexCmd := range []string{"4a3454f0f3f70fe0e50208", "a04423280320"} {
		b, _ := hex.DecodeString(hexCmd)
		if _, err := c.nc.Write(b); err != nil {
			t.Fatal(err)
		}
		c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no answer to a partially flushed command: %v", err)
		}
		if !strings.Contains(l, "OK") {
			t.Fatalf("got %q", l)
		}
	}
}

// LSUB (RFC 3501 section 6.3.9): "*" lists the subscribed mailboxes only;
// "%" lists an unsubscribed parent of a subscribed one as \Noselect.
func TestLsubParents(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.login("pp")
	c.ok("CREATE a/b")
	c.ok("UNSUBSCRIBE a")
	lines := c.ok(`LSUB "" a*`)
	mustHave(t, lines, `* LSUB () "/" a/b`)
	mustNotHave(t, lines, `"/" a`+"\r")
	for _, l := range lines {
		if strings.HasSuffix(l, `"/" a`) {
			t.Errorf("LSUB * listed the unsubscribed parent: %q", l)
		}
	}
	lines = c.ok(`LSUB "" %`)
	mustHave(t, lines, `* LSUB (\Noselect) "/" a`)
	// A parent that is only a parent is renamed with its children.
	c.ok("DELETE a")
	c.ok("RENAME a z")
	lines = c.ok(`LIST "" z/*`)
	mustHave(t, lines, `"/" z/b`)
}

// Before login the server offers LITERAL- (RFC 7888 section 5): a
// non-synchronising literal over 4096 octets is refused with TOOBIG; after
// login LITERAL+ takes any size up to APPENDLIMIT.
func TestLiteralMinusBeforeLogin(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	c := ts.dial()
	lines := c.ok("CAPABILITY")
	mustHave(t, lines, "LITERAL-")
	mustNotHave(t, lines, "LITERAL+")
	c.ok("LOGIN {2+}\r\npp {5+}\r\npw-pp")
	lines = c.ok("CAPABILITY")
	mustHave(t, lines, "LITERAL+")
	c2 := ts.dial()
	big := strings.Repeat("x", 5000)
	c2.send("a1 LOGIN pp {5000+}")
	c2.send(big)
	_, status := c2.until("a1")
	if !strings.Contains(status, "TOOBIG") {
		t.Errorf("a 5000-octet non-synchronising literal before login: %q", status)
	}
}

// Thousands of overlapping ranges in one set cost the mailbox's size, not
// ranges times messages (a review found 1.4 GB for one command on 2,000
// messages).
func TestOverlappingSequenceSet(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	fill(t, ts, 1000)
	c := ts.login("pp")
	c.ok("SELECT INBOX")
	set := strings.TrimSuffix(strings.Repeat("1:*,", 10000), ",")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c.ok("UID STORE " + set + " +FLAGS.SILENT (\\Seen)")
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Errorf("one STORE of 10,000 overlapping ranges allocated %d MB", got>>20)
	}
	lines := c.ok("FETCH 1:*,1:*,2 (UID FLAGS)")
	if len(lines) != 1000 {
		t.Errorf("FETCH of overlapping ranges answered %d lines, want each message once (1,000)", len(lines))
	}
}
