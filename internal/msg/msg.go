// Package msg parses a message once, at delivery, into what the store keeps
// beside it: the envelope (the IMAP ENVELOPE fields) and the MIME body
// structure, with the byte offsets of every part, so that IMAP FETCH of
// ENVELOPE, BODYSTRUCTURE and BODY[section], POP3 TOP and the webmail can be
// served by reading byte ranges of the stored message without parsing it
// again (RFC 9051 sections 6.4.5 and 7.5.2).
//
// Parsing never fails on malformed content: like Dovecot, it makes the best
// of it (a multipart whose boundary never appears is one part, a missing
// Content-Type is text/plain; charset=us-ascii).
package msg

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Bounds on the work a hostile message can cause.
const (
	MaxDepth       = 50      // MIME nesting; deeper parts are opaque bodies
	MaxParts       = 10000   // parts in one message; more are folded into their parent
	maxHeaderBytes = 1 << 20 // of one part's header kept for parsing
	maxFieldBytes  = 64 << 10
)

// Message is a parsed message.
type Message struct {
	Envelope Envelope
	Part     Part // the whole message; HeaderStart is 0
}

// Envelope holds the fields of an IMAP ENVELOPE (RFC 9051 section 7.5.2):
// header values raw (not decoded), unfolded.
type Envelope struct {
	Date, Subject                      string
	From, Sender, ReplyTo, To, Cc, Bcc []Address
	InReplyTo, MessageID               string
}

// Address is an IMAP address structure. A group is written as a start
// {Mailbox: group name} and an end {} (both with Host ""), as RFC 9051 does.
type Address struct {
	Name, Adl, Mailbox, Host string
}

// Part is one MIME entity.
type Part struct {
	// Offsets into the raw message: the part's header starts at HeaderStart,
	// its body at BodyStart, and it ends at End (exclusive). The CRLF before a
	// multipart boundary belongs to the boundary, not to the part.
	HeaderStart, BodyStart, End int64

	Type, Subtype     string      // lower-case; text/plain when absent
	Params            [][2]string // Content-Type parameters (names lower-case), RFC 2231 joined
	ID, Description   string      // Content-ID, Content-Description (raw)
	Encoding          string      // Content-Transfer-Encoding, lower-case; "7bit" when absent
	Lines             int64       // lines of the body, for text/* and message/rfc822
	Disposition       string      // lower-case, "" when absent
	DispositionParams [][2]string
	Language          []string
	Location          string
	MD5               string

	Children []Part   // of a multipart
	Message  *Message // of a message/rfc822 or message/global
}

// Size is the body size in octets.
func (p *Part) Size() int64 { return p.End - p.BodyStart }

// Param returns a Content-Type parameter ("" when absent).
func (p *Part) Param(name string) string {
	for _, kv := range p.Params {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}

// ParseBytes parses a message held in memory.
func ParseBytes(b []byte) *Message {
	p := &parser{lr: &lineReader{data: b, inMemory: true}}
	m := &Message{}
	p.parseEntity(&m.Part, nil, 0, defaultType{"text", "plain"}, &m.Envelope)
	return m
}

// Parse reads a whole message and returns its structure. It returns an error
// only when reading r fails.
func Parse(r io.ReaderAt, size int64) (*Message, error) {
	p := &parser{lr: newLineReader(io.NewSectionReader(r, 0, size))}
	m := &Message{}
	p.parseEntity(&m.Part, nil, 0, defaultType{"text", "plain"}, &m.Envelope)
	if p.lr.err != nil && p.lr.err != io.EOF {
		return m, p.lr.err
	}
	return m, nil
}

// lineReader reads lines and knows the offset of each, and how many line feeds
// came before it (to count a part's lines).
type lineReader struct {
	br       *bufio.Reader
	data     []byte // the message, when it is in memory (no copying then)
	inMemory bool
	off      int64 // offset of the next byte to read
	lfs      int64 // line feeds before off
	err      error

	line    []byte // the current line, with its line end
	lOff    int64  // its offset
	lLFs    int64  // line feeds before it
	prevEnd int64  // length of the line end of the line before it (0, 1 or 2)
	pushed  bool   // the current line was given back: next returns it again
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 32*1024)}
}

// next makes the next line current; false at the end. Lines longer than the
// buffer come in pieces, which is fine: boundaries and field names are short
// and always at the start of a piece that starts a line.
func (l *lineReader) next() bool {
	if l.pushed {
		l.pushed = false
		return true
	}
	if l.err != nil {
		return false
	}
	var line []byte
	var err error
	if l.inMemory {
		rest := l.data[l.off:]
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		} else {
			line, err = rest, io.EOF
		}
	} else {
		line, err = l.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil
		}
	}
	if len(line) == 0 {
		if err == nil {
			err = io.EOF
		}
		l.err = err
		return false
	}
	l.prevEnd = lineEndLen(l.line)
	l.line, l.lOff, l.lLFs = line, l.off, l.lfs
	l.off += int64(len(line))
	if line[len(line)-1] == '\n' {
		l.lfs++
	}
	l.err = err
	return true
}

func lineEndLen(line []byte) int64 {
	n := len(line)
	switch {
	case n >= 2 && line[n-2] == '\r' && line[n-1] == '\n':
		return 2
	case n >= 1 && line[n-1] == '\n':
		return 1
	}
	return 0
}

// unread gives the current line back.
func (l *lineReader) unread() { l.pushed = true }

// pos is the offset of the next unread byte and the line feeds before it.
func (l *lineReader) pos() (int64, int64) {
	if l.pushed {
		return l.lOff, l.lLFs
	}
	return l.off, l.lfs
}

// boundaryEnd is where content before the current (boundary) line ends: the
// line end before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1).
func (l *lineReader) boundaryEnd() (int64, int64) {
	end, lfs := l.lOff-l.prevEnd, l.lLFs
	if l.prevEnd > 0 {
		lfs--
	}
	return end, lfs
}

// parser holds the state of one parse.
type parser struct {
	lr    *lineReader
	parts int
}

type defaultType struct{ typ, subtype string }

// parseEntity parses a header and body starting at the next line. It stops
// before a line that is a delimiter of one of the enclosing multiparts
// (boundaries) and returns where the entity ends and the line feeds before
// that. env, when not nil, receives the envelope fields of the header.
func (p *parser) parseEntity(part *Part, boundaries []string, depth int, def defaultType, env *Envelope) (int64, int64) {
	p.parts++
	part.HeaderStart, _ = p.lr.pos()
	h := p.readHeader(boundaries)
	var startLFs int64
	part.BodyStart, startLFs = p.lr.pos()
	if env != nil {
		*env = envelopeOf(h)
	}
	applyContentFields(part, h, def)

	var end, endLFs int64
	switch {
	case depth >= MaxDepth || p.parts >= MaxParts:
		end, endLFs = p.readToBoundary(boundaries)
	case part.Type == "multipart":
		b := part.Param("boundary")
		if b == "" {
			// A multipart without a boundary cannot be split: one text part.
			part.Type, part.Subtype, part.Params = "text", "plain", [][2]string{{"charset", "us-ascii"}}
			end, endLFs = p.readToBoundary(boundaries)
			break
		}
		end, endLFs = p.parseMultipart(part, append(boundaries[:len(boundaries):len(boundaries)], b), depth, part.Subtype == "digest")
		if n := len(part.Children); n > 0 {
			// In broken input one line end can end a delimiter line and also
			// precede an outer boundary; the multipart still holds its parts.
			end = max(end, part.Children[n-1].End)
		}
	case part.Type == "message" && (part.Subtype == "rfc822" || part.Subtype == "global"):
		inner := &Message{}
		end, endLFs = p.parseEntity(&inner.Part, boundaries, depth+1, defaultType{"text", "plain"}, &inner.Envelope)
		part.Message = inner
	default:
		end, endLFs = p.readToBoundary(boundaries)
	}
	part.End = max(end, part.BodyStart)
	if part.Type == "text" || part.Message != nil {
		part.Lines = max(endLFs-startLFs, 0)
	}
	return part.End, max(endLFs, startLFs)
}

// readHeader reads header lines up to and including the empty line that ends
// the header. A boundary line, or a line that is not a header field, ends the
// header too, and is left unread.
func (p *parser) readHeader(boundaries []string) *header {
	h := &header{cur: -1}
	for p.lr.next() {
		line := p.lr.line
		if isBoundary(line, boundaries) {
			p.lr.unread()
			return h
		}
		if isBlank(line) {
			return h
		}
		if line[0] == ' ' || line[0] == '\t' {
			h.continueField(line)
			continue
		}
		if !looksLikeField(line) {
			// The header ended without its empty line, and this is already
			// body (RFC 5322 leaves it undefined; Dovecot reads it so too).
			p.lr.unread()
			return h
		}
		h.addField(line)
	}
	return h
}

// looksLikeField reports whether line starts with a field name and a colon.
func looksLikeField(line []byte) bool {
	for i, c := range line {
		if c == ':' {
			return i > 0
		}
		if c <= ' ' || c >= 0x7f {
			// RFC 5322 obsolete syntax allows WSP before the colon.
			if c == ' ' || c == '\t' {
				rest := bytes.TrimLeft(line[i:], " \t")
				return i > 0 && len(rest) > 0 && rest[0] == ':'
			}
			return false
		}
	}
	return false
}

// readToBoundary reads a body up to an enclosing boundary or the end.
func (p *parser) readToBoundary(boundaries []string) (int64, int64) {
	for p.lr.next() {
		if isBoundary(p.lr.line, boundaries) {
			p.lr.unread()
			return p.lr.boundaryEnd()
		}
	}
	return p.lr.off, p.lr.lfs
}

func (p *parser) parseMultipart(part *Part, boundaries []string, depth int, digest bool) (int64, int64) {
	own := boundaries[len(boundaries)-1]
	outer := boundaries[:len(boundaries)-1]
	childDef := defaultType{"text", "plain"}
	if digest {
		childDef = defaultType{"message", "rfc822"} // RFC 2046 section 5.1.5
	}
	// The preamble, up to the first delimiter.
	for {
		if !p.lr.next() {
			return p.lr.off, p.lr.lfs
		}
		switch boundaryKind(p.lr.line, own) {
		case delimiter:
		case closeDelimiter:
			return p.epilogue(outer)
		default:
			if isBoundary(p.lr.line, outer) {
				p.lr.unread()
				return p.lr.boundaryEnd()
			}
			continue
		}
		break
	}
	for {
		child := Part{}
		p.parseEntity(&child, boundaries, depth+1, childDef, nil)
		part.Children = append(part.Children, child)
		if !p.lr.next() {
			return p.lr.off, p.lr.lfs
		}
		switch boundaryKind(p.lr.line, own) {
		case delimiter:
			continue
		case closeDelimiter:
			return p.epilogue(outer)
		}
		// An outer boundary: this multipart ends without its close delimiter.
		p.lr.unread()
		return p.lr.boundaryEnd()
	}
}

// epilogue reads what follows a close delimiter, up to an outer boundary.
func (p *parser) epilogue(outer []string) (int64, int64) {
	for p.lr.next() {
		if isBoundary(p.lr.line, outer) {
			p.lr.unread()
			return p.lr.boundaryEnd()
		}
	}
	return p.lr.off, p.lr.lfs
}

type bkind int

const (
	notBoundary bkind = iota
	delimiter
	closeDelimiter
)

// boundaryKind checks a line against one boundary (RFC 2046 section 5.1.1:
// "--" boundary, optionally "--" after it, then only whitespace).
func boundaryKind(line []byte, b string) bkind {
	if len(line) < len(b)+2 || line[0] != '-' || line[1] != '-' || string(line[2:2+len(b)]) != b {
		return notBoundary
	}
	rest := line[2+len(b):]
	kind := delimiter
	if len(rest) >= 2 && rest[0] == '-' && rest[1] == '-' {
		kind, rest = closeDelimiter, rest[2:]
	}
	for _, c := range rest {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return notBoundary
		}
	}
	return kind
}

func isBoundary(line []byte, boundaries []string) bool {
	if len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return false
	}
	for _, b := range boundaries {
		if boundaryKind(line, b) != notBoundary {
			return true
		}
	}
	return false
}

func isBlank(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

// applyContentFields sets the MIME fields of part from its header.
func applyContentFields(part *Part, h *header, def defaultType) {
	part.Type, part.Subtype = def.typ, def.subtype
	part.Encoding = "7bit"
	typed := false
	if ct, ok := h.get("content-type"); ok {
		typ, params := parseValueWithParams(ct)
		if t, s, ok := strings.Cut(typ, "/"); ok && isToken(t) && isToken(s) {
			part.Type, part.Subtype = strings.ToLower(t), strings.ToLower(s)
			part.Params = params
			typed = true
		} else {
			// An unreadable Content-Type is text/plain (RFC 2045 section 5.2).
			part.Type, part.Subtype = "text", "plain"
		}
	}
	if !typed && part.Type == "text" {
		// RFC 2045 section 5.2: the default is text/plain; charset=us-ascii.
		part.Params = [][2]string{{"charset", "us-ascii"}}
	}
	if v, ok := h.get("content-transfer-encoding"); ok {
		if e := strings.ToLower(strings.TrimSpace(stripComments(v))); e != "" {
			part.Encoding = e
		}
	}
	if v, ok := h.get("content-id"); ok {
		part.ID = strings.TrimSpace(v)
	}
	if v, ok := h.get("content-description"); ok {
		part.Description = strings.TrimSpace(v)
	}
	if v, ok := h.get("content-md5"); ok {
		part.MD5 = strings.TrimSpace(v)
	}
	if v, ok := h.get("content-disposition"); ok {
		d, params := parseValueWithParams(v)
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			part.Disposition, part.DispositionParams = d, params
		}
	}
	if v, ok := h.get("content-language"); ok {
		for _, l := range strings.Split(stripComments(v), ",") {
			if l = strings.TrimSpace(l); l != "" {
				part.Language = append(part.Language, l)
			}
		}
	}
	if v, ok := h.get("content-location"); ok {
		part.Location = strings.Join(strings.Fields(v), "")
	}
}

func hasParam(params [][2]string, name string) bool {
	for _, kv := range params {
		if kv[0] == name {
			return true
		}
	}
	return false
}

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

// Section resolves an IMAP section part number such as [1 2 3] (RFC 9051
// section 6.4.5): numbers index the parts of a multipart; the parts of a
// message/rfc822 part are those of the embedded message; and part 1 of a part
// that is not a multipart is that part itself (so [1] of a single-part message
// is its body).
func (m *Message) Section(path []int) (*Part, bool) {
	p := &m.Part
	for _, n := range path {
		if n < 1 {
			return nil, false
		}
		if p.Message != nil {
			p = &p.Message.Part
		}
		if p.Type == "multipart" {
			if n > len(p.Children) {
				return nil, false
			}
			p = &p.Children[n-1]
			continue
		}
		if n != 1 {
			return nil, false
		}
	}
	return p, true
}
