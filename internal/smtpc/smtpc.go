// Package smtpc delivers mail to other servers: it finds the hosts of a
// destination (MX records by preference, the address records when there is no
// MX, none for a Null MX; or a fixed host such as the smart host), connects,
// uses STARTTLS whenever it is offered (or implicit TLS on port 465), logs in
// to a smart host that wants it, and sends messages over one connection
// several times, with PIPELINING when the server has it (RFC 2920). Results
// come back per recipient, so that the queue tracks each one.
//
// It is our own client rather than go-smtp's: that one cannot start TLS only
// when the server offers it, does not pipeline, and reports DATA failures for
// a whole transaction without telling what was sent.
package smtpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
)

// Destination is where a group of recipients is sent.
type Destination struct {
	// Host is a domain whose MX records are looked up, or, with NoMX, the one
	// host to connect to (a name or an IP address).
	Host string
	Port int  // 0: Client.Port
	NoMX bool // "[host]": no MX lookup (Sendmail's brackets)
	// Smart marks the smart host: TLS is required before AUTH, and its
	// certificate must verify.
	Smart bool
	// ImplicitTLS speaks TLS from the start (port 465, RFC 8314) instead of STARTTLS.
	ImplicitTLS bool
}

// Key names the destination: recipients with equal keys share connections.
func (d Destination) Key() string {
	h := strings.ToLower(d.Host)
	if d.NoMX {
		h = "[" + h + "]"
	}
	if d.Port != 0 {
		h += ":" + strconv.Itoa(d.Port)
	}
	return h
}

func (d Destination) String() string { return d.Key() }

// Client holds what every outbound connection shares. The zero value is not
// usable: set Hostname and Resolver.
type Client struct {
	Hostname string // our EHLO name
	Resolver dnsutil.Resolver
	Port     int // for MX and host delivery when the destination names none (25)
	// RootCAs verifies certificates; nil means the system's roots.
	RootCAs *x509.CertPool
	// User and Password log in to the smart host (AUTH PLAIN or LOGIN).
	User, Password string

	ConnectTimeout time.Duration // per address (30 s)
	CommandTimeout time.Duration // per reply (5 min, RFC 5321 section 4.5.3.2)
	DataTimeout    time.Duration // for the reply to the final dot (10 min)

	Log *slog.Logger

	// Dial, when set, replaces net.Dialer (tests).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

func (c *Client) port(d Destination) int {
	switch {
	case d.Port != 0:
		return d.Port
	case c.Port != 0:
		return c.Port
	}
	return 25
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Error is a failure that applies to every recipient of an attempt: the
// destination could not be reached or refused the whole transaction.
type Error struct {
	Temporary bool
	Status    string // enhanced status code for the bounce (RFC 3463)
	Host      string // the server that answered, when one did
	Reply     *Reply // the server's reply, when there was one
	Err       error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Host != "" {
		b.WriteString(e.Host + ": ")
	}
	if e.Reply != nil {
		b.WriteString(e.Reply.String())
	} else if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ReplyError is a reply that ended a step of the dialogue.
type ReplyError struct {
	Stage string
	Reply Reply
}

func (e *ReplyError) Error() string { return e.Stage + ": " + e.Reply.String() }

// Conn is a connection to a destination, for one message after another. It is
// not safe for concurrent use.
type Conn struct {
	c    *Client
	dest Destination
	s    *session
}

// Host is the name of the server connected to (for Remote-MTA).
func (cn *Conn) Host() string { return cn.s.host }

// TLS says whether the connection is encrypted and whether the certificate verified.
func (cn *Conn) TLS() (encrypted, verified bool) { return cn.s.tls, cn.s.verify == "verified" }

// Close ends the session with QUIT.
func (cn *Conn) Close() { cn.s.quit() }

type hostAddr struct {
	name string
	addr netip.Addr
}

// hosts returns what to connect to for d, in order: the addresses of each MX
// by preference (equal preferences shuffled, RFC 5321 section 5.1), or of the
// domain itself when it has no MX.
func (c *Client) hosts(ctx context.Context, d Destination) ([]hostAddr, error) {
	if a, err := netip.ParseAddr(strings.Trim(d.Host, "[]")); err == nil {
		return []hostAddr{{a.String(), a}}, nil
	}
	var names []string
	if d.NoMX {
		names = []string{d.Host}
	} else {
		mxs, err := c.Resolver.LookupMX(ctx, d.Host)
		switch {
		case err != nil && !dnsutil.IsNotFound(err) && len(mxs) == 0:
			return nil, &Error{Temporary: true, Status: "4.4.3", Err: fmt.Errorf("MX lookup for %s: %w", d.Host, err)}
		case len(mxs) == 0:
			// No MX: the domain itself is the host (RFC 5321 section 5.1).
			names = []string{d.Host}
		default:
			sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
			shuffleEqual(mxs)
			self := strings.ToLower(strings.TrimSuffix(c.Hostname, "."))
			for _, mx := range mxs {
				h := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
				if h == "" {
					// RFC 7505: "0 ." says the domain takes no mail.
					if len(mxs) == 1 {
						return nil, &Error{Status: "5.1.10", Err: fmt.Errorf("%s does not accept mail (Null MX)", d.Host)}
					}
					continue
				}
				if h == self {
					// We are an MX: only those preferred to us may be tried
					// (RFC 5321 section 5.1), else the mail would loop.
					break
				}
				names = append(names, h)
			}
			if len(names) == 0 {
				return nil, &Error{Status: "5.4.6", Err: fmt.Errorf("mail for %s loops back to me (MX problem?)", d.Host)}
			}
		}
	}
	var out []hostAddr
	var lastErr error
	notFound := 0
	for _, n := range names {
		if len(out) >= 20 { // bound the work a hostile MX set can cause
			break
		}
		addrs, err := c.Resolver.LookupIP(ctx, n)
		if err != nil {
			lastErr = err
			if dnsutil.IsNotFound(err) {
				notFound++
			}
			continue
		}
		for _, a := range addrs {
			out = append(out, hostAddr{n, a.Unmap()})
		}
	}
	if len(out) == 0 {
		if notFound == len(names) {
			return nil, &Error{Status: "5.1.2", Err: fmt.Errorf("host or domain name not found: %s", d.Host)}
		}
		return nil, &Error{Temporary: true, Status: "4.4.3", Err: fmt.Errorf("address lookup for %s: %w", d.Host, lastErr)}
	}
	return out, nil
}

func shuffleEqual(mxs []*net.MX) {
	for i := 0; i < len(mxs); {
		j := i
		for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
			j++
		}
		grp := mxs[i:j]
		rand.Shuffle(len(grp), func(a, b int) { grp[a], grp[b] = grp[b], grp[a] })
		i = j
	}
}

// Connect opens a session with the first host of d that answers with a 220
// greeting, says EHLO, starts TLS when offered, and logs in to the smart host.
func (c *Client) Connect(ctx context.Context, d Destination) (*Conn, error) {
	hosts, err := c.hosts(ctx, d)
	if err != nil {
		return nil, err
	}
	port := c.port(d)
	var last *Error
	for _, h := range hosts {
		s, err := c.open(ctx, d, h, port)
		if err == nil {
			return &Conn{c: c, dest: d, s: s}, nil
		}
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Temporary: true, Status: "4.4.1", Host: h.name, Err: err}
		}
		last = e
		if c.Log != nil {
			c.Log.Debug("smtpc: host failed", "dest", d.Key(), "host", h.name, "addr", h.addr.String(), "err", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// open connects to one address. A TLS handshake that fails with an MX (not
// the smart host) is retried once without TLS, as Postfix's "may" level does:
// mail then goes as it would to a server that offered no TLS.
func (c *Client) open(ctx context.Context, d Destination, h hostAddr, port int) (*session, error) {
	s, err := c.dialSession(ctx, d, h, port, true)
	var te *tlsError
	if errors.As(err, &te) && !d.Smart {
		if c.Log != nil {
			c.Log.Info("smtpc: TLS failed, trying without", "host", h.name, "err", te.err)
		}
		return c.dialSession(ctx, d, h, port, false)
	}
	return s, err
}

type tlsError struct{ err error }

func (e *tlsError) Error() string { return e.err.Error() }

func (c *Client) dialSession(ctx context.Context, d Destination, h hostAddr, port int, useTLS bool) (*session, error) {
	addr := net.JoinHostPort(h.addr.String(), strconv.Itoa(port))
	dctx, cancel := context.WithTimeout(ctx, orDefault(c.ConnectTimeout, 30*time.Second))
	defer cancel()
	var conn net.Conn
	var err error
	if c.Dial != nil {
		conn, err = c.Dial(dctx, "tcp", addr)
	} else {
		var nd net.Dialer
		conn, err = nd.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, &Error{Temporary: true, Status: "4.4.1", Host: h.name, Err: err}
	}
	// The dialogue below waits on socket deadlines; a cancelled ctx (the
	// server stopping) cuts it short instead of waiting them out.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	timeout := orDefault(c.CommandTimeout, 5*time.Minute)
	verifyName := h.name
	if d.NoMX || d.Smart {
		verifyName = strings.Trim(d.Host, "[]")
	}
	cfg, verified := c.tlsConfig(verifyName, d.Smart)
	implicit := d.ImplicitTLS
	if implicit {
		tc := tls.Client(conn, cfg)
		tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, &Error{Temporary: true, Status: "4.7.5", Host: h.name, Err: fmt.Errorf("TLS handshake: %w", err)}
		}
		tc.SetDeadline(time.Time{})
		conn = tc
	}
	s := newSession(conn, h.name, timeout)
	if implicit {
		s.tls = true
		s.verify = *verified
	}
	fail := func(err error) (*session, error) {
		conn := s.conn
		conn.Close()
		var re *ReplyError
		if errors.As(err, &re) {
			r := re.Reply
			return nil, &Error{Temporary: true, Status: r.Status(), Host: h.name, Reply: &r, Err: err}
		}
		return nil, &Error{Temporary: true, Status: "4.4.2", Host: h.name, Err: err}
	}
	// RFC 5321 section 4.5.3.2.1: up to 5 minutes for the greeting.
	r, err := s.readReply(timeout)
	if err != nil {
		return fail(err)
	}
	if r.Code != 220 {
		return fail(&ReplyError{Stage: "greeting", Reply: r})
	}
	if err := s.hello(c.Hostname); err != nil {
		return fail(err)
	}
	if !s.tls && useTLS && s.has("STARTTLS") {
		if err := s.startTLS(cfg, c.Hostname); err != nil {
			if _, ok := err.(*ReplyError); !ok && strings.HasPrefix(err.Error(), "TLS handshake") {
				s.conn.Close()
				if d.Smart {
					return nil, &Error{Temporary: true, Status: "4.7.5", Host: h.name, Err: err}
				}
				return nil, &tlsError{err}
			}
			return fail(err)
		}
		s.verify = *verified
	}
	if d.Smart && c.User != "" {
		if !s.tls {
			// Never a password in clear (ARCHITECTURE: TLS is required before AUTH).
			return fail(errors.New("the smart host offers no TLS: not sending the password in clear"))
		}
		if err := s.auth(c.User, c.Password); err != nil {
			return fail(fmt.Errorf("login at the smart host: %w", err))
		}
	}
	return s, nil
}

// tlsConfig verifies the server's certificate for name. For the smart host a
// certificate that does not verify ends the connection; for an MX it is
// recorded as "unverified" and the mail goes encrypted anyway (opportunistic
// TLS, RFC 3207 section 4: a public MX cannot be required to have a
// certificate we trust).
func (c *Client) tlsConfig(name string, strict bool) (*tls.Config, *string) {
	verified := new(string)
	cfg := &tls.Config{
		ServerName:         name,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below, so that the outcome can be recorded
		VerifyConnection: func(cs tls.ConnectionState) error {
			opts := x509.VerifyOptions{DNSName: name, Roots: c.RootCAs, Intermediates: x509.NewCertPool()}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			if err != nil {
				*verified = "unverified"
				if strict {
					return err
				}
				return nil
			}
			*verified = "verified"
			return nil
		},
	}
	return cfg, verified
}

// Recipient is one recipient of a message, with its RFC 3461 parameters.
type Recipient struct {
	Address string
	Notify  string // comma list of NEVER, SUCCESS, FAILURE, DELAY
	ORCPT   string // "rfc822;addr"
}

// Envelope is what a transaction sends besides the message.
type Envelope struct {
	From       string // "" for the null sender
	Recipients []Recipient
	EnvID      string // RFC 3461 ENVID
	Ret        string // RFC 3461 RET: FULL or HDRS
	Size       int64  // the message's size, for SIZE (RFC 1870)
}

// Result is what became of one recipient.
type Result struct {
	Reply Reply // the reply that decided it (RCPT's, or the final one after DATA)
	// Delivered is set when the server took the message for this recipient.
	Delivered bool
	// DSN says whether the server supports DSN, so that it reports success
	// itself (RFC 3461 section 5.2.2: otherwise we report "relayed").
	DSN bool
}

// Temporary says whether a failed recipient may be tried again.
func (r Result) Temporary() bool { return !r.Delivered && r.Reply.Code < 500 }

// Send runs one transaction: MAIL, RCPT for each recipient, DATA with msg
// (a leading Return-Path: field is left out: it belongs to final delivery,
// RFC 5321 section 4.4). It returns a result per recipient, in order. An error
// means the connection is no longer usable (results then hold what was learnt:
// recipients without a reply get a temporary failure).
func (cn *Conn) Send(ctx context.Context, env *Envelope, msg io.Reader) ([]Result, error) {
	s := cn.s
	res := make([]Result, len(env.Recipients))
	dsn := s.has("DSN")
	for i := range res {
		res[i].DSN = dsn
	}
	failAll := func(r Reply) {
		for i := range res {
			if !res[i].Delivered && res[i].Reply.Code < 400 {
				res[i].Reply = r
			}
		}
	}
	broken := func(err error) ([]Result, error) {
		for i := range res {
			if res[i].Reply.Code == 0 || res[i].Reply.Code == 250 && !res[i].Delivered {
				res[i].Reply = Reply{Code: 451, Enhanced: "4.4.2", Text: "connection with " + s.host + " broken: " + err.Error()}
			}
		}
		s.conn.Close()
		return res, &Error{Temporary: true, Status: "4.4.2", Host: s.host, Err: err}
	}
	if stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Now()) }); stop != nil {
		defer stop()
	}

	utf8 := needsUTF8(env)
	if utf8 && !s.has("SMTPUTF8") {
		failAll(Reply{Code: 553, Enhanced: "5.6.7", Text: s.host + " does not support SMTPUTF8, needed for a non-ASCII address"})
		return res, nil
	}
	if max, ok := s.ext["SIZE"]; ok && env.Size > 0 {
		if n, err := strconv.ParseInt(max, 10, 64); err == nil && n > 0 && env.Size > n {
			failAll(Reply{Code: 552, Enhanced: "5.3.4", Text: fmt.Sprintf("message of %d bytes is larger than %s takes (%d)", env.Size, s.host, n)})
			return res, nil
		}
	}

	if s.dirty {
		r, err := s.cmd("RSET")
		if err != nil {
			return broken(err)
		}
		if r.Code != 250 {
			return broken(&ReplyError{Stage: "RSET", Reply: r})
		}
		s.dirty = false
	}
	mail := "MAIL FROM:<" + env.From + ">"
	if s.has("8BITMIME") {
		mail += " BODY=8BITMIME"
	}
	if utf8 {
		mail += " SMTPUTF8"
	}
	if s.has("SIZE") && env.Size > 0 {
		mail += " SIZE=" + strconv.FormatInt(env.Size, 10)
	}
	if dsn {
		if env.Ret != "" {
			mail += " RET=" + env.Ret
		}
		if env.EnvID != "" {
			mail += " ENVID=" + xtext(env.EnvID)
		}
	}
	s.dirty = true
	pipelining := s.has("PIPELINING")
	s.write(mail)
	if !pipelining {
		if err := s.flush(); err != nil {
			return broken(err)
		}
	}
	readMail := func() (bool, error) {
		r, err := s.readReply(s.timeout)
		if err != nil {
			return false, err
		}
		if r.Code != 250 {
			failAll(r)
			return false, nil
		}
		return true, nil
	}
	mailOK := true
	if !pipelining {
		ok, err := readMail()
		if err != nil {
			return broken(err)
		}
		if !ok {
			return res, closing(s, res)
		}
	}
	for i, rc := range env.Recipients {
		line := "RCPT TO:<" + rc.Address + ">"
		if dsn {
			if rc.Notify != "" {
				line += " NOTIFY=" + rc.Notify
			}
			// A non-ASCII original address would need RFC 6533's own
			// encoding; ORCPT is optional, so it is left out then.
			if typ, a, ok := strings.Cut(rc.ORCPT, ";"); ok && a != "" && !hasNonASCII(a) {
				line += " ORCPT=" + typ + ";" + xtext(a)
			}
		}
		s.write(line)
		if !pipelining {
			if err := s.flush(); err != nil {
				return broken(err)
			}
			r, err := s.readReply(s.timeout)
			if err != nil {
				return broken(err)
			}
			res[i].Reply = r
		}
	}
	if pipelining {
		// RFC 2920 section 3.1: DATA may close the group; its reply tells
		// whether to send the message.
		s.write("DATA")
		if err := s.flush(); err != nil {
			return broken(err)
		}
		var err error
		if mailOK, err = readMail(); err != nil {
			return broken(err)
		}
		for i := range env.Recipients {
			r, err := s.readReply(s.timeout)
			if err != nil {
				return broken(err)
			}
			if mailOK {
				res[i].Reply = r
			}
		}
	}
	accepted := 0
	for i := range res {
		if res[i].Reply.Code == 250 || res[i].Reply.Code == 251 {
			accepted++
		}
	}
	var dataReply Reply
	if pipelining {
		r, err := s.readReply(s.timeout)
		if err != nil {
			return broken(err)
		}
		dataReply = r
	} else if accepted > 0 {
		r, err := s.cmd("DATA")
		if err != nil {
			return broken(err)
		}
		dataReply = r
	}
	if !mailOK || accepted == 0 {
		if dataReply.Code == 354 {
			// A server that wants data although nobody is to get it: end it empty.
			s.write(".")
			if err := s.flush(); err != nil {
				return broken(err)
			}
			if _, err := s.readReply(s.timeout); err != nil {
				return broken(err)
			}
		}
		return res, closing(s, res)
	}
	if dataReply.Code != 354 {
		failAll(dataReply)
		return res, closing(s, res)
	}
	if err := writeData(s, msg); err != nil {
		return broken(err)
	}
	final, err := s.readReply(orDefault(cn.c.DataTimeout, 10*time.Minute))
	if err != nil {
		// The connection died after the dot and before the reply: the
		// message may have arrived, and is sent again later (RFC 5321
		// section 4.1.1.4 accepts this duplicate).
		return broken(err)
	}
	s.dirty = false
	for i := range res {
		if res[i].Reply.Code == 250 || res[i].Reply.Code == 251 {
			res[i].Reply = final
			res[i].Delivered = final.Code == 250
		}
	}
	return res, closing(s, res)
}

// closing reports a 421 among the replies: the server is closing the
// connection (RFC 5321 section 3.8), so it must not carry another message.
func closing(s *session, res []Result) error {
	for _, r := range res {
		if r.Reply.Code == 421 {
			s.conn.Close()
			return &Error{Temporary: true, Status: r.Reply.Status(), Host: s.host, Reply: &r.Reply, Err: errors.New("the server is closing the connection")}
		}
	}
	return nil
}

func needsUTF8(env *Envelope) bool {
	if hasNonASCII(env.From) {
		return true
	}
	for _, r := range env.Recipients {
		if hasNonASCII(r.Address) {
			return true
		}
	}
	return false
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// xtext encodes a DSN parameter value (RFC 3461 section 4).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
