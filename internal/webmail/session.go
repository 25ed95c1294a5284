package webmail

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
)

// Cookie names. The session cookie is HttpOnly, SameSite=Lax and, on
// HTTPS, Secure; it holds only a random id (the state is in memory here).
const (
	sessionCookie = "posthorn_session"
	preCookie     = "posthorn_pre" // before login: ties the login form's CSRF token
)

// maxSessions bounds the memory sessions take; past it the oldest go.
const maxSessions = 100000

// session is a logged-in browser.
type session struct {
	id        string
	account   string // account name
	accountID int64
	csrf      string
	expires   time.Time
}

// checkCSRF reports whether r carries the session's token, in the form
// field "csrf" or the X-CSRF-Token header (the script's fetches).
func (s *session) checkCSRF(r *http.Request) bool {
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		tok = r.PostFormValue("csrf")
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) == 1
}

type sessions struct {
	ttl    time.Duration
	secret []byte // signs the login form's token
	mu     sync.Mutex
	m      map[string]*session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, secret: randomBytes(32), m: map[string]*session{}}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randomToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(24)) }

// fromRequest returns the live session of the request's cookie, extending
// it, or nil.
func (ss *sessions) fromRequest(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	now := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[c.Value]
	if s == nil {
		return nil
	}
	if now.After(s.expires) {
		delete(ss.m, s.id)
		return nil
	}
	s.expires = now.Add(ss.ttl)
	return s
}

// create makes a session for an account and sets its cookie.
func (ss *sessions) create(w http.ResponseWriter, r *http.Request, account string, accountID int64) *session {
	s := &session{id: randomToken(), account: account, accountID: accountID, csrf: randomToken(), expires: time.Now().Add(ss.ttl)}
	ss.mu.Lock()
	if len(ss.m) >= maxSessions {
		ss.expireLocked(time.Now(), true)
	}
	ss.m[s.id] = s
	ss.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.id, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	return s
}

// expireLocked drops expired sessions, and with force the half that
// expires soonest too.
func (ss *sessions) expireLocked(now time.Time, force bool) {
	for id, s := range ss.m {
		if now.After(s.expires) {
			delete(ss.m, id)
		}
	}
	if force && len(ss.m) >= maxSessions {
		cut := now.Add(ss.ttl / 2)
		for id, s := range ss.m {
			if s.expires.Before(cut) {
				delete(ss.m, id)
			}
		}
	}
}

// destroy ends the request's session and clears its cookie.
func (ss *sessions) destroy(w http.ResponseWriter, r *http.Request, s *session) {
	ss.mu.Lock()
	delete(ss.m, s.id)
	ss.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
}

// loginToken returns the login form's CSRF token: an HMAC of a random
// pre-session cookie, set here when missing. A page elsewhere cannot read the
// cookie, so it cannot make the token (login CSRF).
func (ss *sessions) loginToken(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if c, err := r.Cookie(preCookie); err == nil && len(c.Value) >= 16 {
		v = c.Value
	} else {
		v = randomToken()
		http.SetCookie(w, &http.Cookie{Name: preCookie, Value: v, Path: "/", HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	}
	return ss.sign(v)
}

func (ss *sessions) sign(v string) string {
	m := hmac.New(sha256.New, ss.secret)
	m.Write([]byte("login:" + v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkLoginToken checks the login form's token against the cookie.
func (ss *sessions) checkLoginToken(r *http.Request) bool {
	c, err := r.Cookie(preCookie)
	if err != nil || len(c.Value) < 16 {
		return false
	}
	tok := r.PostFormValue("csrf")
	return tok != "" && hmac.Equal([]byte(tok), []byte(ss.sign(c.Value)))
}

// loginPage shows the login form.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	if c.sess != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, c, http.StatusOK, "login", map[string]any{"LoginToken": s.sess.loginToken(w, r)})
}

// loginPost checks the password (auth.CheckPassword: the plain-text rule and
// the shared throttling apply) and starts a session.
func (s *Server) loginPost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !s.sess.checkLoginToken(r) {
		http.Error(w, "invalid or missing CSRF token", http.StatusForbidden)
		return
	}
	name, password := r.PostFormValue("user"), r.PostFormValue("password")
	ip, _ := netip.ParseAddr(clientIP(r))
	acct, err := s.cfg.Auth.CheckPassword(r.Context(), auth.Client{Addr: ip, TLS: r.TLS != nil, Service: "web"}, name, password)
	if err != nil {
		msg, code := "Wrong user name or password.", http.StatusUnauthorized
		switch {
		case errors.Is(err, auth.ErrThrottled):
			msg, code = "Too many failed logins; try again later.", http.StatusTooManyRequests
		case errors.Is(err, auth.ErrEncryptionRequired):
			msg, code = "Passwords are taken only over HTTPS here.", http.StatusForbidden
		case errors.Is(err, auth.ErrMismatch), errors.Is(err, auth.ErrMalformed):
		default:
			msg, code = "Temporary failure; try again.", http.StatusServiceUnavailable
			s.log.Warn("web login failed", "ip", clientIP(r), "err", err)
		}
		s.render(w, r, c, code, "login", map[string]any{"LoginToken": s.sess.loginToken(w, r), "Error": msg, "User": name})
		return
	}
	s.sess.create(w, r, acct.Name, acct.ID)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logoutPost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	s.sess.destroy(w, r, c.sess)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
