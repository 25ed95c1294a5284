package imapwire

import (
	"bufio"
	"io"
	"strconv"
	"unicode/utf8"
)

// Writer writes server responses. Methods append to a buffered line; the
// first write error sticks and is returned by every later call and by
// Flush, so a handler can write a whole response and check once.
//
// UTF8 tells String whether 8-bit text may be sent quoted: only after
// the client ENABLEd UTF8=ACCEPT or IMAP4rev2 (RFC 9051 section 9,
// quoted-utf8-char; RFC 6855 section 3). Otherwise it goes as a literal.
type Writer struct {
	bw   *bufio.Writer
	err  error
	UTF8 bool
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriter(w)
	}
	return &Writer{bw: bw}
}

func (w *Writer) raw(s string) *Writer {
	if w.err == nil {
		_, w.err = w.bw.WriteString(s)
	}
	return w
}

func (w *Writer) rawBytes(b []byte) *Writer {
	if w.err == nil {
		_, w.err = w.bw.Write(b)
	}
	return w
}

// Err is the first write error.
func (w *Writer) Err() error { return w.err }

// Flush sends what is buffered.
func (w *Writer) Flush() error {
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	return w.err
}

// Atom writes s verbatim; the caller guarantees it is an atom (or a
// keyword like "FETCH", a flag, "BODY[TEXT]").
func (w *Writer) Atom(s string) *Writer { return w.raw(s) }

// SP writes a space.
func (w *Writer) SP() *Writer { return w.raw(" ") }

// Number writes a decimal number.
func (w *Writer) Number(n uint64) *Writer {
	if w.err == nil {
		// Appending into the writer's own free space allocates nothing
		// (a local array escaped through Write, one allocation per number).
		_, w.err = w.bw.Write(strconv.AppendUint(w.bw.AvailableBuffer(), n, 10))
	}
	return w
}

// Nil writes NIL.
func (w *Writer) Nil() *Writer { return w.raw("NIL") }

// Open and Close write list parentheses.
func (w *Writer) Open() *Writer  { return w.raw("(") }
func (w *Writer) Close() *Writer { return w.raw(")") }

// CRLF ends a response line.
func (w *Writer) CRLF() *Writer { return w.raw("\r\n") }

// quotable reports whether s can be sent as a quoted string: no CR, LF
// or NUL, and no 8-bit octets unless utf8 (and then valid UTF-8).
func quotable(s string, utf8OK bool) bool {
	if len(s) > 1000 {
		return false // long values read better as literals
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c == '\r' || c == '\n' {
			return false
		}
		if c >= 0x80 && !utf8OK {
			return false
		}
	}
	return !utf8OK || utf8.ValidString(s)
}

// String writes s as a quoted string when that can carry it, else as a
// literal (RFC 9051 section 4.3).
func (w *Writer) String(s string) *Writer {
	if !quotable(s, w.UTF8) {
		return w.Literal([]byte(s))
	}
	w.raw(`"`)
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			w.raw(s[start:i]).raw(`\`)
			start = i
		}
	}
	return w.raw(s[start:]).raw(`"`)
}

// NString writes NIL for nil, else the string.
func (w *Writer) NString(s *string) *Writer {
	if s == nil {
		return w.Nil()
	}
	return w.String(*s)
}

// AString writes s as an atom when it is one (and not "NIL", which
// would read as nil), else as String.
func (w *Writer) AString(s string) *Writer {
	if s != "" && !equalFold(s, "NIL") {
		atom := true
		for i := 0; i < len(s); i++ {
			if !isAstringChar(s[i]) {
				atom = false
				break
			}
		}
		if atom {
			return w.raw(s)
		}
	}
	return w.String(s)
}

// Literal writes {n}CRLF and the data.
func (w *Writer) Literal(b []byte) *Writer {
	w.raw("{").Number(uint64(len(b))).raw("}\r\n")
	return w.rawBytes(b)
}

// Literal8 writes ~{n}CRLF and the data (RFC 3516, for BINARY[] with NUL).
func (w *Writer) Literal8(b []byte) *Writer {
	w.raw("~{").Number(uint64(len(b))).raw("}\r\n")
	return w.rawBytes(b)
}

// Untagged starts "* ".
func (w *Writer) Untagged() *Writer { return w.raw("* ") }

// Status writes a complete status response line: tag "" gives an
// untagged one. status is OK, NO, BAD, PREAUTH or BYE; code, without
// brackets, may be "" (e.g. "UIDNEXT 4392", "TOOBIG"). CR and LF in
// text are replaced so a message cannot end the line early.
func (w *Writer) Status(tag, status, code, text string) *Writer {
	if tag == "" {
		tag = "*"
	}
	w.raw(tag).SP().raw(status).SP()
	if code != "" {
		w.raw("[").raw(cleanText(code)).raw("] ")
	}
	if text == "" {
		text = status // resp-text needs a text (RFC 9051 section 9)
	}
	return w.raw(cleanText(text)).CRLF()
}

// Continue writes a continuation request "+ text".
func (w *Writer) Continue(text string) *Writer {
	if text == "" {
		text = "Ready"
	}
	return w.raw("+ ").raw(cleanText(text)).CRLF()
}

func cleanText(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' || s[i] == 0 {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' || c == 0 {
			b[i] = ' '
		}
	}
	return string(b)
}

// Flags writes a parenthesised flag list. Flags are atoms (or "\" and
// an atom); the session only stores flags the reader accepted.
func (w *Writer) Flags(flags []string) *Writer {
	w.Open()
	for i, f := range flags {
		if i > 0 {
			w.SP()
		}
		w.raw(f)
	}
	return w.Close()
}

// Mailbox writes a mailbox name: as UTF-8 after UTF8=ACCEPT or
// IMAP4rev2, else in modified UTF-7 (RFC 3501 section 5.1.3).
func (w *Writer) Mailbox(name string) *Writer {
	if !w.UTF8 {
		name = EncodeMailbox(name)
	}
	return w.AString(name)
}

// Refuse answers a command the Reader refused: "tag BAD text", or NO
// for a literal too big (RFC 9051 section 7.1, TOOBIG: the command was
// well formed), untagged when the tag was not read. When e.Fatal it adds
// "* BYE" and the caller closes the connection after Flush.
func (w *Writer) Refuse(e *Error) *Writer {
	status := "BAD"
	if e.Code == "TOOBIG" && !e.Fatal {
		status = "NO"
	}
	w.Status(e.Tag, status, e.Code, e.Msg)
	if e.Fatal {
		w.Status("", "BYE", "", "Too much trouble, closing")
	}
	return w
}

// LiteralFrom writes a literal of n octets read from r ({n}, or ~{n} for
// literal8 when binary), streaming instead of holding the data. A short
// read is an error: the literal's length is already on the wire, so the
// caller must close the connection.
func (w *Writer) LiteralFrom(r io.Reader, n int64, binary bool) *Writer {
	if binary {
		w.raw("~")
	}
	w.raw("{").Number(uint64(n)).raw("}\r\n")
	if w.err == nil {
		var copied int64
		copied, w.err = io.CopyN(w.bw, r, n)
		if w.err == nil && copied != n {
			w.err = io.ErrUnexpectedEOF
		}
	}
	return w
}

// Raw writes b verbatim: response text rendered earlier by a Writer
// with the same UTF8 setting (a cached ENVELOPE, say).
func (w *Writer) Raw(b []byte) *Writer { return w.rawBytes(b) }

// SetBuffer puts the writer over bw: a session that returns its buffer to
// a pool while it waits for the client takes one back before it writes.
func (w *Writer) SetBuffer(bw *bufio.Writer) { w.bw = bw }
