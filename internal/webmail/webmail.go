// Package webmail is posthorn's mail in the browser, on [web] listen: log in
// with the account's password (internal/auth, Service "web", the shared
// throttling), mailboxes with unread counts, a paged and sorted message
// list, reading plain and HTML mail (sanitised with bluemonday and shown in a
// sandboxed frame that runs no script), attachments, compose / reply /
// reply-all / forward with attachments sent through the same path and
// checks as SMTP submission (route.Resolver.Owns, policy.CheckRcpt, the
// Deliverer), a copy in Sent, drafts, moves and flags on many messages at
// once, search, and live updates by server-sent events.
//
// Part 2 adds disposable addresses (disposable.go: lines of virtusertable a
// user makes, blocks and deletes; usage.go counts their mail) and the admin
// pages (admin.go: status, accounts, the tables, the outbound queue). Both
// edit the table files in Config.MapsDir through internal/tableedit and
// leave the reload to the server's watcher.
//
// Part 3 groups the list into conversations (threads.go: RFC 5256
// REFERENCES threading, imapsearch.Thread, over the cached rows; conv.go:
// the conversation page), saves drafts as the user types (compose.go,
// composeAutosave; static/app.js posts the form) with a draft's attachments
// kept when it is reopened, and remembers per account the senders whose
// remote images show (images.go).
//
// Pages are server-rendered html/template with the static files embedded;
// every page works without JavaScript for reading and sending, and the
// script (static/app.js) only adds keyboard shortcuts and live updates. No
// inline script or style: the Content-Security-Policy allows scripts and
// styles from 'self' only.
//
// # Extending
//
// Handlers are registered in one route table (Server.routes) with a
// middleware that says who may call them: public, a logged-in user
// (requireLogin), or an admin (requireAdmin). Every POST is checked for the
// session's CSRF token before its handler runs. Pages render through
// Server.render with the base layout (templates/layout.html); a new page is
// a new template file defining "title" and "content".
package webmail

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deliverer takes messages to send; the server's SMTP deliverer (with its
// failure reports) is the real one, the same the submission port uses.
type Deliverer interface {
	Deliver(ctx context.Context, env *deliver.Envelope, body store.Body) (*deliver.Result, error)
}

// Config is what a Server needs.
type Config struct {
	Hostname  string // our name: Message-IDs, Received:
	Store     store.Store
	Auth      *auth.Authenticator
	Router    *route.Resolver     // recipients and sender ownership, as submission
	Tables    func() *maps.Tables // access rules for recipients (policy.CheckRcpt)
	Deliverer Deliverer
	// MaxMessageBytes bounds a message sent from the browser, attachments
	// included (the SMTP limit; 0: 25 MiB).
	MaxMessageBytes int64
	// SessionTTL is how long a session lasts without use (0: 12 hours).
	SessionTTL time.Duration
	Log        *slog.Logger

	// MapsDir is the tables' directory (maps_dir): the disposable addresses
	// and the admin pages edit the files there (internal/tableedit), and the
	// server's watcher loads them. "" turns those pages off.
	MapsDir string
	// StateDir is where the counts of mail to virtusertable addresses and
	// each account's senders of allowed images are kept (data_dir); ""
	// keeps them in memory only.
	StateDir string
	// Status tells the admin status page about the running server
	// (listeners, certificates); nil shows only what the store knows.
	Status func() Status
}

// Server is the webmail. Make it with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tmpl    map[string]*template.Template
	mux     *http.ServeMux
	sess    *sessions
	cache   *listCache
	usage   *usageBook    // mail to virtusertable addresses (usage.go)
	images  *imageSenders // senders whose remote images show (images.go)
	static  http.Handler
	done    chan struct{} // closed by Shutdown: ends event streams
	doneMu  sync.Once
	srvMu   sync.Mutex
	servers []*http.Server
}

// New makes a Server from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Auth == nil {
		return nil, errors.New("webmail: Store and Auth are required")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 25 << 20
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Log, done: make(chan struct{})}
	var err error
	if s.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	s.sess = newSessions(cfg.SessionTTL)
	s.cache = newListCache(cfg.Store, 32)
	s.usage = loadUsage(cfg.StateDir, cfg.Log)
	s.images = newImageSenders(cfg.StateDir, cfg.Log)
	sub, _ := fs.Sub(staticFS, "static")
	s.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	s.mux = http.NewServeMux()
	for _, r := range s.routes() {
		s.mux.Handle(r.pattern, s.wrap(r))
	}
	return s, nil
}

// access says who may call a route.
type access int

const (
	public access = iota
	user
	admin
)

// route is one entry of the route table.
type routeEntry struct {
	pattern string // http.ServeMux pattern, with the method
	access  access
	h       func(w http.ResponseWriter, r *http.Request, c *reqCtx)
}

// routes is the route table. Part 2 (disposable addresses, admin pages) adds
// its entries here, with access admin for the admin pages.
func (s *Server) routes() []routeEntry {
	return []routeEntry{
		{"GET /static/", public, func(w http.ResponseWriter, r *http.Request, _ *reqCtx) { s.serveStatic(w, r) }},
		{"GET /login", public, s.loginPage},
		{"POST /login", public, s.loginPost},
		{"POST /logout", user, s.logoutPost},
		{"GET /{$}", user, func(w http.ResponseWriter, r *http.Request, c *reqCtx) { s.inboxRedirect(w, r, c) }},
		{"GET /mail/{mb}", user, s.listPage},
		{"POST /mail/{mb}/actions", user, s.actionsPost},
		{"GET /msg/{mb}/{uid}", user, s.readPage},
		{"POST /msg/{mb}/{uid}/actions", user, s.actionsPost},
		{"GET /msg/{mb}/{uid}/body", user, s.bodyFrame},
		{"GET /msg/{mb}/{uid}/part/{path}", user, s.partDownload},
		{"GET /msg/{mb}/{uid}/cid/{cid}", user, s.cidImage},
		{"GET /msg/{mb}/{uid}/raw", user, s.rawDownload},
		// Part 3: conversations (threads.go, conv.go), drafts saved as
		// you go (compose.go), remote images allowed per sender (images.go).
		{"GET /conv/{mb}/{uid}", user, s.conversationPage},
		{"POST /images/{action}", user, s.imagesPost},
		{"GET /compose", user, s.composePage},
		{"POST /compose", user, s.composePost},
		{"POST /compose/autosave", user, s.composeAutosave},
		{"GET /events", user, s.events},
		// Disposable addresses (disposable.go).
		{"GET /addresses", user, s.addressesPage},
		{"POST /addresses", user, s.addressCreate},
		{"POST /addresses/{action}", user, s.addressAction},
		// Admin pages (admin.go).
		{"GET /admin", admin, s.adminStatus},
		{"GET /admin/accounts", admin, s.adminAccounts},
		{"POST /admin/accounts", admin, s.adminAccountsPost},
		{"GET /admin/tables/{table}", admin, s.adminTable},
		{"POST /admin/tables/{table}", admin, s.adminTablePost},
		{"GET /admin/queue", admin, s.adminQueue},
		{"POST /admin/queue", admin, s.adminQueuePost},
	}
}

// reqCtx is what a handler knows of the request beyond it: the session
// (nil on public routes when nobody is logged in).
type reqCtx struct {
	sess *session
}

// Handler returns the webmail's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Content-Security-Policy of the pages: scripts, styles, images and frames
// from this origin only, nothing inline; forms post here only; no framing
// by others.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; frame-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
}

// wrap applies the security headers, the session, the access rule and, on
// POST, the CSRF check.
func (s *Server) wrap(rt routeEntry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		c := &reqCtx{sess: s.sess.fromRequest(r)}
		switch rt.access {
		case user, admin:
			if c.sess == nil {
				if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
					http.Redirect(w, r, "/login", http.StatusSeeOther)
					return
				}
				http.Error(w, "not logged in", http.StatusUnauthorized)
				return
			}
			if rt.access == admin && !s.requireAdmin(r.Context(), c.sess) {
				http.Error(w, "admins only", http.StatusForbidden)
				return
			}
		}
		if r.Method == http.MethodPost && rt.access == public {
			// Forms anyone may post (the login) are small, and never
			// multipart: no stranger makes the server spool megabytes.
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
		} else if r.Method == http.MethodPost {
			// Bodies are bounded: a message with its attachments, base64
			// and form overhead included.
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxMessageBytes*2+(1<<20))
			if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
				if err := r.ParseMultipartForm(8 << 20); err != nil {
					http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
					return
				}
				defer r.MultipartForm.RemoveAll()
			}
		}
		if r.Method == http.MethodPost && rt.pattern != "POST /login" {
			// Every state-changing request carries the session's token
			// (the login form has its own, tied to a pre-session cookie).
			if c.sess == nil || !c.sess.checkCSRF(r) {
				http.Error(w, "invalid or missing CSRF token", http.StatusForbidden)
				return
			}
		}
		rt.h(w, r, c)
	})
}

// requireAdmin reports whether the session's account is an admin now (read
// from the store, so that taking the mark away takes effect at once).
func (s *Server) requireAdmin(ctx context.Context, sess *session) bool {
	a, err := s.cfg.Store.GetAccount(ctx, sess.account)
	return err == nil && a.Admin
}

func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request) {
	// Static files may be cached: they change only with the binary.
	w.Header().Set("Cache-Control", "public, max-age=3600")
	s.static.ServeHTTP(w, r)
}

// Serve serves HTTP on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(l, nil)
}

// ServeTLS serves HTTPS on l with cfg until Shutdown.
func (s *Server) ServeTLS(l net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return errors.New("webmail: ServeTLS needs a TLS config")
	}
	return s.serve(l, cfg)
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = http.ErrServerClosed

func (s *Server) serve(l net.Listener, cfg *tls.Config) error {
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 20 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.srvMu.Lock()
	select {
	case <-s.done:
		s.srvMu.Unlock()
		return ErrServerClosed
	default:
	}
	s.servers = append(s.servers, hs)
	s.srvMu.Unlock()
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	return hs.Serve(l)
}

// Shutdown ends the event streams and stops the listeners, letting requests
// in progress finish until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.doneMu.Do(func() { close(s.done) })
	if err := s.usage.save(); err != nil {
		s.log.Warn("webmail: address counts not saved", "err", err)
	}
	s.srvMu.Lock()
	servers := append([]*http.Server(nil), s.servers...)
	s.srvMu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// clientIP is the remote address of the request, for throttling and logs.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return strings.TrimPrefix(host, "::ffff:")
}
