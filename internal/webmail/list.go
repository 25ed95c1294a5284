package webmail

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapsearch"
	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// pageSize is how many messages a list page shows.
const pageSize = 50

// mailboxOf returns the mailbox named by the path value "mb" (an id) if it
// belongs to the session's account; anything else is not found, so that
// another account's ids tell nothing.
func (s *Server) mailboxOf(r *http.Request, c *reqCtx) (*store.Mailbox, bool) {
	id, err := strconv.ParseInt(r.PathValue("mb"), 10, 64)
	if err != nil || id <= 0 {
		return nil, false
	}
	mb, err := s.cfg.Store.GetMailboxByID(r.Context(), id)
	if err != nil || mb.AccountID != c.sess.accountID {
		return nil, false
	}
	return mb, true
}

// mailboxByUse finds the account's mailbox with a special use (or INBOX
// for "").
func (s *Server) mailboxByUse(ctx context.Context, accountID int64, use string) (*store.Mailbox, error) {
	if use == "" {
		return s.cfg.Store.GetMailbox(ctx, accountID, store.Inbox)
	}
	mbs, err := s.cfg.Store.ListMailboxes(ctx, accountID)
	if err != nil {
		return nil, err
	}
	for i := range mbs {
		if mbs[i].SpecialUse == use {
			return &mbs[i], nil
		}
	}
	return nil, fmt.Errorf("no %s mailbox: %w", use, store.ErrNotFound)
}

func (s *Server) inboxRedirect(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, err := s.cfg.Store.GetMailbox(r.Context(), c.sess.accountID, store.Inbox)
	if err != nil {
		s.fail(w, r, c, http.StatusInternalServerError, "Your inbox cannot be read now.")
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/mail/%d", mb.ID), http.StatusSeeOther)
}

// listRow is a row as the template shows it: a message, or a
// conversation of more than one (Count > 1) standing for its newest
// message, with its messages as Children (shown expanded when Open).
type listRow struct {
	*row
	Seen, Flagged, Answered bool
	Date                    time.Time

	Count, Unread int
	ConvSubject   string
	Senders       string
	Children      []listRow
	More          int // messages of the conversation not among Children
	Open          bool
	ExpandHref    string // the page with this conversation expanded (no script)
}

func newListRow(rw *row) listRow {
	return listRow{row: rw, Seen: rw.has(store.FlagSeen), Flagged: rw.has(store.FlagFlagged),
		Answered: rw.has(store.FlagAnswered), Date: rw.InternalDate}
}

// maxConvChildren is how many messages of a conversation the list shows
// when it is expanded; the conversation page has them all.
const maxConvChildren = 20

// convListRow makes the row of a conversation (the list is locked: flags
// are read now).
func convListRow(cv *conversation, open uint32) listRow {
	lr := newListRow(cv.Newest)
	lr.Count = len(cv.Rows)
	if lr.Count == 1 {
		return lr
	}
	lr.ConvSubject = cv.subject()
	lr.Senders = cv.senders()
	lr.Seen = true
	for _, r := range cv.Rows {
		if !r.has(store.FlagSeen) {
			lr.Unread++
			lr.Seen = false
		}
		if r.has(store.FlagFlagged) {
			lr.Flagged = true
		}
	}
	kids := slices.Clone(cv.Rows)
	slices.SortFunc(kids, func(a, b *row) int {
		if newer(a, b) {
			return -1
		}
		return 1
	})
	if len(kids) > maxConvChildren {
		lr.More = len(kids) - maxConvChildren
		kids = kids[:maxConvChildren]
	}
	for _, k := range kids {
		lr.Children = append(lr.Children, newListRow(k))
	}
	lr.Open = open != 0 && open == cv.Newest.UID
	return lr
}

// listPage shows a page of a mailbox's messages, sorted, optionally
// filtered by a search.
func (s *Server) listPage(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, ok := s.mailboxOf(r, c)
	if !ok {
		s.fail(w, r, c, http.StatusNotFound, "No such mailbox.")
		return
	}
	q := r.URL.Query()
	sortKey := validSort(q.Get("sort"))
	page, _ := strconv.Atoi(q.Get("page"))
	if page < 1 {
		page = 1
	}
	search := strings.TrimSpace(q.Get("q"))
	l, err := s.cache.get(r.Context(), mb)
	if err != nil {
		s.log.Warn("webmail list", "mailbox", mb.ID, "err", err)
		s.fail(w, r, c, http.StatusInternalServerError, "The mailbox cannot be read now.")
		return
	}
	// Conversations (threads.go) are the default of the date order
	// without a search; ?view=plain is the list of messages.
	plain := q.Get("view") == "plain" || sortKey != sortDate || search != ""
	openConv, _ := strconv.ParseUint(q.Get("open"), 10, 32)
	var rows []listRow
	var total, from, to, pages int
	if !plain {
		convs, err := l.conversations(r.Context(), s.cfg.Store)
		if err != nil {
			l.mu.Unlock()
			s.log.Warn("webmail threads", "mailbox", mb.ID, "err", err)
			s.fail(w, r, c, http.StatusInternalServerError, "The mailbox cannot be read now.")
			return
		}
		total = len(convs)
		pages = max((total+pageSize-1)/pageSize, 1)
		page = min(page, pages)
		from = (page - 1) * pageSize
		to = min(from+pageSize, total)
		rows = make([]listRow, 0, to-from)
		for _, cv := range convs[from:to] {
			rows = append(rows, convListRow(cv, uint32(openConv)))
		}
		l.mu.Unlock()
	} else {
		all := l.order(sortKey)
		if search != "" {
			// The search reads message bytes outside the list's lock: copy the
			// rows first (a refresh updates flags in place).
			vals := make([]row, len(all))
			cp := make([]*row, len(all))
			for i, rw := range all {
				vals[i] = *rw
				cp[i] = &vals[i]
			}
			l.mu.Unlock()
			all, err = s.search(r.Context(), mb, cp, search)
			if err != nil {
				s.fail(w, r, c, http.StatusBadRequest, "The search failed: "+err.Error())
				return
			}
		}
		total = len(all)
		pages = max((total+pageSize-1)/pageSize, 1)
		page = min(page, pages)
		from = (page - 1) * pageSize
		to = min(from+pageSize, total)
		rows = make([]listRow, 0, to-from)
		for _, rw := range all[from:to] {
			rows = append(rows, newListRow(rw))
		}
		if search == "" {
			l.mu.Unlock()
		}
	}
	view := ""
	if plain && sortKey == sortDate && search == "" {
		view = "plain"
	}
	link := func(p int, sk string) string {
		v := url.Values{}
		if p > 1 {
			v.Set("page", strconv.Itoa(p))
		}
		if sk != sortDate {
			v.Set("sort", sk)
		}
		if search != "" {
			v.Set("q", search)
		}
		if view != "" && sk == sortDate {
			v.Set("view", view)
		}
		u := fmt.Sprintf("/mail/%d", mb.ID)
		if len(v) > 0 {
			u += "?" + v.Encode()
		}
		return u
	}
	self := link(page, sortKey)
	sep := "?"
	if strings.Contains(self, "?") {
		sep = "&"
	}
	for i := range rows {
		if rows[i].Count > 1 {
			rows[i].ExpandHref = self + sep + "open=" + strconv.FormatUint(uint64(rows[i].UID), 10)
		}
	}
	data := map[string]any{
		"Title":          mb.Name,
		"Mailbox":        mb,
		"CurrentMailbox": mb.ID,
		"Rows":           rows,
		"Total":          total,
		"Page":           page,
		"Pages":          pages,
		"First":          from + 1,
		"Last":           to,
		"Sort":           sortKey,
		"Search":         search,
		"Self":           self,
		"SortDate":       link(1, flip(sortKey, sortDate, sortDateAsc)),
		"SortFrom":       link(1, flip(sortKey, sortFrom, sortFromDesc)),
		"SortSize":       link(1, flip(sortKey, sortSize, sortSizeAsc)),
		"Threaded":       !plain,
		"PlainLink":      fmt.Sprintf("/mail/%d?view=plain", mb.ID),
		"ConvLink":       fmt.Sprintf("/mail/%d", mb.ID),
	}
	if page > 1 {
		data["Prev"] = link(page-1, sortKey)
	}
	if page < pages {
		data["Next"] = link(page+1, sortKey)
	}
	s.render(w, r, c, http.StatusOK, "list", data)
}

// flip returns a when the current sort is not a, else b (a second click on
// a column header reverses it).
func flip(cur, a, b string) string {
	if cur == a {
		return b
	}
	return a
}

// maxSearchTime bounds one search (body text is read from every message).
const maxSearchTime = 20 * time.Second

// search filters rows (in their order) by a query: words, each matched
// against sender, recipients, subject and text, or with a prefix against one
// of them ("from:", "to:", "subject:", "text:", "body:"). All words must
// match. The IMAP search evaluator does the work (imapsearch), so that the
// webmail and IMAP SEARCH agree.
func (s *Server) search(ctx context.Context, mb *store.Mailbox, rows []*row, query string) ([]*row, error) {
	key := &imapwire.SearchKey{Op: "AND"}
	for _, word := range splitQuery(query) {
		field, val, ok := strings.Cut(word, ":")
		if ok && val != "" {
			switch strings.ToLower(field) {
			case "from", "to", "cc", "bcc", "subject", "body", "text":
				key.Children = append(key.Children, &imapwire.SearchKey{Op: strings.ToUpper(field), Str: val})
				continue
			}
		}
		any := func(op string) *imapwire.SearchKey { return &imapwire.SearchKey{Op: op, Str: word} }
		key.Children = append(key.Children, &imapwire.SearchKey{Op: "OR", Children: []*imapwire.SearchKey{
			any("FROM"), {Op: "OR", Children: []*imapwire.SearchKey{
				any("TO"), {Op: "OR", Children: []*imapwire.SearchKey{any("SUBJECT"), any("TEXT")}}}}}})
	}
	if len(key.Children) == 0 {
		return rows, nil
	}
	ctx, cancel := context.WithTimeout(ctx, maxSearchTime)
	defer cancel()
	msgs := make([]imapsearch.Message, len(rows))
	var maxUID uint32
	for i, rw := range rows {
		msgs[i] = imapsearch.Message{Seq: uint32(i + 1), Info: &store.MessageInfo{MailboxID: mb.ID, UID: rw.UID, ModSeq: rw.ModSeq,
			Flags: rw.Flags, InternalDate: rw.InternalDate, Size: rw.Size}}
		maxUID = max(maxUID, rw.UID)
	}
	found, err := imapsearch.Search(ctx, key, msgs, searchSource{ctx: ctx, st: s.cfg.Store, mb: mb.ID},
		imapsearch.Env{Now: time.Now(), MaxSeq: uint32(len(msgs)), MaxUID: maxUID})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, errors.New("it took too long; add words to narrow it")
		}
		return nil, err
	}
	out := make([]*row, len(found))
	for i, idx := range found {
		out[i] = rows[idx]
	}
	return out, nil
}

// splitQuery splits a query into words; "double quotes" keep spaces.
func splitQuery(q string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for _, r := range q {
		switch {
		case r == '"':
			inQuote = !inQuote
		case (r == ' ' || r == '\t') && !inQuote:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	if len(out) > 20 {
		out = out[:20]
	}
	return out
}

// searchSource gives imapsearch the structure and bytes of a message.
type searchSource struct {
	ctx context.Context
	st  store.Store
	mb  int64
}

func (s searchSource) Structure(m *imapsearch.Message) (*msg.Message, error) {
	if m.Info.Meta == nil {
		full, err := s.st.GetMessage(s.ctx, s.mb, m.Info.UID)
		if err != nil {
			return nil, err
		}
		m.Info.Meta = full.Meta
	}
	return msg.Unmarshal(m.Info.Meta)
}

func (s searchSource) Open(m *imapsearch.Message) (store.MessageReader, error) {
	return s.st.OpenMessage(s.ctx, s.mb, m.Info.UID)
}
