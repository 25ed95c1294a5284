package smtpc

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Reply is an SMTP reply: its code, the enhanced status code when the server
// gave one (RFC 3463), and its text (lines joined by a space).
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

func (r Reply) String() string {
	if r.Enhanced != "" {
		return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

// Status is the enhanced status code of the reply, or one made from its class
// when the server gave none (RFC 3463 section 3: X.0.0).
func (r Reply) Status() string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	return fmt.Sprintf("%d.0.0", r.Code/100)
}

// Maximum sizes of what a server may send us: RFC 5321 section 4.5.3.1.5
// allows reply lines of 512 octets; we take twice that, and bound the number of
// lines so that a hostile server cannot make us buffer without end.
const (
	maxReplyLine  = 2048
	maxReplyLines = 100
	maxReplyText  = 1000 // what we keep of a reply's text for logs and bounces
)

var errReplyTooLong = errors.New("smtpc: reply too long")

// session is one SMTP connection: the reply reader and command writer.
type session struct {
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	host    string            // the server's name (MX host or address), for logs and Remote-MTA
	ext     map[string]string // EHLO keywords (upper case) and their parameters
	tls     bool
	verify  string // "verified", "unverified" or "" (no TLS)
	timeout time.Duration
	// dirty is set while a transaction is open: the next one starts with RSET.
	dirty bool
}

func newSession(conn net.Conn, host string, timeout time.Duration) *session {
	return &session{
		conn:    conn,
		br:      bufio.NewReaderSize(conn, 4096),
		bw:      bufio.NewWriterSize(conn, 16384),
		host:    host,
		timeout: timeout,
	}
}

// readReply reads one possibly multi-line reply (RFC 5321 section 4.2.1).
func (s *session) readReply(timeout time.Duration) (Reply, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	var r Reply
	var text strings.Builder
	for n := 0; ; n++ {
		line, err := s.readLine()
		if err != nil {
			return Reply{}, err
		}
		if n >= maxReplyLines {
			return Reply{}, errReplyTooLong
		}
		if len(line) < 3 {
			return Reply{}, fmt.Errorf("smtpc: malformed reply %q", clip(line))
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || n > 0 && code != r.Code {
			return Reply{}, fmt.Errorf("smtpc: malformed reply %q", clip(line))
		}
		r.Code = code
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 3 && line[3] != '-' && line[3] != ' ' {
			return Reply{}, fmt.Errorf("smtpc: malformed reply %q", clip(line))
		}
		rest := ""
		if len(line) > 4 {
			rest = line[4:]
		}
		// The enhanced code is taken from the first line; the same code
		// repeated on the others is not part of the text.
		if enh, after, ok := cutEnhanced(rest, code); ok && (n == 0 || enh == r.Enhanced) {
			r.Enhanced, rest = enh, after
		}
		if text.Len() < maxReplyText {
			if text.Len() > 0 {
				text.WriteByte('\n')
			}
			text.WriteString(rest)
		}
		if !more {
			break
		}
	}
	r.Text = text.String()
	return r, nil
}

// cutEnhanced splits "5.1.1 text" into the code and the text when the code's
// class matches the reply's (RFC 3463 section 2).
func cutEnhanced(s string, code int) (string, string, bool) {
	word, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return "", s, false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 {
			return "", s, false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return "", s, false
			}
		}
	}
	return word, rest, true
}

func (s *session) readLine() (string, error) {
	var line []byte
	for {
		chunk, isPrefix, err := s.br.ReadLine()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		line = append(line, chunk...)
		if len(line) > maxReplyLine {
			return "", errReplyTooLong
		}
		if !isPrefix {
			return string(line), nil
		}
	}
}

// write queues a command line; flush sends what is queued.
func (s *session) write(line string) {
	s.bw.WriteString(line)
	s.bw.WriteString("\r\n")
}

func (s *session) flush() error {
	s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	return s.bw.Flush()
}

// cmd sends one command and reads its reply.
func (s *session) cmd(line string) (Reply, error) {
	s.write(line)
	if err := s.flush(); err != nil {
		return Reply{}, err
	}
	return s.readReply(s.timeout)
}

// hello sends EHLO, and HELO when the server does not know EHLO; it records
// the extensions.
func (s *session) hello(name string) error {
	r, err := s.cmd("EHLO " + name)
	if err != nil {
		return err
	}
	if r.Code == 250 {
		s.ext = map[string]string{}
		lines := strings.Split(r.Text, "\n")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
			s.ext[strings.ToUpper(k)] = v
		}
		return nil
	}
	if r.Code >= 500 && r.Code <= 504 {
		r, err = s.cmd("HELO " + name)
		if err != nil {
			return err
		}
		if r.Code == 250 {
			s.ext = map[string]string{}
			return nil
		}
	}
	return &ReplyError{Stage: "EHLO", Reply: r}
}

func (s *session) has(ext string) bool {
	_, ok := s.ext[ext]
	return ok
}

// startTLS upgrades the connection (RFC 3207) and says EHLO again, since the
// server forgets what it knew (section 4.2).
func (s *session) startTLS(cfg *tls.Config, name string) error {
	r, err := s.cmd("STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return &ReplyError{Stage: "STARTTLS", Reply: r}
	}
	if s.br.Buffered() > 0 {
		// Bytes the server sent before the handshake could be an injection
		// (the CVE-2011-0411 class): never read them as replies.
		return errors.New("smtpc: server sent data after its STARTTLS reply")
	}
	tc := tls.Client(s.conn, cfg)
	tc.SetDeadline(time.Now().Add(s.timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	s.conn = tc
	s.br.Reset(tc)
	s.bw.Reset(tc)
	s.tls = true
	s.ext = nil
	return s.hello(name)
}

// auth logs in with PLAIN (RFC 4616), or LOGIN when that is all the server
// offers. Only called on a TLS connection.
func (s *session) auth(user, password string) error {
	mechs := strings.Fields(strings.ToUpper(s.ext["AUTH"]))
	offers := func(m string) bool {
		for _, x := range mechs {
			if x == m {
				return true
			}
		}
		return false
	}
	switch {
	case offers("PLAIN"):
		resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
		r, err := s.cmd("AUTH PLAIN " + resp)
		if err != nil {
			return err
		}
		if r.Code == 334 { // a server that wants the response on its own line
			r, err = s.cmd(resp)
			if err != nil {
				return err
			}
		}
		if r.Code != 235 {
			return &ReplyError{Stage: "AUTH", Reply: r}
		}
		return nil
	case offers("LOGIN"):
		r, err := s.cmd("AUTH LOGIN")
		if err != nil {
			return err
		}
		for _, v := range []string{user, password} {
			if r.Code != 334 {
				return &ReplyError{Stage: "AUTH", Reply: r}
			}
			if r, err = s.cmd(base64.StdEncoding.EncodeToString([]byte(v))); err != nil {
				return err
			}
		}
		if r.Code != 235 {
			return &ReplyError{Stage: "AUTH", Reply: r}
		}
		return nil
	}
	return fmt.Errorf("smtpc: %s offers neither AUTH PLAIN nor LOGIN", s.host)
}

func (s *session) quit() {
	s.write("QUIT")
	if s.flush() == nil {
		s.readReply(5 * time.Second)
	}
	s.conn.Close()
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
