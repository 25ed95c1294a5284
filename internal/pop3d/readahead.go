package pop3d

import (
	"context"
	"io"

	"github.com/posthorn/posthorn/internal/store"
)

// Read-ahead. A client that downloads a maildrop (fetchmail, a mail app's
// first sync) sends RETR 1, waits for it, RETR 2, and so on: each message's
// read from the store would sit between the client's command and the
// server's answer. After a message is sent, the next few are read into
// memory in the background, while the answer travels and the client asks
// for the next one; a RETR or TOP of the message expected next is then
// answered from memory. Any other message number, or one too big to hold,
// is read from the store as it would be without read-ahead.
//
// A message expunged by another session after it was read ahead is still
// sent: its bytes never change, and the session's view of the maildrop is
// the snapshot taken at login (RFC 1939 section 5) anyway.
const (
	readAheadDepth = 8         // messages held ahead
	readAheadMax   = 128 << 10 // bigger ones are streamed from the store: at most ~1 MiB held per session
)

// fetched is a message read ahead.
type fetched struct {
	n    int    // its message number
	data []byte // nil: not read ahead (too big, or the read failed): open it
}

type readAhead struct {
	next   int // the message number the next receive carries
	ch     chan fetched
	cancel context.CancelFunc
	done   chan struct{}
}

// startReadAhead reads messages from number from on, until the end of the
// maildrop or a message it does not hold (which is sent as a fetched with no
// data, and ends it).
func (c *session) startReadAhead(from int) {
	if from > len(c.msgs) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &readAhead{next: from, ch: make(chan fetched, readAheadDepth), cancel: cancel, done: make(chan struct{})}
	// The goroutine gets its own copy: the session goes on marking
	// messages deleted meanwhile.
	msgs := append([]message(nil), c.msgs[from-1:]...)
	st, mbox := c.srv.Store, c.mbox.ID
	go func() {
		defer close(ra.done)
		defer close(ra.ch)
		for i, m := range msgs {
			f := fetched{n: from + i}
			if m.size <= readAheadMax {
				f.data = readWhole(ctx, st, mbox, m)
			}
			select {
			case ra.ch <- f:
			case <-ctx.Done():
				return
			}
			if f.data == nil {
				return
			}
		}
	}()
	c.ra = ra
}

// readWhole reads a message into memory; nil if it cannot, or if it is not
// the size the store listed.
func readWhole(ctx context.Context, st store.Store, mbox int64, m message) []byte {
	r, err := st.OpenMessage(ctx, mbox, m.uid)
	if err != nil {
		return nil
	}
	defer r.Close()
	if r.Size() != m.size {
		return nil
	}
	buf := make([]byte, m.size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil
	}
	return buf
}

// takeReadAhead returns message n's bytes when they were read ahead, else
// nil; read-ahead that does not fit n is stopped.
func (c *session) takeReadAhead(n int) []byte {
	ra := c.ra
	if ra == nil {
		return nil
	}
	if ra.next == n {
		f, ok := <-ra.ch
		if ok && f.data != nil {
			ra.next++
			return f.data
		}
	}
	c.stopReadAhead()
	return nil
}

// stopReadAhead ends read-ahead and waits for its goroutine.
func (c *session) stopReadAhead() {
	if c.ra == nil {
		return
	}
	c.ra.cancel()
	<-c.ra.done
	c.ra = nil
}
