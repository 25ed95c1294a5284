package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"

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
//   - counting Received header fields, to stop mail loops.
type msgWriter struct {
	sp  *spool.Spool
	max int64

	size   int64 // content bytes received
	tooBig bool
	bare   bool // a bare LF or bare CR was seen
	hops   int

	prevCR     bool // the last byte was '\r'
	lineStart  bool // the next byte starts a line
	inHeader   bool
	dropping   bool   // inside a Return-Path field being removed
	hdr        []byte // the header line being gathered
	hdrPassing bool   // the current header line was too long to gather: pass it on
}

func newMsgWriter(sp *spool.Spool, max int64) *msgWriter {
	return &msgWriter{sp: sp, max: max, lineStart: true, inHeader: true}
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
	w.decideHeaderLine(line)
	w.emitHeader(line)
	w.hdr = w.hdr[:0]
	if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
		// The empty line ends the header (RFC 5322 section 2.1).
		w.inHeader = false
		w.dropping = false
	}
}

// decideHeaderLine looks at the start of a header line: a new field or a
// continuation (RFC 5322 section 2.2.3: folded lines start with WSP).
func (w *msgWriter) decideHeaderLine(line []byte) {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return // continuation: keeps the decision of its field
	}
	w.dropping = hasFieldName(line, "return-path")
	if hasFieldName(line, "received") {
		w.hops++
	}
}

func (w *msgWriter) emitHeader(b []byte) {
	if !w.dropping {
		w.sp.Write(b)
	}
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
	if len(w.hdr) > 0 && w.ok() {
		w.decideHeaderLine(w.hdr)
		w.emitHeader(w.hdr)
		w.hdr = w.hdr[:0]
	}
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
