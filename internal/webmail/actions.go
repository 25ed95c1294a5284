package webmail

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// maxActionUIDs bounds the messages one action changes.
const maxActionUIDs = 10000

// actionsPost changes messages: from the list (checkboxes "uid") or from
// the read page (the path's uid). Actions: read, unread, flag, unflag,
// delete (to Trash; in Trash, for good), archive, junk, move (to "dest").
func (s *Server) actionsPost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, ok := s.mailboxOf(r, c)
	if !ok {
		s.fail(w, r, c, http.StatusNotFound, "No such mailbox.")
		return
	}
	var uids []uint32
	if p := r.PathValue("uid"); p != "" {
		u, err := strconv.ParseUint(p, 10, 32)
		if err != nil || u == 0 {
			s.fail(w, r, c, http.StatusNotFound, "No such message.")
			return
		}
		uids = []uint32{uint32(u)}
	} else {
		r.ParseForm()
		for _, v := range r.PostForm["uid"] {
			if u, err := strconv.ParseUint(v, 10, 32); err == nil && u > 0 && len(uids) < maxActionUIDs {
				uids = append(uids, uint32(u))
			}
		}
		// A conversation selected in the list ("conv": its newest
		// message) stands for all its messages in this mailbox.
		if convs := r.PostForm["conv"]; len(convs) > 0 {
			uids = append(uids, s.conversationUIDs(r, mb, convs, maxActionUIDs-len(uids))...)
		}
	}
	back := r.PostFormValue("back")
	if !localPath(back) {
		back = fmt.Sprintf("/mail/%d", mb.ID)
	}
	if len(uids) == 0 {
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	ctx := r.Context()
	st := s.cfg.Store
	flags := func(op store.FlagOp, flag string) error {
		_, _, err := st.StoreFlags(ctx, mb.ID, uids, op, []string{flag}, 0)
		return err
	}
	moveTo := func(dst *store.Mailbox) error {
		if dst.ID == mb.ID {
			return nil
		}
		_, _, err := st.Move(ctx, mb.ID, uids, dst.ID)
		return err
	}
	moveToUse := func(use string) error {
		dst, err := s.mailboxByUse(ctx, c.sess.accountID, use)
		if err != nil {
			return err
		}
		return moveTo(dst)
	}
	var err error
	leaves := false // the messages leave this mailbox: back to the list
	switch action := r.PostFormValue("action"); action {
	case "read":
		err = flags(store.FlagsAdd, store.FlagSeen)
	case "unread":
		err = flags(store.FlagsRemove, store.FlagSeen)
	case "flag":
		err = flags(store.FlagsAdd, store.FlagFlagged)
	case "unflag":
		err = flags(store.FlagsRemove, store.FlagFlagged)
	case "delete":
		leaves = true
		if mb.SpecialUse == store.SpecialTrash {
			_, err = st.Expunge(ctx, mb.ID, uids)
		} else {
			err = moveToUse(store.SpecialTrash)
		}
	case "archive":
		leaves = true
		err = moveToUse(store.SpecialArchive)
	case "junk":
		leaves = true
		err = moveToUse(store.SpecialJunk)
	case "move":
		leaves = true
		id, perr := strconv.ParseInt(r.PostFormValue("dest"), 10, 64)
		dst, gerr := st.GetMailboxByID(ctx, id)
		if perr != nil || gerr != nil || dst.AccountID != c.sess.accountID {
			s.fail(w, r, c, http.StatusNotFound, "No such mailbox.")
			return
		}
		err = moveTo(dst)
	default:
		s.fail(w, r, c, http.StatusBadRequest, "Unknown action.")
		return
	}
	if err != nil {
		s.log.Warn("webmail action", "user", c.sess.account, "mailbox", mb.ID, "err", err)
		s.fail(w, r, c, http.StatusInternalServerError, "The change could not be made now.")
		return
	}
	if r.Header.Get("X-Requested-With") == "fetch" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"ok": true})
		return
	}
	if leaves && r.PathValue("uid") != "" {
		// From the read page: on to the next message, else the list.
		if next := r.PostFormValue("next"); len(next) > 1 && next[0] == '/' && next[1] != '/' && next[1] != '\\' {
			back = next
		} else {
			back = fmt.Sprintf("/mail/%d", mb.ID)
		}
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// events streams changes to the account's mailboxes as server-sent events
// (one "change" event per store change, with the mailbox id), so that the
// list and counts update without a reload. A comment every 25 seconds keeps
// proxies from closing the stream.
func (s *Server) events(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming not supported", http.StatusInternalServerError)
		return
	}
	ch, cancel := s.cfg.Store.Subscribe(c.sess.accountID)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 3000\n\n")
	fl.Flush()
	tick := time.NewTicker(25 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case ch0, ok := <-ch:
			if !ok {
				return
			}
			kind := map[store.ChangeKind]string{store.ChangeNew: "new", store.ChangeFlags: "flags",
				store.ChangeExpunge: "expunge", store.ChangeMailboxes: "mailboxes"}[ch0.Kind]
			fmt.Fprintf(w, "event: change\ndata: {\"mailbox\":%d,\"kind\":%q}\n\n", ch0.MailboxID, kind)
		}
		fl.Flush()
	}
}

// conversationUIDs returns the UIDs of the conversations holding the
// messages named (at most limit).
func (s *Server) conversationUIDs(r *http.Request, mb *store.Mailbox, convs []string, limit int) []uint32 {
	l, err := s.cache.get(r.Context(), mb)
	if err != nil {
		return nil
	}
	defer l.mu.Unlock()
	if _, err := l.conversations(r.Context(), s.cfg.Store); err != nil {
		return nil
	}
	var out []uint32
	for _, v := range convs {
		u, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			continue
		}
		if cv := l.conversationOf(uint32(u)); cv != nil {
			for _, rw := range cv.Rows {
				if len(out) < limit {
					out = append(out, rw.UID)
				}
			}
		}
	}
	return out
}

// localPath reports whether back is a path on this site to send the
// browser to after a form: it starts with one "/", and has no scheme, no
// host and no control characters (browsers drop a tab or newline, so
// "/\t/evil.example" would become "//evil.example").
func localPath(back string) bool {
	if len(back) == 0 || back[0] != '/' || len(back) > 1 && (back[1] == '/' || back[1] == '\\') {
		return false
	}
	for i := 0; i < len(back); i++ {
		if back[i] < 0x20 || back[i] == 0x7f || back[i] == '\\' {
			return false
		}
	}
	u, err := url.Parse(back)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}
