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
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
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

	initOnce  sync.Once
	ctx       context.Context // logins; ends when Shutdown begins (a throttled login waits no longer)
	cancel    context.CancelFunc
	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	perIP     map[netip.Addr]int
	locked    map[int64]bool // accounts whose maildrop a session holds
	wg        sync.WaitGroup
}

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("pop3d: server closed")

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.setDefaults()
		if s.Log == nil {
			s.Log = slog.Default()
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.sessions = map[*session]struct{}{}
		s.perIP = map[netip.Addr]int{}
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
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
				s.Log.Warn("pop3 accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("pop3d: accept: %w", err)
		}
		backoff = 0
		c := s.register(nc)
		if c == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.release(c)
			c.serve(implicitTLS)
		}()
	}
}

// register makes a session for nc, or refuses nc when a cap is reached or the
// server is shutting down.
func (s *Server) register(nc net.Conn) *session {
	ip := remoteIP(nc)
	s.mu.Lock()
	var why string
	switch {
	case s.closing:
		why = "server shutting down"
	case len(s.sessions) >= s.MaxConns:
		why = "too many connections, try again later"
	case s.perIP[ip] >= s.MaxConnsPerIP:
		why = "too many connections from your address, try again later"
	}
	if why != "" {
		s.mu.Unlock()
		s.Log.Info("pop3 connection refused", "ip", ipString(ip), "reason", why)
		// From a goroutine: a client that does not read must not stall the
		// accept loop. On a TLS listener the client expects a handshake and
		// will not read this; closing is all it needs.
		go func() {
			nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(nc, "-ERR [SYS/TEMP] %s\r\n", why)
			nc.Close()
		}()
		return nil
	}
	c := newSession(s, nc, ip)
	s.sessions[c] = struct{}{}
	s.perIP[ip]++
	s.mu.Unlock()
	return c
}

func (s *Server) release(c *session) {
	s.mu.Lock()
	delete(s.sessions, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	s.mu.Unlock()
}

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
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.sessions {
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
		for c := range s.sessions {
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
	if nc.RemoteAddr() == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return "-"
	}
	return ip.String()
}
