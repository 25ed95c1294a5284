package webmail

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/microcosm-cc/bluemonday"
	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
)

// composeForm is what the compose page holds.
type composeForm struct {
	From, To, Cc, Bcc, Subject, Text string
	InReplyTo, References            string
	Forward                          string // "mb/uid" of a message forwarded as an attachment
	Draft                            string // "mb/uid" of the draft this replaces
	Replied                          string // "mb/uid" of the message replied to (then \Answered)
	// Kept are the attachments of the draft (Draft) that go along again
	// (form field "keep": their section paths in the draft).
	Kept  []attachment
	Error string
	Info  string
}

// defaultFrom is the address a user writes as: the account's name at the
// first local domain that is not the host name (the mail domain), else at
// the host name.
func (s *Server) defaultFrom(account string) string {
	domain := s.cfg.Hostname
	if s.cfg.Tables != nil {
		if t := s.cfg.Tables(); t != nil && t.LocalHostNames != nil {
			for _, n := range t.LocalHostNames.Names() {
				if !strings.EqualFold(n, s.cfg.Hostname) && !strings.HasPrefix(n, "[") && n != "localhost" {
					domain = n
					break
				}
			}
		}
	}
	return account + "@" + domain
}

// composePage shows an empty form, or one prepared to reply to, reply to
// all of, or forward a message, or to go on with a draft.
func (s *Server) composePage(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	q := r.URL.Query()
	f := composeForm{From: s.defaultFrom(c.sess.account), To: q.Get("to")}
	mode := q.Get("mode")
	if mode != "" || q.Get("draft") != "" {
		ref := q.Get("msg")
		if mode == "" {
			ref = q.Get("draft")
		}
		mbID, uid, ok := parseRef(ref)
		if !ok {
			s.fail(w, r, c, http.StatusNotFound, "No such message.")
			return
		}
		if err := s.prepare(r.Context(), c, &f, mode, mbID, uid); err != nil {
			s.fail(w, r, c, http.StatusNotFound, "No such message.")
			return
		}
	}
	s.render(w, r, c, http.StatusOK, "compose", map[string]any{"Title": "Write", "Form": f})
}

// parseRef reads "mailboxID/uid".
func parseRef(ref string) (int64, uint32, bool) {
	a, b, ok := strings.Cut(ref, "/")
	if !ok {
		return 0, 0, false
	}
	mb, err1 := strconv.ParseInt(a, 10, 64)
	uid, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil || mb <= 0 || uid == 0 {
		return 0, 0, false
	}
	return mb, uint32(uid), true
}

// loadMessage reads a message of the session's account: its structure,
// header and bytes. Another account's message is ErrNotFound.
func (s *Server) loadMessage(ctx context.Context, c *reqCtx, mbID int64, uid uint32) (*msg.Message, textproto.Header, []byte, error) {
	mb, err := s.cfg.Store.GetMailboxByID(ctx, mbID)
	if err != nil || mb.AccountID != c.sess.accountID {
		return nil, textproto.Header{}, nil, store.ErrNotFound
	}
	info, err := s.cfg.Store.GetMessage(ctx, mbID, uid)
	if err != nil {
		return nil, textproto.Header{}, nil, err
	}
	if info.Size > s.cfg.MaxMessageBytes*2 {
		return nil, textproto.Header{}, nil, errors.New("message too large")
	}
	rd, err := s.cfg.Store.OpenMessage(ctx, mbID, uid)
	if err != nil {
		return nil, textproto.Header{}, nil, err
	}
	defer rd.Close()
	raw, err := io.ReadAll(rd)
	if err != nil {
		return nil, textproto.Header{}, nil, err
	}
	m := msg.ParseBytes(raw)
	h, _ := textproto.ReadHeader(bufioReader(raw[:m.Part.BodyStart]))
	return m, h, raw, nil
}

// prepare fills f for a reply, reply-all, forward, or a draft.
func (s *Server) prepare(ctx context.Context, c *reqCtx, f *composeForm, mode string, mbID int64, uid uint32) error {
	m, h, raw, err := s.loadMessage(ctx, c, mbID, uid)
	if err != nil {
		return err
	}
	env := &m.Envelope
	subject := decodeHeader(env.Subject)
	ls := leaves(m)
	html, plain := bodyParts(ls)
	text := ""
	if plain != nil {
		text, _ = partText(bytes.NewReader(raw), plain.Part)
	} else if html != nil {
		t, _ := partText(bytes.NewReader(raw), html.Part)
		text = htmlToText(t)
	}
	switch mode {
	case "": // a draft: carry on with it
		f.Draft = fmt.Sprintf("%d/%d", mbID, uid)
		f.Subject = subject
		f.To = strings.Join(addressesForHeader(env.To, nil), ", ")
		f.Cc = strings.Join(addressesForHeader(env.Cc, nil), ", ")
		f.Bcc = strings.Join(addressesForHeader(env.Bcc, nil), ", ")
		if from := addressesForHeader(env.From, nil); len(from) > 0 {
			f.From = from[0]
		}
		f.InReplyTo = oneLine(h.Get("In-Reply-To"))
		f.References = oneLine(h.Get("References"))
		f.Text = strings.ReplaceAll(text, "\r\n", "\n")
		// Its attachments go along again unless unticked (part 1 lost
		// them: the form had only new files).
		f.Kept = attachments(ls, html, plain)
	case "reply", "replyall":
		if !strings.HasPrefix(strings.ToLower(subject), "re:") {
			subject = "Re: " + subject
		}
		f.Subject = subject
		f.Replied = fmt.Sprintf("%d/%d", mbID, uid)
		// Reply-To wins over From (RFC 5322 section 3.6.2); the envelope
		// has Reply-To default to From.
		f.To = strings.Join(addressesForHeader(env.ReplyTo, nil), ", ")
		if mode == "replyall" {
			me := strings.ToLower(f.From)
			seen := map[string]bool{me: true}
			for _, a := range env.ReplyTo {
				_, ad := displayAddress(a)
				seen[strings.ToLower(ad)] = true
			}
			skip := func(ad string) bool {
				k := strings.ToLower(ad)
				if seen[k] || s.isMine(ctx, c.sess.account, ad) {
					return true
				}
				seen[k] = true
				return false
			}
			cc := append(addressesForHeader(env.To, skip), addressesForHeader(env.Cc, skip)...)
			f.Cc = strings.Join(cc, ", ")
		}
		// In-Reply-To and References (RFC 5322 section 3.6.4): the parent's
		// Message-ID, after the parent's References (or In-Reply-To).
		if id := strings.TrimSpace(env.MessageID); id != "" {
			f.InReplyTo = id
			refs := oneLine(h.Get("References"))
			if refs == "" {
				refs = oneLine(h.Get("In-Reply-To"))
			}
			f.References = strings.TrimSpace(refs + " " + id)
		}
		from := formatAddresses(env.From)
		f.Text = "\n\nOn " + env.Date + ", " + from + " wrote:\n" + quote(text) + "\n"
	case "forward":
		if !strings.HasPrefix(strings.ToLower(subject), "fwd:") {
			subject = "Fwd: " + subject
		}
		f.Subject = subject
		f.Forward = fmt.Sprintf("%d/%d", mbID, uid)
		f.Text = "\n\n---------- Forwarded message ----------\nFrom: " + formatAddresses(env.From) +
			"\nDate: " + env.Date + "\nSubject: " + decodeHeader(env.Subject) + "\nTo: " + formatAddresses(env.To) + "\n\n" + text
	default:
		return errors.New("unknown mode")
	}
	return nil
}

// isMine reports whether an address is the account's (not replied to in
// reply-all).
func (s *Server) isMine(ctx context.Context, account, address string) bool {
	if s.cfg.Router == nil {
		return false
	}
	a, err := addr.ParsePath(address, true)
	if err != nil {
		return false
	}
	ok, _ := s.cfg.Router.Owns(ctx, account, a)
	return ok
}

// composePost sends the message (action "send") or saves it in Drafts
// (action "draft").
func (s *Server) composePost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	f := composeForm{
		From: r.FormValue("from"), To: r.FormValue("to"), Cc: r.FormValue("cc"), Bcc: r.FormValue("bcc"),
		Subject: r.FormValue("subject"), Text: r.FormValue("text"),
		InReplyTo: r.FormValue("in_reply_to"), References: r.FormValue("references"),
		Forward: r.FormValue("forward"), Draft: r.FormValue("draft"), Replied: r.FormValue("replied"),
	}
	again := func(code int, text string) {
		f.Error = text
		s.render(w, r, c, code, "compose", map[string]any{"Title": "Write", "Form": f})
	}
	o, err := s.outgoingFrom(r, c, &f)
	if err != nil {
		again(http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	if r.FormValue("action") == "draft" {
		o.IncludeBcc = true
		mbID, uid, err := s.saveDraft(ctx, c, o, f.Draft)
		if err != nil {
			s.log.Warn("webmail draft", "user", c.sess.account, "err", err)
			again(http.StatusInternalServerError, "The draft could not be saved: "+err.Error())
			return
		}
		f.Draft = fmt.Sprintf("%d/%d", mbID, uid)
		f.Kept = s.draftAttachments(ctx, c, mbID, uid)
		f.Forward = "" // it is one of the draft's attachments now
		f.Info = "Draft saved at " + time.Now().Format("15:04:05") + "."
		s.render(w, r, c, http.StatusOK, "compose", map[string]any{"Title": "Write", "Form": f})
		return
	}
	if len(o.To)+len(o.Cc)+len(o.Bcc) == 0 {
		again(http.StatusBadRequest, "Give at least one recipient.")
		return
	}
	if code, err := s.send(ctx, r, c, o); err != nil {
		again(code, err.Error())
		return
	}
	// A sent draft is gone from Drafts; the replied message is \Answered.
	if mbID, uid, ok := parseRef(f.Draft); ok {
		s.deleteOwned(ctx, c, mbID, uid)
	}
	if f.Replied != "" {
		if mbID, uid, ok := parseRef(f.Replied); ok {
			if mb, err := s.cfg.Store.GetMailboxByID(ctx, mbID); err == nil && mb.AccountID == c.sess.accountID {
				s.cfg.Store.StoreFlags(ctx, mbID, []uint32{uid}, store.FlagsAdd, []string{store.FlagAnswered}, 0)
			}
		}
	}
	inbox, err := s.cfg.Store.GetMailbox(ctx, c.sess.accountID, store.Inbox)
	if err != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/mail/%d?sent=1", inbox.ID), http.StatusSeeOther)
}

// autosaveReply is the answer to an autosave: the draft that now holds the
// message (the form sends it next time, so that it is replaced) and its
// attachments (the form keeps them and forgets the files it sent).
type autosaveReply struct {
	Draft       string       `json:"draft,omitempty"`
	Saved       string       `json:"saved,omitempty"`
	Attachments []attachment `json:"attachments"`
	Error       string       `json:"error,omitempty"`
}

// composeAutosave saves the compose form to Drafts as the page's script
// posts it a few seconds after typing stops (the CSRF token in the
// X-CSRF-Token header): the new copy is appended, then the one it replaces
// expunged, so that a compose has one draft. The answer is JSON.
func (s *Server) composeAutosave(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	f := composeForm{
		From: r.FormValue("from"), To: r.FormValue("to"), Cc: r.FormValue("cc"), Bcc: r.FormValue("bcc"),
		Subject: r.FormValue("subject"), Text: r.FormValue("text"),
		InReplyTo: r.FormValue("in_reply_to"), References: r.FormValue("references"),
		Forward: r.FormValue("forward"), Draft: r.FormValue("draft"),
	}
	answer := func(code int, rep autosaveReply) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(rep)
	}
	o, err := s.outgoingFrom(r, c, &f)
	if err != nil {
		answer(http.StatusBadRequest, autosaveReply{Error: err.Error()})
		return
	}
	o.IncludeBcc = true
	mbID, uid, err := s.saveDraft(r.Context(), c, o, f.Draft)
	if err != nil {
		s.log.Warn("webmail autosave", "user", c.sess.account, "err", err)
		answer(http.StatusInternalServerError, autosaveReply{Error: "the draft could not be saved"})
		return
	}
	kept := s.draftAttachments(r.Context(), c, mbID, uid)
	if kept == nil {
		kept = []attachment{}
	}
	answer(http.StatusOK, autosaveReply{Draft: fmt.Sprintf("%d/%d", mbID, uid), Saved: time.Now().Format("15:04:05"), Attachments: kept})
}

// draftAttachments lists the attachments of a saved draft.
func (s *Server) draftAttachments(ctx context.Context, c *reqCtx, mbID int64, uid uint32) []attachment {
	m, _, _, err := s.loadMessage(ctx, c, mbID, uid)
	if err != nil {
		return nil
	}
	ls := leaves(m)
	html, plain := bodyParts(ls)
	return attachments(ls, html, plain)
}

// maxRecipients bounds the recipients of one message, as SMTP's limit.
const maxRecipients = 100

// parseAddresses reads a recipient field: addresses separated by commas
// or semicolons, with or without names.
func parseAddresses(field, s string) ([]*mail.Address, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, ";", ","))
	s = strings.TrimSuffix(s, ",")
	if s == "" {
		return nil, nil
	}
	list, err := mail.ParseAddressList(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not a list of addresses", field, truncateRunes(s, 80))
	}
	return list, nil
}

// outgoingFrom reads the form into a message.
func (s *Server) outgoingFrom(r *http.Request, c *reqCtx, f *composeForm) (*outgoing, error) {
	o := &outgoing{Hostname: s.cfg.Hostname, Subject: f.Subject, Text: f.Text, InReplyTo: oneLine(f.InReplyTo), References: oneLine(f.References)}
	from, err := mail.ParseAddress(strings.TrimSpace(f.From))
	if err != nil {
		return nil, fmt.Errorf("From: %q is not an address", truncateRunes(f.From, 80))
	}
	o.From = from.String()
	if o.To, err = parseAddresses("To", f.To); err != nil {
		return nil, err
	}
	if o.Cc, err = parseAddresses("Cc", f.Cc); err != nil {
		return nil, err
	}
	if o.Bcc, err = parseAddresses("Bcc", f.Bcc); err != nil {
		return nil, err
	}
	if len(o.To)+len(o.Cc)+len(o.Bcc) > maxRecipients {
		return nil, fmt.Errorf("at most %d recipients", maxRecipients)
	}
	var total int64
	if r.MultipartForm != nil {
		for _, fh := range r.MultipartForm.File["attachment"] {
			if fh.Size == 0 && fh.Filename == "" {
				continue
			}
			total += fh.Size
			if total > s.cfg.MaxMessageBytes {
				return nil, fmt.Errorf("the attachments are over the limit of %s", humanSize(s.cfg.MaxMessageBytes))
			}
			file, err := fh.Open()
			if err != nil {
				return nil, fmt.Errorf("attachment %q: %v", fh.Filename, err)
			}
			data, err := io.ReadAll(file)
			file.Close()
			if err != nil {
				return nil, fmt.Errorf("attachment %q: %v", fh.Filename, err)
			}
			name := filepath.Base(strings.ReplaceAll(fh.Filename, "\\", "/"))
			ct := fh.Header.Get("Content-Type")
			if ct == "" || ct == "application/octet-stream" {
				if t := mime.TypeByExtension(filepath.Ext(name)); t != "" {
					ct = t
				}
			}
			o.Attachments = append(o.Attachments, attachmentFile{Name: name, ContentType: ct, Data: data})
		}
	}
	if keep := r.Form["keep"]; len(keep) > 0 {
		kept, err := s.keptAttachments(r.Context(), c, f, keep, s.cfg.MaxMessageBytes-total)
		if err != nil {
			return nil, err
		}
		for _, k := range kept {
			if k.ContentType == "message/rfc822" && o.ForwardedAttachment == nil {
				// A message goes as message/rfc822 unencoded (RFC 2046
				// section 5.2.1), as a forward's does.
				o.ForwardedAttachment = &k
				continue
			}
			o.Attachments = append(o.Attachments, k)
		}
	}
	if mbID, uid, ok := parseRef(f.Forward); ok {
		m, _, raw, err := s.loadMessage(r.Context(), c, mbID, uid)
		if err != nil {
			return nil, errors.New("the forwarded message is gone")
		}
		name := decodeHeader(m.Envelope.Subject)
		if name == "" {
			name = "message"
		}
		o.ForwardedAttachment = &attachmentFile{Name: truncateRunes(name, 60) + ".eml", Data: stripTrace(raw)}
	}
	return o, nil
}

// keptAttachments reads the attachments of the draft f.Draft that the form
// keeps (their section paths), within limit bytes, and lists them in f.Kept
// for the form shown again.
func (s *Server) keptAttachments(ctx context.Context, c *reqCtx, f *composeForm, keep []string, limit int64) ([]attachmentFile, error) {
	mbID, uid, ok := parseRef(f.Draft)
	if !ok {
		return nil, nil
	}
	m, _, raw, err := s.loadMessage(ctx, c, mbID, uid)
	if err != nil {
		return nil, errors.New("the draft's attachments are gone (was it sent or deleted elsewhere?)")
	}
	want := map[string]bool{}
	for _, k := range keep {
		want[k] = true
	}
	ls := leaves(m)
	html, plain := bodyParts(ls)
	byPath := map[string]*msg.Part{}
	for _, l := range ls {
		byPath[l.Path] = l.Part
	}
	var out []attachmentFile
	var total int64
	for _, a := range attachments(ls, html, plain) {
		if !want[a.Path] {
			continue
		}
		p := byPath[a.Path]
		data, err := io.ReadAll(io.LimitReader(partReader(bytes.NewReader(raw), p), limit-total+1))
		if err != nil {
			return nil, fmt.Errorf("attachment %q: %v", a.Name, err)
		}
		if total += int64(len(data)); total > limit {
			return nil, fmt.Errorf("the attachments are over the limit of %s", humanSize(s.cfg.MaxMessageBytes))
		}
		ct := a.Type
		if p.Message != nil {
			ct = "message/rfc822"
		}
		out = append(out, attachmentFile{Name: a.Name, ContentType: ct, Data: data})
		f.Kept = append(f.Kept, a)
	}
	return out, nil
}

// stripTrace removes our Return-Path: from a stored message before it goes
// out again as an attachment (it is for final delivery only).
func stripTrace(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("Return-Path:")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			return raw[i+1:]
		}
	}
	return raw
}

// send submits a message as SMTP submission does: the From: address and the
// envelope sender must be the account's (route.Resolver.Owns), every
// recipient passes the access rules for an authenticated client
// (policy.CheckRcpt) and resolves through the tables, and the Deliverer
// stores or queues it. A copy goes to Sent. The error is for the user,
// with the HTTP status to answer.
func (s *Server) send(ctx context.Context, r *http.Request, c *reqCtx, o *outgoing) (int, error) {
	if s.cfg.Router == nil || s.cfg.Deliverer == nil {
		return http.StatusServiceUnavailable, errors.New("sending is not set up on this server")
	}
	fromAddr, _ := mail.ParseAddress(o.From)
	from, err := addr.ParsePath(fromAddr.Address, true)
	if err != nil {
		return http.StatusBadRequest, fmt.Errorf("From: %v", err)
	}
	owned, err := s.cfg.Router.Owns(ctx, c.sess.account, from)
	if err != nil {
		return http.StatusServiceUnavailable, errors.New("temporary failure checking the sender; try again")
	}
	if !owned {
		s.log.Info("webmail sender not owned", "ip", clientIP(r), "user", c.sess.account, "from", from.String())
		return http.StatusForbidden, fmt.Errorf("%s is not one of your addresses", from)
	}
	body := o.build()
	if int64(len(body)) > s.cfg.MaxMessageBytes {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("the message is over the limit of %s", humanSize(s.cfg.MaxMessageBytes))
	}
	ip, _ := netip.ParseAddr(clientIP(r))
	client := policy.Client{IP: ip, Authenticated: true}
	var rcpts []deliver.Recipient
	seen := map[string]bool{}
	for _, list := range [][]*mail.Address{o.To, o.Cc, o.Bcc} {
		for _, ma := range list {
			a, err := addr.ParsePath(ma.Address, true)
			if err != nil {
				return http.StatusBadRequest, fmt.Errorf("%s: not a valid address", ma.Address)
			}
			key := strings.ToLower(a.String())
			if seen[key] {
				continue
			}
			seen[key] = true
			local := s.cfg.Router.IsLocalDomain(a.Domain)
			if s.cfg.Tables != nil {
				if d := policy.CheckRcpt(s.cfg.Tables(), client, a, local); d.Verdict == policy.Reject {
					return http.StatusBadRequest, fmt.Errorf("%s: refused (%s)", a, d.Reason)
				}
			}
			res, err := s.cfg.Router.Resolve(ctx, a)
			var rej *route.Rejection
			switch {
			case errors.As(err, &rej):
				return http.StatusBadRequest, fmt.Errorf("%s: %s", a, rej.Text)
			case err != nil:
				return http.StatusServiceUnavailable, fmt.Errorf("%s: temporary failure; try again", a)
			}
			rcpts = append(rcpts, deliver.Recipient{Address: a, Targets: res.Targets, Failed: res.Failed})
		}
	}
	id := queue.NewID()
	// Trace fields as the SMTP server writes them: Return-Path for final
	// delivery (the queue drops it when relaying) and Received: (RFC 5321
	// section 4.4), "with HTTP", without naming the user.
	var trace bytes.Buffer
	fmt.Fprintf(&trace, "Return-Path: <%s>\r\nReceived: from [%s]\r\n\tby %s (posthorn webmail) with HTTP%s id %s;\r\n\t%s\r\n",
		from, ip, s.cfg.Hostname, map[bool]string{true: "S", false: ""}[r.TLS != nil], id, time.Now().Format(time.RFC1123Z))
	full := append(trace.Bytes(), body...)
	env := &deliver.Envelope{ID: id, From: from, Recipients: rcpts}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	res, err := s.cfg.Deliverer.Deliver(dctx, env, bytes.NewReader(full))
	if err != nil {
		var rej *route.Rejection
		if errors.As(err, &rej) {
			return http.StatusBadRequest, errors.New(rej.Text)
		}
		s.log.Warn("webmail send failed", "user", c.sess.account, "queue_id", id, "err", err)
		return http.StatusServiceUnavailable, errors.New("the message could not be sent now; try again")
	}
	s.log.Info("webmail sent", "user", c.sess.account, "queue_id", res.QueueID, "rcpts", len(rcpts), "size", len(full))
	// The copy in Sent keeps the Bcc: recipients for the sender.
	o.IncludeBcc = len(o.Bcc) > 0
	if sent, err := s.mailboxByUse(dctx, c.sess.accountID, store.SpecialSent); err == nil {
		copyBody := o.build()
		if _, err := s.cfg.Store.Append(dctx, sent.ID, bytes.NewReader(copyBody), msg.ParseBytes(copyBody).Marshal(),
			[]string{store.FlagSeen}, time.Now()); err != nil {
			s.log.Warn("webmail: copy to Sent failed", "user", c.sess.account, "err", err)
		}
	}
	return http.StatusOK, nil
}

// saveDraft stores the message in Drafts (\Draft \Seen) and removes the
// draft it replaces.
func (s *Server) saveDraft(ctx context.Context, c *reqCtx, o *outgoing, replaces string) (int64, uint32, error) {
	drafts, err := s.mailboxByUse(ctx, c.sess.accountID, store.SpecialDrafts)
	if err != nil {
		return 0, 0, err
	}
	body := o.build()
	info, err := s.cfg.Store.Append(ctx, drafts.ID, bytes.NewReader(body), msg.ParseBytes(body).Marshal(),
		[]string{store.FlagDraft, store.FlagSeen}, time.Now())
	if err != nil {
		return 0, 0, err
	}
	if mbID, uid, ok := parseRef(replaces); ok {
		s.deleteOwned(ctx, c, mbID, uid)
	}
	return drafts.ID, info.UID, nil
}

// deleteOwned expunges an old draft: a message of the session's account in
// its Drafts mailbox (nothing else, whatever the form says).
func (s *Server) deleteOwned(ctx context.Context, c *reqCtx, mbID int64, uid uint32) {
	mb, err := s.cfg.Store.GetMailboxByID(ctx, mbID)
	if err != nil || mb.AccountID != c.sess.accountID || mb.SpecialUse != store.SpecialDrafts {
		return
	}
	s.cfg.Store.Expunge(ctx, mbID, []uint32{uid})
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

var (
	textPolicy = bluemonday.StrictPolicy()
	blockEndRE = regexp.MustCompile(`(?i)<br\s*/?>|</p>|</div>|</tr>|</h[1-6]>|</li>`)
)

// htmlToText makes quotable text of an HTML body (for replying to a mail
// that has no text/plain part).
func htmlToText(h string) string {
	h = blockEndRE.ReplaceAllString(h, "$0\n")
	t := html.UnescapeString(textPolicy.Sanitize(h))
	lines := strings.Split(strings.ReplaceAll(t, "\r\n", "\n"), "\n")
	out := lines[:0]
	blank := 0
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			if blank++; blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
