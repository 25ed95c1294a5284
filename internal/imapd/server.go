// Package imapd is posthorn's IMAP server: IMAP4rev2 (RFC 9051) and
// IMAP4rev1 (RFC 3501) with the extensions modern clients sync with
// (CONDSTORE and QRESYNC, IDLE, MOVE, UIDPLUS, ESEARCH, LIST-EXTENDED and
// the rest listed in capabilities). It reads commands with
// internal/imapd/imapwire, renders message structure with
// internal/imapd/imapfetch, and keeps everything in internal/store.
//
// A session that selects a mailbox keeps its own view of it: the UIDs in
// sequence order with their flags and MODSEQs. Changes made by others
// (deliveries, other sessions) reach the view through store.Subscribe and
// are read back from the store by MODSEQ (ListMessages with changedSince,
// Vanished), so a lost notification costs nothing but a re-read. The view
// is brought up to date, and the client told, only where RFC 9051 section
// 7 allows: never an EXPUNGE while a FETCH, STORE or SEARCH is answered
// (section 7.4.1), so sequence numbers do not shift under a command.
package imapd

import (
	"context"
	"crypto/tls"
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
	// TLSConfig serves STARTTLS and implicit TLS (ServeTLS); nil offers neither.
	TLSConfig *tls.Config
	// IdleTimeout ends a logged-in session that sends nothing for this long
	// (30 minutes: RFC 9051 section 5.4 wants at least 30). PreAuthTimeout
	// is the same before login (1 minute).
	IdleTimeout    time.Duration
	PreAuthTimeout time.Duration
	// AppendLimit is the largest message APPEND takes (APPENDLIMIT, RFC
	// 7889); 64 MiB.
	AppendLimit int64
	// MaxErrors is how many BAD commands in a row close the session (20).
	MaxErrors int
	// MaxConns caps the sessions in total (20,000), MaxConnsPerIP those
	// from one client address (100: a desktop client opens a few per
	// account).
	MaxConns      int
	MaxConnsPerIP int
}

func (c *Config) setDefaults() {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.PreAuthTimeout <= 0 {
		c.PreAuthTimeout = time.Minute
	}
	if c.AppendLimit <= 0 {
		c.AppendLimit = 64 << 20
	}
	if c.MaxErrors <= 0 {
		c.MaxErrors = 20
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 20000
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 100
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
}

// handshakeTimeout bounds a TLS handshake (implicit TLS and STARTTLS).
const handshakeTimeout = 30 * time.Second

// Server is an IMAP server. Set its fields, then call Serve (port 143,
// STARTTLS offered when TLSConfig is set) or ServeTLS (port 993) for each
// listener.
type Server struct {
	Config
	Store store.Store
	Auth  *auth.Authenticator
	Log   *slog.Logger

	cache    boxCache // messages of the mailboxes selected lately
	initOnce sync.Once
	reg      netserve.Server
	ctx      context.Context // logins; ends when Shutdown begins
	cancel   context.CancelFunc
}

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = netserve.ErrServerClosed

func (s *Server) init() { s.initOnce.Do(s.setup) }

func (s *Server) setup() {
	s.setDefaults()
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.reg = netserve.Server{
		Name:          "imap",
		MaxConns:      s.MaxConns,
		MaxConnsPerIP: s.MaxConnsPerIP,
		Log:           s.Log,
		Refusal: func(why string) string {
			return "* BYE [UNAVAILABLE] " + why + "\r\n"
		},
	}
}

// Serve accepts IMAP connections on l until Shutdown; STARTTLS is offered
// when TLSConfig is set.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts connections on l that start with a TLS handshake (RFC
// 8314 section 3.3, port 993) until Shutdown.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.TLSConfig == nil {
		return errorf("ServeTLS needs a TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	s.init()
	return s.reg.Serve(l, implicitTLS, func(nc net.Conn, ip netip.Addr) netserve.Session {
		return newSession(s, nc, ip, implicitTLS)
	})
}

// Shutdown stops accepting connections and ends the sessions: one waiting
// for a command (or in IDLE) gets "* BYE" at once, a busy one finishes its
// command first. When ctx ends first, what is left is cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.cancel()
	return s.reg.Shutdown(ctx)
}
