package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/netserve"
	"github.com/posthorn/posthorn/internal/store"
)

// The states of a session (RFC 1939 section 3). UPDATE is the QUIT command
// of the TRANSACTION state and needs no state of its own.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// message is one message of the maildrop as the session numbers it.
type message struct {
	uid     uint32
	size    int64
	deleted bool   // marked by DELE
	uidl    string // kept from the old POP3 server by an import, or ""
}

// session is one POP3 connection.
type session struct {
	srv   *Server
	raw   net.Conn // the socket
	conn  net.Conn // under br and bw: the socket with deadlines, or TLS over it
	br    *bufio.Reader
	bw    *bufio.Writer
	ip    netip.Addr
	tls   bool
	start time.Time

	stop    atomic.Bool // set by shutdown: the next read ends at once
	mu      sync.Mutex
	busy    bool // inside a command: shutdown lets it finish
	closing bool

	state  state
	user   string // from USER, until PASS
	acct   *store.Account
	mbox   *store.Mailbox
	msgs   []message
	errors int
	quit   bool
	ended  string // how the session ended, for the log line
	ra     *readAhead

	retrieved, deleted int
	retrievedBytes     int64
	msgReader          *bufio.Reader // reused for every RETR and TOP
}

func newSession(s *Server, nc net.Conn, ip netip.Addr) *session {
	c := &session{srv: s, raw: nc, ip: ip, start: time.Now()}
	c.setConn(nc)
	return c
}

// setConn puts the reader and writer over nc (the socket, or TLS over it).
// Anything the old reader held is dropped with it.
func (c *session) setConn(nc net.Conn) {
	c.conn = &netserve.DeadlineConn{Conn: nc, Timeout: c.srv.IdleTimeout, Stopped: &c.stop}
	c.br = bufio.NewReaderSize(c.conn, 1024)
	c.bw = bufio.NewWriterSize(c.conn, 32<<10)
}

// shutdown is called by Server.Shutdown: an idle session is woken to say
// goodbye, a busy one finishes its command first.
func (c *session) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	c.stop.Store(true)
	if !c.busy {
		c.raw.SetReadDeadline(time.Now())
	}
}

func (c *session) setBusy(b bool) (closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = b
	return c.closing
}

func (c *session) client() auth.Client {
	return auth.Client{Addr: c.ip, TLS: c.tls, Service: "pop3"}
}

func (c *session) serve(implicitTLS bool) {
	defer func() {
		c.stopReadAhead()
		// The maildrop is free before the client reads the answer to QUIT,
		// so that it can log in again at once.
		if c.acct != nil {
			c.srv.unlock(c.acct.ID)
		}
		c.bw.Flush()
		c.conn.Close()
		c.logEnd()
	}()
	if implicitTLS {
		tc := tls.Server(c.raw, c.srv.TLSConfig)
		tc.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.Handshake(); err != nil {
			c.ended = "TLS handshake failed"
			c.srv.Log.Debug("pop3 TLS handshake failed", "ip", netserve.IPString(c.ip), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		c.setConn(tc)
		c.tls = true
	}
	// No APOP timestamp: posthorn keeps no password in clear, which APOP
	// needs (RFC 1939 section 7).
	c.reply("+OK %s POP3 server ready", c.srv.Hostname)
	c.bw.Flush()
	for {
		line, err := c.readLine(maxCommandLine)
		switch {
		case errors.Is(err, errLineTooLong):
			c.fail("-ERR Command line too long (at most 255 octets)")
		case err != nil:
			c.readFailed(err)
			return
		default:
			if c.setBusy(true) {
				c.reply("-ERR [SYS/TEMP] Server shutting down")
				c.ended = "shutdown"
				return
			}
			failed := c.errors
			c.command(line)
			if c.errors > failed {
				commandResults.Of("err").Inc()
			} else {
				commandResults.Of("ok").Inc()
			}
			c.setBusy(false)
		}
		if c.quit {
			return
		}
		// PIPELINING (RFC 2449 section 6.6): answers to commands sent
		// together go out together.
		if c.br.Buffered() == 0 {
			if err := c.bw.Flush(); err != nil {
				c.ended = "write failed"
				return
			}
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads a line, without its line end (CRLF, or a bare LF from a
// lenient client), of at most max octets with the line end. A longer one is
// read to its end and thrown away (errLineTooLong), up to maxDiscard octets,
// after which the connection is given up.
func (c *session) readLine(max int) (string, error) {
	var buf []byte
	n := 0
	for {
		piece, err := c.br.ReadSlice('\n')
		n += len(piece)
		if n <= max {
			if buf == nil && err == nil {
				return trimEOL(piece), nil // the usual case: one piece
			}
			buf = append(buf, piece...)
		} else if n > maxDiscard {
			return "", fmt.Errorf("line of more than %d octets", maxDiscard)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	if n > max {
		return "", errLineTooLong
	}
	return trimEOL(buf), nil
}

func trimEOL(b []byte) string {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return string(b)
}

// readFailed ends the session after a failed read: the client went away,
// was idle too long, or the server is shutting down. No UPDATE state: marked
// messages stay (RFC 1939 section 6).
func (c *session) readFailed(err error) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	var ne net.Error
	switch {
	case closing:
		c.ended = "shutdown"
		c.reply("-ERR [SYS/TEMP] Server shutting down")
	case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
		c.ended = "idle timeout"
		c.reply("-ERR Disconnected for inactivity")
	case errors.Is(err, io.EOF):
		c.ended = "dropped"
	default:
		c.ended = "read failed"
	}
}

func (c *session) reply(format string, args ...any) {
	fmt.Fprintf(c.bw, format, args...)
	c.bw.WriteString("\r\n")
}

// fail answers a failed command and counts it; after MaxErrors of them the
// session is closed.
func (c *session) fail(text string) {
	c.bw.WriteString(text)
	c.bw.WriteString("\r\n")
	c.errors++
	if c.errors >= c.srv.MaxErrors {
		c.reply("-ERR Too many failed commands, closing the connection")
		c.ended = "too many errors"
		c.quit = true
	}
}

func (c *session) command(line string) {
	cmd, err := parseCommand(line)
	if err != nil {
		c.fail("-ERR " + err.Error())
		return
	}
	// Commands of each state (RFC 1939 sections 4 and 5, RFC 2449, RFC
	// 2595, RFC 5034). CAPA and QUIT are valid in both.
	switch cmd.keyword {
	case "CAPA":
		c.cmdCapa(cmd)
		return
	case "QUIT":
		c.cmdQuit(cmd)
		return
	}
	if c.state == stateAuthorization {
		switch cmd.keyword {
		case "USER":
			c.cmdUser(cmd)
		case "PASS":
			c.cmdPass(cmd)
		case "AUTH":
			c.cmdAuth(cmd)
		case "STLS":
			c.cmdStls(cmd)
		case "APOP":
			c.fail("-ERR APOP is not supported; use USER/PASS or AUTH")
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			c.fail("-ERR Log in first")
		default:
			c.fail("-ERR Unknown command")
		}
		return
	}
	switch cmd.keyword {
	case "STAT":
		c.cmdStat(cmd)
	case "LIST":
		c.cmdList(cmd)
	case "UIDL":
		c.cmdUidl(cmd)
	case "RETR":
		c.cmdRetr(cmd)
	case "TOP":
		c.cmdTop(cmd)
	case "DELE":
		c.cmdDele(cmd)
	case "NOOP":
		if _, err := cmd.args(0, 0); err != nil {
			c.fail("-ERR NOOP takes no argument")
			return
		}
		c.reply("+OK")
	case "RSET":
		c.cmdRset(cmd)
	case "USER", "PASS", "AUTH", "APOP", "STLS":
		c.fail("-ERR Already logged in")
	default:
		c.fail("-ERR Unknown command")
	}
}

// cmdCapa lists the capabilities (RFC 2449 section 5). Those for logging in
// are listed in the AUTHORIZATION state only.
func (c *session) cmdCapa(cmd command) {
	if _, err := cmd.args(0, 0); err != nil {
		c.fail("-ERR CAPA takes no argument")
		return
	}
	c.reply("+OK Capability list follows")
	c.reply("TOP")
	c.reply("UIDL")
	c.reply("RESP-CODES")
	c.reply("AUTH-RESP-CODE")
	c.reply("PIPELINING")
	if c.state == stateAuthorization {
		if c.srv.TLSConfig != nil && !c.tls {
			c.reply("STLS")
		}
		// RFC 2595 section 4 and RFC 2449 section 6.9: USER is offered
		// where a password may be sent whole.
		if c.srv.Auth.PlaintextAllowed(c.client()) {
			c.reply("USER")
		}
		c.reply("SASL %s", strings.Join(c.srv.Auth.Mechanisms(c.client()), " "))
	}
	c.reply("EXPIRE NEVER")
	c.reply("IMPLEMENTATION posthorn")
	c.reply(".")
}

// refusePlaintext is the answer to a password sent, or about to be sent, in
// clear where the plain-text rule forbids it.
const refusePlaintext = "-ERR [AUTH] Passwords are not accepted on an unencrypted connection: use STLS first, or port 995"

func (c *session) cmdUser(cmd command) {
	c.user = ""
	if !c.srv.Auth.PlaintextAllowed(c.client()) {
		// Refused before the client sends the password (RFC 2595 section 4
		// lets a server refuse USER/PASS without TLS).
		c.fail(refusePlaintext)
		return
	}
	if cmd.rest == "" || len(cmd.rest) > 255 {
		c.fail("-ERR USER needs a user name")
		return
	}
	c.user = cmd.rest
	// The same answer for every name: it must not tell which accounts exist.
	c.reply("+OK Send your password")
}

func (c *session) cmdPass(cmd command) {
	user := c.user
	c.user = ""
	if user == "" {
		c.fail("-ERR USER first")
		return
	}
	if cmd.rest == "" {
		c.fail("-ERR PASS needs a password")
		return
	}
	acct, err := c.srv.Auth.CheckPassword(c.srv.ctx, c.client(), user, cmd.rest)
	if err != nil {
		c.authFailed(err)
		return
	}
	c.loggedIn(acct)
}

// cmdAuth runs a SASL exchange (RFC 5034 section 4): "AUTH mechanism
// [initial-response]", "+ challenge" lines answered by the client, "*" to
// cancel. AUTH alone lists the mechanisms, as clients of RFC 1734 ask.
func (c *session) cmdAuth(cmd command) {
	f := strings.Fields(cmd.rest)
	if len(f) == 0 {
		c.reply("+OK Mechanisms follow")
		for _, m := range c.srv.Auth.Mechanisms(c.client()) {
			c.reply("%s", m)
		}
		c.reply(".")
		return
	}
	if len(f) > 2 || len(f[0]) > maxArgLen {
		c.fail("-ERR Usage: AUTH mechanism [initial-response]")
		return
	}
	m, err := c.srv.Auth.Start(c.srv.ctx, c.client(), f[0])
	if err != nil {
		c.authFailed(err)
		return
	}
	var resp []byte // nil: no initial response
	if len(f) == 2 {
		if resp, err = auth.DecodeResponse(f[1]); err != nil {
			c.authFailed(err)
			return
		}
	}
	for {
		challenge, done, err := m.Next(resp)
		if err != nil {
			c.authFailed(err)
			return
		}
		if done {
			c.loggedIn(m.Account())
			return
		}
		c.bw.WriteString("+ ")
		c.bw.WriteString(base64.StdEncoding.EncodeToString(challenge))
		c.bw.WriteString("\r\n")
		if err := c.bw.Flush(); err != nil {
			c.quit, c.ended = true, "write failed"
			return
		}
		line, err := c.readLine(maxResponseLine)
		if errors.Is(err, errLineTooLong) {
			c.fail("-ERR Response too long")
			return
		}
		if err != nil {
			c.readFailed(err)
			c.quit = true
			return
		}
		if resp, err = auth.DecodeResponse(line); err != nil {
			c.authFailed(err)
			return
		}
	}
}

// authFailed answers a failed login as internal/auth's package comment says.
func (c *session) authFailed(err error) {
	switch {
	case errors.Is(err, auth.ErrMismatch):
		c.fail("-ERR [AUTH] Authentication failed")
	case errors.Is(err, auth.ErrEncryptionRequired):
		c.fail(refusePlaintext)
	case errors.Is(err, auth.ErrThrottled):
		c.fail("-ERR [SYS/TEMP] Too many failed logins; try again later")
	case errors.Is(err, auth.ErrCanceled):
		c.fail("-ERR Authentication canceled")
	case errors.Is(err, auth.ErrMalformed):
		c.fail("-ERR Malformed authentication exchange")
	case errors.Is(err, auth.ErrUnsupported):
		c.fail("-ERR Unsupported SASL mechanism")
	default:
		c.srv.Log.Error("pop3 login", "ip", netserve.IPString(c.ip), "err", err)
		c.fail("-ERR [SYS/TEMP] Cannot check the login now; try again later")
	}
}

// loggedIn takes the maildrop's lock and its snapshot, and enters the
// TRANSACTION state (RFC 1939 section 4).
func (c *session) loggedIn(acct *store.Account) {
	if acct == nil {
		c.fail("-ERR [AUTH] Authentication failed")
		return
	}
	if !c.srv.lock(acct.ID) {
		// RFC 2449 section 8.1.2: the password was right, the maildrop is
		// busy. Not counted as a failed command: the client tries later.
		c.reply("-ERR [IN-USE] Your maildrop is in use by another session; try again later")
		return
	}
	// Store reads are local and short: not cut by a shutdown.
	ctx := context.Background()
	mb, err := c.srv.Store.GetMailbox(ctx, acct.ID, store.Inbox)
	var infos []store.MessageInfo
	if err == nil {
		infos, err = c.srv.Store.ListMessages(ctx, mb.ID, 0, false)
	}
	if err != nil {
		c.srv.unlock(acct.ID)
		c.srv.Log.Error("pop3 opening the maildrop", "user", acct.Name, "err", err)
		c.reply("-ERR [SYS/TEMP] Cannot open your maildrop now; try again later")
		return
	}
	c.acct, c.mbox, c.state = acct, mb, stateTransaction
	c.msgs = make([]message, len(infos))
	for i, m := range infos {
		c.msgs[i] = message{uid: m.UID, size: m.Size, uidl: m.POP3UIDL}
	}
	n, size := c.stat()
	c.reply("+OK %s has %d messages (%d octets)", acct.Name, n, size)
}

func (c *session) cmdStls(cmd command) {
	switch {
	case c.srv.TLSConfig == nil:
		c.fail("-ERR STLS is not available")
		return
	case c.tls:
		c.fail("-ERR Already using TLS")
		return
	case cmd.rest != "":
		c.fail("-ERR STLS takes no argument")
		return
	}
	if n := c.br.Buffered(); n > 0 {
		// Commands pipelined after STLS came in clear before the handshake:
		// they are thrown away with the old reader, never run inside TLS
		// (CVE-2011-0411; RFC 2595 section 4 does not allow them).
		c.srv.Log.Warn("pop3 plaintext pipelined after STLS dropped", "ip", netserve.IPString(c.ip), "bytes", n)
	}
	c.reply("+OK Begin TLS negotiation")
	if err := c.bw.Flush(); err != nil {
		c.quit, c.ended = true, "write failed"
		return
	}
	tc := tls.Server(c.raw, c.srv.TLSConfig)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.srv.Log.Info("pop3 TLS handshake failed", "ip", netserve.IPString(c.ip), "err", err)
		c.quit, c.ended = true, "TLS handshake failed"
		return
	}
	tc.SetDeadline(time.Time{})
	c.setConn(tc)
	c.tls = true
	c.user = "" // RFC 2595 section 4: start afresh
}

// stat counts the messages not marked deleted and their size.
func (c *session) stat() (int, int64) {
	n, size := 0, int64(0)
	for _, m := range c.msgs {
		if !m.deleted {
			n++
			size += m.size
		}
	}
	return n, size
}

func (c *session) cmdStat(cmd command) {
	if _, err := cmd.args(0, 0); err != nil {
		c.fail("-ERR STAT takes no argument")
		return
	}
	n, size := c.stat()
	c.reply("+OK %d %d", n, size)
}

// pick finds the message named by a message-number argument; ok is false
// after an answer was given.
func (c *session) pick(arg string) (int, bool) {
	n, err := parseNumber(arg, false)
	if err != nil {
		c.fail("-ERR Invalid message number")
		return 0, false
	}
	if n > len(c.msgs) {
		c.fail("-ERR No such message")
		return 0, false
	}
	if c.msgs[n-1].deleted {
		c.fail("-ERR Message " + strconv.Itoa(n) + " is deleted")
		return 0, false
	}
	return n, true
}

func (c *session) cmdList(cmd command) {
	a, err := cmd.args(0, 1)
	if err != nil {
		c.fail("-ERR Usage: LIST [message]")
		return
	}
	if len(a) == 1 {
		if n, ok := c.pick(a[0]); ok {
			c.reply("+OK %d %d", n, c.msgs[n-1].size)
		}
		return
	}
	count, size := c.stat()
	c.reply("+OK %d messages (%d octets)", count, size)
	for i, m := range c.msgs {
		if !m.deleted {
			c.reply("%d %d", i+1, m.size)
		}
	}
	c.reply(".")
}

// uidl is a message's unique-id (RFC 1939 section 7): the mailbox's
// UIDVALIDITY and the message's UID, which together never name another
// message in this mailbox, across sessions and restarts. A message imported
// from another POP3 server keeps the unique-id that server gave it (posthorn
// import), so that clients do not download it again.
func (c *session) uidl(m message) string {
	if validUIDL(m.uidl) {
		return m.uidl
	}
	return strconv.FormatUint(uint64(c.mbox.UIDValidity), 10) + "." + strconv.FormatUint(uint64(m.uid), 10)
}

// validUIDL reports whether s can be sent as a unique-id: 1 to 70
// characters in the range 0x21 to 0x7E (RFC 1939 section 7).
func validUIDL(s string) bool {
	if len(s) == 0 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (c *session) cmdUidl(cmd command) {
	a, err := cmd.args(0, 1)
	if err != nil {
		c.fail("-ERR Usage: UIDL [message]")
		return
	}
	if len(a) == 1 {
		if n, ok := c.pick(a[0]); ok {
			c.reply("+OK %d %s", n, c.uidl(c.msgs[n-1]))
		}
		return
	}
	c.reply("+OK Unique-id listing follows")
	for i, m := range c.msgs {
		if !m.deleted {
			c.reply("%d %s", i+1, c.uidl(m))
		}
	}
	c.reply(".")
}

func (c *session) cmdRetr(cmd command) {
	a, err := cmd.args(1, 1)
	if err != nil {
		c.fail("-ERR Usage: RETR message")
		return
	}
	if n, ok := c.pick(a[0]); ok {
		c.send(n, -1)
	}
}

func (c *session) cmdTop(cmd command) {
	a, err := cmd.args(2, 2)
	if err != nil {
		c.fail("-ERR Usage: TOP message lines")
		return
	}
	lines, err := parseNumber(a[1], true)
	if err != nil {
		c.fail("-ERR Invalid number of lines")
		return
	}
	if n, ok := c.pick(a[0]); ok {
		c.send(n, lines)
	}
}

// send answers RETR (bodyLines < 0) and TOP.
func (c *session) send(n, bodyLines int) {
	m := c.msgs[n-1]
	var r io.ReadCloser
	var err error
	if data := c.takeReadAhead(n); data != nil {
		r = io.NopCloser(bytes.NewReader(data))
	} else {
		r, err = c.srv.Store.OpenMessage(context.Background(), c.mbox.ID, m.uid)
	}
	if errors.Is(err, store.ErrNotFound) {
		// Expunged meanwhile through IMAP or the webmail. Not the client's
		// fault: not counted.
		c.reply("-ERR Message %d is no longer in the maildrop: it was removed by another session", n)
		return
	}
	if err != nil {
		c.srv.Log.Error("pop3 opening a message", "user", c.acct.Name, "uid", m.uid, "err", err)
		c.reply("-ERR [SYS/TEMP] Cannot read message %d now", n)
		return
	}
	defer r.Close()
	if bodyLines < 0 {
		c.reply("+OK %d octets", m.size)
	} else {
		c.reply("+OK Top of message follows")
	}
	if c.msgReader == nil {
		c.msgReader = bufio.NewReaderSize(r, 16<<10)
	} else {
		c.msgReader.Reset(r)
	}
	err = writeMessage(c.bw, c.msgReader, bodyLines)
	c.msgReader.Reset(nil)
	if err != nil {
		// The +OK is out: the only way to tell the client something went
		// wrong is to end the connection before the termination line.
		c.srv.Log.Error("pop3 sending a message", "user", c.acct.Name, "uid", m.uid, "err", err)
		c.quit, c.ended = true, "write failed"
		c.bw.Reset(io.Discard)
		return
	}
	if bodyLines < 0 {
		c.retrieved++
		c.retrievedBytes += m.size
	}
	if c.ra == nil {
		c.startReadAhead(n + 1)
	}
}

func (c *session) cmdDele(cmd command) {
	a, err := cmd.args(1, 1)
	if err != nil {
		c.fail("-ERR Usage: DELE message")
		return
	}
	if n, ok := c.pick(a[0]); ok {
		c.msgs[n-1].deleted = true
		c.reply("+OK Message %d deleted", n)
	}
}

func (c *session) cmdRset(cmd command) {
	if _, err := cmd.args(0, 0); err != nil {
		c.fail("-ERR RSET takes no argument")
		return
	}
	for i := range c.msgs {
		c.msgs[i].deleted = false
	}
	n, size := c.stat()
	c.reply("+OK Maildrop has %d messages (%d octets)", n, size)
}

// cmdQuit ends the session; in the TRANSACTION state it enters UPDATE and
// expunges the marked messages (RFC 1939 section 6).
func (c *session) cmdQuit(cmd command) {
	c.quit = true
	c.ended = "quit"
	if c.state != stateTransaction {
		c.reply("+OK Bye")
		return
	}
	var uids []uint32
	for _, m := range c.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	if len(uids) > 0 {
		// Not the server's context: a shutdown lets QUIT finish.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		gone, err := c.srv.Store.Expunge(ctx, c.mbox.ID, uids)
		cancel()
		if err != nil {
			c.srv.Log.Error("pop3 expunging", "user", c.acct.Name, "err", err)
			c.reply("-ERR [SYS/TEMP] Some deleted messages were not removed")
			return
		}
		// Those expunged by another session meanwhile are gone all the same.
		c.deleted = len(gone)
	}
	left := len(c.msgs) - len(uids)
	c.reply("+OK Bye, %d messages left", left)
}

// logEnd writes the session's one line: who, from where, what was done.
func (c *session) logEnd() {
	user := "-"
	if c.acct != nil {
		user = c.acct.Name
	}
	if c.ended == "" {
		c.ended = "closed"
	}
	c.srv.Log.Info("pop3 session", "ip", netserve.IPString(c.ip), "user", user, "tls", c.tls,
		"retrieved", c.retrieved, "retrieved_bytes", c.retrievedBytes, "deleted", c.deleted,
		"duration", time.Since(c.start).Round(time.Millisecond), "end", c.ended)
	sessionEnds.Of(c.ended).Inc()
}
