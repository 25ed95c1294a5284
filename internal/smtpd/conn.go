package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/policy"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/spool"
	"github.com/posthorn/posthorn/internal/store"
)

var errTooManyFiles = syscall.EMFILE

// timeoutConn sets a read deadline before every read of the socket, so that a
// timeout bounds each wait for the client rather than a whole message.
type timeoutConn struct {
	net.Conn
	timeout atomic.Int64 // nanoseconds
	stop    *atomic.Bool // set at shutdown: reads end at once
}

func (t *timeoutConn) Read(p []byte) (int, error) {
	if t.stop.Load() {
		t.Conn.SetReadDeadline(time.Now())
	} else if d := time.Duration(t.timeout.Load()); d > 0 {
		t.Conn.SetReadDeadline(time.Now().Add(d))
	}
	return t.Conn.Read(p)
}

// conn is one SMTP session.
type conn struct {
	srv *Server
	raw net.Conn     // the socket
	nc  net.Conn     // the socket, or the TLS connection over it after STARTTLS
	tc  *timeoutConn // under br
	br  *bufio.Reader
	bw  *bufio.Writer
	ip  netip.Addr

	client   policy.Client
	connVerd policy.Decision // what the access table said at connect
	helo     string
	esmtp    bool
	tls      bool
	errors   int
	quit     bool
	account  string // the account logged in with AUTH, "" before (RFC 4954)

	mu      sync.Mutex // guards busy and closing, for Shutdown
	busy    bool       // inside a transaction: let it finish on shutdown
	closing bool
	stop    atomic.Bool // reads end at once (shutdown between transactions)
	tx      *transaction
}

// transaction is one MAIL ... DATA exchange.
type transaction struct {
	id       string
	start    time.Time
	from     addr.Address
	null     bool
	utf8     bool
	discard  bool   // an access DISCARD: accept everything, keep nothing
	envID    string // RFC 3461 ENVID, decoded
	ret      string // RFC 3461 RET: FULL, HDRS or ""
	rcpts    []deliver.Recipient
	accepted int // RCPTs answered 250, discarded ones included
	rejected int
	// BDAT state
	bdat     *msgWriter
	bdatFail *Reply // a BDAT chunk failed: the rest of the chunks are read and dropped
	sp       spool.Spool
	rpLen    int64 // the length of our Return-Path: field at the spool's start
	traceLen int64 // the length of our Return-Path: and Received: fields
}

func newConn(s *Server, nc net.Conn, ip netip.Addr) *conn {
	c := &conn{srv: s, raw: nc, nc: nc, ip: ip}
	c.tc = &timeoutConn{Conn: nc, stop: &c.stop}
	c.tc.timeout.Store(int64(s.CommandTimeout))
	c.br = bufio.NewReaderSize(c.tc, 4096)
	c.bw = bufio.NewWriterSize(nc, 4096)
	return c
}

func (c *conn) serve() {
	defer c.nc.Close()
	defer c.endTransaction("disconnected")

	c.client = policy.Client{IP: c.ip}
	if c.srv.DNS != nil && c.ip.IsValid() {
		name, res := dnsutil.LookupClient(context.Background(), c.srv.DNS, c.ip, 10*time.Second)
		c.client.Hostname = name
		c.client.PTR = map[dnsutil.PTRResult]policy.PTRStatus{
			dnsutil.PTRConfirmed: policy.PTROK, dnsutil.PTRNone: policy.PTRFail,
			dnsutil.PTRForged: policy.PTRForged, dnsutil.PTRTempFail: policy.PTRTemp,
		}[res]
	}
	if tc, ok := c.raw.(*tls.Conn); ok {
		// Implicit TLS (submissions, RFC 8314 section 3): the handshake comes
		// before the greeting.
		tc.SetDeadline(time.Now().Add(c.srv.CommandTimeout))
		if err := tc.Handshake(); err != nil {
			c.srv.Log.Info("smtp TLS handshake failed", "client_ip", c.ip.String(), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		c.tls = true
	}
	c.connVerd = policy.CheckConnect(c.srv.Tables(), c.client)
	if c.connVerd.Verdict == policy.Reject {
		c.srv.Log.Info("smtp connection rejected", "client_ip", c.ip.String(),
			"client_name", c.client.Hostname, "reason", c.connVerd.Reason)
		c.rejectedSession()
		return
	}
	if !c.checkConnect() {
		return
	}
	c.send(Reply{220, "", c.srv.Hostname + " ESMTP posthorn"})
	for !c.quit {
		line, err := c.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			// The line was read to its end and dropped; the session goes on.
			c.send(replyLineTooLong)
		case err != nil:
			c.readFailed(err)
			return
		default:
			c.handle(line)
		}
		if c.errors >= c.srv.MaxErrors {
			c.send(replyTooManyErrors)
			c.flush()
			return
		}
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if closing && c.tx == nil {
			c.send(replyShutdown)
			c.flush()
			return
		}
	}
	c.flush()
}

// rejectedSession serves a client refused at connect: RFC 5321 section 3.1 lets
// the greeting be 554 and wants the server to answer 503 to everything but QUIT.
func (c *conn) rejectedSession() {
	r := c.connVerd
	greet := Reply{554, "5.7.1", r.Text}
	if r.Enhanced != "" && r.Enhanced[0] == '5' {
		greet.Enhanced = r.Enhanced // e.g. RFC 7372's 5.7.25 for reverse DNS
	}
	if r.Code/100 == 4 {
		// A temporary refusal: say it and close (RFC 5321 section 3.8).
		c.send(Reply{421, r.Enhanced, r.Text})
		c.flush()
		return
	}
	if greet.Text == "" {
		greet.Text = "Access denied"
	}
	c.send(greet)
	for i := 0; i < 10; i++ {
		line, err := c.readLine()
		if err != nil {
			return
		}
		if verb, _ := splitCommand(line); verb == "QUIT" {
			c.send(Reply{221, "2.0.0", "Bye"})
			c.flush()
			return
		}
		c.send(Reply{503, "5.7.1", greet.Text})
	}
	c.flush()
}

// shutdown asks the session to end: at once when it is between transactions,
// after the transaction otherwise.
func (c *conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if !c.busy {
		// End a read that waits for the next command, and any read to come.
		c.stop.Store(true)
		c.raw.SetReadDeadline(time.Now())
	}
}

// send queues a reply; replies are flushed when the client has nothing more
// pipelined (RFC 2920 section 3.2).
func (c *conn) send(r Reply) {
	// Errors count towards MaxErrors, except "too many recipients", which a
	// correct client gets once per recipient beyond the limit.
	if r.Code >= 400 && r.Code != 421 && r.Code != 452 {
		c.errors++
	}
	if r.Enhanced == "" {
		fmt.Fprintf(c.bw, "%d %s\r\n", r.Code, r.Text)
		return
	}
	fmt.Fprintf(c.bw, "%d %s %s\r\n", r.Code, r.Enhanced, r.Text)
}

func (c *conn) flush() {
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.CommandTimeout))
	c.bw.Flush()
}

var errLineTooLong = errors.New("line too long")

// readLine reads one command line without its CRLF, flushing pending replies
// first when no more commands are already waiting.
func (c *conn) readLine() (string, error) {
	return c.readLineMax(c.lineLimit())
}

// lineLimit is the longest command line taken. While AUTH may come, it is at
// least 12288 octets: RFC 4954 section 4 wants that much room for an AUTH
// command with its initial response, and for each response line.
func (c *conn) lineLimit() int {
	if c.account == "" && c.authOffered() {
		return max(c.srv.MaxLineLength, maxAuthLine)
	}
	return c.srv.MaxLineLength
}

// readLineMax is readLine with a limit of maxLen octets, CRLF included.
func (c *conn) readLineMax(maxLen int) (string, error) {
	if c.br.Buffered() == 0 {
		c.flush()
	}
	c.tc.timeout.Store(int64(c.srv.CommandTimeout))
	var long bool
	var buf []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		if err == nil {
			if long {
				return "", errLineTooLong
			}
			if buf != nil {
				frag = append(buf, frag...)
			}
			if len(frag) > maxLen {
				return "", errLineTooLong
			}
			line := bytes.TrimSuffix(frag, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			return string(line), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
		if long || len(buf)+len(frag) > maxLen {
			long, buf = true, nil // keep reading to the end of the line, drop it
			continue
		}
		buf = append(buf, frag...)
	}
}

// readFailed ends a session whose next command could not be read.
func (c *conn) readFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if closing {
			c.send(replyShutdown)
		} else {
			c.send(replyTimeout)
		}
		c.flush()
	}
}

// splitCommand splits a command line into its upper-cased verb and argument.
func splitCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), strings.TrimLeft(arg, " ")
}

func (c *conn) handle(line string) {
	if strings.IndexByte(line, 0) >= 0 {
		c.send(Reply{500, "5.5.2", "NUL character in command"})
		return
	}
	verb, arg := splitCommand(line)
	switch verb {
	case "EHLO":
		c.cmdHello(arg, true)
	case "HELO":
		c.cmdHello(arg, false)
	case "MAIL":
		c.cmdMail(arg)
	case "RCPT":
		c.cmdRcpt(arg)
	case "DATA":
		c.cmdData(arg)
	case "BDAT":
		c.cmdBdat(arg)
	case "RSET":
		if arg != "" {
			c.send(replySyntax("RSET takes no argument"))
			return
		}
		c.abortTransaction("RSET")
		c.send(replyOK)
	case "NOOP":
		c.send(replyOK)
	case "QUIT":
		c.send(Reply{221, "2.0.0", c.srv.Hostname + " closing connection"})
		c.quit = true
	case "VRFY":
		// RFC 5321 section 3.5.3: 252 when we will not verify, so that
		// addresses cannot be harvested.
		c.send(Reply{252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"})
	case "EXPN":
		c.send(Reply{502, "5.5.1", "EXPN not available"})
	case "HELP":
		c.send(Reply{214, "2.0.0", "See RFC 5321; posthorn speaks EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS"})
	case "STARTTLS":
		c.cmdStartTLS(arg)
	case "AUTH":
		c.cmdAuth(arg)
	case "":
		c.send(replySyntax("Empty command"))
	default:
		c.send(replyUnknownCommand)
	}
}

func (c *conn) cmdHello(arg string, esmtp bool) {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		verb := "HELO"
		if esmtp {
			verb = "EHLO"
		}
		c.send(replySyntax("Syntax: " + verb + " hostname"))
		return
	}
	if !c.checkHelo(strings.Fields(arg)[0]) {
		return
	}
	// RFC 5321 section 4.1.4: EHLO resets the state as RSET does.
	c.abortTransaction("EHLO")
	c.helo = sanitize(strings.Fields(arg)[0], 255)
	c.esmtp = esmtp
	greeting := fmt.Sprintf("%s Hello %s [%s]", c.srv.Hostname, c.helo, c.ip)
	if !esmtp {
		c.send(Reply{250, "", greeting})
		return
	}
	lines := []string{
		greeting,
		"PIPELINING",
		"SIZE " + strconv.FormatInt(c.srv.MaxMessageBytes, 10),
		"8BITMIME",
		"ENHANCEDSTATUSCODES",
		"SMTPUTF8",
		"CHUNKING",
		"DSN",
	}
	if c.srv.TLSConfig != nil && !c.tls {
		lines = append(lines, "STARTTLS")
	}
	if c.account == "" && c.authOffered() {
		// RFC 4954 section 3; not once logged in, as AUTH is then refused.
		lines = append(lines, "AUTH "+strings.Join(c.srv.Auth.Mechanisms(c.authClient()), " "))
	}
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(c.bw, "250%s%s\r\n", sep, l)
	}
}

func (c *conn) cmdStartTLS(arg string) {
	switch {
	case c.srv.TLSConfig == nil:
		c.send(Reply{502, "5.5.1", "STARTTLS not available"})
		return
	case c.tls:
		c.send(replyBadSequence("Already running TLS"))
		return
	case arg != "":
		c.send(replySyntax("STARTTLS takes no argument"))
		return
	case c.tx != nil:
		c.send(replyBadSequence("STARTTLS not allowed inside a mail transaction"))
		return
	}
	if n := c.br.Buffered(); n > 0 {
		// Commands pipelined after STARTTLS were sent in clear text before the
		// handshake: they must not be executed inside the TLS session
		// (CVE-2011-0411). They are thrown away with the old reader.
		c.srv.Log.Warn("smtp plaintext pipelined after STARTTLS dropped", "client_ip", c.ip.String(), "bytes", n)
	}
	c.send(Reply{220, "2.0.0", "Ready to start TLS"})
	c.flush()
	tlsConn := tls.Server(c.nc, c.srv.TLSConfig)
	tlsConn.SetDeadline(time.Now().Add(c.srv.CommandTimeout))
	if err := tlsConn.Handshake(); err != nil {
		c.srv.Log.Info("smtp TLS handshake failed", "client_ip", c.ip.String(), "err", err)
		c.quit = true
		return
	}
	tlsConn.SetDeadline(time.Time{})
	c.nc = tlsConn
	c.tc = &timeoutConn{Conn: tlsConn, stop: &c.stop}
	c.br = bufio.NewReaderSize(c.tc, 4096)
	c.bw = bufio.NewWriterSize(tlsConn, 4096)
	c.tls = true
	// RFC 3207 section 4.2: forget everything learnt before TLS, a login
	// included (AUTH before STARTTLS is possible from loopback).
	c.helo, c.esmtp = "", false
	c.account, c.client.Authenticated = "", false
}

// parsePath takes the argument after "FROM:" or "TO:" and returns the text inside
// <...> and the rest (the ESMTP parameters). It respects quoted strings, in which
// '>' may appear.
func parsePath(s string) (path, rest string, ok bool) {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "<") {
		return "", "", false
	}
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch ch := s[i]; {
		case inQuote && ch == '\\':
			i++
		case ch == '"':
			inQuote = !inQuote
		case !inQuote && ch == '>':
			rest = s[i+1:]
			if rest != "" && rest[0] != ' ' {
				return "", "", false
			}
			return s[1:i], strings.TrimLeft(rest, " "), true
		}
	}
	return "", "", false
}

// param is one ESMTP parameter, its keyword upper-cased.
type param struct{ key, value string }

// params splits ESMTP parameters "KEY=VALUE KEY" (RFC 5321 section 4.1.2), in
// the client's order, so that of two bad ones the same is always named. A
// keyword given twice is refused with 501: RFC 5321 gives a repeat no meaning,
// and which of two NOTIFY or ENVID values counted would be a guess.
func params(s string) ([]param, *Reply) {
	var out []param
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		if k == "" {
			return nil, &Reply{555, "5.5.4", "Malformed parameter"}
		}
		k = strings.ToUpper(k)
		for _, p := range out {
			if p.key == k {
				r := replySyntax("Parameter " + sanitize(k, 40) + " given more than once")
				return nil, &r
			}
		}
		out = append(out, param{k, v})
	}
	return out, nil
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

func (c *conn) cmdMail(arg string) {
	if c.helo == "" {
		c.send(replyBadSequence("Send HELO/EHLO first"))
		return
	}
	if c.tx != nil {
		c.send(replyBadSequence("Nested MAIL command"))
		return
	}
	if c.srv.Submission && c.account == "" {
		// RFC 6409 section 4.3 and RFC 4954 section 6.
		c.send(replyAuthRequired)
		return
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		c.send(replySyntax("Syntax: MAIL FROM:<address>"))
		return
	}
	path, paramText, ok := parsePath(rest)
	if !ok {
		c.send(Reply{501, "5.1.7", "Bad sender address syntax"})
		return
	}
	ps, bad := params(paramText)
	if bad != nil {
		c.send(*bad)
		return
	}
	if !c.esmtp && len(ps) > 0 {
		// Parameters are an ESMTP thing (RFC 5321 section 4.1.1.11).
		c.send(Reply{555, "5.5.4", "MAIL parameters not recognized"})
		return
	}
	tx := &transaction{start: time.Now()}
	for _, p := range ps {
		switch k, v := p.key, p.value; k {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				c.send(replySyntax("Bad SIZE parameter"))
				return
			}
			if c.srv.MaxMessageBytes > 0 && n > c.srv.MaxMessageBytes {
				c.send(replyTooBig)
				return
			}
		case "BODY":
			if u := strings.ToUpper(v); u != "7BIT" && u != "8BITMIME" {
				c.send(Reply{555, "5.5.4", "Unsupported BODY type"})
				return
			}
		case "SMTPUTF8":
			if v != "" {
				c.send(replySyntax("SMTPUTF8 takes no value"))
				return
			}
			tx.utf8 = true
		case "AUTH":
			// RFC 4954 section 5: accepted, not trusted from an unauthenticated client.
		case "RET":
			ret, err := parseRet(v)
			if err != nil {
				c.send(replySyntax(err.Error()))
				return
			}
			tx.ret = ret
		case "ENVID":
			id, err := parseEnvID(v)
			if err != nil {
				c.send(replySyntax(err.Error()))
				return
			}
			tx.envID = id
		default:
			c.send(Reply{555, "5.5.4", "MAIL parameter " + sanitize(k, 40) + " not recognized"})
			return
		}
	}
	if path != "" {
		if hasNonASCII(path) && !tx.utf8 {
			c.send(Reply{553, "5.6.7", "Non-ASCII address requires SMTPUTF8"})
			return
		}
		a, err := addr.ParsePath(path, true)
		if err != nil {
			c.send(Reply{501, "5.1.7", "Bad sender address syntax"})
			return
		}
		tx.from = a
	} else {
		tx.null = true
	}
	if c.account != "" {
		if r, ok := c.checkEnvelopeSender(tx); !ok {
			c.send(r)
			return
		}
	}
	d := policy.CheckMail(c.srv.Tables(), c.client, tx.from, tx.null)
	switch d.Verdict {
	case policy.Reject:
		c.srv.Log.Info("smtp sender rejected", "client_ip", c.ip.String(), "from", tx.from.String(), "reason", d.Reason)
		c.send(decisionReply(d))
		return
	case policy.Discard:
		tx.discard = true
	}
	if !c.checkMessageRate(tx.from.String()) {
		return
	}
	if c.connVerd.Verdict == policy.Discard {
		tx.discard = true
	}
	tx.id = queue.NewID()
	c.mu.Lock()
	c.tx, c.busy = tx, true
	c.mu.Unlock()
	c.send(Reply{250, "2.1.0", "Sender OK"})
}

func decisionReply(d policy.Decision) Reply {
	return Reply{d.Code, d.Enhanced, d.Text}
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

func (c *conn) cmdRcpt(arg string) {
	tx := c.tx
	if tx == nil {
		c.send(replyBadSequence("Need MAIL before RCPT"))
		return
	}
	if tx.bdat != nil {
		c.send(replyBadSequence("RCPT not allowed during BDAT"))
		return
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		c.send(replySyntax("Syntax: RCPT TO:<address>"))
		return
	}
	path, paramText, ok := parsePath(rest)
	if !ok || path == "" {
		c.send(Reply{501, "5.1.3", "Bad recipient address syntax"})
		return
	}
	ps, bad := params(paramText)
	if bad != nil {
		c.send(*bad)
		return
	}
	if !c.esmtp && len(ps) > 0 {
		c.send(Reply{555, "5.5.4", "RCPT parameters not recognized"})
		return
	}
	var orcpt, notify string
	for _, p := range ps {
		var err error
		switch k, v := p.key, p.value; k {
		case "NOTIFY":
			notify, err = parseNotify(v)
		case "ORCPT":
			orcpt, err = parseORCPT(v)
		default:
			c.send(Reply{555, "5.5.4", "RCPT parameter " + sanitize(k, 40) + " not recognized"})
			return
		}
		if err != nil {
			c.send(replySyntax(err.Error()))
			return
		}
	}
	if hasNonASCII(path) && !tx.utf8 {
		c.send(Reply{553, "5.6.7", "Non-ASCII address requires SMTPUTF8"})
		return
	}
	if len(tx.rcpts) >= c.srv.MaxRecipients {
		// RFC 5321 section 4.5.3.1.10: 452 so that the client sends the rest later.
		tx.rejected++
		c.send(replyTooManyRcpts)
		return
	}
	a, err := addr.ParsePath(path, false)
	if err == nil && a.Domain == "" && !strings.EqualFold(a.Local, "postmaster") {
		// Only "postmaster" may come without a domain (RFC 5321 section 4.5.1).
		err = errors.New("unqualified")
	}
	if err != nil {
		tx.rejected++
		c.send(Reply{501, "5.1.3", "Bad recipient address syntax"})
		return
	}
	local := a.Domain == "" || c.srv.Router.IsLocalDomain(a.Domain)
	d := policy.CheckRcpt(c.srv.Tables(), c.client, a, local)
	switch d.Verdict {
	case policy.Reject:
		tx.rejected++
		c.srv.Log.Info("smtp recipient rejected", "client_ip", c.ip.String(), "queue_id", tx.id,
			"from", tx.from.String(), "rcpt", a.String(), "reason", d.Reason)
		c.send(decisionReply(d))
		return
	case policy.Discard:
		// Accepted and dropped, as Sendmail's DISCARD.
		tx.accepted++
		c.send(Reply{250, "2.1.5", "Recipient OK"})
		return
	}
	if !tx.null && c.srv.Router.IsSRSAddress(a) {
		// Our SRS addresses exist for bounces to forwarded mail. Taking other
		// mail for them would let anyone who saw one relay through us, with a
		// sender that passes SPF as ours.
		tx.rejected++
		c.srv.Log.Info("smtp recipient rejected", "client_ip", c.ip.String(), "queue_id", tx.id,
			"from", tx.from.String(), "rcpt", a.String(), "reason", "SRS address with a sender")
		c.send(Reply{550, "5.7.1", "This address takes only bounces (null sender)"})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, err := c.srv.Router.Resolve(ctx, a)
	cancel()
	if err != nil {
		tx.rejected++
		r := replyForError(err)
		c.srv.Log.Info("smtp recipient rejected", "client_ip", c.ip.String(), "queue_id", tx.id,
			"from", tx.from.String(), "rcpt", a.String(), "reply", r.String())
		c.send(r)
		return
	}
	if !c.checkGreylist(tx, a.String()) {
		return
	}
	// Without an ORCPT from the client none is made up here: RFC 3461 lets a
	// relaying MTA add one when it passes the message on, from the RCPT
	// address, which the queue keeps anyway.
	tx.rcpts = append(tx.rcpts, deliver.Recipient{Address: a, Targets: res.Targets, ORCPT: orcpt, Notify: notify, Failed: res.Failed})
	tx.accepted++
	c.send(Reply{250, "2.1.5", "Recipient OK"})
}

// dataPreamble checks that DATA or BDAT may start.
func (c *conn) dataPreamble() (Reply, bool) {
	tx := c.tx
	switch {
	case tx == nil:
		return replyBadSequence("Need MAIL command"), false
	case tx.accepted == 0:
		return replyNoValidRcpts, false
	}
	return Reply{}, true
}

func (c *conn) cmdData(arg string) {
	if arg != "" {
		c.send(replySyntax("DATA takes no argument"))
		return
	}
	if c.tx != nil && c.tx.bdat != nil {
		c.send(replyBadSequence("DATA not allowed after BDAT"))
		return
	}
	if r, ok := c.dataPreamble(); !ok {
		c.send(r)
		return
	}
	tx := c.tx
	c.send(Reply{354, "", "End data with <CR><LF>.<CR><LF>"})
	c.flush()

	w := c.beginMessage()
	c.tc.timeout.Store(int64(c.srv.DataTimeout))
	err := readData(c.br, w)
	c.tc.timeout.Store(int64(c.srv.CommandTimeout))
	switch {
	case errors.Is(err, errAmbiguousEnd):
		c.endTransaction(replyBareLFClose.String())
		c.send(replyBareLFClose)
		c.quit = true
		return
	case err != nil:
		// The client went away or timed out in the middle: nothing is stored.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.endTransaction(replyTimeout.String())
			c.send(replyTimeout)
		} else {
			c.endTransaction("disconnected during DATA")
		}
		c.quit = true
		return
	}
	c.finishMessage(tx, w)
}

// beginMessage prepares the spool and writes our trace fields into it.
func (c *conn) beginMessage() *msgWriter {
	tx := c.tx
	tx.sp = spool.Spool{Dir: c.srv.SpoolDir}
	c.writeTrace(&tx.sp)
	w := newMsgWriter(&tx.sp, c.srv.MaxMessageBytes)
	// Authentication-Results fields of our authserv-id come only from us
	// (RFC 8601 section 5).
	w.authservID = c.srv.Hostname
	if c.account != "" {
		w.identity = &identityFields{}
	}
	if c.srv.Submission {
		w.fix = c.headerFix(tx)
	}
	return w
}

// finishMessage delivers a completely received message and replies.
func (c *conn) finishMessage(tx *transaction, w *msgWriter) {
	w.finish()
	var r Reply
	switch {
	case w.tooBig:
		r = replyTooBig
	case w.bare:
		r = replyBareLF
	case w.hops > c.srv.MaxHops:
		r = replyTooManyHops
	case tx.sp.Err() != nil:
		r = replyForError(tx.sp.Err())
	case tx.discard || len(tx.rcpts) == 0:
		c.srv.Log.Info("smtp message discarded", "queue_id", tx.id, "client_ip", c.ip.String())
		r = Reply{250, "2.0.0", "OK: queued as " + tx.id}
	default:
		// An authenticated user's From: and Sender: must be theirs
		// (ARCHITECTURE.md: checked after DATA).
		if refused, ok := c.checkHeaderSenders(tx, w.identity); !ok {
			r = refused
			break
		}
		ar := c.checkAuth(tx)
		if ar.refused != nil {
			r = *ar.refused
			break
		}
		r = c.deliver(tx, ar)
	}
	c.endTransaction(r.String())
	c.send(r)
}

func (c *conn) deliver(tx *transaction, ar authResult) Reply {
	env := &deliver.Envelope{
		ID:         tx.id,
		From:       tx.from,
		Null:       tx.null,
		Recipients: tx.rcpts,
		EnvID:      tx.envID,
		Ret:        tx.ret,
		// Mail from our users and networks is signed on its way out; mail
		// from outside that we relay or forward is not ours to sign.
		Sign:       c.trusted(),
		Quarantine: ar.quarantine,
	}
	var body store.Body = &tx.sp
	if ar.header != "" {
		// Right below our own trace fields, above every field that came
		// from the client (RFC 8601 section 5: prepended, so that a reader
		// meets ours before anything forged further down).
		body = deliver.Insert(body, tx.traceLen, []byte(ar.header))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.srv.Deliverer.Deliver(ctx, env, body)
	if err != nil {
		r := replyForError(err)
		c.srv.Log.Warn("smtp delivery failed", "queue_id", tx.id, "err", err)
		return r
	}
	return Reply{250, "2.0.0", "OK: queued as " + res.QueueID}
}

// writeTrace writes Return-Path: (for final delivery, RFC 5321 section 4.4; the
// outbound queue removes it before relaying) and our Received: field.
func (c *conn) writeTrace(sp *spool.Spool) {
	tx := c.tx
	var b strings.Builder
	b.WriteString("Return-Path: <")
	if !tx.null {
		b.WriteString(tx.from.String())
	}
	b.WriteString(">\r\n")
	tx.rpLen = int64(b.Len())
	b.WriteString("Received: from ")
	b.WriteString(c.helo)
	b.WriteString(" (")
	if c.client.Hostname != "" {
		b.WriteString(c.client.Hostname)
		b.WriteByte(' ')
	}
	b.WriteByte('[')
	b.WriteString(c.ip.String())
	b.WriteString("])\r\n\tby ")
	b.WriteString(c.srv.Hostname)
	b.WriteString(" (posthorn) with ")
	b.WriteString(c.protocolName(tx))
	if c.tls {
		if st, ok := c.nc.(*tls.Conn); ok {
			cs := st.ConnectionState()
			fmt.Fprintf(&b, " (%s %s)", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
		}
	}
	b.WriteString(" id ")
	b.WriteString(tx.id)
	if len(tx.rcpts) == 1 {
		// Naming the recipient only when there is one keeps Bcc recipients private.
		b.WriteString("\r\n\tfor <")
		b.WriteString(tx.rcpts[0].Address.String())
		b.WriteByte('>')
	}
	b.WriteString("; ")
	b.WriteString(time.Now().Format(time.RFC1123Z))
	b.WriteString("\r\n")
	tx.traceLen = int64(b.Len())
	sp.WriteString(b.String())
}

// protocolName is the "with" value of Received (RFC 3848, RFC 6531 section 3.7.3).
func (c *conn) protocolName(tx *transaction) string {
	p := "SMTP"
	if c.esmtp {
		p = "ESMTP"
	}
	if tx.utf8 {
		p = "UTF8SMTP"
	}
	if c.tls {
		p += "S"
	}
	if c.account != "" {
		// RFC 3848: "A" for an authenticated session. Who logged in is not
		// written: the header travels with the message.
		p += "A"
	}
	return p
}

func (c *conn) cmdBdat(arg string) {
	// RFC 3030 section 2: BDAT <size> [LAST]; the chunk follows the command line
	// whatever we answer, so it is always read.
	fields := strings.Fields(arg)
	if len(fields) == 0 || len(fields) > 2 {
		c.send(replySyntax("Syntax: BDAT size [LAST]"))
		return
	}
	size, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || size < 0 {
		// Without a size the chunk cannot be skipped: the stream is lost.
		c.send(replySyntax("Bad BDAT size; closing connection"))
		c.quit = true
		return
	}
	last := len(fields) == 2
	if last && !strings.EqualFold(fields[1], "LAST") {
		c.send(replySyntax("Syntax: BDAT size [LAST]"))
		c.quit = true
		return
	}
	tx := c.tx
	var w *msgWriter
	var refuse *Reply
	if r, ok := c.dataPreamble(); !ok {
		refuse = &r
	} else if tx.bdatFail != nil {
		refuse = tx.bdatFail
	} else {
		if tx.bdat == nil {
			tx.bdat = c.beginMessage()
		}
		w = tx.bdat
	}
	c.tc.timeout.Store(int64(c.srv.DataTimeout))
	var dst io.Writer = io.Discard
	if w != nil {
		dst = w
	}
	_, err = io.CopyN(dst, c.br, size)
	c.tc.timeout.Store(int64(c.srv.CommandTimeout))
	if err != nil {
		c.endTransaction("disconnected during BDAT")
		c.quit = true
		return
	}
	if refuse != nil {
		c.send(*refuse)
		if last && tx != nil && tx.bdatFail != nil {
			c.endTransaction(tx.bdatFail.String())
		}
		return
	}
	if !last {
		if w.tooBig {
			// Fail early; the remaining chunks are read and dropped.
			tx.bdatFail = &replyTooBig
			c.send(replyTooBig)
			return
		}
		c.send(Reply{250, "2.0.0", fmt.Sprintf("%d octets received", size)})
		return
	}
	c.finishMessage(tx, w)
}

// abortTransaction ends a transaction that will not be delivered.
func (c *conn) abortTransaction(why string) {
	if c.tx != nil {
		c.endTransaction(why)
	}
}

// endTransaction logs the transaction once and forgets it.
func (c *conn) endTransaction(result string) {
	tx := c.tx
	if tx == nil {
		return
	}
	// Typed attributes and the recipients as one string: this line is written
	// for every message, and the generic form cost as much as parsing it.
	var rcpts strings.Builder
	rcpts.WriteByte('[')
	for i, r := range tx.rcpts {
		if i > 0 {
			rcpts.WriteByte(' ')
		}
		rcpts.WriteString(r.Address.String())
	}
	rcpts.WriteByte(']')
	c.srv.Log.LogAttrs(context.Background(), slog.LevelInfo, "smtp transaction",
		slog.String("client_ip", c.ip.String()),
		slog.String("client_name", c.client.Hostname),
		slog.String("helo", c.helo),
		slog.Bool("tls", c.tls),
		slog.String("user", c.account),
		slog.String("queue_id", tx.id),
		slog.String("from", tx.from.String()),
		slog.String("rcpts", rcpts.String()),
		slog.Int("rejected_rcpts", tx.rejected),
		slog.Int64("size", tx.sp.Size()),
		slog.String("result", result),
		slog.Int64("duration_ms", time.Since(tx.start).Milliseconds()),
	)
	c.srv.txm.End(result)
	tx.sp.Close()
	c.mu.Lock()
	c.tx, c.busy = nil, false
	c.mu.Unlock()
}
