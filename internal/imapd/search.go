package imapd

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapsearch"
	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// searchSource gives imapsearch the structure and bytes of messages.
type searchSource struct {
	c  *session
	mb int64
}

func (s searchSource) Structure(m *imapsearch.Message) (*msg.Message, error) {
	if m.Info.Meta == nil {
		info, err := s.c.srv.Store.GetMessage(context.Background(), s.mb, m.Info.UID)
		if err != nil {
			return nil, err
		}
		m.Info.Meta = info.Meta
	}
	st, err := msg.Unmarshal(m.Info.Meta)
	if err != nil {
		return s.c.reparse(context.Background(), s.mb, m.Info.UID), nil
	}
	return st, nil
}

func (s searchSource) Open(m *imapsearch.Message) (store.MessageReader, error) {
	return s.c.srv.Store.OpenMessage(context.Background(), s.mb, m.Info.UID)
}

// usesModSeq reports whether the search has a MODSEQ key (RFC 7162
// section 3.1.5: the answer then carries the highest MODSEQ found).
func usesModSeq(k *imapwire.SearchKey) bool {
	if k == nil {
		return false
	}
	if k.Op == "MODSEQ" {
		return true
	}
	for _, ch := range k.Children {
		if usesModSeq(ch) {
			return true
		}
	}
	return false
}

// candidates are the messages of the view that the store still has, as
// imapsearch takes them, with the flags the session knows (a search
// answers for the state the client was told and its own STOREs made).
func (c *session) candidates() []imapsearch.Message {
	v := c.sel
	es := v.box.entries(v.uids)
	out := make([]imapsearch.Message, 0, len(es))
	infos := make([]store.MessageInfo, len(es))
	for i, e := range es {
		if e == nil || v.gone[v.uids[i]] {
			continue
		}
		infos[i] = store.MessageInfo{MailboxID: v.mb.ID, UID: e.uid, ModSeq: v.modseq[i], Flags: v.flags[i],
			InternalDate: e.internalDate, SaveDate: e.saveDate, Size: e.size, Meta: e.meta}
		out = append(out, imapsearch.Message{Seq: uint32(i + 1), Info: &infos[i]})
	}
	return out
}

func (c *session) searchEnv() imapsearch.Env {
	env := imapsearch.Env{Now: time.Now(), MaxSeq: uint32(len(c.sel.uids)), MaxUID: c.sel.maxUID()}
	if c.savedValid {
		env.Saved = c.saved
		if env.Saved == nil {
			env.Saved = []uint32{}
		}
	}
	return env
}

// runSearch finds the matching messages.
func (c *session) runSearch(ctx context.Context, charset string, key *imapwire.SearchKey) ([]imapsearch.Message, []int, result, bool) {
	if err := imapsearch.CheckCharset(charset); err != nil {
		return nil, nil, no("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset"), false
	}
	if err := c.refresh(ctx, false); err != nil {
		return nil, nil, c.storeFailed("SEARCH", err), false
	}
	msgs := c.candidates()
	found, err := imapsearch.Search(ctx, key, msgs, searchSource{c, c.sel.mb.ID}, c.searchEnv())
	if err != nil {
		if errors.Is(err, imapsearch.ErrBadCharset) {
			return nil, nil, no("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset"), false
		}
		return nil, nil, c.storeFailed("SEARCH", err), false
	}
	return msgs, found, result{}, true
}

// cmdSearch answers SEARCH (RFC 9051 section 6.4.4) in the ESEARCH form
// (RFC 4731) when asked or under IMAP4rev2, with SEARCHRES (RFC 5182).
func (c *session) cmdSearch(ctx context.Context, uid bool, a *imapwire.SearchCommand) result {
	if usesModSeq(a.Key) {
		c.condstore = true
	}
	msgs, found, res, okRun := c.runSearch(ctx, a.Charset, a.Key)
	if !okRun {
		return res
	}
	num := func(k int) uint32 {
		if uid {
			return msgs[k].Info.UID
		}
		return msgs[k].Seq
	}
	var highest uint64
	for _, k := range found {
		highest = max(highest, msgs[k].Info.ModSeq)
	}
	ret := map[string]bool{}
	for _, r := range a.Return {
		ret[r] = true
	}
	esearch := a.HasReturn || c.rev2
	if esearch && len(a.Return) == 0 {
		ret["ALL"] = true // RETURN () means ALL (RFC 4731 section 3.1)
	}
	if ret["SAVE"] {
		// SEARCHRES (RFC 5182 section 2.4): with MIN or MAX alone, only
		// those are saved.
		var save []int
		switch {
		case (ret["MIN"] || ret["MAX"]) && !ret["ALL"] && !ret["COUNT"]:
			if len(found) > 0 {
				if ret["MIN"] {
					save = append(save, found[0])
				}
				if ret["MAX"] && (len(save) == 0 || save[0] != found[len(found)-1]) {
					save = append(save, found[len(found)-1])
				}
			}
		default:
			save = found
		}
		c.saved = make([]uint32, len(save))
		for i, k := range save {
			c.saved[i] = msgs[k].Info.UID
		}
		c.savedValid = true
		if len(a.Return) == 1 {
			// RETURN (SAVE) alone answers nothing but the tagged OK.
			c.sync(ctx, uid)
			return ok("SEARCH completed, result saved")
		}
	}
	if !esearch {
		c.w.Untagged().Atom("SEARCH")
		for _, k := range found {
			c.w.SP().Number(uint64(num(k)))
		}
		if usesModSeq(a.Key) && len(found) > 0 {
			c.w.Atom(" (MODSEQ ").Number(highest).Atom(")")
		}
		c.w.CRLF()
	} else {
		c.w.Untagged().Atom("ESEARCH (TAG ").String(c.tag).Atom(")")
		if uid {
			c.w.Atom(" UID")
		}
		if len(found) > 0 {
			if ret["MIN"] {
				c.w.Atom(" MIN ").Number(uint64(num(found[0])))
			}
			if ret["MAX"] {
				c.w.Atom(" MAX ").Number(uint64(num(found[len(found)-1])))
			}
			if ret["ALL"] {
				nums := make([]uint32, len(found))
				for i, k := range found {
					nums[i] = num(k)
				}
				slices.Sort(nums)
				c.w.Atom(" ALL ").Atom(uidSetString(nums))
			}
		}
		if ret["COUNT"] {
			c.w.Atom(" COUNT ").Number(uint64(len(found)))
		}
		if usesModSeq(a.Key) && len(found) > 0 {
			c.w.Atom(" MODSEQ ").Number(highest)
		}
		c.w.CRLF()
	}
	c.sync(ctx, uid)
	return ok("SEARCH completed")
}

// cmdSort answers SORT (RFC 5256 section 3).
func (c *session) cmdSort(ctx context.Context, uid bool, a *imapwire.SortCommand) result {
	msgs, found, res, okRun := c.runSearch(ctx, a.Charset, a.Key)
	if !okRun {
		return res
	}
	sorted, err := imapsearch.Sort(ctx, a.Criteria, msgs, found, searchSource{c, c.sel.mb.ID})
	if err != nil {
		return c.storeFailed("SORT", err)
	}
	c.w.Untagged().Atom("SORT")
	for _, k := range sorted {
		if uid {
			c.w.SP().Number(uint64(msgs[k].Info.UID))
		} else {
			c.w.SP().Number(uint64(msgs[k].Seq))
		}
	}
	c.w.CRLF()
	c.sync(ctx, uid)
	return ok("SORT completed")
}

// cmdThread answers THREAD (RFC 5256 sections 4 and 5).
func (c *session) cmdThread(ctx context.Context, uid bool, a *imapwire.ThreadCommand) result {
	if a.Algorithm != "REFERENCES" && a.Algorithm != "ORDEREDSUBJECT" {
		return badResult("Unknown threading algorithm")
	}
	msgs, found, res, okRun := c.runSearch(ctx, a.Charset, a.Key)
	if !okRun {
		return res
	}
	threads, err := imapsearch.Thread(ctx, a.Algorithm, msgs, found, searchSource{c, c.sel.mb.ID})
	if err != nil {
		return c.storeFailed("THREAD", err)
	}
	c.w.Untagged().Atom("THREAD")
	if len(threads) > 0 {
		c.w.SP()
	}
	imapsearch.FormatThreads(c.w, threads, func(k int) uint32 {
		if uid {
			return msgs[k].Info.UID
		}
		return msgs[k].Seq
	})
	c.w.CRLF()
	c.sync(ctx, uid)
	return ok("THREAD completed")
}
