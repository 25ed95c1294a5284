// Package imapfetch renders the FETCH data items ENVELOPE, BODYSTRUCTURE and
// BODY (the non-extensible form) of RFC 9051 section 7.5.2 from the
// structure internal/msg stored at delivery, so that a FETCH of these items
// never reads or parses the message itself.
//
// Whatever the stored structure holds (a hostile or broken message, or a
// structure decoded from the store), the output is syntactically valid per
// the RFC 9051 section 9 grammar: a multipart always has at least one body,
// a message/rfc822 always has an envelope and a body, and group syntax in
// address lists is always closed.
package imapfetch

import (
	"strings"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
)

// maxDepth bounds recursion on a structure that did not come from msg's
// parser (which stops at msg.MaxDepth); deeper parts are written as empty
// text/plain bodies.
const maxDepth = 2 * msg.MaxDepth

// Options says what the client can read.
type Options struct {
	// Rev2 is true when the session speaks IMAP4rev2 (RFC 9051): only then
	// is message/global an encapsulated message with envelope, body and
	// lines (media-message in RFC 9051 section 9). For IMAP4rev1 (RFC
	// 3501) media-message is MESSAGE/RFC822 alone, so message/global is
	// written as a basic body.
	Rev2 bool
}

// Envelope writes an ENVELOPE (RFC 9051 section 7.5.2): date, subject,
// from, sender, reply-to, to, cc, bcc, in-reply-to, message-id. Fields
// absent from the header are NIL. Sender and Reply-To default to From
// (msg already fills them in at delivery; done again here so a structure
// from elsewhere is rendered the same).
func Envelope(w *imapwire.Writer, e *msg.Envelope) *imapwire.Writer {
	if e == nil {
		e = &msg.Envelope{}
	}
	sender, replyTo := e.Sender, e.ReplyTo
	if len(sender) == 0 {
		sender = e.From
	}
	if len(replyTo) == 0 {
		replyTo = e.From
	}
	w.Open()
	nstring(w, e.Date).SP()
	nstring(w, e.Subject).SP()
	addressList(w, e.From).SP()
	addressList(w, sender).SP()
	addressList(w, replyTo).SP()
	addressList(w, e.To).SP()
	addressList(w, e.Cc).SP()
	addressList(w, e.Bcc).SP()
	nstring(w, e.InReplyTo).SP()
	nstring(w, e.MessageID)
	return w.Close()
}

// nstring writes NIL for "". msg does not tell an absent field from an
// empty one; RFC 3501 section 7.4.2 notes that servers may return NIL for
// "present but empty" and that clients treat NIL and "" alike.
func nstring(w *imapwire.Writer, s string) *imapwire.Writer {
	if s == "" {
		return w.Nil()
	}
	return w.String(s)
}

// addressList writes a list of addresses, or NIL when empty.
//
// msg marks a group (RFC 5322 section 3.4) with a start {Mailbox: name}
// and an end {} (all fields empty); RFC 9051 section 7.5.2 writes these as
// (NIL NIL "name" NIL) and (NIL NIL NIL NIL): a NIL host means group
// syntax. A start looks like a bare local part without a domain, so an
// entry is taken as a group start only when an end marker follows it; a
// mailbox without a domain is written with host "" (a string, not NIL), so
// that a client never reads it as an unterminated group.
func addressList(w *imapwire.Writer, list []msg.Address) *imapwire.Writer {
	lastEnd := -1
	for i := range list {
		if list[i] == (msg.Address{}) {
			lastEnd = i
		}
	}
	wrote := false
	open := func() {
		if !wrote {
			w.Open()
			wrote = true
		}
	}
	inGroup := false
	for i, a := range list {
		end := a == msg.Address{}
		switch {
		case inGroup && end:
			w.Atom("(NIL NIL NIL NIL)")
			inGroup = false
		case !inGroup && a.Host == "" && a.Name == "" && a.Adl == "" && i < lastEnd:
			open()
			w.Atom("(NIL NIL ")
			w.String(a.Mailbox)
			w.Atom(" NIL)")
			inGroup = true
		case end:
			// A stray end marker outside a group: nothing to say.
		default:
			open()
			w.Open()
			nstring(w, a.Name).SP()
			nstring(w, a.Adl).SP()
			w.String(a.Mailbox).SP()
			w.String(a.Host)
			w.Close()
		}
	}
	if inGroup {
		w.Atom("(NIL NIL NIL NIL)") // unreachable with lastEnd, kept for safety
	}
	if !wrote {
		return w.Nil()
	}
	return w.Close()
}

// BodyStructure writes the BODYSTRUCTURE of p (usually &m.Part), with
// extension data (RFC 9051 section 7.5.2).
func BodyStructure(w *imapwire.Writer, p *msg.Part, opt Options) *imapwire.Writer {
	r := renderer{w: w, ext: true, rev2: opt.Rev2}
	r.body(p, 0)
	return w
}

// Body writes the BODY data item of p: BODYSTRUCTURE without extension
// data (RFC 9051 section 7.5.2, "BODY").
func Body(w *imapwire.Writer, p *msg.Part, opt Options) *imapwire.Writer {
	r := renderer{w: w, ext: false, rev2: opt.Rev2}
	r.body(p, 0)
	return w
}

type renderer struct {
	w    *imapwire.Writer
	ext  bool // BODYSTRUCTURE: add extension data
	rev2 bool
}

// emptyText is what a missing body is written as: a 0-octet, 0-line
// text/plain; charset=us-ascii part (the MIME default, RFC 2045 section 5.2).
var emptyText = msg.Part{Type: "text", Subtype: "plain", Params: [][2]string{{"charset", "us-ascii"}}, Encoding: "7bit"}

func (r *renderer) body(p *msg.Part, depth int) {
	if p == nil || depth > maxDepth {
		p = &emptyText
	}
	w := r.w
	typ, sub := p.Type, p.Subtype
	if !isToken(typ) || !isToken(sub) {
		// Only a structure not made by msg can have these; the MIME default.
		typ, sub = "text", "plain"
	}
	if strings.EqualFold(typ, "multipart") {
		r.multipart(p, sub, depth)
		return
	}
	w.Open()
	w.String(upper(typ)).SP().String(upper(sub)).SP()
	// body-fields (RFC 9051 section 9).
	params := p.Params
	if strings.EqualFold(typ, "text") && !hasParam(params, "charset") {
		// RFC 2046 section 4.1.2: the charset of text/* defaults to
		// US-ASCII; say so, as msg does for a part without Content-Type.
		params = append(params[:len(params):len(params)], [2]string{"charset", "us-ascii"})
	}
	r.params(params).SP()
	nstring(w, p.ID).SP()
	nstring(w, p.Description).SP()
	enc := p.Encoding
	if enc == "" {
		enc = "7bit"
	}
	w.String(upper(enc)).SP()
	w.Number(nonNeg(p.Size()))
	switch {
	case r.isMessage(typ, sub):
		// body-type-msg: envelope, body and lines of the embedded message.
		w.SP()
		inner := p.Message
		if inner == nil {
			// The parser gave up on it (too deep): an empty message.
			inner = &msg.Message{Part: emptyText}
		}
		Envelope(w, &inner.Envelope).SP()
		r.body(&inner.Part, depth+1)
		w.SP().Number(nonNeg(p.Lines))
	case strings.EqualFold(typ, "text"):
		w.SP().Number(nonNeg(p.Lines))
	}
	if r.ext {
		// body-ext-1part: md5, disposition, language, location.
		w.SP()
		nstring(w, p.MD5).SP()
		r.disposition(p).SP()
		r.language(p.Language).SP()
		nstring(w, p.Location)
	}
	w.Close()
}

func (r *renderer) isMessage(typ, sub string) bool {
	if !strings.EqualFold(typ, "message") {
		return false
	}
	return strings.EqualFold(sub, "rfc822") || r.rev2 && strings.EqualFold(sub, "global")
}

func (r *renderer) multipart(p *msg.Part, sub string, depth int) {
	w := r.w
	w.Open()
	if len(p.Children) == 0 {
		// body-type-mpart needs 1*body; a multipart whose boundary never
		// appears has none, so it gets one empty text/plain.
		r.body(&emptyText, depth+1)
	}
	// No space between the bodies: body-type-mpart = 1*body SP subtype.
	for i := range p.Children {
		r.body(&p.Children[i], depth+1)
	}
	w.SP().String(upper(sub))
	if r.ext {
		// body-ext-mpart: params, disposition, language, location.
		w.SP()
		r.params(p.Params).SP()
		r.disposition(p).SP()
		r.language(p.Language).SP()
		nstring(w, p.Location)
	}
	w.Close()
}

// params writes a body-fld-param list, or NIL when empty. Names go
// upper-case, like the examples of RFC 9051 section 7.5.2; values as they
// are. msg has joined RFC 2231 continuations and decoded their charset to
// UTF-8 where it could. A value with 8-bit octets goes as UTF-8 to a client
// that enabled UTF8=ACCEPT or IMAP4rev2; to others it is encoded again in
// RFC 2231 form ("NAME*" "utf-8”%E2%82%AC"), which clients decode, rather
// than as a literal of raw 8-bit text.
func (r *renderer) params(ps [][2]string) *imapwire.Writer {
	w := r.w
	if len(ps) == 0 {
		return w.Nil()
	}
	w.Open()
	for i, kv := range ps {
		if i > 0 {
			w.SP()
		}
		name, value := upper(kv[0]), kv[1]
		if !w.UTF8 && has8bit(value) && !strings.HasSuffix(name, "*") {
			charset := "utf-8"
			if !utf8.ValidString(value) {
				// msg keeps charsets it cannot convert as raw octets; the
				// charset is lost by now (RFC 1428).
				charset = "unknown-8bit"
			}
			name, value = name+"*", charset+"''"+percentEncode(value)
		}
		w.String(name).SP().String(value)
	}
	return w.Close()
}

// disposition writes body-fld-dsp: ("TYPE" params) or NIL (RFC 2183).
func (r *renderer) disposition(p *msg.Part) *imapwire.Writer {
	w := r.w
	if p.Disposition == "" {
		return w.Nil()
	}
	w.Open().String(upper(p.Disposition)).SP()
	r.params(p.DispositionParams)
	return w.Close()
}

// language writes body-fld-lang: NIL, one string, or a list (RFC 3282).
func (r *renderer) language(langs []string) *imapwire.Writer {
	w := r.w
	switch len(langs) {
	case 0:
		return w.Nil()
	case 1:
		return w.String(langs[0])
	}
	w.Open()
	for i, l := range langs {
		if i > 0 {
			w.SP()
		}
		w.String(l)
	}
	return w.Close()
}

// upperCommon holds the upper-case forms of the usual MIME tokens, so that
// writing them costs no allocation (FETCH BODYSTRUCTURE of a whole mailbox
// writes them many thousand times).
var upperCommon = map[string]string{}

func init() {
	for _, s := range []string{
		"text", "plain", "html", "calendar", "enriched", "rfc822-headers",
		"multipart", "mixed", "alternative", "related", "signed", "encrypted", "report", "digest",
		"application", "octet-stream", "pdf", "pgp-signature", "pgp-encrypted", "pkcs7-signature",
		"pkcs7-mime", "ics", "zip", "json", "xml", "msword", "ms-tnef",
		"image", "jpeg", "png", "gif", "webp", "svg+xml", "audio", "video", "font",
		"message", "rfc822", "global", "delivery-status", "disposition-notification",
		"7bit", "8bit", "binary", "base64", "quoted-printable",
		"charset", "name", "boundary", "filename", "format", "delsp", "method", "protocol",
		"micalg", "report-type", "type", "start", "size", "creation-date", "modification-date",
		"attachment", "inline",
	} {
		upperCommon[s] = strings.ToUpper(s)
	}
}

// upper is strings.ToUpper, without allocating for the usual tokens.
func upper(s string) string {
	if u, ok := upperCommon[s]; ok {
		return u
	}
	return strings.ToUpper(s)
}

func hasParam(ps [][2]string, name string) bool {
	for _, kv := range ps {
		if strings.EqualFold(kv[0], name) {
			return true
		}
	}
	return false
}

func nonNeg(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}

func has8bit(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// percentEncode encodes what is not an attribute-char (RFC 2231 section 7).
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && !strings.ContainsRune(`*'%()<>@,;:\"/[]?=`, rune(c)) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// isToken reports whether s is an RFC 2045 token (what msg gives for a
// type and subtype it read).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}
