package webmail

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/textproto"
	"slices"
	"strings"

	"github.com/posthorn/posthorn/internal/imapd/imapsearch"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// conversation is a thread of a mailbox as the list shows it: its messages
// oldest first. Flags are read from the rows when a page is made (they
// change in place), so a conversation is only rebuilt when messages come
// or go.
type conversation struct {
	Rows   []*row // sent order, oldest first (RFC 5256 section 4 step 6)
	Newest *row   // by internal date: the conversation's place in the list
}

// convHeaderMax bounds the header bytes read for References (the
// imapsearch limit is the same order).
const convHeaderMax = 64 << 10

// conversations returns the mailbox's conversations, newest first, made
// with the REFERENCES algorithm of RFC 5256 (imapsearch.Thread) over the
// cached rows, and kept until messages come or go (the list is locked).
// The References field is not in the stored structure: it is read once
// per message, from the header only, and kept in the row.
func (l *mailboxList) conversations(ctx context.Context, st store.Store) ([]*conversation, error) {
	if l.conv != nil {
		return l.conv, nil
	}
	// Sequence order is UID order: a Message-ID belongs to the first
	// message that has it (section 4, step 1).
	byUID := make([]*row, 0, len(l.rows))
	for _, r := range l.rows {
		byUID = append(byUID, r)
	}
	slices.SortFunc(byUID, func(a, b *row) int { return cmpUID(a.UID, b.UID) })
	msgs := make([]imapsearch.Message, len(byUID))
	idx := make([]int, len(byUID))
	for i, r := range byUID {
		if !r.refsRead {
			r.refs = readReferences(ctx, st, l.id, r)
			r.refsRead = true
		}
		msgs[i] = imapsearch.Message{Seq: uint32(i + 1), Info: &store.MessageInfo{MailboxID: l.id, UID: r.UID, InternalDate: r.InternalDate}}
		idx[i] = i
	}
	tree, err := imapsearch.Thread(ctx, "REFERENCES", msgs, idx, threadSource(byUID))
	if err != nil {
		return nil, fmt.Errorf("threading: %w", err)
	}
	convs := make([]*conversation, 0, len(tree))
	byMsg := make(map[uint32]*conversation, len(byUID))
	for _, t := range tree {
		c := &conversation{}
		var walk func(n *imapsearch.ThreadNode)
		walk = func(n *imapsearch.ThreadNode) {
			if n.Index >= 0 {
				r := byUID[n.Index]
				c.Rows = append(c.Rows, r)
				if c.Newest == nil || newer(r, c.Newest) {
					c.Newest = r
				}
				byMsg[r.UID] = c
			}
			for _, k := range n.Children {
				walk(k)
			}
		}
		walk(t)
		if len(c.Rows) > 0 {
			convs = append(convs, c)
		}
	}
	// Newest first, by the newest message, as the plain list's date order.
	slices.SortFunc(convs, func(a, b *conversation) int {
		if newer(a.Newest, b.Newest) {
			return -1
		}
		if newer(b.Newest, a.Newest) {
			return 1
		}
		return 0
	})
	l.conv, l.convOf = convs, byMsg
	return convs, nil
}

// newer reports whether a comes before b in the newest-first date order.
func newer(a, b *row) bool {
	if c := a.InternalDate.Compare(b.InternalDate); c != 0 {
		return c > 0
	}
	return a.UID > b.UID
}

func cmpUID(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// conversationOf returns the conversation holding uid (the list is
// locked and its conversations made).
func (l *mailboxList) conversationOf(uid uint32) *conversation {
	return l.convOf[uid]
}

// readReferences reads the References field of a message's header ("" when
// it has none or cannot be read: the message then threads by In-Reply-To
// and subject only).
func readReferences(ctx context.Context, st store.Store, mb int64, r *row) string {
	if r.headerLen <= 0 {
		return ""
	}
	rd, err := st.OpenMessage(ctx, mb, r.UID)
	if err != nil {
		return ""
	}
	defer rd.Close()
	buf := make([]byte, min(r.headerLen, convHeaderMax))
	n, _ := rd.ReadAt(buf, 0)
	return referencesField(buf[:n])
}

// referencesField finds the References field in a raw header, unfolded
// (RFC 5322 section 3.6.4).
func referencesField(h []byte) string {
	if !bytes.Contains(bytes.ToLower(h), []byte("references:")) {
		return ""
	}
	if !bytes.HasSuffix(h, []byte("\r\n\r\n")) && !bytes.HasSuffix(h, []byte("\n\n")) {
		h = append(h[:len(h):len(h)], "\r\n\r\n"...)
	}
	mh, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(h))).ReadMIMEHeader()
	if err != nil && mh == nil {
		return ""
	}
	return oneLine(mh.Get("References"))
}

// threadSource gives imapsearch.Thread what it needs of each row without
// the store: a structure with the envelope fields threading reads, and a
// "header" of just the References field kept in the row.
type threadSource []*row

func (s threadSource) Structure(m *imapsearch.Message) (*msg.Message, error) {
	r := s[m.Seq-1]
	return &msg.Message{
		Envelope: msg.Envelope{Date: r.dateHeader, Subject: r.rawSubject, MessageID: r.MessageID, InReplyTo: r.inReplyTo},
		Part:     msg.Part{BodyStart: int64(len(refsHeader(r)))},
	}, nil
}

func (s threadSource) Open(m *imapsearch.Message) (store.MessageReader, error) {
	return memReader{bytes.NewReader([]byte(refsHeader(s[m.Seq-1])))}, nil
}

func refsHeader(r *row) string {
	if r.refs == "" {
		return "\r\n"
	}
	return "References: " + r.refs + "\r\n\r\n"
}

// memReader is a store.MessageReader over bytes in memory.
type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// convSubject is how a conversation is named: its first message's subject.
func (c *conversation) subject() string {
	for _, r := range c.Rows {
		if r.Subject != "" {
			return r.Subject
		}
	}
	return ""
}

// senders names up to three senders of the conversation, the first
// message's first.
func (c *conversation) senders() string {
	var names []string
	seen := map[string]bool{}
	for _, r := range c.Rows {
		k := strings.ToLower(r.FromAddr)
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(names) == 3 {
			names = append(names, "…")
			break
		}
		names = append(names, r.From)
	}
	return strings.Join(names, ", ")
}
