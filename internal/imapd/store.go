package imapd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// canonicalFlags writes system flags in their canonical case (flags are
// case-insensitive, RFC 9051 section 2.3.2) and refuses \Recent, which
// only the server sets, and unknown system flags.
func canonicalFlags(flags []string) ([]string, bool) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			found := false
			for _, s := range systemFlags {
				if strings.EqualFold(f, s) {
					f, found = s, true
					break
				}
			}
			if !found {
				return nil, false
			}
		}
		out = append(out, f)
	}
	return out, true
}

// cmdStore changes flags (RFC 9051 section 6.4.6), with UNCHANGEDSINCE
// (RFC 7162 section 3.1.3).
func (c *session) cmdStore(ctx context.Context, uid bool, a *imapwire.StoreCommand) result {
	v := c.sel
	if !uid && !c.validSeqSet(a.Seq) {
		return badResult("Invalid message sequence number")
	}
	if v.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	flags, valid := canonicalFlags(a.Flags)
	if !valid {
		return badResult(`Only \Answered \Flagged \Deleted \Seen \Draft and keywords can be stored`)
	}
	if a.HasUnchangedSince {
		c.condstore = true
	}
	if err := c.refresh(ctx, false); err != nil {
		return c.storeFailed("STORE", err)
	}
	idx := c.resolve(a.Seq, uid)
	uids := make([]uint32, 0, len(idx))
	for _, i := range idx {
		if !v.gone[v.uids[i]] {
			uids = append(uids, v.uids[i])
		}
	}
	op := store.FlagsSet
	switch a.Mode {
	case imapwire.StoreAdd:
		op = store.FlagsAdd
	case imapwire.StoreRemove:
		op = store.FlagsRemove
	}
	var changed []store.MessageInfo
	var modified []uint32
	if a.HasUnchangedSince && a.UnchangedSince == 0 {
		// Every message has a MODSEQ above 0: none may change (RFC 7162
		// section 3.1.3).
		modified = uids
	} else if len(uids) > 0 {
		var err error
		changed, modified, err = c.srv.Store.StoreFlags(ctx, v.mb.ID, uids, op, flags, a.UnchangedSince)
		if err != nil {
			return c.storeFailed("STORE", err)
		}
	}
	touched := map[uint32]bool{}
	for _, m := range changed {
		if i := v.index(m.UID); i >= 0 {
			v.flags[i], v.modseq[i] = m.Flags, m.ModSeq
			v.noteKeywords(m.Flags)
			touched[m.UID] = true
			delete(v.flagsNew, m.UID)
		}
	}
	if v.kwChanged {
		c.writeFlags()
		v.kwChanged = false
	}
	failed := map[uint32]bool{}
	for _, u := range modified {
		failed[u] = true
	}
	for _, i := range idx {
		u := v.uids[i]
		if v.gone[u] || failed[u] {
			continue
		}
		switch {
		case !a.Silent:
			// Every message of the set gets its flags (RFC 9051
			// section 6.4.6), changed or not.
			c.writeStoreFetch(i, uid, true)
		case touched[u] && c.condstore:
			// .SILENT still reports the new MODSEQ (RFC 7162 section
			// 3.1.3).
			c.writeStoreFetch(i, uid, false)
		}
	}
	c.sync(ctx, uid)
	if len(modified) > 0 {
		var nums []uint32
		if uid {
			nums = modified
		} else {
			for _, u := range modified {
				if i := v.index(u); i >= 0 {
					nums = append(nums, uint32(i+1))
				}
			}
		}
		return okCode("MODIFIED "+uidSetString(nums), "Some messages were modified meanwhile")
	}
	return ok("STORE completed")
}

func (c *session) writeStoreFetch(i int, uid, withFlags bool) {
	v := c.sel
	c.w.Untagged().Number(uint64(i + 1)).Atom(" FETCH (")
	sep := ""
	if uid || c.qresync {
		c.w.Atom("UID ").Number(uint64(v.uids[i]))
		sep = " "
	}
	if withFlags {
		c.w.Atom(sep + "FLAGS ").Flags(v.flags[i])
		sep = " "
	}
	if c.condstore {
		c.w.Atom(sep + "MODSEQ (").Number(v.modseq[i]).Atom(")")
	}
	c.w.Atom(")").CRLF()
}

// cmdCopy answers COPY (RFC 9051 section 6.4.7) and MOVE (RFC 6851), with
// COPYUID (RFC 4315).
func (c *session) cmdCopy(ctx context.Context, uid, move bool, a *imapwire.CopyCommand) result {
	v := c.sel
	op := "COPY"
	if move {
		op = "MOVE"
	}
	if !uid && !c.validSeqSet(a.Seq) {
		return badResult("Invalid message sequence number")
	}
	if move && v.readOnly {
		return no("READ-ONLY", "Mailbox is read-only")
	}
	name, res, okName := c.mailboxName(a.Mailbox)
	if !okName {
		return res
	}
	dst, err := c.srv.Store.GetMailbox(ctx, c.acct.ID, name)
	if errors.Is(err, store.ErrNotFound) {
		return no("TRYCREATE", "No such mailbox")
	}
	if err != nil {
		return c.storeFailed(op, err)
	}
	if err := c.refresh(ctx, false); err != nil {
		return c.storeFailed(op, err)
	}
	var uids []uint32
	for _, i := range c.resolve(a.Seq, uid) {
		if !v.gone[v.uids[i]] {
			uids = append(uids, v.uids[i])
		}
	}
	if len(uids) == 0 {
		c.sync(ctx, move || uid)
		return ok(op + " completed")
	}
	var src, dstUIDs []uint32
	if move {
		src, dstUIDs, err = c.srv.Store.Move(ctx, v.mb.ID, uids, dst.ID)
	} else {
		src, dstUIDs, err = c.srv.Store.Copy(ctx, v.mb.ID, uids, dst.ID)
	}
	if errors.Is(err, store.ErrOverQuota) {
		return no("OVERQUOTA", "Over quota")
	}
	if err != nil {
		return c.storeFailed(op, err)
	}
	code := ""
	if len(src) > 0 {
		code = "COPYUID " + utoa(uint64(dst.UIDValidity)) + " " + uidSetString(src) + " " + uidSetString(dstUIDs)
	}
	if !move {
		if dst.ID == v.mb.ID {
			c.refresh(ctx, true)
		}
		c.sync(ctx, uid)
		return okCode(code, "COPY completed")
	}
	// MOVE: COPYUID in an untagged OK before the expunges (RFC 6851
	// section 4.3).
	if code != "" {
		c.w.Status("", "OK", code, "Moved")
	}
	for _, u := range src {
		v.markGone(u)
	}
	c.refresh(ctx, true)
	c.tell(true)
	return ok("MOVE completed")
}

// cmdAppend stores messages (RFC 9051 section 6.3.12), several at once
// with MULTIAPPEND (RFC 3502: all or none), answering APPENDUID (RFC
// 4315).
func (c *session) cmdAppend(ctx context.Context, a *imapwire.AppendCommand) result {
	name, res, okName := c.mailboxName(a.Mailbox)
	if !okName {
		return res
	}
	mb, err := c.srv.Store.GetMailbox(ctx, c.acct.ID, name)
	if errors.Is(err, store.ErrNotFound) {
		return no("TRYCREATE", "No such mailbox")
	}
	if err != nil {
		return c.storeFailed("APPEND", err)
	}
	var done []uint32
	undo := func() {
		if len(done) > 0 {
			if _, err := c.srv.Store.Expunge(ctx, mb.ID, done); err != nil {
				c.srv.Log.Error("imap APPEND undo", "user", c.acct.Name, "err", err)
			}
		}
	}
	for _, m := range a.Messages {
		flags, valid := canonicalFlags(m.Flags)
		if !valid {
			undo()
			return badResult(`Only \Answered \Flagged \Deleted \Seen \Draft and keywords can be set`)
		}
		if len(m.Data) == 0 {
			undo()
			return no("CANNOT", "Empty message")
		}
		if int64(len(m.Data)) > c.srv.AppendLimit {
			undo()
			return no("TOOBIG", "Message too big")
		}
		date := m.Date
		if date.IsZero() {
			date = time.Now()
		}
		meta := msg.ParseBytes(m.Data).Marshal()
		info, err := c.srv.Store.Append(ctx, mb.ID, bytes.NewReader(m.Data), meta, flags, date)
		if err != nil {
			undo()
			if errors.Is(err, store.ErrOverQuota) {
				return no("OVERQUOTA", "Over quota")
			}
			return c.mailboxError("APPEND", err)
		}
		done = append(done, info.UID)
	}
	if c.sel != nil && c.sel.mb.ID == mb.ID {
		c.refresh(ctx, true)
		c.tell(true)
	}
	return okCode("APPENDUID "+utoa(uint64(mb.UIDValidity))+" "+uidSetString(done), "APPEND completed")
}

// cmdIdle waits for changes and tells them as they come (RFC 2177) until
// the client sends DONE.
func (c *session) cmdIdle(ctx context.Context, tag string) result {
	c.w.Continue("idling")
	c.sync(ctx, true)
	if c.flush() != nil {
		c.state, c.ended = stateLogout, "write failed"
		return result{}
	}
	done := make(chan error, 1)
	go func() { done <- c.r.ReadDone() }()
	c.release()
	defer c.acquire()
	// Waiting for the client: a shutdown may end the wait at once.
	if c.setBusy(false) {
		c.dc.Stop()
	}
	defer c.setBusy(true)
	for {
		select {
		case err := <-done:
			c.acquire()
			var perr *imapwire.Error
			switch {
			case err == nil:
				c.sync(ctx, true)
				return ok("IDLE terminated")
			case errors.As(err, &perr):
				return badResult("Expected DONE")
			}
			c.readFailed(err)
			c.state = stateLogout
			return result{}
		case ch := <-c.changes:
			c.acquire()
			c.noteChange(ch)
			c.sync(ctx, true)
			err := c.flush()
			c.release()
			if err != nil {
				// The reader goroutine ends with the connection.
				c.raw.Close()
				<-done
				c.state, c.ended = stateLogout, "write failed"
				return result{}
			}
		}
	}
}
