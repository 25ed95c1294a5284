package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/spool"
)

// maxHeaderLine bounds how much of one header line is held to look at its name.
const maxHeaderLine = 4096

// msgWriter takes the message content as it arrives (DATA lines after
// dot-unstuffing, or BDAT chunks cut anywhere) and writes it to the spool, while:
//   - refusing bare LF and bare CR (RFC 5321 section 2.3.8; the SMTP smuggling
//     defence): once one is seen nothing more is written and the message is refused;
//   - enforcing the size limit (RFC 1870): past it nothing more is written;
//   - removing Return-Path header fields the client sent: the final delivery adds
//     its own (RFC 5321 section 4.4);
//   - counting Received header fields, to stop mail loops;
//   - for an authenticated client, keeping the From: and Sender: fields to
//     check whose addresses they are (identity);
//   - on a submission port, adding Date:, Message-ID: and From: when the
//     header lacks them (fix; RFC 6409 section 8).
type msgWriter struct {
	sp  *spool.Spool
	max int64

	size   int64 // content bytes received
	tooBig bool
	bare   bool // a bare LF or bare CR was seen
	hops   int

	prevCR     bool // the last byte was '\r'
	inHeader   bool
	dropping   bool   // inside a Return-Path field being removed
	hdr        []byte // the header line being gathered
	hdrPassing bool   // the current header line was too long to gather: pass it on

	identity *identityFields // nil: From: and Sender: are not kept
	fix      *headerFix      // nil: nothing is added to the header
	seen     seenFields

	// authservID, when set, removes the Authentication-Results fields of
	// that authserv-id: each such field is held (pendingAR) until it ends,
	// then given to mailauth.RemoveAuthenticationResults.
	authservID string
	inAR       bool
	pendingAR  []byte
	dropAR     bool // the field grew past maxARField: dropped whole
}

// maxARField bounds an Authentication-Results field held to read its
// authserv-id; a longer one is dropped rather than passed unread, so that
// size cannot smuggle a forged field through.
const maxARField = 64 << 10

// identityFields are the From: and Sender: fields of a message, kept whole
// (unfolded later) to check that their addresses belong to the logged-in user.
type identityFields struct {
	from, sender []string  // one value per field, as received (CRLFs of folding included)
	cur          *[]string // the list whose last value is being gathered; nil for other fields
	size         int
	overflow     bool // a field was longer than maxIdentityBytes: refuse rather than guess
}

// maxIdentityBytes bounds the From: and Sender: text kept for one message.
const maxIdentityBytes = 16 << 10

// headerFix holds the fields a submission server adds when missing, each a
// whole "Name: value\r\n" line (RFC 6409 sections 8.2 and 8.3; From: from the
// authenticated envelope sender, as Sendmail and Postfix do).
type headerFix struct {
	date, messageID, from string
}

// seenFields records which of the fields headerFix adds the message has.
type seenFields struct{ date, messageID, from bool }

func newMsgWriter(sp *spool.Spool, max int64) *msgWriter {
	return &msgWriter{sp: sp, max: max, inHeader: true}
}

// ok reports whether the message so far can be accepted.
func (w *msgWriter) ok() bool { return !w.tooBig && !w.bare && w.sp.Err() == nil }

// Write takes the next piece of content; pieces may cut lines anywhere.
func (w *msgWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.size += int64(n)
	if w.max > 0 && w.size > w.max {
		w.tooBig = true
	}
	w.checkLineEnds(p)
	if !w.ok() {
		return n, nil // keep reading to the end, store nothing
	}
	for len(p) > 0 {
		if !w.inHeader {
			w.sp.Write(p)
			return n, nil
		}
		// Header: gather each line whole (bounded) to decide about it.
		i := bytes.IndexByte(p, '\n')
		var piece []byte
		complete := i >= 0
		if complete {
			piece, p = p[:i+1], p[i+1:]
		} else {
			piece, p = p, nil
		}
		w.headerPiece(piece, complete)
	}
	return n, nil
}

// headerPiece handles a piece of a header line; complete says it ends the line.
func (w *msgWriter) headerPiece(piece []byte, complete bool) {
	if w.hdrPassing {
		if w.identity != nil && w.identity.cur != nil {
			w.identity.overflow = true
		}
		w.emitHeader(piece)
		if complete {
			w.hdrPassing = false
		}
		return
	}
	w.hdr = append(w.hdr, piece...)
	if !complete {
		if len(w.hdr) > maxHeaderLine {
			// Too long to be a field we act on; decide on what we have.
			w.decideHeaderLine(w.hdr)
			w.emitHeader(w.hdr)
			w.hdr = w.hdr[:0]
			w.hdrPassing = true
		}
		return
	}
	line := w.hdr
	if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
		// The empty line ends the header (RFC 5322 section 2.1).
		w.endAR()
		w.addMissing()
		w.sp.Write(line)
		w.hdr = w.hdr[:0]
		w.inHeader = false
		w.dropping = false
		return
	}
	w.decideHeaderLine(line)
	w.emitHeader(line)
	w.hdr = w.hdr[:0]
}

// addMissing writes the fields of fix that the header lacks, at its end.
func (w *msgWriter) addMissing() {
	if w.fix == nil {
		return
	}
	if !w.seen.date {
		w.sp.WriteString(w.fix.date)
	}
	if !w.seen.messageID {
		w.sp.WriteString(w.fix.messageID)
	}
	if !w.seen.from {
		w.sp.WriteString(w.fix.from)
	}
}

// decideHeaderLine looks at the start of a header line: a new field or a
// continuation (RFC 5322 section 2.2.3: folded lines start with WSP).
func (w *msgWriter) decideHeaderLine(line []byte) {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		// A continuation keeps the decision of its field.
		if id := w.identity; id != nil && id.cur != nil {
			id.keep(line, line)
		}
		return
	}
	w.endAR()
	if w.authservID != "" && hasFieldName(line, "authentication-results") {
		w.inAR = true
	}
	w.dropping = hasFieldName(line, "return-path")
	if hasFieldName(line, "received") {
		w.hops++
	}
	from := hasFieldName(line, "from")
	w.seen.from = w.seen.from || from
	w.seen.date = w.seen.date || hasFieldName(line, "date")
	w.seen.messageID = w.seen.messageID || hasFieldName(line, "message-id")
	if id := w.identity; id != nil {
		id.cur = nil
		var list *[]string
		switch {
		case from:
			list = &id.from
		case hasFieldName(line, "sender"):
			list = &id.sender
		default:
			return
		}
		*list = append(*list, "")
		id.cur = list
		_, value, _ := bytes.Cut(line, []byte(":"))
		id.keep(value, line)
	}
}

// keep appends text, from line, to the field being gathered. A line longer
// than maxHeaderLine is an overflow whether it came whole or in pieces (see
// headerPiece), so that how BDAT cuts a message changes nothing; so is more
// than maxIdentityBytes in all.
func (id *identityFields) keep(text, line []byte) {
	id.size += len(text)
	if id.size > maxIdentityBytes || len(line) > maxHeaderLine {
		id.overflow = true
		return
	}
	(*id.cur)[len(*id.cur)-1] += string(text)
}

func (w *msgWriter) emitHeader(b []byte) {
	switch {
	case w.dropping:
	case w.inAR:
		if len(w.pendingAR)+len(b) > maxARField {
			w.dropAR = true
		}
		if !w.dropAR {
			w.pendingAR = append(w.pendingAR, b...)
		}
	default:
		w.sp.Write(b)
	}
}

// endAR ends an Authentication-Results field being held: written on unless
// it is of our authserv-id.
func (w *msgWriter) endAR() {
	if !w.inAR {
		return
	}
	if !w.dropAR {
		w.sp.Write(mailauth.RemoveAuthenticationResults(w.pendingAR, w.authservID))
	}
	w.inAR, w.dropAR, w.pendingAR = false, false, w.pendingAR[:0]
}

// hasFieldName reports whether line starts with the field name and a colon
// (case-insensitive; RFC 5322 allows WSP before the colon in obsolete syntax).
func hasFieldName(line []byte, name string) bool {
	if len(line) <= len(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := line[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	rest := bytes.TrimLeft(line[len(name):], " \t")
	return len(rest) > 0 && rest[0] == ':'
}

// checkLineEnds marks the message bad on a LF not preceded by CR or a CR not
// followed by LF, also across piece boundaries.
func (w *msgWriter) checkLineEnds(p []byte) {
	if w.bare {
		return
	}
	for len(p) > 0 {
		if w.prevCR {
			if p[0] != '\n' {
				w.bare = true
				return
			}
			w.prevCR = false
			p = p[1:]
			continue
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			return
		}
		if p[i] == '\n' {
			w.bare = true
			return
		}
		w.prevCR = true
		p = p[i+1:]
	}
}

// finish is called at the end of the message.
func (w *msgWriter) finish() {
	if w.prevCR {
		w.bare = true // the content ended on a lone CR (BDAT)
	}
	if !w.ok() || !w.inHeader {
		return
	}
	// The content ended inside the header: a message without a body.
	if len(w.hdr) > 0 {
		w.decideHeaderLine(w.hdr)
		w.emitHeader(w.hdr)
		w.endAR()
		if w.fix != nil && w.hdr[len(w.hdr)-1] != '\n' {
			w.sp.WriteString("\r\n") // end the last line before adding fields
		}
		w.hdr = w.hdr[:0]
	}
	w.endAR()
	w.addMissing()
}

// errAmbiguousEnd says that the client ended DATA with a "." line after a bare
// LF: where it believes the message ends differs from where RFC 5321 says it
// does, which is how SMTP smuggling works. The connection cannot go on safely.
var errAmbiguousEnd = errors.New("smtpd: message ended ambiguously after a bare LF")

// readData reads DATA content up to the end-of-data line (RFC 5321 section
// 4.1.1.4: CRLF "." CRLF), undoes dot-stuffing (section 4.5.2) and hands the
// content to w. Only a "." line that follows a CRLF ends the data.
func readData(br *bufio.Reader, w io.Writer) error {
	atLineStart := true // the next byte starts a line (after CRLF or a bare LF)
	afterBareLF := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		complete := err == nil
		if atLineStart && len(line) > 0 && line[0] == '.' {
			if complete && (len(line) == 3 && line[1] == '\r' || len(line) == 2) {
				// ".\r\n" after a CRLF is the end. After a bare LF, or
				// ".\n", the client may mean it as the end: refuse to guess.
				if afterBareLF || len(line) == 2 {
					return errAmbiguousEnd
				}
				return nil
			}
			line = line[1:]
		}
		if complete {
			afterBareLF = len(line) < 2 || line[len(line)-2] != '\r'
		}
		atLineStart = complete
		w.Write(line)
	}
}
