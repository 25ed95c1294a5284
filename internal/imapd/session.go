package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/netserve"
	"github.com/posthorn/posthorn/internal/store"
)

// The states of a session (RFC 9051 section 3).
type state int

const (
	stateNotAuth state = iota
	stateAuth
	stateSelected
	stateLogout
)

func errorf(format string, args ...any) error {
	return fmt.Errorf("imapd: "+format, args...)
}

// session is one IMAP connection.
type session struct {
	srv         *Server
	raw         net.Conn               // the socket
	dc          *netserve.DeadlineConn // the socket or TLS, with the idle timeout
	conn        io.ReadWriter          // under br and bw: dc, TLS over it, or DEFLATE over that
	br          *bufio.Reader
	bw          *bufio.Writer
	r           *imapwire.Reader
	w           *imapwire.Writer
	flushers    []func() error // after bw: the compressor
	ip          netip.Addr
	implicitTLS bool
	tls         bool
	compressed  bool
	start       time.Time

	stop    atomic.Bool // set by shutdown: the next read ends at once
	mu      sync.Mutex
	busy    bool // inside a command: shutdown lets it finish
	closing bool

	state  state
	tag    string // of the command running
	acct   *store.Account
	errors int // BAD commands in a row
	ended  string

	// What the client enabled (RFC 5161) or started using.
	rev2       bool // ENABLE IMAP4rev2
	utf8       bool // UTF-8 mailbox names and strings: rev2 or utf8Accept
	utf8Accept bool // ENABLE UTF8=ACCEPT (RFC 6855)
	condstore  bool // RFC 7162 section 3.1: MODSEQ in unsolicited FETCH
	qresync    bool // RFC 7162 section 3.2: VANISHED instead of EXPUNGE

	changes          <-chan store.Change
	unsubscribe      func()
	sel              *view
	saved            []uint32 // SEARCHRES "$" (RFC 5182), UIDs
	savedValid       bool
	mailboxesChanged bool
}

func newSession(s *Server, nc net.Conn, ip netip.Addr, implicitTLS bool) *session {
	c := &session{srv: s, raw: nc, ip: ip, implicitTLS: implicitTLS, start: time.Now()}
	c.setConn(c.deadlines(nc))
	return c
}

// deadlines wraps nc (the socket or TLS over it) with the idle timeout
// of the session's state.
func (c *session) deadlines(nc net.Conn) *netserve.DeadlineConn {
	t := c.srv.PreAuthTimeout
	if c.state != stateNotAuth {
		t = c.srv.IdleTimeout
	}
	c.dc = &netserve.DeadlineConn{Conn: nc, Timeout: t, Stopped: &c.stop}
	return c.dc
}

// setConn puts the reader and writer over rw (the socket, TLS over it, or
// DEFLATE over either). Anything the old reader held is dropped with it.
func (c *session) setConn(rw io.ReadWriter) {
	c.conn = rw
	c.br = bufio.NewReaderSize(rw, 4096)
	c.newReader()
	if c.w == nil {
		c.w = imapwire.NewWriter(io.Discard)
	}
	if c.bw != nil {
		c.bw.Reset(rw)
	}
}

// writers are the output buffers of the sessions. A session holds one
// only while it has something to say: 10,000 clients in IDLE do not hold
// 10,000 buffers (issue 5 wants them under 500 MB together).
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// acquire takes an output buffer before the session writes.
func (c *session) acquire() {
	if c.bw == nil {
		c.bw = writers.Get().(*bufio.Writer)
		c.bw.Reset(c.conn)
		c.w.SetBuffer(c.bw)
	}
}

// release gives the output buffer back once it is flushed, before the
// session waits for the client.
func (c *session) release() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writers.Put(c.bw)
		c.bw = nil
		c.w.SetBuffer(nil)
	}
}

// preAuthLiteral bounds literals before login: enough for any password
// or SASL response, not for making the server hold megabytes for anyone.
const preAuthLiteral = 64 << 10

// newReader makes the command reader for the session's state over c.br
// (what c.br holds is kept).
func (c *session) newReader() {
	max, nonSync := c.srv.AppendLimit, int64(0)
	if c.state == stateNotAuth {
		// Before login: LITERAL- (RFC 7888 section 5), non-synchronising
		// literals of 4096 octets at most.
		max, nonSync = preAuthLiteral, 4096
	}
	c.r = imapwire.NewReader(c.br, imapwire.Options{
		MaxLiteral: max,
		MaxCommand: max + 1<<20,
		MaxNonSync: nonSync,
		Continue:   c.continueLiteral,
	})
}

// continueLiteral answers a synchronising literal: "+" to go on, or NO
// [TOOBIG] for an APPEND over APPENDLIMIT (RFC 7889 section 4).
func (c *session) continueLiteral(command string, n int64) error {
	c.acquire()
	if command == "APPEND" && n > c.srv.AppendLimit {
		return &imapwire.Error{Code: "TOOBIG", Msg: fmt.Sprintf("Message too big (APPENDLIMIT %d)", c.srv.AppendLimit)}
	}
	c.w.Continue("Ready for literal data")
	return c.flush()
}

// flush sends what is buffered, through the compressor when there is one.
func (c *session) flush() error {
	if c.bw == nil {
		return nil
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	for _, f := range c.flushers {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// Serve runs the session (netserve.Session).
func (c *session) Serve() {
	defer c.end()
	if c.implicitTLS {
		tc := tls.Server(c.raw, c.srv.TLSConfig)
		tc.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.HandshakeContext(c.srv.ctx); err != nil {
			c.ended = "TLS handshake failed"
			c.srv.Log.Debug("imap TLS handshake failed", "ip", netserve.IPString(c.ip), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		c.tls = true
		c.setConn(c.deadlines(tc))
	}
	c.acquire()
	c.w.Status("", "OK", "CAPABILITY "+c.capabilities(), c.srv.Hostname+" posthorn IMAP4rev2 server ready")
	if c.flush() != nil {
		c.ended = "write failed"
		return
	}
	for c.state != stateLogout {
		c.release()
		cmd, err := c.r.ReadCommand()
		c.acquire()
		var perr *imapwire.Error
		switch {
		case errors.As(err, &perr):
			c.w.Refuse(perr)
			commandResults.Of("BAD").Inc() // a command that did not parse
			if perr.Fatal {
				c.ended = "protocol error"
				c.flush()
				return
			}
			if c.bad() {
				return
			}
		case err != nil:
			c.readFailed(err)
			return
		default:
			if c.setBusy(true) {
				c.w.Status("", "BYE", "", "Server shutting down")
				c.ended = "shutdown"
				return
			}
			c.command(cmd)
			c.setBusy(false)
		}
		// Answers to pipelined commands go out together.
		if c.br.Buffered() == 0 || c.state == stateLogout {
			if err := c.flush(); err != nil {
				c.ended = "write failed"
				return
			}
		}
	}
}

// bad counts a BAD answer; too many in a row end the session.
func (c *session) bad() bool {
	c.errors++
	if c.errors >= c.srv.MaxErrors {
		c.w.Status("", "BYE", "", "Too many errors, closing")
		c.ended = "too many errors"
		c.flush()
		return true
	}
	return false
}

func (c *session) readFailed(err error) {
	var ne net.Error
	switch {
	case c.stop.Load():
		c.w.Status("", "BYE", "", "Server shutting down")
		c.ended = "shutdown"
	case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
		c.w.Status("", "BYE", "", "Autologout; idle for too long")
		c.ended = "idle timeout"
	case errors.Is(err, io.EOF):
		c.ended = "connection closed"
		return
	default:
		c.ended = "read failed"
		return
	}
	c.flush()
}

// end releases what the session holds and logs its one line.
func (c *session) end() {
	if c.unsubscribe != nil {
		c.unsubscribe()
	}
	c.flush()
	c.raw.Close()
	user := "-"
	if c.acct != nil {
		user = c.acct.Name
	}
	if c.ended == "" {
		c.ended = "logout"
	}
	c.srv.Log.Info("imap session", "ip", netserve.IPString(c.ip), "user", user, "tls", c.tls,
		"duration", time.Since(c.start).Round(time.Millisecond), "end", c.ended)
	sessionEnds.Of(c.ended).Inc()
}

// Shutdown is called by the server's Shutdown (netserve.Session): an idle
// session is woken to say goodbye, a busy one finishes its command first.
func (c *session) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	c.stop.Store(true)
	if !c.busy {
		c.raw.SetReadDeadline(time.Now())
	}
}

// Close cuts the connection (netserve.Session).
func (c *session) Close() { c.raw.Close() }

func (c *session) setBusy(b bool) (closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = b
	return c.closing
}

func (c *session) client() auth.Client {
	return auth.Client{Addr: c.ip, TLS: c.tls, Service: "imap"}
}

// capabilities lists what the server offers in the session's state (RFC
// 9051 section 7.2.2).
func (c *session) capabilities() string {
	var b strings.Builder
	b.WriteString("IMAP4rev1 IMAP4rev2")
	if c.state == stateNotAuth {
		if c.srv.TLSConfig != nil && !c.tls {
			b.WriteString(" STARTTLS")
		}
		if !c.srv.Auth.PlaintextAllowed(c.client()) {
			b.WriteString(" LOGINDISABLED")
		}
		for _, m := range c.srv.Auth.Mechanisms(c.client()) {
			b.WriteString(" AUTH=" + m)
		}
		b.WriteString(" SASL-IR ID ENABLE LITERAL-")
		return b.String()
	}
	b.WriteString(" LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE" +
		" SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN" +
		" ESEARCH SEARCHRES STATUS=SIZE CONDSTORE QRESYNC" +
		" MULTIAPPEND BINARY UTF8=ACCEPT WITHIN SAVEDATE QUOTA QUOTA=RES-STORAGE" +
		" SORT SORT=DISPLAY THREAD=REFERENCES THREAD=ORDEREDSUBJECT")
	fmt.Fprintf(&b, " APPENDLIMIT=%d", c.srv.AppendLimit)
	if !c.compressed {
		b.WriteString(" COMPRESS=DEFLATE")
	}
	return b.String()
}

// commandStates says in which states a command may run.
var commandStates = map[string][]state{
	"CAPABILITY": {stateNotAuth, stateAuth, stateSelected},
	"NOOP":       {stateNotAuth, stateAuth, stateSelected},
	"LOGOUT":     {stateNotAuth, stateAuth, stateSelected},
	"ID":         {stateNotAuth, stateAuth, stateSelected},

	"STARTTLS":     {stateNotAuth},
	"AUTHENTICATE": {stateNotAuth},
	"LOGIN":        {stateNotAuth},

	"ENABLE":       {stateAuth, stateSelected},
	"SELECT":       {stateAuth, stateSelected},
	"EXAMINE":      {stateAuth, stateSelected},
	"CREATE":       {stateAuth, stateSelected},
	"DELETE":       {stateAuth, stateSelected},
	"RENAME":       {stateAuth, stateSelected},
	"SUBSCRIBE":    {stateAuth, stateSelected},
	"UNSUBSCRIBE":  {stateAuth, stateSelected},
	"LIST":         {stateAuth, stateSelected},
	"LSUB":         {stateAuth, stateSelected},
	"NAMESPACE":    {stateAuth, stateSelected},
	"STATUS":       {stateAuth, stateSelected},
	"APPEND":       {stateAuth, stateSelected},
	"IDLE":         {stateAuth, stateSelected},
	"GETQUOTA":     {stateAuth, stateSelected},
	"GETQUOTAROOT": {stateAuth, stateSelected},
	"SETQUOTA":     {stateAuth, stateSelected},
	"COMPRESS":     {stateAuth, stateSelected},

	"CLOSE":    {stateSelected},
	"UNSELECT": {stateSelected},
	"EXPUNGE":  {stateSelected},
	"SEARCH":   {stateSelected},
	"FETCH":    {stateSelected},
	"STORE":    {stateSelected},
	"COPY":     {stateSelected},
	"MOVE":     {stateSelected},
	"SORT":     {stateSelected},
	"THREAD":   {stateSelected},
	"CHECK":    {stateSelected},
}

// tellsItself are the commands that send the selected mailbox's updates
// themselves, where they may (FETCH, STORE and SEARCH must hold back
// EXPUNGE, RFC 9051 section 7.4.1).
var tellsItself = map[string]bool{
	"FETCH": true, "STORE": true, "SEARCH": true, "SORT": true, "THREAD": true,
	"NOOP": true, "CHECK": true, "IDLE": true, "EXPUNGE": true, "COPY": true, "MOVE": true,
	"APPEND": true, "SELECT": true, "EXAMINE": true, "CLOSE": true, "UNSELECT": true, "LOGOUT": true,
}

// result is how a command ended: the tagged status line.
type result struct {
	status string // OK, NO, BAD
	code   string
	text   string
}

func ok(text string) result           { return result{"OK", "", text} }
func okCode(code, text string) result { return result{"OK", code, text} }
func no(code, text string) result     { return result{"NO", code, text} }
func badResult(text string) result    { return result{"BAD", "", text} }
func (c *session) storeFailed(op string, err error) result {
	user := "-"
	if c.acct != nil {
		user = c.acct.Name
	}
	c.srv.Log.Error("imap store", "op", op, "user", user, "err", err)
	if diskFull(err) {
		// Issue 8 asks for OVERQUOTA: what clients show for "no room".
		return result{"NO", "OVERQUOTA", "The server's disk is full; try again later"}
	}
	return result{"NO", "SERVERBUG", op + " failed; the server logged why"}
}

// diskFull reports whether err says the disk (or the user's disk quota)
// is full, from the file system or from SQLite ("database or disk is
// full").
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), "disk is full")
}

// command runs one command and writes its tagged answer, preceded by the
// updates of the selected mailbox that the command allows.
func (c *session) command(cmd *imapwire.Command) {
	c.tag = cmd.Tag
	states, known := commandStates[cmd.Name]
	var res result
	switch {
	case !known:
		res = badResult("Unknown command")
	case !inState(states, c.state):
		res = badResult(cmd.Name + " is not valid " + c.stateText())
	default:
		res = c.run(cmd)
	}
	if res.status == "" { // the command answered itself (LOGOUT, IDLE errors)
		return
	}
	commandResults.Of(res.status).Inc()
	if c.sel != nil && !tellsItself[cmd.Name] {
		// Any command may carry the mailbox's news (RFC 9051 section
		// 7): what arrived or changed meanwhile goes out before its
		// tagged answer.
		c.sync(context.Background(), true)
	}
	if res.status == "BAD" {
		c.w.Status(cmd.Tag, res.status, res.code, res.text)
		if c.bad() {
			c.state = stateLogout
		}
		return
	}
	c.errors = 0
	c.w.Status(cmd.Tag, res.status, res.code, res.text)
}

func inState(states []state, s state) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

func (c *session) stateText() string {
	switch c.state {
	case stateNotAuth:
		return "before login"
	case stateAuth:
		return "without a selected mailbox"
	}
	return "now"
}

func (c *session) run(cmd *imapwire.Command) result {
	ctx := context.Background()
	switch cmd.Name {
	case "CAPABILITY":
		c.w.Untagged().Atom("CAPABILITY ").Atom(c.capabilities()).CRLF()
		return ok("CAPABILITY completed")
	case "NOOP", "CHECK":
		c.sync(ctx, true)
		return ok(cmd.Name + " completed")
	case "LOGOUT":
		c.w.Status("", "BYE", "", "Logging out")
		c.w.Status(cmd.Tag, "OK", "", "LOGOUT completed")
		c.state = stateLogout
		return result{}
	case "ID":
		return c.cmdID(cmd.Args.(*imapwire.IDCommand))
	case "STARTTLS":
		return c.cmdStartTLS(cmd)
	case "LOGIN":
		return c.cmdLogin(ctx, cmd.Args.(*imapwire.LoginCommand))
	case "AUTHENTICATE":
		return c.cmdAuthenticate(ctx, cmd.Args.(*imapwire.AuthenticateCommand))
	case "ENABLE":
		return c.cmdEnable(cmd.Args.(*imapwire.EnableCommand))
	case "SELECT", "EXAMINE":
		return c.cmdSelect(ctx, cmd.Name == "EXAMINE", cmd.Args.(*imapwire.SelectCommand))
	case "CREATE":
		return c.cmdCreate(ctx, cmd.Args.(*imapwire.CreateCommand))
	case "DELETE":
		return c.cmdDelete(ctx, cmd.Args.(*imapwire.MailboxCommand).Mailbox)
	case "RENAME":
		a := cmd.Args.(*imapwire.RenameCommand)
		return c.cmdRename(ctx, a.From, a.To)
	case "SUBSCRIBE", "UNSUBSCRIBE":
		return c.cmdSubscribe(ctx, cmd.Args.(*imapwire.MailboxCommand).Mailbox, cmd.Name == "SUBSCRIBE")
	case "LIST", "LSUB":
		return c.cmdList(ctx, cmd.Name == "LSUB", cmd.Args.(*imapwire.ListCommand))
	case "NAMESPACE":
		c.w.Untagged().Atom(`NAMESPACE (("" "/")) NIL NIL`).CRLF()
		return ok("NAMESPACE completed")
	case "STATUS":
		return c.cmdStatus(ctx, cmd.Args.(*imapwire.StatusCommand))
	case "APPEND":
		return c.cmdAppend(ctx, cmd.Args.(*imapwire.AppendCommand))
	case "IDLE":
		return c.cmdIdle(ctx, cmd.Tag)
	case "GETQUOTA", "GETQUOTAROOT":
		return c.cmdGetQuota(ctx, cmd.Name == "GETQUOTAROOT", cmd.Args.(*imapwire.QuotaCommand).Root)
	case "SETQUOTA":
		return no("NOPERM", "Quotas are set by the administrator (posthorn user quota)")
	case "COMPRESS":
		return c.cmdCompress(cmd)
	case "CLOSE", "UNSELECT":
		return c.cmdClose(ctx, cmd.Name == "CLOSE")
	case "EXPUNGE":
		var set *imapwire.SeqSet
		if cmd.UID {
			set = &cmd.Args.(*imapwire.ExpungeCommand).Seq
		}
		return c.cmdExpunge(ctx, set)
	case "FETCH":
		return c.cmdFetch(ctx, cmd.UID, cmd.Args.(*imapwire.FetchCommand))
	case "STORE":
		return c.cmdStore(ctx, cmd.UID, cmd.Args.(*imapwire.StoreCommand))
	case "COPY", "MOVE":
		return c.cmdCopy(ctx, cmd.UID, cmd.Name == "MOVE", cmd.Args.(*imapwire.CopyCommand))
	case "SEARCH":
		return c.cmdSearch(ctx, cmd.UID, cmd.Args.(*imapwire.SearchCommand))
	case "SORT":
		return c.cmdSort(ctx, cmd.UID, cmd.Args.(*imapwire.SortCommand))
	case "THREAD":
		return c.cmdThread(ctx, cmd.UID, cmd.Args.(*imapwire.ThreadCommand))
	}
	return badResult("Unknown command")
}
