package webmail

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// htmlPolicy and htmlPolicyImages sanitise HTML mail: bluemonday's
// user-content policy (no script, no event handlers, no forms, no
// style elements, no javascript: or data: URLs, no SVG, no meta or
// base), plus a few harmless inline styles. Images: cid: URLs become
// this server's URL for that part (relative to the frame's URL, so one
// policy serves every message); remote ones are replaced by a placeholder
// unless the user asked for them (the second policy).
var htmlPolicy, htmlPolicyImages = newHTMLPolicy(false), newHTMLPolicy(true)

// blockedImage is what a remote image shows until the user allows them.
const blockedImage = "/static/blocked.svg"

func newHTMLPolicy(remote bool) *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowURLSchemes("http", "https", "mailto", "cid")
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.AllowStyles("color", "background-color", "text-align", "font-weight", "font-style",
		"text-decoration", "font-size", "font-family", "margin", "padding", "border").Globally()
	p.AllowAttrs("bgcolor", "color").OnElements("table", "td", "th", "tr", "font", "body")
	p.AllowElements("font", "center")
	p.RewriteSrc(func(u *url.URL) {
		switch strings.ToLower(u.Scheme) {
		case "cid":
			id := u.Opaque
			if id == "" {
				id = u.Path
			}
			// The id is one path segment, escaped: "cid:../../5" must not
			// reach another page of the site (a review found it marked
			// messages read).
			if id == "" || id == "." || id == ".." {
				*u = url.URL{Path: blockedImage}
				return
			}
			*u = url.URL{Path: "cid/" + id, RawPath: "cid/" + url.PathEscape(id)}
		case "http", "https":
			if !remote {
				*u = url.URL{Path: blockedImage}
			}
		default:
			*u = url.URL{Path: blockedImage}
		}
	})
	return p
}

// remoteImageRE finds what suggests remote images in HTML, to offer
// showing them.
var remoteImageRE = regexp.MustCompile(`(?i)<img[^>]+src\s*=\s*["']?\s*(https?:)?//`)

// openMessage returns the message the path names (mailbox id, UID) with
// its structure, if it is the session's account's.
func (s *Server) openMessage(r *http.Request, c *reqCtx) (*store.Mailbox, *store.MessageInfo, *msg.Message, bool) {
	mb, ok := s.mailboxOf(r, c)
	if !ok {
		return nil, nil, nil, false
	}
	uid, err := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if err != nil || uid == 0 {
		return nil, nil, nil, false
	}
	info, err := s.cfg.Store.GetMessage(r.Context(), mb.ID, uint32(uid))
	if err != nil {
		return nil, nil, nil, false
	}
	m, err := msg.Unmarshal(info.Meta)
	if err != nil || m == nil {
		m = &msg.Message{Part: msg.Part{Type: "text", Subtype: "plain", BodyStart: 0, End: info.Size}}
	}
	return mb, info, m, true
}

// leaf is a part with its IMAP section path ("1.2").
type leaf struct {
	Path string
	Part *msg.Part
}

// leaves lists the parts of m that are not multiparts, in order; a
// message/rfc822 part is one leaf (an attachment), not opened.
func leaves(m *msg.Message) []leaf {
	var out []leaf
	var walk func(p *msg.Part, path string)
	walk = func(p *msg.Part, path string) {
		if len(out) > 1000 {
			return
		}
		if p.Type == "multipart" {
			for i := range p.Children {
				walk(&p.Children[i], strings.TrimPrefix(path+"."+strconv.Itoa(i+1), "."))
			}
			return
		}
		if path == "" {
			path = "1"
		}
		out = append(out, leaf{path, p})
	}
	walk(&m.Part, "")
	return out
}

// bodyParts picks what to show: the first text/html and text/plain parts
// that are not attachments.
func bodyParts(ls []leaf) (html, plain *leaf) {
	for i := range ls {
		p := ls[i].Part
		if p.Type != "text" || p.Disposition == "attachment" {
			continue
		}
		switch p.Subtype {
		case "html":
			if html == nil {
				html = &ls[i]
			}
		case "plain":
			if plain == nil {
				plain = &ls[i]
			}
		}
	}
	return html, plain
}

// attachment is a part listed for download.
type attachment struct {
	Path, Name, Type string
	Size             int64
}

func attachments(ls []leaf, html, plain *leaf) []attachment {
	var out []attachment
	for i := range ls {
		l := &ls[i]
		if html != nil && l.Path == html.Path || plain != nil && l.Path == plain.Path {
			continue
		}
		p := l.Part
		name := partFilename(p)
		if name == "" && p.Type == "text" && p.Disposition != "attachment" {
			continue // another alternative of the body
		}
		if name == "" && p.ID != "" && p.Disposition != "attachment" {
			continue // an inline image without a name
		}
		if name == "" {
			name = "part-" + l.Path
			if exts, _ := mime.ExtensionsByType(p.Type + "/" + p.Subtype); len(exts) > 0 {
				name += exts[0]
			} else if p.Message != nil {
				name += ".eml"
			}
		}
		out = append(out, attachment{Path: l.Path, Name: name, Type: p.Type + "/" + p.Subtype, Size: p.Size()})
	}
	return out
}

// readPage shows a message.
func (s *Server) readPage(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, info, m, ok := s.openMessage(r, c)
	if !ok {
		s.fail(w, r, c, http.StatusNotFound, "No such message.")
		return
	}
	ls := leaves(m)
	html, plain := bodyParts(ls)
	data := map[string]any{
		"Title":          decodeHeader(m.Envelope.Subject),
		"Mailbox":        mb,
		"CurrentMailbox": mb.ID,
		"UID":            info.UID,
		"Subject":        decodeHeader(m.Envelope.Subject),
		"From":           formatAddresses(m.Envelope.From),
		"To":             formatAddresses(m.Envelope.To),
		"Cc":             formatAddresses(m.Envelope.Cc),
		"Date":           info.InternalDate,
		"Flagged":        info.HasFlag(store.FlagFlagged),
		"Attachments":    attachments(ls, html, plain),
		"Base":           fmt.Sprintf("/msg/%d/%d", mb.ID, info.UID),
		"IsDraft":        mb.SpecialUse == store.SpecialDrafts || info.HasFlag(store.FlagDraft),
	}
	rd, err := s.cfg.Store.OpenMessage(r.Context(), mb.ID, info.UID)
	if err != nil {
		s.fail(w, r, c, http.StatusNotFound, "No such message.")
		return
	}
	defer rd.Close()
	switch {
	case html != nil:
		// Remote images: for this message (?images=1), or always from its
		// sender (images.go); the frame checks the sender itself.
		sender := senderOf(m)
		bySender := s.images.allowed(c.sess.account, sender)
		images := r.URL.Query().Get("images") == "1"
		src := data["Base"].(string) + "/body"
		if images {
			src += "?images=1"
		}
		data["Frame"] = src
		data["Sender"] = sender
		data["SenderAllowed"] = bySender
		data["Self"] = r.URL.RequestURI()
		if !bySender {
			if text, err := partText(rd, html.Part); err == nil && remoteImageRE.MatchString(text) {
				data["HasRemote"] = true
				if !images {
					data["ImagesLink"] = data["Base"].(string) + "?images=1"
				}
			}
		}
	case plain != nil:
		text, err := partText(rd, plain.Part)
		if err != nil {
			s.log.Warn("webmail read", "mailbox", mb.ID, "uid", info.UID, "err", err)
		}
		data["Text"] = text
	}
	// Neighbours in the date order, for j/k and the links.
	if l, err := s.cache.get(r.Context(), mb); err == nil {
		o := l.order(sortDate)
		for i, rw := range o {
			if rw.UID == info.UID {
				if i > 0 {
					data["Prev"] = fmt.Sprintf("/msg/%d/%d", mb.ID, o[i-1].UID)
				}
				if i+1 < len(o) {
					data["Next"] = fmt.Sprintf("/msg/%d/%d", mb.ID, o[i+1].UID)
				}
				break
			}
		}
		if _, err := l.conversations(r.Context(), s.cfg.Store); err == nil {
			if cv := l.conversationOf(info.UID); cv != nil && len(cv.Rows) > 1 {
				data["Conversation"] = fmt.Sprintf("/conv/%d/%d", mb.ID, info.UID)
				data["ConvCount"] = len(cv.Rows)
			}
		}
		l.mu.Unlock()
	}
	if !info.HasFlag(store.FlagSeen) {
		if _, _, err := s.cfg.Store.StoreFlags(r.Context(), mb.ID, []uint32{info.UID}, store.FlagsAdd, []string{store.FlagSeen}, 0); err != nil {
			s.log.Warn("webmail mark seen", "mailbox", mb.ID, "uid", info.UID, "err", err)
		}
	}
	s.render(w, r, c, http.StatusOK, "read", data)
}

// frameCSP is the policy of the sanitised HTML frame: no script at all
// (also as a CSP sandbox, for when the URL is opened on its own), images
// only from here (cid: parts, the placeholder) unless remote ones were
// allowed, inline styles (bluemonday checked them), nothing else.
func frameCSP(remote bool) string {
	img := "img-src 'self'"
	if remote {
		img += " https: http:"
	}
	return "default-src 'none'; " + img + "; style-src 'unsafe-inline' 'self'; form-action 'none'; base-uri 'none'; " +
		"frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
}

// bodyFrame serves the sanitised HTML of a message, for the read page's
// sandboxed iframe.
func (s *Server) bodyFrame(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, info, m, ok := s.openMessage(r, c)
	if !ok {
		http.NotFound(w, r)
		return
	}
	html, _ := bodyParts(leaves(m))
	if html == nil {
		http.NotFound(w, r)
		return
	}
	rd, err := s.cfg.Store.OpenMessage(r.Context(), mb.ID, info.UID)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer rd.Close()
	text, err := partText(rd, html.Part)
	if err != nil {
		http.Error(w, "cannot read the message", http.StatusInternalServerError)
		return
	}
	remote := r.URL.Query().Get("images") == "1" || s.images.allowed(c.sess.account, senderOf(m))
	p := htmlPolicy
	if remote {
		p = htmlPolicyImages
	}
	clean := p.Sanitize(text)
	h := w.Header()
	h.Set("Content-Security-Policy", frameCSP(remote))
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/static/frame.css"><base target="_blank"></head><body>`)
	io.WriteString(w, clean)
	io.WriteString(w, "</body></html>")
}

// partCSP guards a part served from the message: even an HTML or SVG
// attachment opened in the browser runs nothing and loads nothing.
const partCSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"

// servePart writes a part's decoded body: as an attachment (download), or
// inline for images (cid: references).
func (s *Server) servePart(w http.ResponseWriter, r *http.Request, mb *store.Mailbox, info *store.MessageInfo, p *msg.Part, name string, inline bool) {
	rd, err := s.cfg.Store.OpenMessage(r.Context(), mb.ID, info.UID)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer rd.Close()
	ct := p.Type + "/" + p.Subtype
	if p.Message != nil {
		ct = "message/rfc822"
	}
	if p.Type == "text" {
		if cs := p.Param("charset"); cs != "" {
			ct = mime.FormatMediaType(ct, map[string]string{"charset": cs})
		}
	}
	h := w.Header()
	h.Set("Content-Security-Policy", partCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	if inline && p.Type == "image" && p.Subtype != "svg+xml" {
		h.Set("Content-Type", ct)
		h.Set("Content-Disposition", "inline")
		h.Set("Cache-Control", "private, max-age=3600")
	} else {
		if inline {
			ct = "application/octet-stream"
		}
		h.Set("Content-Type", ct)
		h.Set("Content-Disposition", dispositionValue("attachment", name))
	}
	if _, err := io.Copy(w, partReader(rd, p)); err != nil {
		s.log.Debug("webmail part", "err", err)
	}
}

// partDownload serves an attachment by its section path.
func (s *Server) partDownload(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, info, m, ok := s.openMessage(r, c)
	if !ok {
		http.NotFound(w, r)
		return
	}
	path := r.PathValue("path")
	for _, l := range leaves(m) {
		if l.Path == path {
			name := partFilename(l.Part)
			if name == "" {
				name = "part-" + path
				if l.Part.Message != nil {
					name += ".eml"
				}
			}
			s.servePart(w, r, mb, info, l.Part, name, false)
			return
		}
	}
	http.NotFound(w, r)
}

// cidImage serves the part whose Content-ID is the path's (RFC 2392), for
// images an HTML message shows inline.
func (s *Server) cidImage(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, info, m, ok := s.openMessage(r, c)
	if !ok {
		http.NotFound(w, r)
		return
	}
	want := r.PathValue("cid")
	if u, err := url.PathUnescape(want); err == nil {
		want = u
	}
	for _, l := range leaves(m) {
		id := strings.TrimSpace(l.Part.ID)
		id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
		if id != "" && id == want {
			s.servePart(w, r, mb, info, l.Part, partFilename(l.Part), true)
			return
		}
	}
	http.NotFound(w, r)
}

// rawDownload serves the whole message as it is stored.
func (s *Server) rawDownload(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	mb, info, _, ok := s.openMessage(r, c)
	if !ok {
		http.NotFound(w, r)
		return
	}
	rd, err := s.cfg.Store.OpenMessage(r.Context(), mb.ID, info.UID)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer rd.Close()
	h := w.Header()
	h.Set("Content-Security-Policy", partCSP)
	h.Set("Content-Type", "message/rfc822")
	h.Set("Content-Disposition", dispositionValue("attachment", fmt.Sprintf("message-%d.eml", info.UID)))
	io.Copy(w, rd)
}
