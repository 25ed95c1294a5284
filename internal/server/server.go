// Package server assembles a running posthorn from a config: it opens the store,
// watches the tables, builds the resolver, the deliverer and the protocol
// servers, binds every configured listener, and runs until told to stop.
// cmd/posthorn calls it; end-to-end tests may too.
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/autoconfig"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/imapd"
	"github.com/posthorn/posthorn/internal/maildrop"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/metrics"
	"github.com/posthorn/posthorn/internal/pop3d"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/smtpc"
	"github.com/posthorn/posthorn/internal/smtpd"
	"github.com/posthorn/posthorn/internal/srs"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/tlsutil"
	"github.com/posthorn/posthorn/internal/webmail"
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

	certs   *tlsutil.Provider
	rejects *rejectRing // the SMTP servers' latest refusals (admin status page)

	// Queue delivers the outbound queue.
	Queue *queue.Runner
	// Auth checks every protocol's logins: one, so that throttling counts
	// failures across SMTP, POP3, IMAP and the rest.
	Auth *auth.Authenticator

	smtp       *smtpd.Server
	submission *smtpd.Server // ports 587 and 465 (RFC 6409, RFC 8314)
	pop3       *pop3d.Server // ports 110 (STLS) and 995 (implicit TLS)
	imap       *imapd.Server // ports 143 (STARTTLS) and 993 (implicit TLS)
	web        *webmail.Server
	webTLS     *tls.Config
	pickup     *maildrop.Pickup
	router     *route.Resolver
	deliverer  *deliver.Deliverer
	checks     *smtpd.Checks // port 25's anti-spam and SPF/DKIM/DMARC checks
	listeners  []listener
	// [metrics] listen: /metrics and /healthz (metrics.go).
	metricsLns []net.Listener
	metricsSrv *http.Server
}

type listener struct {
	kind string // "smtp", "submission" (587, STARTTLS), "submissions" (465, implicit TLS), "pop3" (110, STLS), "pop3s" (995), "imap" (143, STARTTLS), "imaps" (993), "web" (HTTP), "webs" (HTTPS)
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
	for _, sub := range []struct {
		kind, key string
		addrs     []string
	}{
		{"submission", "[smtp] submission_listen", cfg.SMTP.SubmissionListen},
		{"submissions", "[smtp] submissions_listen", cfg.SMTP.SubmissionsListen},
	} {
		for _, a := range sub.addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", sub.key, a, err)
			}
			s.listeners = append(s.listeners, listener{sub.kind, ln})
		}
	}
	for _, p := range []struct {
		kind, key string
		addrs     []string
	}{
		{"pop3", "[pop3] listen", cfg.POP3.Listen},
		{"pop3s", "[pop3] tls_listen", cfg.POP3.TLSListen},
		{"imap", "[imap] listen", cfg.IMAP.Listen},
		{"imaps", "[imap] tls_listen", cfg.IMAP.TLSListen},
		{"web", "[web] listen", cfg.Web.Listen},
		{"webs", "[web] tls_listen", cfg.Web.TLSListen},
	} {
		for _, a := range p.addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", p.key, a, err)
			}
			s.listeners = append(s.listeners, listener{p.kind, ln})
		}
	}
	if err := s.bindMetrics(); err != nil {
		return nil, err
	}
	// The key is read before run_as, which need not be able to read it (a
	// renewed certificate is then picked up only if it can); with ACME, the
	// HTTP-01 port is bound now too.
	certs, err := tlsutil.FromConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	s.certs = certs
	tlsConfig := certs.TLSConfig()
	if len(cfg.SMTP.SubmissionsListen) > 0 && tlsConfig == nil {
		return nil, errors.New("[smtp] submissions_listen is implicit TLS and needs a certificate ([tls])")
	}
	if len(cfg.POP3.TLSListen) > 0 && tlsConfig == nil {
		return nil, errors.New("[pop3] tls_listen is implicit TLS and needs a certificate ([tls])")
	}
	if len(cfg.IMAP.TLSListen) > 0 && tlsConfig == nil {
		return nil, errors.New("[imap] tls_listen is implicit TLS and needs a certificate ([tls])")
	}
	if len(cfg.Web.TLSListen) > 0 && tlsConfig == nil {
		return nil, errors.New("[web] tls_listen is HTTPS and needs a certificate ([tls])")
	}
	s.webTLS = tlsConfig
	// Secrets, like the key, are read while still root: the SRS secret, the
	// smart host's password, its CA.
	rewriter, err := loadSRS(cfg)
	if err != nil {
		return nil, err
	}
	var resolver dnsutil.Resolver = dnsutil.New(cfg.DNS.Resolver)
	client, err := newSMTPClient(cfg, resolver, log)
	if err != nil {
		return nil, err
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
	raw, err := sqlite.Open(cfg.DataDir, sqlite.Options{Logger: log, PreallocateWAL: true})
	if err != nil {
		return nil, fmt.Errorf("opening the store in %s: %w", cfg.DataDir, err)
	}
	// Everyone gets the store with Deliver and Append timed
	// (posthorn_store_duration_seconds).
	st := metrics.TimeStore(raw)
	s.Store = st
	s.Auth = auth.New(st, auth.Options{AllowPlaintext: cfg.Auth.AllowPlaintext, Logger: log})
	dropDir, err := prepareMaildrop(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	w, err := maps.NewWatcher(cfg.MapsDir, TablePollInterval, log)
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	s.Tables = w

	router := route.New(route.Config{
		SRS:           rewriter,
		Hostname:      cfg.Hostname,
		Tables:        w.Current,
		Accounts:      newAccountCache(st),
		AllowPrograms: cfg.Aliases.AllowPrograms,
		AllowFiles:    cfg.Aliases.AllowFiles,
	})
	s.router = router
	s.deliverer = &deliver.Deliverer{
		Store:          st,
		AllowPrograms:  cfg.Aliases.AllowPrograms,
		AllowFiles:     cfg.Aliases.AllowFiles,
		ProgramTimeout: cfg.Aliases.ProgramTimeout.D(),
		Log:            log,
		Queued:         func(e *store.QueueEntry, body []byte) { s.Queue.EnqueuedEntry(e, body) },
		SRS:            rewriter,
		IsLocalDomain:  router.IsLocalDomain,
		DKIM:           keyRing(cfg),
	}
	s.Queue = queue.NewRunner(&queue.Runner{
		Store:  st,
		Client: client,
		Tables: w.Current,
		Notify: s.notify,
		Config: queue.Config{
			Hostname:          cfg.Hostname,
			Lifetime:          cfg.Queue.Lifetime.D(),
			DelayWarning:      cfg.Queue.DelayWarning.D(),
			MinBackoff:        cfg.Queue.MinBackoff.D(),
			MaxBackoff:        cfg.Queue.MaxBackoff.D(),
			MaxConnections:    cfg.Queue.MaxConnections,
			MaxPerDestination: cfg.Queue.MaxPerDestination,
			SmartHost:         cfg.SMTP.SmartHost,
		},
		Log: log,
	})
	s.pickup = &maildrop.Pickup{Dir: dropDir, Interval: time.Second, Handle: s.pickupMessage, Log: log}
	// The SMTP servers' refusals are kept for the admin status page.
	s.rejects = &rejectRing{}
	smtpLog := slog.New(rejectHandler{inner: log.Handler(), ring: s.rejects})
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
		Tables:    w.Current,
		Router:    router,
		Deliverer: reportingDeliverer{s},
		DNS:       resolver,
		Log:       smtpLog,
		// Port 25 offers AUTH too (over TLS), as Postfix can: a logged-in
		// user may relay through it.
		Auth: s.Auth,
	}
	// Port 25 only: submission takes logged-in users, whom none applies to.
	if s.checks, err = newChecks(cfg, resolver, w.Current()); err != nil {
		return nil, err
	}
	s.smtp.Checks = s.checks
	// Submission: the same server, but MAIL only after AUTH, and missing
	// header fields added (RFC 6409).
	s.submission = &smtpd.Server{
		Config:    s.smtp.Config,
		Tables:    s.smtp.Tables,
		Router:    s.smtp.Router,
		Deliverer: s.smtp.Deliverer,
		DNS:       s.smtp.DNS,
		Log:       smtpLog,
		Auth:      s.Auth,
	}
	s.submission.Submission = true
	s.pop3 = &pop3d.Server{
		Config: pop3d.Config{Hostname: cfg.Hostname, TLSConfig: tlsConfig},
		Store:  st,
		Auth:   s.Auth,
		Log:    log,
	}
	s.imap = &imapd.Server{
		Config: imapd.Config{
			Hostname:      cfg.Hostname,
			TLSConfig:     tlsConfig,
			AppendLimit:   int64(cfg.IMAP.AppendLimit),
			IdleTimeout:   cfg.IMAP.IdleTimeout.D(),
			MaxConns:      cfg.IMAP.MaxConnections,
			MaxConnsPerIP: cfg.IMAP.MaxConnectionsPerIP,
		},
		Store: st,
		Auth:  s.Auth,
		Log:   log,
	}
	// The webmail sends through the submission path: the same resolver,
	// access rules and deliverer (with its failure reports).
	s.web, err = webmail.New(webmail.Config{
		Hostname:        cfg.Hostname,
		Store:           st,
		Auth:            s.Auth,
		Router:          router,
		Tables:          w.Current,
		Deliverer:       signing{reportingDeliverer{s}},
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		Log:             log,
		MapsDir:         cfg.MapsDir,
		StateDir:        cfg.DataDir,
		Status:          s.webStatus,
	})
	if err != nil {
		return nil, err
	}
	// Mail programs set themselves up from the autoconfig document on the
	// web listener (autoconfig.DOMAIN, see posthorn dns-records).
	ac := autoconfig.Handler(autoconfig.Config{
		Hostname: cfg.Hostname,
		Domains: func() []string {
			t := w.Current()
			return append(t.LocalHostNames.Names(), t.Virtusertable.Domains()...)
		},
		IMAPS:       autoconfig.FirstPort(cfg.IMAP.TLSListen),
		IMAP:        autoconfig.FirstPort(cfg.IMAP.Listen),
		POP3S:       autoconfig.FirstPort(cfg.POP3.TLSListen),
		POP3:        autoconfig.FirstPort(cfg.POP3.Listen),
		Submissions: autoconfig.FirstPort(cfg.SMTP.SubmissionsListen),
		Submission:  autoconfig.FirstPort(cfg.SMTP.SubmissionListen),
	})
	for _, p := range autoconfig.Paths {
		s.web.Mount("GET "+p, ac)
	}
	// Port 25's deliveries to virtusertable addresses are counted for the
	// disposable addresses page.
	s.smtp.Deliverer = s.web.CountDeliveries(s.smtp.Deliverer)
	ok = true
	return s, nil
}

// Listeners returns what is bound.
func (s *Server) Listeners() []Listener {
	out := make([]Listener, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = Listener{l.kind, l.ln.Addr()}
	}
	for _, ln := range s.metricsLns {
		out = append(out, Listener{"metrics", ln.Addr()})
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
	go func() {
		if err := s.certs.Run(watchCtx); err != nil {
			s.Log.Error("certificates", "err", err)
		}
	}()

	errc := make(chan error, len(s.listeners)+len(s.metricsLns))
	var wg sync.WaitGroup
	queueCtx, stopQueue := context.WithCancel(context.Background())
	defer stopQueue()
	queueDone := make(chan struct{})
	go func() {
		s.Queue.Run(queueCtx)
		close(queueDone)
	}()
	pickupDone := make(chan struct{})
	go func() {
		s.pickup.Run(queueCtx)
		close(pickupDone)
	}()
	for _, l := range s.listeners {
		serve := s.smtp.Serve
		switch l.kind {
		case "submission":
			serve = s.submission.Serve
		case "submissions":
			serve = s.submission.ServeTLS
		case "pop3":
			serve = s.pop3.Serve
		case "pop3s":
			serve = s.pop3.ServeTLS
		case "imap":
			serve = s.imap.Serve
		case "imaps":
			serve = s.imap.ServeTLS
		case "web":
			serve = s.web.Serve
		case "webs":
			serve = func(l net.Listener) error { return s.web.ServeTLS(l, s.webTLS) }
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(l.ln); err != nil && !errors.Is(err, smtpd.ErrServerClosed) && !errors.Is(err, pop3d.ErrServerClosed) && !errors.Is(err, imapd.ErrServerClosed) && !errors.Is(err, webmail.ErrServerClosed) {
				errc <- fmt.Errorf("%s on %s: %w", l.kind, l.ln.Addr(), err)
			}
		}()
	}
	s.serveMetrics(errc)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var sw sync.WaitGroup
	for _, srv := range []*smtpd.Server{s.smtp, s.submission} {
		sw.Go(func() { srv.Shutdown(sctx) })
	}
	sw.Go(func() { s.pop3.Shutdown(sctx) })
	sw.Go(func() { s.imap.Shutdown(sctx) })
	sw.Go(func() { s.web.Shutdown(sctx) })
	sw.Go(func() { s.shutdownMetrics(sctx) })
	sw.Wait()
	wg.Wait()
	// Connections in the middle of a message are cut; the queue records
	// them as deferred before the store closes.
	stopQueue()
	<-pickupDone
	<-queueDone
	return runErr
}

// newSMTPClient makes the outbound client from the config: the system's
// roots plus [smtpc] ca_file, and the smart host's login.
func newSMTPClient(cfg *config.Config, r dnsutil.Resolver, log *slog.Logger) (*smtpc.Client, error) {
	c := &smtpc.Client{
		Hostname:       cfg.Hostname,
		Resolver:       r,
		Port:           cfg.SMTPC.Port,
		ConnectTimeout: cfg.SMTPC.ConnectTimeout.D(),
		CommandTimeout: cfg.SMTPC.CommandTimeout.D(),
		Log:            log,
	}
	if cfg.SMTPC.CAFile != "" {
		pem, err := os.ReadFile(cfg.SMTPC.CAFile)
		if err != nil {
			return nil, fmt.Errorf("[smtpc] ca_file: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("[smtpc] ca_file %s: no PEM certificate in it", cfg.SMTPC.CAFile)
		}
		c.RootCAs = roots
	}
	if cfg.SMTP.SmartHostUser != "" {
		b, err := os.ReadFile(cfg.SMTP.SmartHostPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("[smtp] smart_host_password_file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		c.User, c.Password = cfg.SMTP.SmartHostUser, strings.TrimSuffix(pw, "\r")
	}
	return c, nil
}

// notify delivers a notice (bounce, delay, success) from the null sender to
// to, wherever to resolves: a local mailbox or the queue.
func (s *Server) notify(ctx context.Context, to string, msg []byte) error {
	a, err := addr.ParsePath(to, true)
	if err != nil {
		return fmt.Errorf("notice recipient %q: %w", to, err)
	}
	res, err := s.router.Resolve(ctx, a)
	if err != nil {
		return fmt.Errorf("notice recipient %q: %w", to, err)
	}
	env := &deliver.Envelope{
		ID:         queue.NewID(),
		Null:       true,
		Recipients: []deliver.Recipient{{Address: a, Targets: res.Targets}},
	}
	// As the SMTP server does for every message: a Return-Path: for final
	// delivery (RFC 5321 section 4.4), which the queue leaves out when the
	// notice goes on to another server.
	body := append([]byte("Return-Path: <>\r\n"), msg...)
	_, err = s.deliverer.Deliver(ctx, env, bytes.NewReader(body))
	return err
}

// ReloadTables re-reads the tables now (SIGHUP).
func (s *Server) ReloadTables() error { return s.Tables.Reload() }

// Close releases the store and the listeners.
func (s *Server) Close() error {
	for _, l := range s.listeners {
		l.ln.Close()
	}
	for _, ln := range s.metricsLns {
		ln.Close()
	}
	if s.certs != nil {
		s.certs.Close()
	}
	if s.checks != nil && s.checks.Greylist != nil {
		s.checks.Greylist.Close()
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

// loadSRS reads [srs] secret_file: one secret per line, the first signs new
// addresses, all verify (so that a secret can be rotated without losing the
// bounces to addresses made with the old one). No file configured: no SRS.
func loadSRS(cfg *config.Config) (*srs.Rewriter, error) {
	if cfg.SRS.SecretFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(cfg.SRS.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("[srs] secret_file: %w", err)
	}
	var secrets [][]byte
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			secrets = append(secrets, []byte(l))
		}
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("[srs] secret_file %s: no secret in it", cfg.SRS.SecretFile)
	}
	return &srs.Rewriter{Secrets: secrets, Domain: cfg.SRS.Domain}, nil
}
