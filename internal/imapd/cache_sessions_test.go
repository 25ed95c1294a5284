package imapd

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Twenty sessions working on one mailbox at once (issue 5's mixed
// workload: SELECT, FETCH, STORE, APPEND, STORE \Deleted and UID EXPUNGE,
// NOOP) share its box, which each brings up to date; a session's reading
// of the mailbox may be older than what another session already applied,
// and must not make it read the whole mailbox again (it did, 177 times in
// this test, most of the CPU of the mixed benchmark).
func TestBoxSyncManySessions(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	for i := 0; i < 50; i++ {
		ts.deliver("pp", "", simpleMessage)
	}
	var wg sync.WaitGroup
	for s := 0; s < 20; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			c := ts.login("pp")
			c.ok("ENABLE CONDSTORE")
			var own []string
			for i := 0; i < 40; i++ {
				c.ok("SELECT INBOX")
				c.ok("FETCH 1:10 (UID FLAGS MODSEQ)")
				if len(own) > 0 {
					c.ok(fmt.Sprintf("UID STORE %s +FLAGS ($R%dS%d)", own[0], s, i%3))
					c.ok(fmt.Sprintf("UID STORE %s -FLAGS ($R%dS%d)", own[len(own)-1], s, (i+1)%3))
				}
				c.send(fmt.Sprintf("x%d APPEND INBOX (k%d) {%d+}", i, s, len(simpleMessage)))
				c.send(simpleMessage)
				_, st := c.until(fmt.Sprintf("x%d", i))
				f := strings.Fields(st)
				uid := strings.TrimSuffix(f[3], "]")
				own = append(own, uid)
				if len(own) > 3 {
					c.ok("UID STORE " + own[0] + " +FLAGS.SILENT (\\Deleted)")
					c.ok("UID EXPUNGE " + own[0])
					own = own[1:]
				}
				c.ok("NOOP")
			}
		}(s)
	}
	wg.Wait()
	mb := ts.mailbox("pp", "INBOX")
	b := ts.srv.cache.get(mb.ID)
	if l := b.loads.Load(); l > 3 {
		t.Errorf("%d whole-mailbox reads, want the first and hardly another", l)
	}
	if got, want := len(b.msgs), len(ts.uids("pp", "INBOX")); got != want {
		t.Errorf("the box has %d messages, the store %d", got, want)
	}
}
