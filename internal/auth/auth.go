// Package auth is how a user logs in, the same for SMTP submission, POP3,
// IMAP and the webmail: password hashing (argon2id, bcrypt still read), the
// SASL server mechanisms PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login)
// and SCRAM-SHA-256 (RFC 5802, RFC 7677), the rule on passwords over
// unencrypted connections, and throttling of failed logins.
//
// # Use
//
// The server makes one Authenticator and hands it to every protocol:
//
//	a := auth.New(st, auth.Options{AllowPlaintext: cfg.Auth.AllowPlaintext, Logger: log})
//
// A protocol lists a.Mechanisms(c) (SMTP EHLO AUTH, POP3 CAPA SASL, IMAP
// CAPABILITY AUTH=) and, for AUTHENTICATE/AUTH, drives a Mechanism:
//
//	c := auth.Client{Addr: remoteIP, TLS: tlsActive, Service: "pop3"}
//	m, err := a.Start(ctx, c, mechName)
//	if err != nil {
//		return reply(err) // ErrUnsupported, ErrEncryptionRequired, ErrThrottled
//	}
//	resp := initialResponse // nil when the client sent none; auth.DecodeResponse("=") gives []byte{}
//	for {
//		challenge, done, err := m.Next(resp)
//		if err != nil {
//			return reply(err) // ErrMismatch, ErrMalformed, ErrThrottled, or a temporary error
//		}
//		if done {
//			return loggedIn(m.Account())
//		}
//		send("+ " + base64.StdEncoding.EncodeToString(challenge)) // SMTP: "334 ..."
//		if resp, err = auth.DecodeResponse(readLine()); err != nil {
//			return reply(err) // ErrCanceled ("*") or ErrMalformed (not base64)
//		}
//	}
//
// A Mechanism has the method set of github.com/emersion/go-sasl's
// sasl.Server, so go-smtp's Session.Auth can return it as it is.
// USER/PASS (POP3), LOGIN (IMAP) and the webmail's form call CheckPassword.
// PlaintextAllowed tells whether to offer them (POP3 CAPA USER, IMAP
// LOGINDISABLED).
//
// # Errors, and what to answer
//
// Test with errors.Is:
//
//	ErrMismatch            wrong password, unknown user, authzid not the user:
//	                       SMTP 535 5.7.8, POP3 -ERR [AUTH], IMAP NO [AUTHENTICATIONFAILED]
//	ErrThrottled           too many failures, try later:
//	                       SMTP 454 4.7.0, POP3 -ERR [SYS/TEMP], IMAP NO [UNAVAILABLE]
//	ErrMalformed           the client broke the mechanism: SMTP 501 5.5.2, POP3 -ERR, IMAP BAD
//	ErrEncryptionRequired  a password mechanism on a plain connection:
//	                       SMTP 538 5.7.11, POP3 -ERR [AUTH], IMAP NO [PRIVACYREQUIRED]
//	ErrUnsupported         unknown mechanism: SMTP 504 5.5.4, POP3 -ERR, IMAP NO
//	ErrCanceled            "*" from the client: SMTP 501 5.0.0, POP3 -ERR, IMAP BAD
//	anything else          the store failed: temporary (SMTP 454 4.7.0, POP3 -ERR [SYS/TEMP],
//	                       IMAP NO [UNAVAILABLE])
//
// # Plain-text passwords
//
// PLAIN, LOGIN and CheckPassword carry the password itself, so they are
// refused on an unencrypted connection unless the client is 127.0.0.1 or ::1
// (only those) or the config says [auth] allow_plaintext = true.
// SCRAM-SHA-256 never sends the password and is offered everywhere.
//
// # Throttling and logs
//
// Failed logins slow down per client IP (per /64 for IPv6) and per account
// name: no delay for the first two failures, then 1 s, 2 s, 4 s ... up to
// 30 s, taken before the password is checked so that waiting is the only way
// to learn the answer; 10 failures within 10 minutes lock the IP or the
// account for 10 minutes (ErrThrottled, no password checked). A success
// clears the account's count (not the IP's: a client with one valid login
// must not clear its guesses at others). Memory is bounded: when full, the
// tables forget, among the least recently seen entries, the one with the
// fewest failures. See ThrottleConfig.
//
// Every failure is logged as one line that starts with the client address,
// before any text the client chose, so that fail2ban can match it:
//
//	level=WARN msg="auth failed" ip=192.0.2.7 service=smtp mech=PLAIN user=pp reason="wrong password"
//
// Passwords are never logged.
//
// # Timing
//
// An unknown user's password is checked against a dummy hash of the current
// cost, and a SCRAM exchange for one runs on a made-up credential, so the
// answer takes as long as for a wrong password of a real account.
//
// # Stored credentials
//
// NewCredentials makes the argon2id hash and the SCRAM-SHA-256 credential of a
// new password, for store.Store.SetPassword. An account without a SCRAM
// credential (made before posthorn had them) gets one the first time it logs
// in with PLAIN or LOGIN, and an old bcrypt hash is replaced with argon2id
// then; both through store.Store.UpgradePassword, which does not undo a
// password change made meanwhile.
package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/metrics"
	"github.com/posthorn/posthorn/internal/store"
)

// Mechanism names, as the protocols spell them.
const (
	SCRAMSHA256 = "SCRAM-SHA-256"
	Plain       = "PLAIN"
	Login       = "LOGIN"
)

// Errors of a login; test with errors.Is. ErrMismatch is in password.go.
var (
	// ErrThrottled: too many failed logins from this client or for this
	// account; the password was not checked. Temporary.
	ErrThrottled = errors.New("auth: too many failed logins, try again later")
	// ErrMalformed: a client message that does not follow the mechanism.
	ErrMalformed = errors.New("auth: malformed client message")
	// ErrEncryptionRequired: a password mechanism on an unencrypted
	// connection that the plain-text rule does not allow.
	ErrEncryptionRequired = errors.New("auth: encryption required for password logins")
	// ErrUnsupported: a mechanism posthorn does not offer.
	ErrUnsupported = errors.New("auth: unsupported mechanism")
	// ErrCanceled: the client answered "*" (DecodeResponse).
	ErrCanceled = errors.New("auth: canceled by the client")
)

// maxNameLen bounds a login name taken from a client (RFC 4616 asks servers
// to take at least 255 octets); account names are far shorter.
const maxNameLen = 255

// Accounts is what auth needs of the store; store.Store has it.
type Accounts interface {
	GetAccount(ctx context.Context, name string) (*store.Account, error)
	UpgradePassword(ctx context.Context, name, oldHash, passwordHash, scramSHA256 string) error
}

// Options configure an Authenticator. The zero value is the default.
type Options struct {
	// AllowPlaintext lets password mechanisms run on unencrypted connections
	// from any address ([auth] allow_plaintext).
	AllowPlaintext bool
	// Logger gets one line per failed login (and per success, at Info); nil
	// means slog.Default().
	Logger *slog.Logger
	// Throttle sets the delays and locks; zero fields take the defaults.
	Throttle ThrottleConfig
}

// Client is the connection a login comes on.
type Client struct {
	Addr    netip.Addr // the client's IP address; logins without one share one throttle count
	TLS     bool       // the connection is encrypted (implicit TLS, or after STARTTLS/STLS)
	Service string     // "smtp", "pop3", "imap", "web": names the protocol in log lines
}

// Mechanism is one SASL exchange on the server's side (RFC 4422 section 3).
// The protocol calls Next with the client's decoded response until done or
// an error: the first call gets the initial response, or nil when the client
// sent none (an empty initial response, "=", is a non-nil empty slice).
// With done false, challenge goes to the client and Next is called again with
// its answer. With done true and a nil error the client is logged in as
// Account(). An error ends the exchange. A Mechanism is used by one
// goroutine; the ctx given to Start bounds it.
type Mechanism interface {
	Next(response []byte) (challenge []byte, done bool, err error)
	// Account is the account logged in, once Next returned done with no
	// error; nil before.
	Account() *store.Account
}

// Authenticator checks logins for every protocol. It is safe for
// concurrent use.
type Authenticator struct {
	accounts       Accounts
	allowPlaintext bool
	log            *slog.Logger
	lim            *limiter
	secret         []byte // for made-up SCRAM credentials of unknown users

	dummyOnce sync.Once
	dummy     string // a hash no password matches, of the current cost

	// Seams for tests: the password check, a call per SCRAM proof check, and
	// the server nonce (RFC 7677's test vector fixes it).
	verify    func(hash, password string) (bool, error)
	proofHook func()
	nonceHook func() string
}

// New returns an Authenticator that finds accounts in accounts.
func New(accounts Accounts, opts Options) *Authenticator {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	return &Authenticator{
		accounts:       accounts,
		allowPlaintext: opts.AllowPlaintext,
		log:            log,
		lim:            newLimiter(opts.Throttle),
		secret:         secret,
		verify:         boundedVerify(runtime.GOMAXPROCS(0)),
	}
}

// boundedVerify is Verify with at most n checks at once. Each argon2id check
// takes 19 MiB: without a bound, a few hundred logins arriving together
// (from as many addresses, which the throttle does not stop) take gigabytes.
// The hash is CPU-bound, so n = the CPUs costs no throughput; the others wait.
func boundedVerify(n int) func(hash, password string) (bool, error) { return boundedWith(n, Verify) }

func boundedWith(n int, verify func(hash, password string) (bool, error)) func(hash, password string) (bool, error) {
	sem := make(chan struct{}, max(n, 1))
	return func(hash, password string) (bool, error) {
		sem <- struct{}{}
		defer func() { <-sem }()
		return verify(hash, password)
	}
}

// isLoopback is the relay rule's notion: 127.0.0.1 and ::1, nothing else of
// 127.0.0.0/8 (ARCHITECTURE.md, "Contract details").
func isLoopback(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || ip == netip.IPv6Loopback()
}

// PlaintextAllowed reports whether c may send a password itself (PLAIN,
// LOGIN, CheckPassword): over TLS, from 127.0.0.1 or ::1, or anywhere when
// the config allows it.
func (a *Authenticator) PlaintextAllowed(c Client) bool {
	return c.TLS || isLoopback(c.Addr) || a.allowPlaintext
}

// Mechanisms lists the SASL mechanisms to advertise to c, best first:
// SCRAM-SHA-256 always, PLAIN and LOGIN where PlaintextAllowed.
func (a *Authenticator) Mechanisms(c Client) []string {
	if a.PlaintextAllowed(c) {
		return []string{SCRAMSHA256, Plain, Login}
	}
	return []string{SCRAMSHA256}
}

// Start begins a SASL exchange with mechanism mech (any case). It fails with
// ErrUnsupported, ErrEncryptionRequired (a password mechanism that
// PlaintextAllowed refuses), or ErrThrottled (the client's address is locked).
func (a *Authenticator) Start(ctx context.Context, c Client, mech string) (Mechanism, error) {
	name := strings.ToUpper(mech)
	switch name {
	case SCRAMSHA256, Plain, Login:
	default:
		if len(mech) > 40 {
			mech = mech[:40]
		}
		return nil, fmt.Errorf("%w: %q", ErrUnsupported, mech)
	}
	if name != SCRAMSHA256 && !a.PlaintextAllowed(c) {
		return nil, ErrEncryptionRequired
	}
	if a.lim.ipLocked(c.Addr) {
		a.logFailure(c, name, "", "throttled")
		return nil, ErrThrottled
	}
	switch name {
	case Plain:
		return &plainServer{a: a, ctx: ctx, c: c}, nil
	case Login:
		return &loginServer{a: a, ctx: ctx, c: c}, nil
	default:
		return &scramServer{a: a, ctx: ctx, c: c}, nil
	}
}

// CheckPassword logs user in with a password given whole: POP3 USER/PASS,
// IMAP LOGIN, the webmail's form. It applies the plain-text rule, the
// throttle and the log line as the SASL mechanisms do; the error is one of
// those listed in the package comment.
func (a *Authenticator) CheckPassword(ctx context.Context, c Client, user, password string) (*store.Account, error) {
	if !a.PlaintextAllowed(c) {
		return nil, ErrEncryptionRequired
	}
	if a.lim.ipLocked(c.Addr) {
		a.logFailure(c, "password", user, "throttled")
		return nil, ErrThrottled
	}
	if user == "" || len(user) > maxNameLen || !utf8.ValidString(user) || password == "" {
		return nil, a.malformed(c, "password", user, "empty or invalid user name or password")
	}
	return a.passwordLogin(ctx, c, "password", user, password)
}

// DecodeResponse decodes a client's line in a SASL exchange: base64 (RFC
// 4648 section 4); "=" is an empty initial response (RFC 4954 section 4, RFC
// 5034 section 4, RFC 9051 section 6.2.2), "*" cancels (ErrCanceled); other
// text that is not base64 is ErrMalformed.
func DecodeResponse(line string) ([]byte, error) {
	switch line {
	case "*":
		return nil, ErrCanceled
	case "=":
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrMalformed)
	}
	return b, nil
}

// dummyHash is a hash of a random password with the current parameters, so
// that checking a password for an unknown user costs what a real check does.
func (a *Authenticator) dummyHash() string {
	a.dummyOnce.Do(func() {
		pw := make([]byte, 18)
		rand.Read(pw)
		h, err := Hash(base64.RawStdEncoding.EncodeToString(pw))
		if err != nil {
			panic("auth: dummy hash: " + err.Error()) // only if crypto/rand fails
		}
		a.dummy = h
	})
	return a.dummy
}

// passwordLogin checks a password sent whole (PLAIN, LOGIN, CheckPassword).
func (a *Authenticator) passwordLogin(ctx context.Context, c Client, mech, user, password string) (*store.Account, error) {
	return a.login(ctx, c, mech, user, func() (*store.Account, string, error) {
		acct, err := a.accounts.GetAccount(ctx, user)
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalidName) {
			return nil, "", fmt.Errorf("auth: looking up %q: %w", user, err)
		}
		if acct == nil {
			// The same work as a wrong password for a real account.
			a.verify(a.dummyHash(), password)
			return nil, "unknown user", ErrMismatch
		}
		rehash, err := a.verify(acct.PasswordHash, password)
		if errors.Is(err, ErrMismatch) {
			return nil, "wrong password", ErrMismatch
		}
		if err != nil {
			a.log.Error("auth: unreadable password hash; set the password again", "user", acct.Name, "err", err)
			return nil, "unreadable password hash", ErrMismatch
		}
		a.upgrade(ctx, acct, password, rehash)
		return acct, "", nil
	})
}

// login runs one credential check under the throttle: it waits the delay (or
// refuses a locked IP or account), runs check, then counts and logs the
// outcome. check returns the account, or ErrMismatch with the reason for the
// log, or another (temporary) error.
func (a *Authenticator) login(ctx context.Context, c Client, mech, user string, check func() (*store.Account, string, error)) (*store.Account, error) {
	delay, err := a.lim.begin(c.Addr, user)
	if err != nil {
		a.logFailure(c, mech, user, "throttled")
		return nil, err
	}
	if err := a.lim.sleep(ctx, delay); err != nil {
		a.lim.abandon(c.Addr, user)
		return nil, err
	}
	acct, reason, err := check()
	switch {
	case err == nil:
		a.lim.success(c.Addr, user)
		a.log.Info("auth ok", "ip", ipString(c.Addr), "service", c.Service, "mech", mech, "user", acct.Name)
		return acct, nil
	case errors.Is(err, ErrMismatch):
		a.lim.failed(c.Addr, user)
		a.logFailure(c, mech, user, reason)
		return nil, err
	default:
		a.lim.abandon(c.Addr, user)
		return nil, err
	}
}

// upgrade stores a new hash when the old one asks for it (bcrypt, old
// argon2id parameters) and a SCRAM credential when the account has none,
// from a password that was just verified. A failure is logged, not returned:
// the login itself succeeded.
func (a *Authenticator) upgrade(ctx context.Context, acct *store.Account, password string, rehash bool) {
	hash, scram := acct.PasswordHash, acct.SCRAMSHA256
	if rehash {
		h, err := Hash(password)
		if err != nil {
			a.log.Warn("auth: rehashing", "user", acct.Name, "err", err)
			return
		}
		hash = h
	}
	if scram == "" {
		s, err := newSCRAMCredential(password)
		if err != nil {
			a.log.Warn("auth: making the SCRAM credential", "user", acct.Name, "err", err)
			return
		}
		scram = s
	}
	if hash == acct.PasswordHash && scram == acct.SCRAMSHA256 {
		return
	}
	err := a.accounts.UpgradePassword(ctx, acct.Name, acct.PasswordHash, hash, scram)
	switch {
	case err == nil:
		acct.PasswordHash, acct.SCRAMSHA256 = hash, scram
	case errors.Is(err, store.ErrModified):
		a.log.Info("auth: password changed during the login; not upgrading it", "user", acct.Name)
	default:
		a.log.Warn("auth: storing the upgraded password hash", "user", acct.Name, "err", err)
	}
}

// malformed counts a broken client message against the client's address,
// logs it and returns ErrMalformed.
func (a *Authenticator) malformed(c Client, mech, user, why string) error {
	a.lim.fail(c.Addr, "")
	a.logFailure(c, mech, user, "malformed: "+why)
	return fmt.Errorf("%w: %s", ErrMalformed, why)
}

// refuse counts a failure that needed no password check (an authorization
// identity other than the user) and returns ErrMismatch.
func (a *Authenticator) refuse(c Client, mech, user, why string) error {
	a.lim.fail(c.Addr, user)
	a.logFailure(c, mech, user, why)
	return fmt.Errorf("%w: %s", ErrMismatch, why)
}

// logFailure writes the line fail2ban reads. ip comes first: everything
// after it may be text the client chose.
func (a *Authenticator) logFailure(c Client, mech, user, reason string) {
	if len(user) > 64 {
		user = user[:64]
	}
	a.log.Warn("auth failed", "ip", ipString(c.Addr), "service", c.Service, "mech", mech, "user", user, "reason", reason)
	countFailure(c.Service, reason)
}

// failureReasons names logFailure's reasons in posthorn_login_failures_total;
// every "malformed: ..." reason counts as malformed.
var failureReasons = map[string]string{
	"wrong password":                      "wrong_password",
	"unknown user":                        "unknown_user",
	"unknown user or no SCRAM credential": "unknown_user",
	"throttled":                           "throttled",
	"authzid differs":                     "authzid",
	"malformed":                           "malformed",
}

// loginFailures are the counters by Client.Service, resolved at init so
// that counting a failure neither locks nor allocates.
var loginFailures = func() map[string]metrics.Fixed {
	m := map[string]metrics.Fixed{}
	for _, p := range []string{"smtp", "pop3", "imap", "web", "other"} {
		m[p] = metrics.LoginFailures(p, failureReasons)
	}
	return m
}()

func countFailure(service, reason string) {
	if strings.HasPrefix(reason, "malformed") {
		reason = "malformed"
	}
	f, ok := loginFailures[service]
	if !ok {
		f = loginFailures["other"]
	}
	f.Of(reason).Inc()
}

func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return "-"
	}
	return ip.Unmap().String()
}
