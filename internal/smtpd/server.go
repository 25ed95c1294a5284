// Package smtpd is posthorn's SMTP server (RFC 5321) for mail coming in from the
// Internet (port 25) and from users submitting mail (RFC 6409: 587 with
// STARTTLS, 465 with implicit TLS, RFC 8314). It speaks the protocol —
// PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, CHUNKING, DSN,
// STARTTLS, AUTH — applies the access and relay policy, resolves recipients
// through the tables, and hands accepted messages to internal/deliver, replying
// 250 only once they are durably stored or queued.
//
// # Logins and submission
//
// With Server.Auth set, AUTH (RFC 4954) is offered with internal/auth's
// mechanisms (SCRAM-SHA-256, PLAIN, LOGIN) where a password may pass: over TLS,
// or from 127.0.0.1/::1, or anywhere with [auth] allow_plaintext; elsewhere
// AUTH is neither advertised nor taken before STARTTLS (538 5.7.11). A
// logged-in session may relay, and may send only as the account
// (route.Resolver.Owns): MAIL FROM is checked at once (553 5.7.1, and the
// null sender is refused), the From: and Sender: fields after the data (553
// 5.7.1). Received: says "with ESMTPSA" (RFC 3848) and does not name the user.
//
// With Config.Submission set (the submission ports), MAIL needs a login first
// (530 5.7.0), and a message without Date:, Message-ID: or From: gets them
// (RFC 6409 section 8).
//
// The protocol engine is our own rather than github.com/emersion/go-smtp's
// server: that one answers out-of-order commands with 502 instead of RFC 5321's
// 503, malformed paths with 5.5.2 instead of 5.1.3/5.1.7, has no hook before the
// greeting (where access Connect: rules, connection caps and early-talker checks
// belong), flushes every reply separately (defeating PIPELINING) and reads DATA
// byte by byte. go-smtp remains our SMTP client.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/metrics"
	"github.com/posthorn/posthorn/internal/netserve"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
)

// Config holds the limits and identity of a server.
type Config struct {
	Hostname        string        // our name, in the greeting and Received: headers
	MaxMessageBytes int64         // SIZE limit (RFC 1870)
	MaxRecipients   int           // per message; RFC 5321 section 4.5.3.1.8 wants >= 100
	MaxConnsPerIP   int           // simultaneous connections from one client address (0: 50)
	MaxConns        int           // simultaneous connections in total (0: 1000)
	CommandTimeout  time.Duration // RFC 5321 section 4.5.3.2: at least 5 minutes
	DataTimeout     time.Duration // for each read of message data
	MaxLineLength   int           // a command line, CRLF included
	MaxHops         int           // Received: fields before a message is a loop
	MaxErrors       int           // protocol errors before the connection is closed
	TLSConfig       *tls.Config   // nil: no STARTTLS
	SpoolDir        string        // where big messages are spooled while received
	// Submission makes this a message submission server (RFC 6409): MAIL
	// only after AUTH, missing Date:/Message-ID:/From: added. Needs Auth.
	Submission bool
}

func (c *Config) setDefaults() {
	if c.MaxRecipients == 0 {
		c.MaxRecipients = 100
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 5 * time.Minute
	}
	if c.DataTimeout == 0 {
		c.DataTimeout = 10 * time.Minute
	}
	if c.MaxLineLength == 0 {
		c.MaxLineLength = 2048
	}
	if c.MaxHops == 0 {
		c.MaxHops = 100
	}
	if c.MaxErrors == 0 {
		c.MaxErrors = 20
	}
}

// Deliverer takes accepted messages; *deliver.Deliverer is the real one. It
// is an interface so that tests can see the envelopes the server hands on.
type Deliverer interface {
	Deliver(ctx context.Context, env *deliver.Envelope, body store.Body) (*deliver.Result, error)
}

// Server is an SMTP server. Set its fields, then call Serve for each listener.
type Server struct {
	Config
	Tables    func() *maps.Tables // the current Sendmail tables
	Router    *route.Resolver
	Deliverer Deliverer        // usually a *deliver.Deliverer
	DNS       dnsutil.Resolver // for the client's reverse name; nil: none looked up
	Log       *slog.Logger
	// Auth checks logins (AUTH); nil: AUTH is not offered.
	Auth *auth.Authenticator
	// Checks are the anti-spam and SPF/DKIM/DMARC checks of mail from
	// outside; nil: none (a submission server's case).
	Checks *Checks

	initOnce sync.Once
	reg      netserve.Server // the accept loop, the caps, Shutdown
	txm      *metrics.SMTPTx // posthorn_smtp_transactions_total of this server
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.setDefaults()
		if s.Log == nil {
			s.Log = slog.Default()
		}
		// The name labels the connection metrics and the registry's log
		// lines: submission's ports apart from port 25.
		name := "smtp"
		if s.Submission {
			name = "submission"
		}
		s.txm = metrics.SMTPTransactions(name)
		s.reg = netserve.Server{
			Name:          name,
			MaxConns:      s.MaxConns,
			MaxConnsPerIP: s.MaxConnsPerIP,
			Log:           s.Log,
			Refusal:       refusal,
		}
	})
}

// ErrServerClosed is returned by Serve after Shutdown. It is
// netserve.ErrServerClosed, the same for every protocol server.
var ErrServerClosed = netserve.ErrServerClosed

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	// implicitTLS is false even under ServeTLS: its listener hands out
	// *tls.Conn, so the refusal line goes out over TLS (under a bounded
	// handshake) and conn.serve does the session's handshake itself.
	return s.reg.Serve(l, false, s.newSession)
}

// ServeTLS accepts connections on l that start with a TLS handshake
// (implicit TLS, RFC 8314 section 3: port 465) with TLSConfig, until Shutdown.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.TLSConfig == nil {
		return errors.New("smtpd: ServeTLS needs a TLSConfig")
	}
	return s.Serve(tls.NewListener(l, s.TLSConfig))
}

// ServeConn runs one session on nc and returns when it ends: SMTP on a
// connection that did not come from a listener (`sendmail -bs`, on standard
// input and output). The connection caps apply as for any other.
func (s *Server) ServeConn(nc net.Conn) {
	s.init()
	s.reg.ServeConn(nc, s.newSession)
}

func (s *Server) newSession(nc net.Conn, ip netip.Addr) netserve.Session {
	return regConn{newConn(s, nc, ip)}
}

// regConn is a conn as the registry sees it.
type regConn struct{ c *conn }

func (r regConn) Serve()    { r.c.serve() }
func (r regConn) Shutdown() { r.c.shutdown() }
func (r regConn) Close()    { r.c.raw.Close() }

// refusal is the reply to a connection refused by the registry: 421 (RFC
// 5321 section 3.8), with the enhanced code of RFC 3463 for the reason.
func refusal(why string) string {
	r := Reply{421, "4.3.2", "Too many connections, try again later"}
	switch why {
	case netserve.WhyShuttingDown:
		r = replyShutdown
	case netserve.WhyTooManyFromIP:
		r = Reply{421, "4.7.0", "Too many connections from your address, try again later"}
	}
	return fmt.Sprintf("%d %s %s\r\n", r.Code, r.Enhanced, r.Text)
}

// Shutdown stops accepting connections, lets transactions in progress finish
// until ctx is done, then closes what is left. Connections idle between
// commands are told 421 and closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	return s.reg.Shutdown(ctx)
}
