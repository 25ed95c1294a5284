package main

// The sendmail(8) interface: local programs (cron, scripts, PHP's mail())
// hand a message to posthorn as they would to Sendmail. The message is
// written to the drop directory (internal/maildrop), durably, and the running
// server picks it up; sendmail exits 0 only once the message is on disk.
//
// Options follow Sendmail's and Postfix's sendmail(1): getopt style, so they
// may be clustered ("-ti", "-oi", "-fFROM" or "-f FROM"), and they may stand
// among the recipients; "--" ends them.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/maildrop"
	"github.com/posthorn/posthorn/internal/msg"
)

// Exit statuses of sysexits.h that sendmail uses, as Sendmail does.
const (
	exUsage   = 64 // EX_USAGE: bad options, no recipients
	exDataErr = 65 // EX_DATAERR: the message cannot be taken (too big, header too big)
	exNoUser  = 67 // EX_NOUSER: the calling uid has no login name
	exConfig  = 78 // EX_CONFIG: the config file cannot be loaded
	// exitTempFail (75, EX_TEMPFAIL): the drop directory cannot be written.
)

// statusError is an error that exits with its own status.
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func withStatus(code int, format string, args ...any) error {
	return &statusError{code, fmt.Errorf(format, args...)}
}

// maxHeaderBytes bounds the header section sendmail reads into memory (it
// must see all of it before writing: -t takes recipients from it).
const maxHeaderBytes = 1 << 20

// sendmailOpts is what the command line asks for.
type sendmailOpts struct {
	mode       byte // 'm' deliver (-bm, the default), 'i' newaliases (-bi, -I), 'p' mailq (-bp), 's' SMTP on stdin (-bs), 'q' queue run (-q)
	extract    bool // -t
	ignoreDots bool // -i, -oi
	sender     *string
	fullName   *string
	verbose    bool
	config     string
	rcpts      []string
	ignored    []string // options accepted and ignored, for -v
}

// Options that take a value, attached ("-fFROM") or as the next argument;
// and options that take none. Those posthorn has no use for are accepted and
// ignored, as Postfix's sendmail(1) does: -A -B -C -D -L -M -N -O -Q -R -V -X
// -d -e -h -p and -o other than -oi; -G -U -c -m -n -s -x.
const (
	optsWithValue = "ABCDFLMNOQRVXbdefhopr"
	optsFlags     = "GIUcimnstvx"
)

// parseSendmailArgs reads Sendmail's command line.
func parseSendmailArgs(args []string) (*sendmailOpts, error) {
	o := &sendmailOpts{mode: 'm'}
	for i := 0; i < len(args); i++ {
		a := args[i]
		// posthorn's own option, in the forms the other commands take.
		if a == "--config" || a == "-config" {
			if i+1 >= len(args) {
				return nil, withStatus(exUsage, "%s needs a file", a)
			}
			i++
			o.config = args[i]
			continue
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			o.config = v
			continue
		}
		if v, ok := strings.CutPrefix(a, "-config="); ok {
			o.config = v
			continue
		}
		if a == "--" {
			o.rcpts = append(o.rcpts, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "--") {
			return nil, withStatus(exUsage, "unknown option %s", a)
		}
		if a == "-" || !strings.HasPrefix(a, "-") {
			o.rcpts = append(o.rcpts, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			switch {
			case c == 'q':
				// -q[interval]: the value, if any, is attached only.
				o.mode = 'q'
				j = len(a)
			case strings.IndexByte(optsWithValue, c) >= 0:
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						return nil, withStatus(exUsage, "option -%c needs a value", c)
					}
					i++
					v = args[i]
				}
				if err := o.setValue(c, v); err != nil {
					return nil, err
				}
				j = len(a)
			case strings.IndexByte(optsFlags, c) >= 0:
				o.setFlag(c)
			default:
				return nil, withStatus(exUsage, "unknown option -%c", c)
			}
		}
	}
	return o, nil
}

func (o *sendmailOpts) setFlag(c byte) {
	switch c {
	case 't':
		o.extract = true
	case 'i':
		o.ignoreDots = true
	case 'v':
		o.verbose = true
	case 'I':
		o.mode = 'i'
	default:
		o.ignored = append(o.ignored, "-"+string(c))
	}
}

func (o *sendmailOpts) setValue(c byte, v string) error {
	switch c {
	case 'b':
		switch v {
		case "m":
			o.mode = 'm'
		case "i":
			o.mode = 'i'
		case "p":
			o.mode = 'p'
		case "s":
			o.mode = 's'
		default:
			// -bd (daemon), -bt, -bv...: the server does those.
			return withStatus(exUsage, "-b%s is not supported", v)
		}
	case 'f', 'r':
		o.sender = &v
	case 'F':
		o.fullName = &v
	case 'o':
		// -oi (Sendmail's one-letter option i, IgnoreDots), also -oiTrue.
		if strings.HasPrefix(v, "i") {
			if b, ok := parseBool(v[1:]); ok {
				o.ignoreDots = b
				return nil
			}
		}
		o.ignored = append(o.ignored, "-o"+v)
	case 'O':
		// The long form: -OIgnoreDots=true.
		if k, val, _ := strings.Cut(v, "="); strings.EqualFold(k, "IgnoreDots") {
			if b, ok := parseBool(val); ok {
				o.ignoreDots = b
				return nil
			}
		}
		o.ignored = append(o.ignored, "-O"+v)
	default:
		o.ignored = append(o.ignored, "-"+string(c)+v)
	}
	return nil
}

// parseBool reads a Sendmail option's boolean; no value means true.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "", "t", "true", "y", "yes":
		return true, true
	case "f", "false", "n", "no":
		return false, true
	}
	return false, false
}

func runSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parseSendmailArgs(args)
	if err != nil {
		return err
	}
	if o.verbose {
		for _, opt := range o.ignored {
			fmt.Fprintf(stderr, "sendmail: option %s ignored\n", opt)
		}
	}
	var cfgArgs []string
	if o.config != "" {
		cfgArgs = []string{"--config", o.config}
	}
	switch o.mode {
	case 'i':
		return runNewaliases(cfgArgs, stdin, stdout, stderr)
	case 'p':
		return runMailq(cfgArgs, stdin, stdout, stderr)
	case 'q':
		// Sendmail's queue run: posthorn's server runs its queue itself.
		if o.verbose {
			fmt.Fprintln(stderr, "sendmail: -q: the server runs the queue by itself; nothing to do")
		}
		return nil
	}
	if o.mode == 's' {
		cfg, err := config.Load(config.Path(o.config))
		if err != nil {
			return &statusError{exConfig, err}
		}
		u, err := user.LookupId(strconv.Itoa(os.Getuid()))
		if err != nil {
			return withStatus(exNoUser, "no login name for uid %d: %v", os.Getuid(), err)
		}
		return sendmailSMTP(cfg, u, stdin, stdout, stderr)
	}
	// Without -t the recipients must be on the command line; say so before
	// waiting for a message (Sendmail: "Recipient names must be specified").
	if !o.extract && len(o.rcpts) == 0 {
		return withStatus(exUsage, "no recipients: name them, or give -t to take them from the message")
	}
	cfg, err := config.Load(config.Path(o.config))
	if err != nil {
		return &statusError{exConfig, err}
	}
	// The submitter is the real uid: a setuid or environment claim is not
	// looked at, so that the Received: field names who really sent it.
	uid := os.Getuid()
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return withStatus(exNoUser, "no login name for uid %d: %v", uid, err)
	}
	sub := &submission{
		hostname: cfg.Hostname,
		user:     u.Username,
		fullName: gecosName(u.Name),
		opts:     o,
		now:      time.Now(),
	}
	env, message, err := sub.prepare(stdin, cfg.SMTP.MaxMessageBytes)
	if err != nil {
		return err
	}
	dir := maildrop.Dir(cfg.DataDir)
	id, err := maildrop.Write(dir, env, message)
	if err != nil {
		switch {
		case errors.Is(err, errTooBig):
			return withStatus(exDataErr, "message over the limit of %d bytes (smtp.max_message_bytes)", cfg.SMTP.MaxMessageBytes)
		case errors.Is(err, errStdin):
			return &statusError{exDataErr, err}
		}
		// The drop directory is missing (the server never ran) or cannot be
		// written: the caller should try again later.
		if errors.Is(err, fs.ErrNotExist) {
			return &tempError{fmt.Errorf("cannot queue the message: no drop directory %s (the server makes it when it starts)", dir)}
		}
		return &tempError{fmt.Errorf("cannot queue the message in %s: %w", dir, err)}
	}
	if o.verbose {
		fmt.Fprintf(stderr, "sendmail: queued as %s in %s: from <%s> to <%s>; the server delivers it\n",
			id, dir, env.From, strings.Join(env.Recipients, ">, <"))
	}
	return nil
}

// gecosName is the full-name part of a GECOS field, made safe for a header.
func gecosName(s string) string {
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// submission turns the standard input into the drop file's envelope and
// message.
type submission struct {
	hostname string
	user     string
	fullName string // from GECOS; -F wins
	opts     *sendmailOpts
	now      time.Time
}

// errTooBig and errStdin mark errors of the message reader, as opposed to
// those of the drop directory.
var (
	errTooBig = errors.New("message too big")
	errStdin  = errors.New("reading the message")
)

// prepare reads the header section, works out the envelope, and returns the
// message to write: the header (Bcc: removed with -t; From:, Date: and
// Message-ID: added when missing) and the rest of the input, line ends made
// CRLF. The body is streamed, not held in memory.
func (s *submission) prepare(stdin io.Reader, maxBytes int64) (*maildrop.Envelope, io.Reader, error) {
	o := s.opts
	env := &maildrop.Envelope{User: s.user, UID: os.Getuid()}
	// The envelope sender: -f, else the user at this host.
	if o.sender != nil {
		a, null, err := parseSender(*o.sender, s.hostname)
		if err != nil {
			return nil, nil, withStatus(exUsage, "sender %q: %v", *o.sender, err)
		}
		env.From, env.Null = a, null
	} else {
		env.From = qualify(addr.Address{Local: s.user}, s.hostname).String()
	}
	var rcpts []string
	for _, arg := range o.rcpts {
		list, bad := addressList(arg, s.hostname)
		if len(bad) > 0 || len(list) == 0 {
			return nil, nil, withStatus(exUsage, "recipient %q is not an address", arg)
		}
		rcpts = append(rcpts, list...)
	}

	lr := &lineReader{r: bufio.NewReaderSize(stdin, 64<<10), ignoreDots: o.ignoreDots}
	h, err := readHeader(lr, maxHeaderBytes)
	if err != nil {
		return nil, nil, err
	}
	if o.extract {
		rcpts = append(rcpts, h.recipients(s.hostname)...)
	}
	env.Recipients = dedupe(rcpts)
	if len(env.Recipients) == 0 {
		return nil, nil, withStatus(exUsage, "no recipients: none on the command line, none in To:, Cc: or Bcc:")
	}

	var head bytes.Buffer
	for _, f := range h.fields {
		// RFC 5322 section 3.6.3: with -t the Bcc: addresses have been taken,
		// and the field goes, so that no recipient sees the others.
		if o.extract && (f.name == "bcc" || f.name == "resent-bcc") {
			continue
		}
		head.Write(f.raw)
	}
	// RFC 6409 section 8 lets a submission server complete a message; as
	// Postfix's cleanup does for local mail, add what RFC 5322 section 3.6
	// requires (From:, Date:) and Message-ID: (section 3.6.4 "SHOULD").
	if !h.has("from") {
		name := s.fullName
		if o.fullName != nil {
			name = *o.fullName
		}
		// The envelope sender is who the message is from: -f names it.
		from := env.From
		if env.Null {
			from = qualify(addr.Address{Local: s.user}, s.hostname).String()
		}
		fmt.Fprintf(&head, "From: %s\r\n", fromField(cleanName(name), from))
	}
	if !h.has("date") {
		fmt.Fprintf(&head, "Date: %s\r\n", s.now.Format(time.RFC1123Z))
	}
	if !h.has("message-id") {
		fmt.Fprintf(&head, "Message-ID: %s\r\n", messageID(s.now, s.hostname))
	}
	head.WriteString("\r\n")
	if h.firstBody != nil {
		head.Write(h.firstBody)
	}
	body := &capReader{
		r:    &bodyReader{lr: lr},
		left: maxBytes - int64(head.Len()),
	}
	if body.left < 0 {
		return nil, nil, withStatus(exDataErr, "message over the limit of %d bytes (smtp.max_message_bytes)", maxBytes)
	}
	return env, io.MultiReader(&head, body), nil
}

// fromField writes a From: field value: name <address>, the name quoted or
// RFC 2047-encoded as it needs (net/mail does both).
func fromField(name, address string) string {
	if name == "" {
		return address
	}
	return (&mail.Address{Name: name, Address: address}).String()
}

// cleanName makes a full name safe for a header: control characters (a CR
// or LF would start a new field) become spaces.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// messageID returns a new Message-ID (RFC 5322 section 3.6.4): unique by
// time and 64 random bits, on the right this host.
func messageID(now time.Time, hostname string) string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("<%s.%s@%s>", strconv.FormatInt(now.Unix(), 36), hex.EncodeToString(b[:]), hostname)
}

// parseSender reads -f's value: an address (qualified with hostname when it
// has no domain), or "" or "<>" for the null sender.
func parseSender(v, hostname string) (string, bool, error) {
	v = strings.TrimSpace(v)
	if v == "" || v == "<>" {
		return "", true, nil
	}
	list, bad := addressList(v, hostname)
	if len(bad) > 0 || len(list) != 1 {
		return "", false, errors.New("not one address")
	}
	return list[0], false, nil
}

// qualify gives a bare name the host's domain, as Sendmail and Postfix
// (myorigin) do for local mail: "root" is root@hostname.
func qualify(a addr.Address, hostname string) addr.Address {
	if a.Domain == "" {
		a.Domain = hostname
	}
	return a
}

// addressList reads an address list (RFC 5322 section 3.4) as found in To:
// and on Sendmail's command line: mailboxes with or without display names,
// separated by commas; groups ("undisclosed-recipients:;") give their members.
// Unlike RFC 5322 it takes bare local names ("root"), which it qualifies with
// hostname. It returns the addresses as SMTP paths, and the elements that are
// not addresses.
func addressList(s, hostname string) (list, bad []string) {
	for _, el := range splitAddressList(s) {
		got := msg.ParseAddressList(el)
		// The parser is lenient (it reads "a@" as "a"): an "@" must have
		// given a domain.
		if len(got) != 1 || got[0].Mailbox == "" || got[0].Host == "" && hasAt(el) {
			bad = append(bad, el)
			continue
		}
		// The parser unquotes the local part; ParsePath checks what String
		// quotes again, and lower-cases the domain.
		a, err := addr.ParsePath(addr.Address{Local: got[0].Mailbox, Domain: got[0].Host}.String(), false)
		if err != nil {
			bad = append(bad, el)
			continue
		}
		list = append(list, qualify(a, hostname).String())
	}
	return list, bad
}

// splitAddressList cuts an address list into its mailboxes: at commas, and at
// the ":" and ";" of groups (the group's name is dropped), but not inside
// quoted strings, comments or angle brackets (where a source route has ":").
func splitAddressList(s string) []string {
	var out []string
	start, depth, angle, quoted := 0, 0, false, false
	cut := func(end int) {
		if el := strings.TrimSpace(s[start:end]); el != "" {
			out = append(out, el)
		}
		start = end + 1
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			i++
		case quoted:
			quoted = c != '"'
		case depth > 0:
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '"':
			quoted = true
		case c == '(':
			depth = 1
		case angle:
			angle = c != '>'
		case c == '<':
			angle = true
		case c == ',' || c == ';':
			cut(i)
		case c == ':':
			start = i + 1 // a group's name
		}
	}
	cut(len(s))
	return out
}

// hasAt reports whether s has an "@" outside quoted strings and comments.
func hasAt(s string) bool {
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++
		case quoted:
			quoted = c != '"'
		case c == '(':
			depth++
		case depth > 0:
			if c == ')' {
				depth--
			}
		case c == '"':
			quoted = true
		case c == '@':
			return true
		}
	}
	return false
}

// header is the header section of the input.
type header struct {
	fields []field
	// firstBody is a line that ended the header section without an empty
	// line before it (a message without a header, say): it is the body's
	// first line, and an empty line goes before it.
	firstBody []byte
}

type field struct {
	name string // lower-case
	raw  []byte // the field's lines, continuation lines included, CRLF
}

func (h *header) has(name string) bool {
	for _, f := range h.fields {
		if f.name == name {
			return true
		}
	}
	return false
}

// recipients are the addresses -t takes: those of Resent-To:, Resent-Cc:
// and Resent-Bcc: when the message has any (it is being resent, RFC 5322
// section 3.6.6), else those of To:, Cc: and Bcc:. What is not an address is
// passed over, as Sendmail does.
func (h *header) recipients(hostname string) []string {
	names := []string{"to", "cc", "bcc"}
	if h.has("resent-to") || h.has("resent-cc") || h.has("resent-bcc") {
		names = []string{"resent-to", "resent-cc", "resent-bcc"}
	}
	var out []string
	for _, f := range h.fields {
		for _, n := range names {
			if f.name == n {
				list, _ := addressList(f.value(), hostname)
				out = append(out, list...)
			}
		}
	}
	return out
}

// value is the field's body, unfolded (RFC 5322 section 2.2.3).
func (f *field) value() string {
	_, v, _ := bytes.Cut(f.raw, []byte(":"))
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	return string(v)
}

// fieldName returns the lower-case name of a header field line (RFC 5322
// section 3.6.8: printable ASCII but ":"; obsolete syntax allows blanks
// before the colon), or "" when the line is not one.
func fieldName(line []byte) string {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return ""
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return ""
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return ""
		}
	}
	return strings.ToLower(string(name))
}

// readHeader reads the header section: the fields up to an empty line, or up
// to the first line that is not a field (kept as the body's first line). A
// leading "From " line (an mbox separator) is dropped, as Sendmail does.
func readHeader(lr *lineReader, limit int) (*header, error) {
	h := &header{}
	size := 0
	for first := true; ; first = false {
		piece, partial, err := lr.next()
		if err == io.EOF {
			return h, nil
		}
		if err != nil {
			return nil, &statusError{exDataErr, fmt.Errorf("%w: %v", errStdin, err)}
		}
		cont := len(h.fields) > 0 && (piece[0] == ' ' || piece[0] == '\t')
		name := ""
		if !cont {
			name = fieldName(piece)
		}
		isFrom := first && bytes.HasPrefix(piece, []byte("From "))
		if !cont && name == "" && !isFrom {
			if string(piece) != "\r\n" {
				// Not a field: the body begins here, without an empty line.
				// When partial, the rest of the line comes through the body reader.
				h.firstBody = bytes.Clone(piece)
			}
			return h, nil
		}
		// A field (or continuation, or From_ line): all of its line, however long.
		line := bytes.Clone(piece)
		for partial {
			piece, partial, err = lr.next()
			if err != nil && err != io.EOF {
				return nil, &statusError{exDataErr, fmt.Errorf("%w: %v", errStdin, err)}
			}
			line = append(line, piece...)
			if err == io.EOF || len(line)+size > limit {
				break
			}
		}
		size += len(line)
		if size > limit {
			return nil, withStatus(exDataErr, "header section over %d bytes", limit)
		}
		switch {
		case isFrom:
		case cont:
			last := &h.fields[len(h.fields)-1]
			last.raw = append(last.raw, line...)
		default:
			h.fields = append(h.fields, field{name: name, raw: line})
		}
	}
}

// lineReader reads the message from standard input with CRLF line ends,
// whether the input has CRLF or LF, in pieces: whole lines, or parts of lines
// longer than its buffer. Without ignoreDots a line holding only "." ends the
// input, as in Sendmail; the end of the input does too.
type lineReader struct {
	r          *bufio.Reader
	ignoreDots bool
	midLine    bool // the last piece was not the end of its line
	heldCR     bool // a CR ended the last piece: it may be the start of CRLF
	done       bool
	buf        []byte
}

// next returns the next piece and whether it is only part of a line (more
// of the line follows). The piece is valid until the next call.
func (l *lineReader) next() ([]byte, bool, error) {
	if l.done {
		return nil, false, io.EOF
	}
	b, err := l.r.ReadSlice('\n')
	l.buf = l.buf[:0]
	if l.heldCR {
		l.buf = append(l.buf, '\r')
		l.heldCR = false
	}
	switch {
	case err == nil || errors.Is(err, io.EOF):
		if err != nil {
			l.done = true
			if len(b) == 0 && len(l.buf) == 0 && !l.midLine {
				return nil, false, io.EOF
			}
		} else {
			b = b[:len(b)-1] // the LF
		}
		l.buf = append(l.buf, b...)
		// One CR before the LF (or the end) is part of the line end.
		l.buf = bytes.TrimSuffix(l.buf, []byte("\r"))
		wasMid := l.midLine
		l.midLine = false
		if !wasMid && !l.ignoreDots && len(l.buf) == 1 && l.buf[0] == '.' {
			l.done = true
			return nil, false, io.EOF
		}
		l.buf = append(l.buf, '\r', '\n')
		return l.buf, false, nil
	case errors.Is(err, bufio.ErrBufferFull):
		l.buf = append(l.buf, b...)
		// A CR at the end may be the first half of a CRLF split across pieces.
		if l.buf[len(l.buf)-1] == '\r' {
			l.buf = l.buf[:len(l.buf)-1]
			l.heldCR = true
		}
		l.midLine = true
		return l.buf, true, nil
	default:
		return nil, false, err
	}
}

// bodyReader is the rest of the input after the header section, as a Reader.
type bodyReader struct {
	lr      *lineReader
	pending []byte
}

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		piece, _, err := b.lr.next()
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %v", errStdin, err)
		}
		b.pending = piece
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// capReader fails with errTooBig once more than left bytes have been read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, errTooBig
	}
	return n, err
}
