// Package netserve runs the accept loop and the registry of live sessions that every
// protocol server of posthorn shares: caps on connections in total and per client IP,
// graceful shutdown.
//
// A protocol server (pop3d, smtpd, imapd) keeps a Server, calls Serve for each
// listener with a function that makes its Session for an accepted connection, and
// calls Shutdown once. The registry counts the live sessions, refuses a connection
// over a cap with the protocol's line (written from a goroutine, so that a client
// that does not read cannot stall the accept loop), and at Shutdown asks every
// session to end, waits for them, and cuts what is left when the context ends.
package netserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/metrics"
)

// Session is one connection's handler as the registry sees it.
//
// Shutdown and Close are called from other goroutines than Serve, and may be
// called before Serve has begun (a connection accepted as Shutdown begins) or
// after it has returned: both must be safe then.
type Session interface {
	Serve()    // runs the session until it ends; the registry releases it after
	Shutdown() // asks it to end: an idle session at once, a busy one after its command
	Close()    // cuts the connection (Shutdown's ctx ended first)
}

// Why a connection is refused: the argument of Server.Refusal, so that a
// protocol can choose its reply (SMTP's codes differ by reason).
const (
	WhyShuttingDown  = "server shutting down"
	WhyTooMany       = "too many connections, try again later"
	WhyTooManyFromIP = "too many connections from your address, try again later"
)

// Defaults of Server's caps.
const (
	DefaultMaxConns      = 1000
	DefaultMaxConnsPerIP = 50
)

// refusalTimeout bounds the refusal of one connection: writing the line
// (and, on a TLS connection the protocol wraps itself, the handshake under it).
const refusalTimeout = 5 * time.Second

// ErrServerClosed is returned by Serve and ServeConn after Shutdown.
var ErrServerClosed = errors.New("netserve: server closed")

// Server is the registry of one protocol server's sessions. The zero value is
// ready; set the fields before the first Serve and leave them after.
type Server struct {
	Name          string       // "pop3", "imap", "smtp": in log lines
	MaxConns      int          // in total (default 1000)
	MaxConnsPerIP int          // from one client IP (default 50)
	Log           *slog.Logger // nil: slog.Default()
	// Refusal returns the line (with CRLF) written to a client refused for
	// why ("too many connections, try again later"); nil writes nothing.
	// implicitTLS listeners get nothing written (the client expects a handshake).
	Refusal func(why string) string

	mu        sync.Mutex
	closing   bool // Shutdown has begun
	cut       bool // Shutdown's ctx ended: sessions are closed
	listeners map[net.Listener]struct{}
	sessions  map[*entry]struct{}
	perIP     map[netip.Addr]int
	wg        sync.WaitGroup // one per registered session
	m         *metrics.Conn  // by Name, resolved with the maps
}

// refusedLabels names the refusal reasons in posthorn_connections_refused_total;
// "" is a connection for which newSession made no session.
var refusedLabels = map[string]string{
	WhyShuttingDown:  "shutting_down",
	WhyTooMany:       "too_many",
	WhyTooManyFromIP: "too_many_from_ip",
	"":               "no_session",
}

// entry is a registered session. sess is nil while newSession runs (outside
// the lock); ip is what perIP counts it under.
type entry struct {
	sess Session
	ip   netip.Addr
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// initLocked makes the maps; s.mu is held.
func (s *Server) initLocked() {
	if s.sessions == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.sessions = map[*entry]struct{}{}
		s.perIP = map[netip.Addr]int{}
		s.m = metrics.ConnMetrics(s.Name, refusedLabels)
	}
}

// Serve accepts on l until Shutdown; newSession makes the Session for an accepted
// connection (ip is the client's address, unmapped). ErrServerClosed after Shutdown.
//
// Accept errors that pass (timeouts, EMFILE/ENFILE: out of file descriptors)
// are retried after a growing pause (5ms to 1s); any other is returned.
func (s *Server) Serve(l net.Listener, implicitTLS bool, newSession func(nc net.Conn, ip netip.Addr) Session) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.initLocked()
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
			if s.Closing() {
				return ErrServerClosed
			}
			if retryable(err) {
				backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
				s.log().Warn(s.Name+" accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("netserve: %s accept: %w", s.Name, err)
		}
		backoff = 0
		ip := RemoteIP(nc)
		e, why := s.register(nc, ip, newSession)
		if e == nil {
			// From a goroutine: a client that does not read must not stall
			// the accept loop.
			go s.refuse(nc, ip, why, implicitTLS)
			continue
		}
		go s.run(e)
	}
}

// ServeConn runs one session on nc in the caller's goroutine, under the same
// caps as accepted connections, and returns when it ends: for a connection
// that did not come from a listener (`sendmail -bs` on standard input and
// output). A refused nc gets the refusal line and is closed; the error is
// ErrServerClosed after Shutdown, a refusal error over a cap.
func (s *Server) ServeConn(nc net.Conn, newSession func(nc net.Conn, ip netip.Addr) Session) error {
	ip := RemoteIP(nc)
	e, why := s.register(nc, ip, newSession)
	if e == nil {
		s.refuse(nc, ip, why, false)
		switch why {
		case "":
			return fmt.Errorf("netserve: %s: no session made for the connection", s.Name)
		case WhyShuttingDown:
			return ErrServerClosed
		}
		return fmt.Errorf("netserve: %s connection refused: %s", s.Name, why)
	}
	s.run(e)
	return nil
}

// retryable tells accept errors that pass with time from those that end Serve.
func retryable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// register counts a session for nc and makes it, or says why nc is refused.
func (s *Server) register(nc net.Conn, ip netip.Addr, newSession func(net.Conn, netip.Addr) Session) (*entry, string) {
	maxConns, maxPerIP := s.MaxConns, s.MaxConnsPerIP
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	if maxPerIP <= 0 {
		maxPerIP = DefaultMaxConnsPerIP
	}
	s.mu.Lock()
	s.initLocked()
	var why string
	switch {
	case s.closing:
		why = WhyShuttingDown
	case len(s.sessions) >= maxConns:
		why = WhyTooMany
	case s.perIP[ip] >= maxPerIP:
		why = WhyTooManyFromIP
	}
	m := s.m
	if why != "" {
		s.mu.Unlock()
		m.Refused.Of(why).Inc()
		return nil, why
	}
	e := &entry{ip: ip}
	s.sessions[e] = struct{}{}
	s.perIP[ip]++
	// Under the lock, before closing can be set: Shutdown's Wait never
	// races an Add, and never misses a session.
	s.wg.Add(1)
	s.mu.Unlock()

	// newSession runs outside the lock (it may do anything); the slot is
	// held meanwhile so that the caps stay exact.
	sess := newSession(nc, ip)
	if sess == nil {
		nc.Close()
		s.release(e)
		s.wg.Done()
		m.Refused.Of("").Inc()
		return nil, ""
	}
	m.Accepted.Inc()
	m.Live.Inc()
	s.mu.Lock()
	e.sess = sess
	closing, cut := s.closing, s.cut
	s.mu.Unlock()
	// Shutdown skipped this entry while sess was nil: it is told here,
	// exactly once (both sides look under the lock).
	if closing {
		sess.Shutdown()
	}
	if cut {
		sess.Close()
	}
	return e, ""
}

// run serves a registered session and releases it.
func (s *Server) run(e *entry) {
	defer s.wg.Done()
	defer s.release(e)
	defer s.m.Live.Dec() // s.m is set before any session registers
	e.sess.Serve()
}

func (s *Server) release(e *entry) {
	s.mu.Lock()
	delete(s.sessions, e)
	if s.perIP[e.ip]--; s.perIP[e.ip] <= 0 {
		delete(s.perIP, e.ip)
	}
	s.mu.Unlock()
}

// refuse writes the refusal line to nc (unless implicitTLS, or why is empty:
// newSession gave no session) and closes it.
func (s *Server) refuse(nc net.Conn, ip netip.Addr, why string, implicitTLS bool) {
	defer nc.Close()
	if why == "" {
		return
	}
	s.log().Info(s.Name+" connection refused", "ip", IPString(ip), "reason", why)
	if implicitTLS || s.Refusal == nil {
		return
	}
	line := s.Refusal(why)
	if line == "" {
		return
	}
	// Both deadlines: a connection the protocol wraps in TLS itself
	// handshakes under this write, and the handshake reads.
	nc.SetDeadline(time.Now().Add(refusalTimeout))
	nc.Write([]byte(line))
}

// Shutdown stops accepting connections (the listeners are closed) and asks
// every session to end (Session.Shutdown), then waits for them. When ctx ends
// first, what is left is cut (Session.Close) and ctx's error returned once
// the sessions have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.initLocked()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	live := s.liveLocked()
	s.mu.Unlock()
	// Outside the lock: a session's Shutdown may wait for the session,
	// which may be releasing itself.
	for _, sess := range live {
		sess.Shutdown()
	}

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		s.cut = true
		live := s.liveLocked()
		s.mu.Unlock()
		for _, sess := range live {
			sess.Close()
		}
		<-done
		return ctx.Err()
	}
}

// liveLocked lists the sessions made so far; s.mu is held.
func (s *Server) liveLocked() []Session {
	live := make([]Session, 0, len(s.sessions))
	for e := range s.sessions {
		if e.sess != nil {
			live = append(live, e.sess)
		}
	}
	return live
}

// Closing reports whether Shutdown has begun.
func (s *Server) Closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Len returns the number of live sessions, and those from ip.
func (s *Server) Len(ip netip.Addr) (total, fromIP int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions), s.perIP[ip]
}

// RemoteIP returns the client's address of nc, IPv4-mapped IPv6 unmapped; the
// zero Addr when nc has none (a pipe).
func RemoteIP(nc net.Conn) netip.Addr {
	ra := nc.RemoteAddr()
	if ta, ok := ra.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if ra == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(ra.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// IPString is ip for log lines: "-" for the zero Addr.
func IPString(ip netip.Addr) string {
	if !ip.IsValid() {
		return "-"
	}
	return ip.String()
}
