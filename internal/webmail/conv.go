package webmail

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// maxConvShown bounds the messages a conversation page shows (the newest).
const maxConvShown = 100

// convMessage is one message of the conversation page.
type convMessage struct {
	UID         uint32
	Base        string // /msg/mb/uid
	From, To    string
	Subject     string
	Date        time.Time
	Text        string // a plain text body
	Frame       string // or the sanitised HTML frame's URL
	Attachments []attachment
	Open        bool // shown unfolded: unread ones and the last
	Unread      bool
}

// conversationPage shows the conversation holding a message: its messages
// in sent order, each folded (<details>, no script needed) but the unread
// ones and the last. Opening it marks them read.
func (s *Server) conversationPage(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, ok := s.mailboxOf(r, c)
	if !ok {
		s.fail(w, r, c, http.StatusNotFound, "No such mailbox.")
		return
	}
	uid64, err := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if err != nil || uid64 == 0 {
		s.fail(w, r, c, http.StatusNotFound, "No such conversation.")
		return
	}
	ctx := r.Context()
	l, err := s.cache.get(ctx, mb)
	if err != nil {
		s.fail(w, r, c, http.StatusInternalServerError, "The mailbox cannot be read now.")
		return
	}
	var uids []uint32
	var unseen []uint32
	if _, err := l.conversations(ctx, s.cfg.Store); err == nil {
		if cv := l.conversationOf(uint32(uid64)); cv != nil {
			for _, rw := range cv.Rows {
				uids = append(uids, rw.UID)
				if !rw.has(store.FlagSeen) {
					unseen = append(unseen, rw.UID)
				}
			}
		}
	}
	l.mu.Unlock()
	if len(uids) == 0 {
		s.fail(w, r, c, http.StatusNotFound, "No such conversation.")
		return
	}
	more := 0
	if len(uids) > maxConvShown {
		more = len(uids) - maxConvShown
		uids = uids[more:]
	}
	isUnseen := map[uint32]bool{}
	for _, u := range unseen {
		isUnseen[u] = true
	}
	var msgs []convMessage
	for i, u := range uids {
		info, err := s.cfg.Store.GetMessage(ctx, mb.ID, u)
		if err != nil {
			continue // expunged meanwhile
		}
		m, err := msg.Unmarshal(info.Meta)
		if err != nil || m == nil {
			m = &msg.Message{Part: msg.Part{Type: "text", Subtype: "plain", End: info.Size}}
		}
		cm := convMessage{UID: u, Base: fmt.Sprintf("/msg/%d/%d", mb.ID, u), From: formatAddresses(m.Envelope.From),
			To: formatAddresses(m.Envelope.To), Subject: decodeHeader(m.Envelope.Subject), Date: info.InternalDate,
			Unread: isUnseen[u], Open: isUnseen[u] || i == len(uids)-1}
		ls := leaves(m)
		html, plain := bodyParts(ls)
		cm.Attachments = attachments(ls, html, plain)
		switch {
		case html != nil:
			cm.Frame = cm.Base + "/body"
		case plain != nil:
			if rd, err := s.cfg.Store.OpenMessage(ctx, mb.ID, u); err == nil {
				cm.Text, _ = partText(rd, plain.Part)
				rd.Close()
			}
		}
		msgs = append(msgs, cm)
	}
	if len(unseen) > 0 {
		if _, _, err := s.cfg.Store.StoreFlags(ctx, mb.ID, unseen, store.FlagsAdd, []string{store.FlagSeen}, 0); err != nil {
			s.log.Warn("webmail mark seen", "mailbox", mb.ID, "err", err)
		}
	}
	subject := ""
	if len(msgs) > 0 {
		subject = msgs[0].Subject
	}
	s.render(w, r, c, http.StatusOK, "conv", map[string]any{
		"Title":          subject,
		"Subject":        subject,
		"Mailbox":        mb,
		"CurrentMailbox": mb.ID,
		"Messages":       msgs,
		"More":           more,
	})
}
