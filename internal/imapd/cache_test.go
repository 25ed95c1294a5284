package imapd

import (
	"sync"
	"testing"
)

// Deliveries going on while sessions sync the shared box: the box ends
// equal to the store, having read the whole mailbox once, not once per
// sync (a count that disagrees for a moment must not force a full read).
func TestBoxSyncUnderDeliveries(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	mb := ts.mailbox("pp", "INBOX")
	b := ts.srv.cache.get(mb.ID)
	if err := b.sync(ctx, ts.st); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	const n = 200
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				ts.deliver("pp", "", simpleMessage)
			}
		}()
	}
	syncs := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := b.sync(ctx, ts.st); err != nil {
				t.Error(err)
				return
			}
			syncs++
		}
	}()
	wg.Wait()
	close(stop)
	<-done
	if err := b.sync(ctx, ts.st); err != nil {
		t.Fatal(err)
	}
	uids := ts.uids("pp", "INBOX")
	if len(b.msgs) != len(uids) || len(uids) != n {
		t.Fatalf("box has %d messages, store %d, delivered %d", len(b.msgs), len(uids), n)
	}
	for i, e := range b.msgs {
		if e.uid != uids[i] {
			t.Fatalf("box message %d is UID %d, store's %d", i, e.uid, uids[i])
		}
	}
	if l := b.loads.Load(); l > 1 {
		t.Errorf("%d whole-mailbox reads over %d syncs during deliveries, want 1", l, syncs)
	}
}
