// Package pop3d is posthorn's POP3 server: RFC 1939 with the extensions of
// RFC 2449 (CAPA, with TOP, USER, UIDL, RESP-CODES, AUTH-RESP-CODE,
// PIPELINING, SASL, STLS, EXPIRE NEVER, IMPLEMENTATION), STLS (RFC 2595) and
// AUTH with SASL (RFC 5034), logins checked by internal/auth.
//
// The maildrop of an account is its INBOX in the store. A session takes a
// snapshot of it at login (RFC 1939 section 5: messages are numbered 1..n for
// the whole session); DELE only marks, and the marked messages are expunged
// in the UPDATE state after QUIT (section 6), so a dropped connection deletes
// nothing. UIDL is the mailbox's UIDVALIDITY and the message's UID, stable
// across sessions and restarts. Only one session holds a maildrop at a time
// (section 8, "exclusive-access lock"); a second login gets -ERR [IN-USE].
//
// Passwords sent whole (USER/PASS, AUTH PLAIN and LOGIN) are refused on an
// unencrypted connection with -ERR [AUTH] unless auth.PlaintextAllowed says
// otherwise (127.0.0.1, ::1, or [auth] allow_plaintext).
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/netserve"
	"github.com/posthorn/posthorn/internal/store"
)

// Config holds the limits and identity of a server. Zero fields take the
// defaults given with them.
type Config struct {
	Hostname string // in the greeting
	// TLSConfig serves STLS and implicit TLS (ServeTLS); nil offers neither.
	TLSConfig *tls.Config
	// IdleTimeout ends a session that sends nothing for this long (10
	// minutes: RFC 1939 section 3 wants the autologout timer to be at least
	// that). It bounds every wait for the client, writes included.
	IdleTimeout time.Duration
	// MaxErrors is how many failed commands a session may send before it is
	// closed (10).
	MaxErrors int
	// MaxConns caps the simultaneous sessions in total (1000), MaxConnsPerIP
	// those from one client address (50).
	MaxConns      int
	MaxConnsPerIP int
}

func (c *Config) setDefaults() {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.MaxErrors <= 0 {
		c.MaxErrors = 10
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1000
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 50
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
}

// handshakeTimeout bounds a TLS handshake (implicit TLS and STLS).
const handshakeTimeout = 30 * time.Second

// Server is a POP3 server. Set its fields, then call Serve (port 110, STLS
// offered when TLSConfig is set) or ServeTLS (port 995) for each listener.
type Server struct {
	Config
	Store store.Store
	Auth  *auth.Authenticator
	Log   *slog.Logger

	initOnce sync.Once
	reg      netserve.Server // the accept loop, the caps, Shutdown
	ctx      context.Context // logins; ends when Shutdown begins (a throttled login waits no longer)
	cancel   context.CancelFunc
	mu       sync.Mutex
	locked   map[int64]bool // accounts whose maildrop a session holds
}

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown. It is
// netserve.ErrServerClosed, the same for every protocol server.
var ErrServerClosed = netserve.ErrServerClosed

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.setDefaults()
		if s.Log == nil {
			s.Log = slog.Default()
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.reg = netserve.Server{
			Name:          "pop3",
			MaxConns:      s.MaxConns,
			MaxConnsPerIP: s.MaxConnsPerIP,
			Log:           s.Log,
			// SYS/TEMP: a problem that should pass (RFC 3206 section 4).
			Refusal: func(why string) string { return "-ERR [SYS/TEMP] " + why + "\r\n" },
		}
		s.locked = map[int64]bool{}
	})
}

// Serve accepts POP3 connections on l until Shutdown; STLS is offered when
// TLSConfig is set.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts connections on l that start with a TLS handshake (RFC 8314
// section 3.3, port 995) until Shutdown.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.TLSConfig == nil {
		return errors.New("pop3d: ServeTLS needs a TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	s.init()
	return s.reg.Serve(l, implicitTLS, func(nc net.Conn, ip netip.Addr) netserve.Session {
		return regSession{newSession(s, nc, ip), implicitTLS}
	})
}

// regSession is a session as the registry sees it.
type regSession struct {
	c           *session
	implicitTLS bool
}

func (r regSession) Serve()    { r.c.serve(r.implicitTLS) }
func (r regSession) Shutdown() { r.c.shutdown() }
func (r regSession) Close()    { r.c.raw.Close() }

// register makes a session for nc outside the registry, and release is its
// pair: the fuzz test runs sessions over net.Pipe this way, with no listener.
// Such a session is not counted by the caps nor ended by Shutdown.
func (s *Server) register(nc net.Conn) *session {
	s.init()
	return newSession(s, nc, netserve.RemoteIP(nc))
}

func (s *Server) release(*session) {}

// lock takes the maildrop of an account for one session (RFC 1939 section 8);
// false when another session holds it.
func (s *Server) lock(accountID int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[accountID] {
		return false
	}
	s.locked[accountID] = true
	return true
}

func (s *Server) unlock(accountID int64) {
	s.mu.Lock()
	delete(s.locked, accountID)
	s.mu.Unlock()
}

// Shutdown stops accepting connections and ends the sessions: one waiting for
// a command is told -ERR and closed at once, without the UPDATE state (so it
// deletes nothing); one that is busy (sending a message, in QUIT's update)
// finishes its command. When ctx is done first, what is left is cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.cancel()
	return s.reg.Shutdown(ctx)
}
