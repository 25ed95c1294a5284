// Package mailimport moves mail into and out of posthorn: mbox files
// (/var/mail spools) and Maildir folders are read into the store and written
// back out, and a Sendmail + popa3d system (the guide in
// shared/SEED-mail-server-guide.txt) is planned for import: its tables, its
// .mc settings, its users and their password hashes (sendmail.go).
//
// Messages read from an mbox keep what the old system knew of them: the date
// of the "From " line as internal date, the read state of the Status: and
// X-Status: fields, and the POP3 unique-id popa3d gave them (popa3d.go).
package mailimport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// Message is one message read from an mbox or a Maildir, ready for the
// store: its bytes with CRLF line ends (as the SMTP server stores them),
// without the mbox's own fields (Status:, X-Status:, X-Keywords:, X-UID:).
type Message struct {
	Data  []byte
	Flags []string
	Date  time.Time
	// UIDL is the unique-id popa3d gave the message (mbox only), or "".
	UIDL string
	// From is the envelope sender of the mbox "From " line, if any.
	From string
}

// Quoting says how "From " lines inside messages were escaped in an mbox
// (RFC 4155 section 2 leaves it to the writer).
type Quoting int

const (
	// MboxRD: every line matching ">*From " got one more ">" when written;
	// one is removed when read. What posthorn export writes.
	MboxRD Quoting = iota
	// MboxO: only "From " lines became ">From "; ">From " is read back
	// as "From ", and ">>From " is left alone.
	MboxO
)

// ErrNotMbox is returned when a file does not start with a "From " line.
var ErrNotMbox = errors.New("not an mbox file: it does not start with a \"From \" line")

// maxLine bounds the part of a line kept for parsing the mbox's own fields;
// longer lines are copied through in pieces.
const readBufSize = 256 << 10

// MboxReader reads the messages of an mbox one at a time: memory holds one
// message, never the file.
//
// Messages are split as popa3d splits them (so that the same messages, with
// the same unique-ids, come out): a line starting with "From " begins a
// message at the start of the file or after an empty line. The empty line
// before it belongs to the mbox, not to the message.
type MboxReader struct {
	r        *bufio.Reader
	quoting  Quoting
	loc      *time.Location
	fromLine []byte // the "From " line of the next message, read already
	line     []byte // the current line, whole
	started  bool
	err      error
	read     int64 // bytes of the file consumed
}

// NewMboxReader reads an mbox from r. Dates on "From " lines, which carry no
// zone, are taken in loc (the old server's zone; nil: time.Local).
func NewMboxReader(r io.Reader, q Quoting, loc *time.Location) *MboxReader {
	if loc == nil {
		loc = time.Local
	}
	return &MboxReader{r: bufio.NewReaderSize(r, readBufSize), quoting: q, loc: loc}
}

// Offset returns how many bytes of the file were consumed so far (progress).
func (m *MboxReader) Offset() int64 { return m.read }

// readLine reads one whole line with its "\n" (the last may lack it). It
// returns io.EOF when nothing is left.
func (m *MboxReader) readLine() ([]byte, error) {
	m.line = m.line[:0]
	for {
		piece, err := m.r.ReadSlice('\n')
		m.line = append(m.line, piece...)
		m.read += int64(len(piece))
		switch {
		case err == nil:
			return m.line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(m.line) > 0 {
				return m.line, nil
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// Next returns the next message, or io.EOF after the last.
func (m *MboxReader) Next() (*Message, error) {
	if m.err != nil {
		return nil, m.err
	}
	if !m.started {
		m.started = true
		line, err := m.readLine()
		if errors.Is(err, io.EOF) {
			m.err = io.EOF
			return nil, io.EOF
		}
		if err != nil {
			m.err = err
			return nil, err
		}
		if !bytes.HasPrefix(line, []byte("From ")) {
			m.err = ErrNotMbox
			return nil, m.err
		}
		m.fromLine = append([]byte(nil), line...)
	}
	if m.fromLine == nil {
		m.err = io.EOF
		return nil, io.EOF
	}
	msg := &Message{}
	msg.From, msg.Date = parseFromLine(m.fromLine, m.loc)
	var (
		out       bytes.Buffer
		uidl      = newPopa3dHash()
		header    = true
		skipping  = false // inside a dropped field (continuation lines go too)
		prevBlank = false // the line before was empty: a "From " may follow
		pending   = false // an empty line held back: the separator, or not
		body      = false // a line came after the end of the header
		dateField string
		status    string
		xstatus   string
		keywords  []string
	)
	m.fromLine = nil
	for {
		line, err := m.readLine()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			m.err = err
			return nil, err
		}
		if prevBlank && bytes.HasPrefix(line, []byte("From ")) {
			m.fromLine = append(m.fromLine[:0], line...)
			break
		}
		if pending {
			out.WriteString("\r\n")
			pending = false
		}
		blank := line[0] == '\n' // popa3d's test: "\r\n" is not empty
		prevBlank = blank
		if !header {
			body = true
		}
		if header {
			uidl.headerLine(line)
			if blank {
				header = false
				skipping = false
			} else if line[0] == ' ' || line[0] == '\t' {
				if skipping {
					continue
				}
			} else {
				skipping = false
				name, value, ok := fieldOf(line)
				switch {
				case !ok:
				case strings.EqualFold(name, "Status"):
					status, skipping = value, true
				case strings.EqualFold(name, "X-Status"):
					xstatus, skipping = value, true
				case strings.EqualFold(name, "X-Keywords"):
					keywords, skipping = append(keywords, strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == ',' })...), true
				case strings.EqualFold(name, "X-UID"), strings.EqualFold(name, "X-IMAP"), strings.EqualFold(name, "X-IMAPbase"):
					skipping = true
				case strings.EqualFold(name, "Date") && dateField == "":
					dateField = value
				}
				if skipping {
					continue
				}
			}
		}
		if blank {
			// Held back: an empty line before a "From " line or the end
			// of the file is the mbox's separator.
			pending = true
			continue
		}
		writeCRLF(&out, m.unquote(line))
	}
	if m.fromLine == nil {
		m.err = io.EOF
	}
	// The empty line before the next "From " (or at the end) is the mbox's
	// separator when the message has a body; as popa3d, the one that ends a
	// header without a body stays the message's.
	if pending && !body {
		out.WriteString("\r\n")
	}
	msg.Data = out.Bytes()
	msg.UIDL = uidl.uidl()
	msg.Flags = statusFlags(status, xstatus)
	for _, k := range keywords {
		if validKeyword(k) {
			msg.Flags = append(msg.Flags, k)
		}
	}
	if msg.Date.IsZero() && dateField != "" {
		if d, err := mail.ParseDate(dateField); err == nil {
			msg.Date = d
		}
	}
	return msg, nil
}

// unquote undoes the "From " quoting of a line.
func (m *MboxReader) unquote(line []byte) []byte {
	if len(line) < 6 || line[0] != '>' {
		return line
	}
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	if !bytes.HasPrefix(line[i:], []byte("From ")) {
		return line
	}
	if m.quoting == MboxO && i != 1 {
		return line
	}
	return line[1:]
}

// writeCRLF writes a line with a CRLF end (a bare LF becomes CRLF; a last
// line without an end gets one).
func writeCRLF(b *bytes.Buffer, line []byte) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	b.Write(line)
	b.WriteString("\r\n")
}

// fieldOf splits a header line "Name: value".
func fieldOf(line []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 || bytes.ContainsAny(line[:i], " \t") {
		return "", "", false
	}
	return string(line[:i]), strings.TrimSpace(string(line[i+1:])), true
}

// statusFlags reads the flags mail readers (mutt, pine, Thunderbird, Dovecot)
// keep in an mbox: Status: R (read) and O (old: not \Recent, which is not
// stored), X-Status: A (answered), F (flagged), T (draft), D (deleted).
func statusFlags(status, xstatus string) []string {
	var f []string
	if strings.ContainsRune(status, 'R') {
		f = append(f, store.FlagSeen)
	}
	for _, c := range []struct {
		r    rune
		flag string
	}{{'A', store.FlagAnswered}, {'F', store.FlagFlagged}, {'T', store.FlagDraft}, {'D', store.FlagDeleted}} {
		if strings.ContainsRune(xstatus, c.r) {
			f = append(f, c.flag)
		}
	}
	return f
}

// validKeyword reports whether k is an IMAP flag keyword (an atom, RFC 9051
// section 9: no specials, no "\").
func validKeyword(k string) bool {
	if k == "" || len(k) > 100 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// fromLineLayouts are the date forms seen on "From " lines: ctime(3), with
// an optional zone name or numeric offset, and without seconds.
var fromLineLayouts = []string{
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04:05 2006 -0700",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04 2006",
}

// parseFromLine returns the sender and the date of a "From sender date"
// line; the date is zero when it cannot be read.
func parseFromLine(line []byte, loc *time.Location) (string, time.Time) {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return "", time.Time{}
	}
	sender := f[1]
	rest := f[2:]
	// "remote from host" (UUCP) trails some lines.
	for i, w := range rest {
		if w == "remote" && i+1 < len(rest) && rest[i+1] == "from" {
			rest = rest[:i]
			break
		}
	}
	s := strings.Join(rest, " ")
	for _, layout := range fromLineLayouts {
		if d, err := time.ParseInLocation(layout, s, loc); err == nil {
			return sender, d
		}
	}
	return sender, time.Time{}
}

// MboxWriter writes messages as an mboxrd file (what MboxReader reads back
// with MboxRD): LF line ends, the flags in Status: and X-Status: (and
// X-Keywords:) at the end of the header.
type MboxWriter struct {
	w   *bufio.Writer
	loc *time.Location
}

// NewMboxWriter writes to w; dates on "From " lines are written in loc (nil:
// time.Local), as ctime(3) writes them.
func NewMboxWriter(w io.Writer, loc *time.Location) *MboxWriter {
	if loc == nil {
		loc = time.Local
	}
	return &MboxWriter{w: bufio.NewWriterSize(w, 64<<10), loc: loc}
}

// Write appends one message (data as stored, CRLF line ends).
func (mw *MboxWriter) Write(data []byte, flags []string, date time.Time, from string) error {
	if from == "" {
		from = returnPath(data)
	}
	if date.IsZero() {
		date = time.Now()
	}
	fmt.Fprintf(mw.w, "From %s %s\n", from, date.In(mw.loc).Format("Mon Jan _2 15:04:05 2006"))
	header := true
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if header && len(line) == 0 {
			mw.writeStatus(flags)
			header = false
		}
		if q := bytes.TrimLeft(line, ">"); bytes.HasPrefix(q, []byte("From ")) {
			mw.w.WriteByte('>')
		}
		mw.w.Write(line)
		mw.w.WriteByte('\n')
	}
	if header {
		mw.writeStatus(flags)
	}
	mw.w.WriteByte('\n') // the empty line before the next "From "
	return nil
}

func (mw *MboxWriter) writeStatus(flags []string) {
	m := &store.MessageInfo{Flags: flags}
	status := "O"
	if m.HasFlag(store.FlagSeen) {
		status = "RO"
	}
	fmt.Fprintf(mw.w, "Status: %s\n", status)
	var x []byte
	for _, c := range []struct {
		b    byte
		flag string
	}{{'A', store.FlagAnswered}, {'F', store.FlagFlagged}, {'T', store.FlagDraft}, {'D', store.FlagDeleted}} {
		if m.HasFlag(c.flag) {
			x = append(x, c.b)
		}
	}
	if len(x) > 0 {
		fmt.Fprintf(mw.w, "X-Status: %s\n", x)
	}
	var kws []string
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) {
			kws = append(kws, f)
		}
	}
	if len(kws) > 0 {
		fmt.Fprintf(mw.w, "X-Keywords: %s\n", strings.Join(kws, " "))
	}
}

// Flush writes what is buffered.
func (mw *MboxWriter) Flush() error { return mw.w.Flush() }

// returnPath is the address of the first Return-Path: field of a message, or
// MAILER-DAEMON (what Sendmail writes for the null sender).
func returnPath(data []byte) string {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(data)
	}
	for _, line := range bytes.Split(data[:end], []byte("\n")) {
		if name, value, ok := fieldOf(line); ok && strings.EqualFold(name, "Return-Path") {
			v := strings.Trim(value, "<> \t\r")
			if v != "" && !strings.ContainsAny(v, " \t") {
				return v
			}
			break
		}
	}
	return "MAILER-DAEMON"
}
