// Package server assembles a running posthorn from a config: it opens the store,
// watches the tables, builds the resolver, the deliverer and the protocol
// servers, binds every configured listener, and runs until told to stop.
// cmd/posthorn calls it; end-to-end tests may too.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/smtpd"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/tlsutil"
)

// TablePollInterval is how often the tables are checked for changes; a changed
// table is in force within two of these.
const TablePollInterval = 500 * time.Millisecond

// Server is a posthorn instance.
type Server struct {
	Config *config.Config
	Log    *slog.Logger
	Store  store.Store
	Tables *maps.Watcher

	smtp      *smtpd.Server
	listeners []listener
}

type listener struct {
	kind string // "smtp"
	ln   net.Listener
}

// Listener describes one bound listener, for the startup message.
type Listener struct {
	Kind string
	Addr net.Addr
}

// New binds the listeners, becomes run_as when started as root, and opens
// everything the config names; it does not serve yet.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	s := &Server{Config: cfg, Log: log}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	for _, a := range cfg.SMTP.Listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("[smtp] listen %s: %w", a, err)
		}
		s.listeners = append(s.listeners, listener{"smtp", ln})
	}
	// The key is read before run_as, which need not be able to read it (a
	// renewed certificate is then picked up only if it can).
	var tlsConfig *tls.Config
	if cfg.TLS.CertFile != "" {
		cert, err := tlsutil.LoadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		tlsConfig = cert.ServerConfig()
	}
	// With the ports open, a server started as root becomes run_as before it
	// touches its data or reads anything from the network.
	if err := DropPrivileges(cfg); err != nil {
		return nil, err
	}
	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "tmp")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
	}
	st, err := sqlite.Open(cfg.DataDir, sqlite.Options{Logger: log, PreallocateWAL: true})
	if err != nil {
		return nil, fmt.Errorf("opening the store in %s: %w", cfg.DataDir, err)
	}
	s.Store = st
	w, err := maps.NewWatcher(cfg.MapsDir, TablePollInterval, log)
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	s.Tables = w

	var resolver dnsutil.Resolver = dnsutil.New(cfg.DNS.Resolver)
	router := route.New(route.Config{
		Hostname:      cfg.Hostname,
		Tables:        w.Current,
		Accounts:      newAccountCache(st),
		AllowPrograms: cfg.Aliases.AllowPrograms,
		AllowFiles:    cfg.Aliases.AllowFiles,
	})
	s.smtp = &smtpd.Server{
		Config: smtpd.Config{
			Hostname:        cfg.Hostname,
			MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
			MaxRecipients:   cfg.SMTP.MaxRecipients,
			MaxConnsPerIP:   cfg.SMTP.MaxConnectionsPerIP,
			MaxConns:        cfg.SMTP.MaxConnections,
			CommandTimeout:  cfg.SMTP.CommandTimeout.D(),
			DataTimeout:     cfg.SMTP.DataTimeout.D(),
			TLSConfig:       tlsConfig,
			SpoolDir:        filepath.Join(cfg.DataDir, "tmp"),
		},
		Tables: w.Current,
		Router: router,
		Deliverer: &deliver.Deliverer{
			Store:          st,
			AllowPrograms:  cfg.Aliases.AllowPrograms,
			AllowFiles:     cfg.Aliases.AllowFiles,
			ProgramTimeout: cfg.Aliases.ProgramTimeout.D(),
			Log:            log,
		},
		DNS: resolver,
		Log: log,
	}
	ok = true
	return s, nil
}

// Listeners returns what is bound.
func (s *Server) Listeners() []Listener {
	out := make([]Listener, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = Listener{l.kind, l.ln.Addr()}
	}
	return out
}

// DropPrivileges becomes the user named by run_as when running as root; it
// does nothing otherwise. The command-line tools call it too, so that files
// they create in data_dir (the database's log, blobs) belong to that user.
// data_dir must belong to that user.
func DropPrivileges(cfg *config.Config) error {
	name := cfg.RunAs
	if name == "" || os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("run_as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("run_as: setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("run_as: setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("run_as: setuid: %w", err)
	}
	return nil
}

// Run serves until ctx is done, then shuts down gracefully (transactions in
// progress get up to grace to finish).
func (s *Server) Run(ctx context.Context, grace time.Duration) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go s.Tables.Run(watchCtx)

	errc := make(chan error, len(s.listeners))
	var wg sync.WaitGroup
	for _, l := range s.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.smtp.Serve(l.ln); err != nil && !errors.Is(err, smtpd.ErrServerClosed) {
				errc <- fmt.Errorf("%s on %s: %w", l.kind, l.ln.Addr(), err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.smtp.Shutdown(sctx)
	wg.Wait()
	return runErr
}

// ReloadTables re-reads the tables now (SIGHUP).
func (s *Server) ReloadTables() error { return s.Tables.Reload() }

// Close releases the store and the listeners.
func (s *Server) Close() error {
	for _, l := range s.listeners {
		l.ln.Close()
	}
	if s.Store != nil {
		return s.Store.Close()
	}
	return nil
}

// accountCache answers the resolver's "does this account exist" from memory
// for a short while: every RCPT asks it, and a database read per recipient was
// a tenth of the CPU time of a delivery. An account added by `posthorn user
// add` is known within accountCacheTTL; a deleted one is refused by the store
// at delivery anyway.
type accountCache struct {
	st store.Store
	mu sync.Mutex
	m  map[string]accountEntry
}

type accountEntry struct {
	exists bool
	at     time.Time
}

const (
	accountCacheTTL = 2 * time.Second
	// accountCacheMax bounds the memory a flood of RCPTs to made-up names can take.
	accountCacheMax = 10000
)

func newAccountCache(st store.Store) *accountCache {
	return &accountCache{st: st, m: map[string]accountEntry{}}
}

func (a *accountCache) AccountExists(ctx context.Context, name string) (bool, error) {
	now := time.Now()
	a.mu.Lock()
	e, ok := a.m[name]
	a.mu.Unlock()
	if ok && now.Sub(e.at) < accountCacheTTL {
		return e.exists, nil
	}
	_, err := a.st.GetAccount(ctx, name)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	a.mu.Lock()
	if len(a.m) >= accountCacheMax {
		clear(a.m)
	}
	a.m[name] = accountEntry{exists, now}
	a.mu.Unlock()
	return exists, nil
}
