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
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
)

// Config holds the limits and identity of a server.
type Config struct {
	Hostname        string        // our name, in the greeting and Received: headers
	MaxMessageBytes int64         // SIZE limit (RFC 1870)
	MaxRecipients   int           // per message; RFC 5321 section 4.5.3.1.8 wants >= 100
	MaxConnsPerIP   int           // simultaneous connections from one client address
	MaxConns        int           // simultaneous connections in total
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

	initOnce  sync.Once
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[netip.Addr]int
	closing   bool
	wg        sync.WaitGroup
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.setDefaults()
		if s.Log == nil {
			s.Log = slog.Default()
		}
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.perIP = map[netip.Addr]int{}
	})
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpd: server closed")

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
				s.Log.Warn("smtp accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("smtpd: accept: %w", err)
		}
		backoff = 0
		c := s.newConn(nc)
		if c == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.release(c)
			c.serve()
		}()
	}
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
	c := s.newConn(nc)
	if c == nil {
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	defer s.release(c)
	c.serve()
}

// newConn registers a connection, or refuses it when a connection cap is reached.
func (s *Server) newConn(nc net.Conn) *conn {
	ip := remoteIP(nc)
	s.mu.Lock()
	var refuse *Reply
	switch {
	case s.closing:
		refuse = &replyShutdown
	case s.MaxConns > 0 && len(s.conns) >= s.MaxConns:
		refuse = &Reply{421, "4.3.2", "Too many connections, try again later"}
	case s.MaxConnsPerIP > 0 && s.perIP[ip] >= s.MaxConnsPerIP:
		refuse = &Reply{421, "4.7.0", "Too many connections from your address, try again later"}
	}
	if refuse != nil {
		s.mu.Unlock()
		s.Log.Info("smtp connection refused", "client_ip", ip.String(), "reason", refuse.Text)
		// Said from a goroutine: a client that does not read must not stall
		// the accept loop.
		go func() {
			nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(nc, "%d %s %s\r\n", refuse.Code, refuse.Enhanced, refuse.Text)
			nc.Close()
		}()
		return nil
	}
	c := newConn(s, nc, ip)
	s.conns[c] = struct{}{}
	s.perIP[ip]++
	s.mu.Unlock()
	return c
}

func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	s.mu.Unlock()
}

// Shutdown stops accepting connections, lets transactions in progress finish
// until ctx is done, then closes what is left. Connections idle between
// commands are told 421 and closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.raw.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

func remoteIP(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
