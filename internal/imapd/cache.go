package imapd

import (
	"bufio"
	"bytes"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapfetch"
	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// The mailbox cache keeps, for each mailbox a session selected lately,
// the rows of its messages (and their ENVELOPE and BODYSTRUCTURE once
// rendered), shared by every session on that mailbox. SELECT then costs a
// copy of the UIDs and flags, and FETCH of the structure items reads no
// row and parses nothing: the store's rows are read once, when a mailbox
// is first selected, and after that only what changed (by MODSEQ), as
// the sessions' views are.
//
// A box is brought up to date by whoever uses it (sync); the store's
// HIGHESTMODSEQ of the mailbox says whether anything changed, so a box
// is never stale after sync, whatever happened while nobody looked.

// entry is what never changes of a message in a mailbox: its flags and
// MODSEQ live beside it in the box.
type entry struct {
	uid          uint32
	internalDate time.Time
	saveDate     time.Time
	size         int64
	meta         []byte

	// Rendered ENVELOPE by UTF-8 mode, BODYSTRUCTURE by UTF-8 mode and
	// IMAP4rev2 (the forms differ, see imapfetch.Options).
	env [2]atomic.Pointer[[]byte]
	bs  [4]atomic.Pointer[[]byte]
}

// box is the cached state of one mailbox.
type box struct {
	id int64

	mu          sync.RWMutex
	loaded      bool
	uidValidity uint32
	highest     uint64
	msgs        []*entry // ascending UID
	flags       [][]string
	modseq      []uint64

	lastUse atomic.Int64 // unix nanoseconds
	loads   atomic.Int32 // whole-mailbox reads (the expensive kind), for tests
}

// boxCache is the server's set of boxes, bounded by the messages it
// holds: the least recently used boxes are dropped first (a session that
// still holds a dropped box keeps using it; the next SELECT makes a new
// one).
type boxCache struct {
	mu      sync.Mutex
	boxes   map[int64]*box
	maxMsgs int
}

// defaultCacheMessages bounds the cache: about 1 KiB each, 256 MiB.
const defaultCacheMessages = 250_000

func (bc *boxCache) get(id int64) *box {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.boxes == nil {
		bc.boxes = map[int64]*box{}
	}
	b := bc.boxes[id]
	if b == nil {
		b = &box{id: id}
		bc.boxes[id] = b
		bc.evictLocked(b)
	}
	b.lastUse.Store(time.Now().UnixNano())
	return b
}

// evictLocked drops least recently used boxes while the cache holds too
// many messages, never keep.
func (bc *boxCache) evictLocked(keep *box) {
	max := bc.maxMsgs
	if max <= 0 {
		max = defaultCacheMessages
	}
	for {
		total := 0
		var oldest *box
		for _, b := range bc.boxes {
			b.mu.RLock()
			total += len(b.msgs)
			b.mu.RUnlock()
			if b != keep && (oldest == nil || b.lastUse.Load() < oldest.lastUse.Load()) {
				oldest = b
			}
		}
		if total <= max || oldest == nil {
			return
		}
		delete(bc.boxes, oldest.id)
	}
}

// sync brings the box up to date with the store.
func (b *box) sync(ctx context.Context, st store.Store) error {
	// Deliveries may go on while this runs: each round reads the
	// mailbox's HIGHESTMODSEQ and count, applies what changed, and looks
	// again, until the box agrees with a reading of the mailbox. Under
	// unending churn it stops after a few rounds, as up to date as the
	// last one made it (the next sync goes on from there).
	for round := 0; round < 4; round++ {
		mb, err := st.GetMailboxByID(ctx, b.id)
		if err != nil {
			return err
		}
		b.mu.RLock()
		same := b.loaded && b.uidValidity == mb.UIDValidity
		fresh := same && b.highest >= mb.HighestModSeq && len(b.msgs) == int(mb.Messages)
		b.mu.RUnlock()
		if fresh {
			return nil
		}
		b.mu.Lock()
		switch {
		case !b.loaded || b.uidValidity != mb.UIDValidity:
			err = b.load(ctx, st, mb)
			b.mu.Unlock()
			return err
		case b.highest < mb.HighestModSeq:
			if err = b.update(ctx, st); err == nil {
				b.highest = max(b.highest, mb.HighestModSeq)
			}
		case b.highest > mb.HighestModSeq:
			// Another session brought the box past this reading of the
			// mailbox: read the mailbox again.
		case len(b.msgs) != int(mb.Messages):
			// Caught up by MODSEQ, yet the count disagrees: messages
			// went without an expunge record (as a RENAME of INBOX may
			// move them). Read everything again.
			err = b.load(ctx, st, mb)
			b.mu.Unlock()
			return err
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// load reads the whole mailbox. Entries of messages already cached are
// kept, with what they rendered.
func (b *box) load(ctx context.Context, st store.Store, mb *store.Mailbox) error {
	b.loads.Add(1)
	infos, err := st.ListMessages(ctx, b.id, 0, true)
	if err != nil {
		return err
	}
	old := map[uint32]*entry{}
	if b.uidValidity == mb.UIDValidity {
		for _, e := range b.msgs {
			old[e.uid] = e
		}
	}
	b.msgs = make([]*entry, len(infos))
	b.flags = make([][]string, len(infos))
	b.modseq = make([]uint64, len(infos))
	b.highest = mb.HighestModSeq
	for i := range infos {
		m := &infos[i]
		if e := old[m.UID]; e != nil {
			b.msgs[i] = e
		} else {
			b.msgs[i] = newEntry(m)
		}
		b.flags[i], b.modseq[i] = m.Flags, m.ModSeq
		b.highest = max(b.highest, m.ModSeq)
	}
	b.uidValidity = mb.UIDValidity
	b.loaded = true
	return nil
}

func newEntry(m *store.MessageInfo) *entry {
	return &entry{uid: m.UID, internalDate: m.InternalDate, saveDate: m.SaveDate, size: m.Size, meta: m.Meta}
}

// update applies what changed since b.highest. Anything changed after
// the caller read the mailbox's HIGHESTMODSEQ and seen here is seen
// again next time: harmless, as changes are applied by MODSEQ.
func (b *box) update(ctx context.Context, st store.Store) error {
	changed, err := st.ListMessages(ctx, b.id, b.highest, true)
	if err != nil {
		return err
	}
	vanished, err := st.Vanished(ctx, b.id, b.highest)
	if err != nil {
		return err
	}
	for i := range changed {
		m := &changed[i]
		n := len(b.msgs)
		if n == 0 || m.UID > b.msgs[n-1].uid {
			b.msgs = append(b.msgs, newEntry(m))
			b.flags = append(b.flags, m.Flags)
			b.modseq = append(b.modseq, m.ModSeq)
			continue
		}
		j, found := b.find(m.UID)
		if !found {
			// A UID below the last one that the box does not have: only
			// a message it never saw (read before it was committed).
			b.msgs = slices.Insert(b.msgs, j, newEntry(m))
			b.flags = slices.Insert(b.flags, j, m.Flags)
			b.modseq = slices.Insert(b.modseq, j, m.ModSeq)
			continue
		}
		if m.ModSeq > b.modseq[j] {
			b.flags[j], b.modseq[j] = m.Flags, m.ModSeq
		}
	}
	if len(vanished) > 0 {
		gone := map[uint32]bool{}
		for _, u := range vanished {
			gone[u] = true
		}
		keep := 0
		for i, e := range b.msgs {
			if gone[e.uid] {
				continue
			}
			b.msgs[keep], b.flags[keep], b.modseq[keep] = b.msgs[i], b.flags[i], b.modseq[i]
			keep++
		}
		clear(b.msgs[keep:])
		b.msgs, b.flags, b.modseq = b.msgs[:keep], b.flags[:keep], b.modseq[:keep]
	}
	return nil
}

// find returns the position of uid in the box (b.mu held).
func (b *box) find(uid uint32) (int, bool) {
	return slices.BinarySearchFunc(b.msgs, uid, func(e *entry, u uint32) int {
		switch {
		case e.uid < u:
			return -1
		case e.uid > u:
			return 1
		}
		return 0
	})
}

// entries returns the entries of the given ascending UIDs (nil where the
// box does not have one).
func (b *box) entries(uids []uint32) []*entry {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*entry, len(uids))
	j := 0
	for k, u := range uids {
		for j < len(b.msgs) && b.msgs[j].uid < u {
			j++
		}
		if j < len(b.msgs) && b.msgs[j].uid == u {
			out[k] = b.msgs[j]
		}
	}
	return out
}

// structure decodes the stored structure; nil when there is none or it
// does not decode (the caller parses the message then).
func (e *entry) structure() *msg.Message {
	if e.meta == nil {
		return nil
	}
	m, err := msg.Unmarshal(e.meta)
	if err != nil {
		return nil
	}
	return m
}

// rendered returns the ENVELOPE or BODYSTRUCTURE text of the entry in
// the session's forms, rendering and keeping it the first time.
func (e *entry) rendered(bodystructure bool, utf8, rev2 bool, m func() *msg.Message) []byte {
	var slot *atomic.Pointer[[]byte]
	if bodystructure {
		slot = &e.bs[b2i(utf8)<<1|b2i(rev2)]
	} else {
		slot = &e.env[b2i(utf8)]
	}
	if p := slot.Load(); p != nil {
		return *p
	}
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 1024)
	w := imapwire.NewWriter(bw)
	w.UTF8 = utf8
	st := m()
	if bodystructure {
		imapfetch.BodyStructure(w, &st.Part, imapfetch.Options{Rev2: rev2})
	} else {
		imapfetch.Envelope(w, &st.Envelope)
	}
	w.Flush()
	out := buf.Bytes()
	slot.Store(&out)
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
