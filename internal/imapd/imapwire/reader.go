// Package imapwire is the wire layer of posthorn's IMAP server: it reads
// client commands (RFC 9051 section 9 formal syntax, with the RFC 3501
// forms IMAP4rev1 clients still send) into typed structs, and writes
// responses with correct quoting. It knows nothing of mailboxes or
// sessions; internal/imapd builds on it.
//
// A command is read line by line. A line that ends in a literal marker
// ({n}, {n+} or ~{n}) continues after n octets; the parser pulls the next
// line only when it reaches the literal, so the continuation request for a
// synchronising literal is sent only once everything before it has parsed
// (RFC 9051 section 7.5: a server answers a bad command before the client
// sends the literal).
package imapwire

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Default limits. A line of 64 KiB fits any sane UID set; RFC 7162 section
// 4 asks servers to accept command lines of at least 8192 octets.
const (
	DefaultMaxLine    = 64 << 10
	DefaultMaxLiteral = 64 << 20
	DefaultMaxCommand = 80 << 20
	DefaultMaxDepth   = 32
	// maxDiscard bounds how much of an over-long line is skipped before
	// the reader gives up and asks for the connection to be closed.
	maxDiscard = 1 << 20
)

// Options configures a Reader. Zero fields take the defaults above.
type Options struct {
	MaxLine    int   // octets in one line, CRLF excluded
	MaxLiteral int64 // octets in one literal
	MaxCommand int64 // octets in one command, literals included
	MaxDepth   int   // nesting of parentheses (lists, search keys)
	// MaxNonSync, when positive, bounds non-synchronising literals: 4096
	// with LITERAL- (RFC 7888 section 5), where a larger one is refused
	// with BAD [TOOBIG] and the connection closed.
	MaxNonSync int64
	// Continue is called before a synchronising literal of n octets is
	// read, with the upper-case command name ("APPEND"); the server
	// writes "+ Ready" (RFC 9051 section 7.5) and flushes. Returning an
	// *Error refuses the literal instead (e.g. NO [TOOBIG] for an APPEND
	// over APPENDLIMIT, RFC 7889): the reader fills in the tag and, as
	// the client never sends the data, the session goes on. Any other
	// error is returned as is. Nil means no continuation is written.
	Continue func(command string, n int64) error
}

// Error is a command the reader refused. The server answers it with
// "Tag BAD Msg" (or NO when Code is TOOBIG for a literal of a known-good
// command, RFC 7889 section 4 / RFC 9051 section 7.1). When Fatal is
// set the stream cannot be resynchronised and the connection must close
// after the answer (a BYE is appropriate).
type Error struct {
	Tag   string // "" when the tag could not be read; answer untagged
	Code  string // response code without brackets, e.g. "TOOBIG", or ""
	Msg   string
	Fatal bool
}

func (e *Error) Error() string {
	s := "imap: " + e.Msg
	if e.Tag != "" {
		s = "imap: " + e.Tag + ": " + e.Msg
	}
	return s
}

// ErrTooBig marks a literal or command over the limits; errors.Is works on
// *Error values whose Code is TOOBIG.
var ErrTooBig = errors.New("TOOBIG")

func (e *Error) Is(target error) bool { return target == ErrTooBig && e.Code == "TOOBIG" }

// Reader reads client commands from a connection.
type Reader struct {
	br   *bufio.Reader
	opts Options

	// state of the command being parsed
	tag   string
	name  string // command name once known, for Continue
	line  []byte // current line without CRLF
	pos   int
	total int64 // octets of the current command so far
	depth int
}

// NewReader returns a Reader. The bufio.Reader's size bounds nothing:
// lines are collected with the MaxLine limit.
func NewReader(br *bufio.Reader, opts Options) *Reader {
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.MaxLiteral <= 0 {
		opts.MaxLiteral = DefaultMaxLiteral
	}
	if opts.MaxCommand <= 0 {
		opts.MaxCommand = DefaultMaxCommand
	}
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	return &Reader{br: br, opts: opts}
}

// errLineTooLong is returned by readLine; the rest of the line has been
// discarded when Fatal is false.
var errLineTooLong = errors.New("line too long")

// readLine reads one CRLF-terminated line (bare LF tolerated) into r.line.
func (r *Reader) readLine() error {
	r.line = r.line[:0]
	r.pos = 0
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(r.line)+len(chunk) > r.opts.MaxLine+2 {
			return r.skipLongLine(chunk, err)
		}
		r.line = append(r.line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(r.line) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		break
	}
	r.line = r.line[:len(r.line)-1]
	if n := len(r.line); n > 0 && r.line[n-1] == '\r' {
		r.line = r.line[:n-1]
	}
	r.total += int64(len(r.line)) + 2
	if r.total > r.opts.MaxCommand {
		return &Error{Tag: r.tag, Code: "TOOBIG", Msg: "command too long", Fatal: true}
	}
	return nil
}

// ReadDone reads the line that ends IDLE: "DONE" in any case (RFC 2177
// section 3, an ABNF string). Anything else is an *Error; the session
// then ends the IDLE and answers BAD.
func (r *Reader) ReadDone() error {
	l, err := r.ReadLine()
	if err != nil {
		return err
	}
	if !equalFold(l, "DONE") {
		return &Error{Msg: "expected DONE"}
	}
	return nil
}

// ReadAuthResponse reads one client line of an AUTHENTICATE exchange
// (RFC 9051 section 6.2.2): base64 data, or "*" when the client cancels
// (the server then answers BAD). An empty line is an empty response.
func (r *Reader) ReadAuthResponse() (data []byte, cancelled bool, err error) {
	l, err := r.ReadLine()
	if err != nil {
		return nil, false, err
	}
	if l == "*" {
		return nil, true, nil
	}
	if l == "=" {
		// An empty response written as SASL-IR writes one (RFC 4959
		// section 3): some clients do so in the exchange too.
		return []byte{}, false, nil
	}
	data, err = base64.StdEncoding.Strict().DecodeString(l)
	if err != nil {
		return nil, false, &Error{Msg: "invalid base64 in authentication response"}
	}
	return data, false, nil
}

// skipLongLine skips the rest of an over-long line (without keeping
// it), so that the next command starts clean. The line's last octets are
// kept in r.line: if they are a non-synchronising literal marker, the
// caller's discard skips the literal that follows. The tag is recovered
// from the line's start when it was not known yet.
func (r *Reader) skipLongLine(chunk []byte, err error) error {
	if r.tag == "" {
		head := append(r.line, chunk...)
		i := 0
		for i < len(head) && isTagChar(head[i]) {
			i++
		}
		if i > 0 && i < len(head) && head[i] == ' ' && i <= 64 {
			r.tag = string(head[:i])
		}
	}
	const keep = 32
	tail := append(r.line[:0], chunk...)
	skipped := len(tail)
	for err == bufio.ErrBufferFull && skipped < maxDiscard {
		chunk, err = r.br.ReadSlice('\n')
		skipped += len(chunk)
		tail = append(tail, chunk...)
		if len(tail) > keep {
			tail = append(tail[:0], tail[len(tail)-keep:]...)
		}
	}
	if err != nil {
		r.line = r.line[:0]
		return &Error{Tag: r.tag, Msg: "line too long", Fatal: true}
	}
	tail = tail[:len(tail)-1]
	if n := len(tail); n > 0 && tail[n-1] == '\r' {
		tail = tail[:n-1]
	}
	r.line, r.pos = tail, len(tail)
	return &Error{Tag: r.tag, Msg: fmt.Sprintf("line too long (limit %d octets)", r.opts.MaxLine)}
}

// ReadLine reads one raw line, for the AUTHENTICATE exchange (RFC 9051
// section 6.2.2) and the DONE that ends IDLE (RFC 2177).
func (r *Reader) ReadLine() (string, error) {
	r.tag, r.total = "", 0
	if err := r.readLine(); err != nil {
		return "", err
	}
	return string(r.line), nil
}

// errf builds a parse error for the current command.
func (r *Reader) errf(format string, args ...any) *Error {
	return &Error{Tag: r.tag, Msg: fmt.Sprintf(format, args...)}
}

func (r *Reader) eol() bool { return r.pos >= len(r.line) }

func (r *Reader) peek() byte {
	if r.eol() {
		return 0
	}
	return r.line[r.pos]
}

// sp consumes exactly one space.
func (r *Reader) sp() error {
	if r.peek() != ' ' {
		if r.eol() {
			return r.errf("missing argument")
		}
		return r.badChar("space")
	}
	r.pos++
	return nil
}

// maybeSP consumes a space if present.
func (r *Reader) maybeSP() bool {
	if r.peek() == ' ' {
		r.pos++
		return true
	}
	return false
}

func (r *Reader) expect(c byte) error {
	if r.peek() != c {
		return r.errf("expected %q at %q", c, r.rest())
	}
	r.pos++
	return nil
}

// rest is a short excerpt of what is left, for error messages. Only
// printable ASCII is shown so that garbage does not reach logs.
func (r *Reader) rest() string {
	s := r.line[r.pos:]
	if len(s) > 20 {
		s = s[:20]
	}
	out := make([]byte, 0, len(s))
	for _, c := range s {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}

func (r *Reader) enter() error {
	r.depth++
	if r.depth > r.opts.MaxDepth {
		return r.errf("nesting too deep (limit %d)", r.opts.MaxDepth)
	}
	return nil
}

func (r *Reader) leave() { r.depth-- }

// Character classes, RFC 9051 section 9.
func isAtomChar(c byte) bool {
	if c <= 0x1f || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAstringChar adds resp-specials ("]") to ATOM-CHAR.
func isAstringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// isTagChar is ASTRING-CHAR except "+".
func isTagChar(c byte) bool { return isAstringChar(c) && c != '+' }

// isListChar adds list-wildcards to ATOM-CHAR for LIST patterns.
func isListChar(c byte) bool { return isAstringChar(c) || c == '%' || c == '*' }

// take consumes the longest run of bytes matching class.
func (r *Reader) take(class func(byte) bool) string {
	start := r.pos
	for r.pos < len(r.line) && class(r.line[r.pos]) {
		r.pos++
	}
	return string(r.line[start:r.pos])
}

// atom reads a non-empty atom.
func (r *Reader) atom() (string, error) {
	s := r.take(isAtomChar)
	if s == "" {
		return "", r.badChar("atom")
	}
	return s, nil
}

func (r *Reader) badChar(what string) *Error {
	if r.eol() {
		return r.errf("missing %s", what)
	}
	c := r.peek()
	if c >= 0x80 {
		return r.errf("8-bit octet where %s expected", what)
	}
	if c < 0x20 || c == 0x7f {
		return r.errf("control character 0x%02x where %s expected", c, what)
	}
	return r.errf("expected %s at %q", what, r.rest())
}

// number reads a number (RFC 9051: 32-bit unsigned) or number64.
func (r *Reader) number(bits int) (uint64, error) {
	start := r.pos
	for r.pos < len(r.line) && r.line[r.pos] >= '0' && r.line[r.pos] <= '9' {
		r.pos++
	}
	if start == r.pos {
		return 0, r.badChar("number")
	}
	n, err := strconv.ParseUint(string(r.line[start:r.pos]), 10, bits)
	if err != nil {
		return 0, r.errf("number out of range: %s", r.line[start:r.pos])
	}
	if bits == 64 && n > 1<<63-1 {
		// number64 is at most 2^63-1 (RFC 9051 section 9).
		return 0, r.errf("number out of range: %s", r.line[start:r.pos])
	}
	return n, nil
}

func (r *Reader) nzNumber() (uint32, error) {
	// nz-number = digit-nz *DIGIT: no leading zero.
	if r.peek() == '0' {
		return 0, r.errf("zero where a non-zero number is required")
	}
	n, err := r.number(32)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, r.errf("zero where a non-zero number is required")
	}
	return uint32(n), nil
}

// quoted reads a quoted string; the opening quote is at r.pos. UTF-8 is
// allowed (RFC 9051 section 9, quoted-utf8-char) but must be valid.
func (r *Reader) quoted() (string, error) {
	r.pos++
	var out []byte
	for {
		if r.eol() {
			return "", r.errf("unterminated quoted string")
		}
		c := r.line[r.pos]
		r.pos++
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return "", r.errf("invalid UTF-8 in quoted string")
			}
			return string(out), nil
		case c == '\\':
			if r.eol() || (r.line[r.pos] != '"' && r.line[r.pos] != '\\') {
				return "", r.errf("bad escape in quoted string")
			}
			out = append(out, r.line[r.pos])
			r.pos++
		case c == 0 || c == '\r' || c == '\n':
			return "", r.errf("control character in quoted string")
		default:
			out = append(out, c)
		}
	}
}

// literalKind tells what literal syntax is allowed where one is read.
type literalKind int

const (
	litText   literalKind = iota // {n} / {n+}: no NUL
	litBinary                    // also ~{n}: any octet (RFC 3516 literal8)
)

// literal reads a literal whose "{" (or "~") is at r.pos. The marker must
// end the line. It returns the data and whether it was literal8.
func (r *Reader) literal(kind literalKind) ([]byte, bool, error) {
	binary := false
	if r.peek() == '~' {
		if kind != litBinary {
			return nil, false, r.errf("literal8 not allowed here")
		}
		binary = true
		r.pos++
	}
	if err := r.expect('{'); err != nil {
		return nil, false, err
	}
	start := r.pos
	for r.pos < len(r.line) && r.line[r.pos] >= '0' && r.line[r.pos] <= '9' {
		r.pos++
	}
	digits := string(r.line[start:r.pos])
	sync := true
	if r.peek() == '+' || r.peek() == '-' {
		// {n+} LITERAL+ and {n-} is not valid syntax; only "+" exists.
		if r.peek() == '-' {
			return nil, false, r.errf("bad literal marker")
		}
		sync = false
		r.pos++
	}
	if digits == "" || r.peek() != '}' || r.pos+1 != len(r.line) {
		return nil, false, r.errf("bad literal marker")
	}
	r.pos++
	// Parse with a bound instead of allocating: a 12-digit size is
	// refused here, before any data is read (RFC 7889).
	n, err := strconv.ParseUint(digits, 10, 63)
	if err != nil || int64(n) > r.opts.MaxLiteral || r.total+int64(n) > r.opts.MaxCommand ||
		(!sync && r.opts.MaxNonSync > 0 && int64(n) > r.opts.MaxNonSync) {
		e := &Error{Tag: r.tag, Code: "TOOBIG", Msg: "literal too big"}
		// A non-synchronising literal's data is on its way; we cannot
		// skip an unbounded amount safely, so the connection ends.
		e.Fatal = !sync
		return nil, false, e
	}
	if sync && r.opts.Continue != nil {
		if err := r.opts.Continue(r.name, int64(n)); err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				e := *pe
				e.Tag, e.Fatal = r.tag, false
				return nil, false, &e
			}
			return nil, false, err
		}
	}
	data, err := readGrowing(r.br, int64(n))
	if err != nil {
		return nil, false, err
	}
	r.total += int64(n)
	// The command continues on the next line; read it before judging
	// the data so that a refused command is skipped whole.
	if err := r.readLine(); err != nil {
		return nil, false, err
	}
	if !binary {
		for _, c := range data {
			if c == 0 {
				return nil, false, r.errf("NUL in literal (use literal8)")
			}
		}
	}
	return data, binary, nil
}

// readGrowing reads n octets into a buffer that grows as they come (by
// doubling, from 64 KiB): a client announcing a large literal and sending
// it slowly, or never, holds only what it sent, not the announced size.
func readGrowing(br *bufio.Reader, n int64) ([]byte, error) {
	data := make([]byte, 0, min(n, 64<<10))
	for int64(len(data)) < n {
		if len(data) == cap(data) {
			grown := make([]byte, len(data), min(n, int64(cap(data))*2))
			copy(grown, data)
			data = grown
		}
		k, err := br.Read(data[len(data):cap(data)])
		data = data[:len(data)+k]
		if err != nil && int64(len(data)) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return data, nil
}

// str reads a string: quoted or literal.
func (r *Reader) str() (string, error) {
	switch r.peek() {
	case '"':
		return r.quoted()
	case '{':
		// A literal is octets: a password or a search string in a
		// declared charset need not be UTF-8. Mailbox names are checked
		// by mailbox().
		b, _, err := r.literal(litText)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	return "", r.badChar("string")
}

// astring reads an atom-ish string (ASTRING-CHAR run) or a string.
func (r *Reader) astring() (string, error) {
	switch r.peek() {
	case '"', '{':
		return r.str()
	}
	s := r.take(isAstringChar)
	if s == "" {
		return "", r.badChar("string")
	}
	return s, nil
}

// nstring reads a string or NIL; ok is false for NIL.
func (r *Reader) nstring() (s string, ok bool, err error) {
	switch r.peek() {
	case '"', '{':
		s, err = r.str()
		return s, err == nil, err
	}
	a := r.take(isAtomChar)
	if equalFold(a, "NIL") {
		return "", false, nil
	}
	return "", false, r.errf("expected string or NIL")
}

// listMailbox reads a LIST pattern: list-char run or string.
func (r *Reader) listMailbox() (string, error) {
	switch r.peek() {
	case '"', '{':
		return r.str()
	}
	s := r.take(isListChar)
	if s == "" {
		return "", r.badChar("mailbox pattern")
	}
	return s, nil
}

// mailbox reads a mailbox name. "INBOX" in any case is INBOX (RFC 9051
// section 5.1); other names are returned as sent (modified UTF-7 or
// UTF-8 is the session's business, see DecodeMailbox).
func (r *Reader) mailbox() (string, error) {
	s, err := r.astring()
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", r.errf("mailbox name is not UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", r.errf("NUL in mailbox name")
	}
	if equalFold(s, "INBOX") {
		return "INBOX", nil
	}
	return s, nil
}

// flag reads a flag: "\" atom or atom (keyword). allowStar permits "\*"
// (flag-perm, only in responses, but PERMANENTFLAGS style) - not for
// client commands.
func (r *Reader) flag() (string, error) {
	if r.peek() == '\\' {
		r.pos++
		a, err := r.atom()
		if err != nil {
			return "", err
		}
		return `\` + a, nil
	}
	return r.atom()
}

// flagList reads "(" [flag *(SP flag)] ")".
func (r *Reader) flagList() ([]string, error) {
	if err := r.expect('('); err != nil {
		return nil, err
	}
	flags := []string{}
	for r.peek() != ')' {
		if len(flags) > 0 {
			if err := r.sp(); err != nil {
				return nil, err
			}
		}
		f, err := r.flag()
		if err != nil {
			return nil, err
		}
		flags = append(flags, f)
	}
	r.pos++
	return flags, nil
}

// equalFold is ASCII-only case folding, as IMAP keywords are ASCII.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}
