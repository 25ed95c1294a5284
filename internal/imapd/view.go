package imapd

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/store"
)

// view is a session's picture of its selected mailbox: the messages in
// sequence order (RFC 9051 section 2.3.1.2) as the client was last told.
// Changes found in the store wait in the view until the session may tell
// the client (RFC 9051 section 7.4.1): new messages are appended at once
// (EXISTS can always be sent), flags are updated at once, expunged
// messages stay, marked gone, until an EXPUNGE may be sent.
type view struct {
	mb       store.Mailbox
	readOnly bool
	box      *box // the shared cache of the mailbox's messages

	uids   []uint32 // ascending
	flags  [][]string
	modseq []uint64

	highest uint64 // HIGHESTMODSEQ the view is up to date with
	dirty   bool   // a change notification came since the last refresh

	gone      map[uint32]bool // expunged in the store, not yet told
	told      int             // message count the client was last told (EXISTS)
	flagsNew  map[uint32]bool // flags changed by others, not yet told
	keywords  []string        // keywords in use, sorted; FLAGS lists them
	kwChanged bool            // a new keyword: FLAGS must be sent again
}

// index returns the position of uid in the view, or -1.
func (v *view) index(uid uint32) int {
	i, found := slices.BinarySearch(v.uids, uid)
	if !found {
		return -1
	}
	return i
}

func (v *view) maxUID() uint32 {
	if len(v.uids) == 0 {
		return 0
	}
	return v.uids[len(v.uids)-1]
}

// noteKeywords adds the keywords of flags to the mailbox's list.
func (v *view) noteKeywords(flags []string) {
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			continue
		}
		i, found := slices.BinarySearchFunc(v.keywords, f, compareFold)
		if !found {
			v.keywords = slices.Insert(v.keywords, i, f)
			v.kwChanged = true
		}
	}
}

// compareFold orders keywords case-insensitively without allocating (they
// are atoms: ASCII); SELECT sorts a mailbox's keywords with it.
func compareFold(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return int(ca) - int(cb)
		}
	}
	return len(a) - len(b)
}

var systemFlags = []string{store.FlagAnswered, store.FlagFlagged, store.FlagDeleted, store.FlagSeen, store.FlagDraft}

// loadView selects a mailbox: the view starts as the box's state.
func (c *session) loadView(ctx context.Context, mb *store.Mailbox, readOnly bool) (*view, error) {
	b := c.srv.cache.get(mb.ID)
	if err := b.sync(ctx, c.srv.Store); err != nil {
		return nil, err
	}
	v := &view{mb: *mb, readOnly: readOnly, box: b}
	b.mu.RLock()
	n := len(b.msgs)
	v.uids = make([]uint32, n)
	v.flags = slices.Clone(b.flags)
	v.modseq = slices.Clone(b.modseq)
	for i, e := range b.msgs {
		v.uids[i] = e.uid
	}
	v.highest = max(b.highest, mb.HighestModSeq)
	b.mu.RUnlock()
	kw := map[string]bool{}
	for _, flags := range v.flags {
		for _, f := range flags {
			if !strings.HasPrefix(f, `\`) && !kw[strings.ToLower(f)] {
				kw[strings.ToLower(f)] = true
				v.keywords = append(v.keywords, f)
			}
		}
	}
	slices.SortFunc(v.keywords, compareFold)
	v.told = len(v.uids)
	return v, nil
}

// drainChanges reads the pending change notifications and marks the
// view dirty when one concerns it.
func (c *session) drainChanges() {
	for {
		select {
		case ch := <-c.changes:
			c.noteChange(ch)
		default:
			return
		}
	}
}

func (c *session) noteChange(ch store.Change) {
	if c.sel != nil && (ch.MailboxID == c.sel.mb.ID || ch.Kind == store.ChangeMailboxes) {
		c.sel.dirty = true
	}
}

// refresh brings the view up to date with the store when something
// changed (or when force). Nothing is told to the client here.
func (c *session) refresh(ctx context.Context, force bool) error {
	if c.changes != nil {
		c.drainChanges()
	}
	v := c.sel
	if v == nil || (!v.dirty && !force) {
		return nil
	}
	v.dirty = false
	b := v.box
	err := b.sync(ctx, c.srv.Store)
	if errors.Is(err, store.ErrNotFound) {
		// The mailbox was deleted: everything in it is gone.
		for _, u := range v.uids {
			v.markGone(u)
		}
		return nil
	}
	if err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.highest <= v.highest && len(b.msgs) == len(v.uids)-len(v.gone) {
		return nil
	}
	// Walk the view and the box together (both ascending by UID): a UID
	// only in the view is gone, one only in the box and above the view's
	// last is new, one in both may have new flags.
	last := v.maxUID()
	var added []int
	i, j := 0, 0
	for i < len(v.uids) || j < len(b.msgs) {
		switch {
		case j == len(b.msgs) || (i < len(v.uids) && v.uids[i] < b.msgs[j].uid):
			v.markGone(v.uids[i])
			i++
		case i == len(v.uids) || b.msgs[j].uid < v.uids[i]:
			if b.msgs[j].uid > last {
				added = append(added, j)
			}
			j++
		default:
			if b.modseq[j] > v.modseq[i] && !v.gone[v.uids[i]] {
				if !slices.Equal(v.flags[i], b.flags[j]) {
					if v.flagsNew == nil {
						v.flagsNew = map[uint32]bool{}
					}
					v.flagsNew[v.uids[i]] = true
					v.noteKeywords(b.flags[j])
				}
				v.flags[i], v.modseq[i] = b.flags[j], b.modseq[j]
			}
			i++
			j++
		}
	}
	for _, j := range added {
		v.uids = append(v.uids, b.msgs[j].uid)
		v.flags = append(v.flags, b.flags[j])
		v.modseq = append(v.modseq, b.modseq[j])
		v.noteKeywords(b.flags[j])
	}
	v.highest = max(v.highest, b.highest)
	return nil
}

func (v *view) markGone(uid uint32) {
	if v.index(uid) < 0 {
		return
	}
	if v.gone == nil {
		v.gone = map[uint32]bool{}
	}
	v.gone[uid] = true
}

// sync refreshes the view and tells the client what changed: expunges
// only when allowExpunge (RFC 9051 section 7.4.1), then new flags, EXISTS
// and flag changes.
func (c *session) sync(ctx context.Context, allowExpunge bool) {
	if c.sel == nil {
		if c.changes != nil {
			c.drainChanges()
		}
		return
	}
	if err := c.refresh(ctx, false); err != nil {
		c.srv.Log.Error("imap refresh", "user", c.acct.Name, "mailbox", c.sel.mb.Name, "err", err)
		return
	}
	c.tell(allowExpunge)
}

// tell writes the updates the view holds.
func (c *session) tell(allowExpunge bool) {
	v := c.sel
	if v.kwChanged {
		c.writeFlags()
		v.kwChanged = false
	}
	// EXISTS first: a message that arrived and went since the last
	// command is announced before its EXPUNGE, never expunged unknown.
	if len(v.uids) != v.told {
		c.w.Untagged().Number(uint64(len(v.uids))).Atom(" EXISTS").CRLF()
		v.told = len(v.uids)
	}
	if allowExpunge && len(v.gone) > 0 {
		c.tellExpunges()
	}
	if len(v.flagsNew) > 0 {
		uids := make([]uint32, 0, len(v.flagsNew))
		for u := range v.flagsNew {
			uids = append(uids, u)
		}
		slices.Sort(uids)
		for _, u := range uids {
			if i := v.index(u); i >= 0 {
				c.writeFlagsFetch(i, true)
			}
		}
		v.flagsNew = nil
	}
}

// tellExpunges removes the gone messages from the view and says so:
// EXPUNGE per message, or one VANISHED with QRESYNC (RFC 7162 section
// 3.2.10).
func (c *session) tellExpunges() {
	v := c.sel
	gone := make([]uint32, 0, len(v.gone))
	for u := range v.gone {
		gone = append(gone, u)
	}
	slices.Sort(gone)
	if c.qresync {
		c.w.Untagged().Atom("VANISHED ").Atom(uidSetString(gone)).CRLF()
	}
	keep := 0
	for i, u := range v.uids {
		if v.gone[u] {
			if !c.qresync {
				// The sequence number of a message is one more than the
				// messages kept before it (each EXPUNGE renumbers the
				// rest, RFC 9051 section 7.5.1).
				c.w.Untagged().Number(uint64(keep + 1)).Atom(" EXPUNGE").CRLF()
			}
			delete(v.flagsNew, u)
			continue
		}
		v.uids[keep], v.flags[keep], v.modseq[keep] = v.uids[i], v.flags[i], v.modseq[i]
		keep++
	}
	v.uids, v.flags, v.modseq = v.uids[:keep], v.flags[:keep], v.modseq[:keep]
	v.told = len(v.uids)
	v.gone = nil
	// A search result saved with SEARCHRES loses the expunged messages
	// (RFC 5182 section 2.1).
	if c.savedValid {
		c.saved = slices.DeleteFunc(c.saved, func(u uint32) bool { return slices.Contains(gone, u) })
	}
}

// writeFlags writes FLAGS and PERMANENTFLAGS.
func (c *session) writeFlags() {
	v := c.sel
	all := append(append([]string{}, systemFlags...), v.keywords...)
	c.w.Untagged().Atom("FLAGS ").Flags(all).CRLF()
	if v.readOnly {
		c.w.Status("", "OK", "PERMANENTFLAGS ()", "No permanent flags permitted")
	} else {
		c.w.Status("", "OK", "PERMANENTFLAGS "+flagList(append(all, `\*`)), "Flags permitted")
	}
}

func flagList(flags []string) string {
	return "(" + strings.Join(flags, " ") + ")"
}

// writeFlagsFetch writes an unsolicited "* n FETCH (UID u FLAGS (...))"
// for message i, with MODSEQ once CONDSTORE is on (RFC 7162 section
// 3.1.4.1).
func (c *session) writeFlagsFetch(i int, withUID bool) {
	v := c.sel
	c.w.Untagged().Number(uint64(i + 1)).Atom(" FETCH (")
	if withUID || c.qresync {
		c.w.Atom("UID ").Number(uint64(v.uids[i])).SP()
	}
	c.w.Atom("FLAGS ").Flags(v.flags[i])
	if c.condstore {
		c.w.Atom(" MODSEQ (").Number(v.modseq[i]).Atom(")")
	}
	c.w.Atom(")").CRLF()
}

// uidSetString writes ascending UIDs as a compact set ("1:3,7").
func uidSetString(uids []uint32) string {
	var b []byte
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(uids[i]), 10)
		if j > i {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(uids[j]), 10)
		}
		i = j + 1
	}
	return string(b)
}

// cmdSelect opens a mailbox (RFC 9051 sections 6.3.2 and 6.3.3), with
// CONDSTORE and QRESYNC (RFC 7162 sections 3.1.8 and 3.2.5).
func (c *session) cmdSelect(ctx context.Context, readOnly bool, a *imapwire.SelectCommand) result {
	if a.QResync != nil && !c.qresync {
		return badResult("QRESYNC parameter needs ENABLE QRESYNC first")
	}
	name, res, okName := c.mailboxName(a.Mailbox)
	// A failed SELECT leaves no mailbox selected (RFC 9051 section 6.3.2).
	wasSelected := c.sel != nil
	c.sel, c.savedValid, c.saved = nil, false, nil
	c.state = stateAuth
	if wasSelected {
		// RFC 7162 section 3.2.11 / RFC 9051 section 7.1: the old
		// mailbox's updates end here.
		c.w.Status("", "OK", "CLOSED", "Previous mailbox closed")
	}
	if !okName {
		return res
	}
	mb, err := c.srv.Store.GetMailbox(ctx, c.acct.ID, name)
	if err != nil {
		return c.mailboxError("SELECT", err)
	}
	if c.changes != nil {
		c.drainChanges()
	}
	v, err := c.loadView(ctx, mb, readOnly)
	if err != nil {
		return c.storeFailed("SELECT", err)
	}
	if a.CondStore {
		c.condstore = true
	}
	c.sel, c.state = v, stateSelected
	c.writeFlags()
	v.kwChanged = false
	c.w.Untagged().Number(uint64(len(v.uids))).Atom(" EXISTS").CRLF()
	if !c.rev2 {
		c.w.Untagged().Atom("0 RECENT").CRLF()
		for i, f := range v.flags {
			if !hasFlag(f, store.FlagSeen) {
				c.w.Status("", "OK", "UNSEEN "+itoa(i+1), "First unseen")
				break
			}
		}
	}
	c.w.Status("", "OK", "UIDVALIDITY "+itoa(int(v.mb.UIDValidity)), "UIDs valid")
	c.w.Status("", "OK", "UIDNEXT "+itoa(int(v.mb.UIDNext)), "Predicted next UID")
	c.w.Status("", "OK", "HIGHESTMODSEQ "+utoa(v.highest), "Highest")
	if c.rev2 {
		c.w.Untagged().Atom("LIST () \"/\" ").Mailbox(v.mb.Name).CRLF()
	}
	if a.QResync != nil && a.QResync.UIDValidity == v.mb.UIDValidity {
		if err := c.qresyncSelect(ctx, a.QResync); err != nil {
			return c.storeFailed("SELECT", err)
		}
	}
	if readOnly {
		return okCode("READ-ONLY", "EXAMINE completed")
	}
	return okCode("READ-WRITE", "SELECT completed")
}

// qresyncSelect reports what changed since the client's last sync (RFC
// 7162 section 3.2.5.1): VANISHED (EARLIER) for expunged UIDs, then
// FETCH FLAGS for changed messages.
func (c *session) qresyncSelect(ctx context.Context, q *imapwire.QResyncParams) error {
	v := c.sel
	vanished, err := c.srv.Store.Vanished(ctx, v.mb.ID, q.ModSeq)
	if err != nil {
		return err
	}
	if q.KnownUIDs != nil {
		vanished = slices.DeleteFunc(vanished, func(u uint32) bool {
			return !q.KnownUIDs.Contains(u, v.maxUID())
		})
	}
	if len(vanished) > 0 {
		c.w.Untagged().Atom("VANISHED (EARLIER) ").Atom(uidSetString(vanished)).CRLF()
	}
	for i := range v.uids {
		if v.modseq[i] > q.ModSeq && (q.KnownUIDs == nil || q.KnownUIDs.Contains(v.uids[i], v.maxUID())) {
			c.writeFlagsFetch(i, true)
		}
	}
	return nil
}

// cmdClose leaves the selected mailbox; CLOSE also expunges (RFC 9051
// section 6.4.1) without telling, UNSELECT does not (RFC 3691).
func (c *session) cmdClose(ctx context.Context, expunge bool) result {
	v := c.sel
	c.sel, c.state, c.savedValid, c.saved = nil, stateAuth, false, nil
	if expunge && !v.readOnly {
		if _, err := c.srv.Store.Expunge(ctx, v.mb.ID, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
			return c.storeFailed("CLOSE", err)
		}
	}
	if expunge {
		return ok("CLOSE completed")
	}
	return ok("UNSELECT completed")
}

// cmdExpunge removes the \Deleted messages (RFC 9051 section 6.4.3), or
// those of the set among them with UID EXPUNGE (RFC 4315 section 2.1).
func (c *session) cmdExpunge(ctx context.Context, set *imapwire.SeqSet) result {
	v := c.sel
	if v.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	var uids []uint32
	if set != nil {
		c.refresh(ctx, false)
		for _, i := range c.resolve(*set, true) {
			if hasFlag(v.flags[i], store.FlagDeleted) {
				uids = append(uids, v.uids[i])
			}
		}
		if len(uids) == 0 {
			c.sync(ctx, true)
			return ok("UID EXPUNGE completed")
		}
	}
	done, err := c.srv.Store.Expunge(ctx, v.mb.ID, uids)
	if err != nil {
		return c.storeFailed("EXPUNGE", err)
	}
	for _, u := range done {
		v.markGone(u)
	}
	c.refresh(ctx, true)
	c.tell(true)
	return ok("EXPUNGE completed")
}

// resolve turns a sequence set (or, with uid, a UID set) into ascending
// view indexes. "*" is the last message; UIDs that do not exist are
// left out (RFC 9051 section 6.4.9). "$" is the saved search result
// (RFC 5182). Sequence numbers past the end are left out too; the caller
// checks with validSeqSet first when that must fail.
func (c *session) resolve(set imapwire.SeqSet, uid bool) []int {
	v := c.sel
	n := len(v.uids)
	if n == 0 {
		return nil
	}
	if set.Saved {
		var out []int
		for _, u := range c.saved {
			if i := v.index(u); i >= 0 {
				out = append(out, i)
			}
		}
		return out
	}
	// Several ranges are marked in a bitmap the size of the mailbox and
	// read out once: overlapping ranges ("1:*,1:*,...", thousands of them
	// on a 64 KiB line) then cost the mailbox's size, not ranges times
	// messages.
	var mark []bool
	if len(set.Ranges) > 1 {
		mark = make([]bool, n)
	}
	var out []int
	for _, r := range set.Ranges {
		var lo, hi int // indexes, inclusive
		if uid {
			a, b := r.Start, r.Stop
			if a == 0 {
				a = v.maxUID()
			}
			if b == 0 {
				b = v.maxUID()
			}
			if a > b {
				a, b = b, a
			}
			lo = sort.Search(n, func(i int) bool { return v.uids[i] >= a })
			hi = sort.Search(n, func(i int) bool { return v.uids[i] > b }) - 1
		} else {
			a, b := int(r.Start), int(r.Stop)
			if a == 0 {
				a = n
			}
			if b == 0 {
				b = n
			}
			if a > b {
				a, b = b, a
			}
			lo, hi = a-1, min(b, n)-1
		}
		if mark == nil {
			for i := lo; i <= hi; i++ {
				out = append(out, i)
			}
			continue
		}
		for i := lo; i <= hi; i++ {
			mark[i] = true
		}
	}
	if mark != nil {
		for i, m := range mark {
			if m {
				out = append(out, i)
			}
		}
	}
	return out
}

// validSeqSet reports whether every message number of a non-UID set
// exists (RFC 9051 section 9: a seq-number outside 1..EXISTS is an
// error).
func (c *session) validSeqSet(set imapwire.SeqSet) bool {
	if set.Saved {
		return true
	}
	n := uint32(len(c.sel.uids))
	for _, r := range set.Ranges {
		// "*" in an empty mailbox names nothing, which is no error
		// ("FETCH 1:* FLAGS" on an empty INBOX answers OK); a number
		// past the end is one.
		if n == 0 && (r.Start == 0 || r.Stop == 0) {
			continue
		}
		if r.Start > n || r.Stop > n {
			return false
		}
	}
	return true
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

func itoa(n int) string    { return strconv.Itoa(n) }
func utoa(n uint64) string { return strconv.FormatUint(n, 10) }
