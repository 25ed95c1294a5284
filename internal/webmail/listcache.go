package webmail

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// row is what the message list shows of a message, made once from the
// structure the store keeps and then kept in memory: a page of a 100,000
// message mailbox is a slice of a sorted index, not 100,000 rows read.
type row struct {
	UID          uint32
	ModSeq       uint64
	Flags        []string
	InternalDate time.Time
	Size         int64
	From         string // display: the name, else the address
	FromAddr     string
	fromKey      string // lower-case, for sorting
	To           string
	Subject      string
	MessageID    string
	Attachment   bool

	// For threading (threads.go): the raw Subject and Date, In-Reply-To,
	// the header's length, and References once read.
	rawSubject, dateHeader, inReplyTo string
	headerLen                         int64
	refs                              string
	refsRead                          bool
}

func (r *row) has(flag string) bool {
	for _, f := range r.Flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

// mailboxList is the cached rows of one mailbox, by UID, with sorted
// orders made on demand.
type mailboxList struct {
	mu          sync.Mutex
	id          int64
	uidValidity uint32
	modSeq      uint64 // HIGHESTMODSEQ the rows reflect
	rows        map[uint32]*row
	sorted      map[string][]*row // by sort key; dropped on any change
	conv        []*conversation   // threads.go; dropped with sorted
	convOf      map[uint32]*conversation
	used        time.Time
}

// listCache holds the lists of recently used mailboxes. The store's
// HIGHESTMODSEQ tells what changed since: only changed rows are read again
// (ListMessages changedSince, Vanished), as the IMAP server's cache does.
type listCache struct {
	st  store.Store
	max int
	mu  sync.Mutex
	m   map[int64]*mailboxList
}

func newListCache(st store.Store, max int) *listCache {
	return &listCache{st: st, max: max, m: map[int64]*mailboxList{}}
}

// get returns the mailbox's list brought up to date with mb (just read
// from the store), locked; the caller unlocks it.
func (c *listCache) get(ctx context.Context, mb *store.Mailbox) (*mailboxList, error) {
	c.mu.Lock()
	l := c.m[mb.ID]
	if l == nil {
		if len(c.m) >= c.max {
			c.evictLocked()
		}
		l = &mailboxList{id: mb.ID}
		c.m[mb.ID] = l
	}
	c.mu.Unlock()
	l.mu.Lock()
	l.used = time.Now()
	if err := l.refresh(ctx, c.st, mb); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	return l, nil
}

// evictLocked forgets the least recently used list.
func (c *listCache) evictLocked() {
	var old *mailboxList
	for _, l := range c.m {
		if old == nil || l.used.Before(old.used) {
			old = l
		}
	}
	if old != nil {
		delete(c.m, old.id)
	}
}

func (l *mailboxList) refresh(ctx context.Context, st store.Store, mb *store.Mailbox) error {
	if l.rows != nil && l.uidValidity == mb.UIDValidity && l.modSeq == mb.HighestModSeq {
		return nil
	}
	membership := true // rows came or went: the sorted orders are stale
	if l.rows == nil || l.uidValidity != mb.UIDValidity {
		infos, err := st.ListMessages(ctx, mb.ID, 0, true)
		if err != nil {
			return err
		}
		l.rows = make(map[uint32]*row, len(infos))
		for i := range infos {
			l.rows[infos[i].UID] = newRow(&infos[i])
		}
	} else {
		since := l.modSeq
		// Flag changes need no structure; only new messages are read with it.
		infos, err := st.ListMessages(ctx, mb.ID, since, false)
		if err != nil {
			return err
		}
		var fresh []uint32
		for i := range infos {
			if old := l.rows[infos[i].UID]; old != nil {
				old.Flags, old.ModSeq = infos[i].Flags, infos[i].ModSeq
				continue
			}
			fresh = append(fresh, infos[i].UID)
		}
		if len(fresh) > 0 {
			if len(fresh) > 64 {
				if infos, err = st.ListMessages(ctx, mb.ID, since, true); err != nil {
					return err
				}
			} else {
				infos = infos[:0]
				for _, u := range fresh {
					m, err := st.GetMessage(ctx, mb.ID, u)
					if err != nil {
						continue // expunged meanwhile
					}
					infos = append(infos, *m)
				}
			}
			for i := range infos {
				if l.rows[infos[i].UID] == nil {
					l.rows[infos[i].UID] = newRow(&infos[i])
				}
			}
		}
		gone, err := st.Vanished(ctx, mb.ID, since)
		if err != nil {
			return err
		}
		for _, u := range gone {
			delete(l.rows, u)
		}
		// Flags are no sort key: a flag change keeps the orders (their rows
		// are the same pointers, updated in place).
		membership = len(fresh) > 0 || len(gone) > 0
	}
	l.uidValidity, l.modSeq = mb.UIDValidity, mb.HighestModSeq
	if membership {
		l.sorted = nil
		l.conv, l.convOf = nil, nil
	}
	return nil
}

// newRow makes a row from what the store keeps.
func newRow(m *store.MessageInfo) *row {
	r := &row{UID: m.UID, ModSeq: m.ModSeq, Flags: m.Flags, InternalDate: m.InternalDate, Size: m.Size}
	pm, err := msg.Unmarshal(m.Meta)
	if err != nil || pm == nil {
		r.Subject = "(unreadable)"
		return r
	}
	env := &pm.Envelope
	r.Subject = decodeHeader(env.Subject)
	r.MessageID = env.MessageID
	r.rawSubject, r.dateHeader, r.inReplyTo = env.Subject, env.Date, env.InReplyTo
	r.headerLen = pm.Part.BodyStart
	if len(env.From) > 0 {
		r.From, r.FromAddr = displayAddress(env.From[0])
	}
	if len(env.To) > 0 {
		r.To, _ = displayAddress(env.To[0])
	}
	r.fromKey = strings.ToLower(r.From)
	r.Attachment = hasAttachment(&pm.Part)
	return r
}

func hasAttachment(p *msg.Part) bool {
	if p.Disposition == "attachment" {
		return true
	}
	for i := range p.Children {
		if hasAttachment(&p.Children[i]) {
			return true
		}
	}
	return false
}

// Sort keys of the list.
const (
	sortDate     = "date" // newest first
	sortDateAsc  = "date-asc"
	sortFrom     = "from"
	sortSize     = "size" // largest first
	sortSizeAsc  = "size-asc"
	sortFromDesc = "from-desc"
)

func validSort(k string) string {
	switch k {
	case sortDate, sortDateAsc, sortFrom, sortFromDesc, sortSize, sortSizeAsc:
		return k
	}
	return sortDate
}

// order returns the rows sorted by key (the list is locked). Ties are broken
// by UID, newest first, so that paging is stable.
func (l *mailboxList) order(key string) []*row {
	if o, ok := l.sorted[key]; ok {
		return o
	}
	o := make([]*row, 0, len(l.rows))
	for _, r := range l.rows {
		o = append(o, r)
	}
	byUID := func(a, b *row) int { return int(b.UID) - int(a.UID) }
	var cmp func(a, b *row) int
	switch key {
	case sortDateAsc:
		cmp = func(a, b *row) int {
			if c := a.InternalDate.Compare(b.InternalDate); c != 0 {
				return c
			}
			return -byUID(a, b)
		}
	case sortFrom, sortFromDesc:
		cmp = func(a, b *row) int {
			c := strings.Compare(a.fromKey, b.fromKey)
			if key == sortFromDesc {
				c = -c
			}
			if c != 0 {
				return c
			}
			return byUID(a, b)
		}
	case sortSize:
		cmp = func(a, b *row) int {
			if a.Size != b.Size {
				if a.Size > b.Size {
					return -1
				}
				return 1
			}
			return byUID(a, b)
		}
	case sortSizeAsc:
		cmp = func(a, b *row) int {
			if a.Size != b.Size {
				if a.Size < b.Size {
					return -1
				}
				return 1
			}
			return byUID(a, b)
		}
	default:
		cmp = func(a, b *row) int {
			if c := b.InternalDate.Compare(a.InternalDate); c != 0 {
				return c
			}
			return byUID(a, b)
		}
	}
	slices.SortFunc(o, cmp)
	if l.sorted == nil {
		l.sorted = map[string][]*row{}
	}
	l.sorted[key] = o
	return o
}
