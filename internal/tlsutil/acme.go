package tlsutil

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
)

// Files kept in the ACME cache directory (one subdirectory per CA directory
// URL, so that a certificate from a test CA is never served after switching to
// a real one).
const (
	acmeAccountFile = "account.key"
	acmeCertFile    = "cert.pem" // the chain, leaf first
	acmeKeyFile     = "key.pem"
)

// Retry waits after a failed attempt: doubling from the first to the last.
// Let's Encrypt allows 5 failed validations per name and hour; this stays under it.
const (
	acmeRetryMin = time.Minute
	acmeRetryMax = time.Hour
	// acmeRecheck bounds one sleep of the renewal loop, so that a clock that
	// jumps (a suspended machine) delays a renewal by at most this much.
	acmeRecheck = time.Hour
	// acmeIssueTimeout bounds one attempt: order, validation, issuance.
	acmeIssueTimeout = 10 * time.Minute
)

// acmeOptions configures an acmeManager.
type acmeOptions struct {
	Directory string   // the CA's directory URL
	Email     string   // contact, optional
	Domains   []string // the names the certificate covers; the first is its subject
	CacheDir  string   // the directory holding one subdirectory per CA
	Challenge string   // "http-01" or "tls-alpn-01"
	Roots     *x509.CertPool
	Log       *slog.Logger
}

// acmeManager obtains one certificate that covers all its domains from an ACME
// CA (RFC 8555), keeps it in its cache directory, serves it, and renews it when
// two thirds of its lifetime have passed (Let's Encrypt's advice: 60 of 90
// days), retrying failures with a growing wait while the old one is served.
type acmeManager struct {
	opts     acmeOptions
	dir      string // CacheDir's subdirectory for this CA
	client   *acme.Client
	retryMin time.Duration
	retryMax time.Duration

	cur atomic.Pointer[tls.Certificate] // nil until one is loaded or obtained

	mu         sync.Mutex
	httpTokens map[string][]byte           // http-01: URL path -> key authorization
	alpnCerts  map[string]*tls.Certificate // tls-alpn-01: name -> challenge certificate
	registered bool
}

// newACMEManager prepares a manager and loads a certificate already in the
// cache. It writes nothing: the cache directory is made by the first issuance,
// which happens after a server started as root has become run_as.
func newACMEManager(o acmeOptions) (*acmeManager, error) {
	if len(o.Domains) == 0 {
		return nil, errors.New("acme: no domain names")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.Roots}
	m := &acmeManager{
		opts: o,
		dir:  filepath.Join(o.CacheDir, cacheName(o.Directory)),
		client: &acme.Client{
			DirectoryURL: o.Directory,
			HTTPClient:   &http.Client{Transport: tr, Timeout: 2 * time.Minute},
			UserAgent:    "posthorn",
		},
		retryMin:   acmeRetryMin,
		retryMax:   acmeRetryMax,
		httpTokens: map[string][]byte{},
		alpnCerts:  map[string]*tls.Certificate{},
	}
	pair, err := loadPair(filepath.Join(m.dir, acmeCertFile), filepath.Join(m.dir, acmeKeyFile))
	if err == nil {
		m.cur.Store(pair)
		o.Log.Info("acme: certificate from the cache", "names", pair.Leaf.DNSNames, "not_after", pair.Leaf.NotAfter)
	} else if !errors.Is(err, os.ErrNotExist) {
		o.Log.Warn("acme: the cached certificate does not load; a new one will be ordered", "dir", m.dir, "err", err)
	}
	return m, nil
}

// loadPair reads a certificate chain and its key, with the leaf parsed.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if pair.Leaf == nil { // filled in by Go 1.23 and later, unless GODEBUG says otherwise
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &pair, nil
}

// cacheName turns a directory URL into a file name: its host, port and path.
func cacheName(directory string) string {
	s := directory
	if u, err := url.Parse(directory); err == nil && u.Host != "" {
		s = u.Host + u.Path
	}
	b := []byte(strings.Trim(s, "/"))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "ca" + string(b)
	}
	return string(b)
}

// getCertificate serves the certificate whatever name the client asks for:
// mail clients and servers often send no SNI, or a name of their own.
func (m *acmeManager) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cur.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("acme: no certificate obtained yet")
}

// configForClient answers tls-alpn-01 (RFC 8737 section 3): a handshake that
// offers the "acme-tls/1" protocol gets the challenge certificate for the name
// it asks for. Other handshakes go on with the listener's own configuration,
// so that clients asking for other protocols are not refused.
func (m *acmeManager) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if !slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
		return nil, nil
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	m.mu.Lock()
	cert := m.alpnCerts[name]
	m.mu.Unlock()
	if cert == nil {
		return nil, fmt.Errorf("acme: no tls-alpn-01 challenge pending for %q", name)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{acme.ALPNProto},
	}, nil
}

// ServeHTTP answers http-01 challenges (RFC 8555 section 8.3) and nothing else.
func (m *acmeManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	body, ok := m.httpTokens[r.URL.Path]
	m.mu.Unlock()
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

// renewAt is when a certificate is due for renewal: two thirds into its lifetime.
func renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life * 2 / 3)
}

// covers reports whether leaf names every domain.
func covers(leaf *x509.Certificate, domains []string) bool {
	for _, d := range domains {
		if leaf.VerifyHostname(d) != nil {
			return false
		}
	}
	return true
}

// due returns how long until the current certificate must be replaced: zero
// when there is none, or it lacks a configured name, or it is due.
func (m *acmeManager) due(now time.Time) time.Duration {
	c := m.cur.Load()
	if c == nil || c.Leaf == nil || !covers(c.Leaf, m.opts.Domains) {
		return 0
	}
	return max(0, renewAt(c.Leaf).Sub(now))
}

// run obtains a certificate when there is none or it is due, and then again
// before each expires, until ctx ends.
func (m *acmeManager) run(ctx context.Context) error {
	wait := m.retryMin
	for {
		if d := m.due(time.Now()); d > 0 {
			if !sleep(ctx, min(d, acmeRecheck)) {
				return nil
			}
			continue
		}
		err := m.obtain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			wait = m.retryMin
			continue
		}
		args := []any{"names", m.opts.Domains, "err", err, "retry_in", wait}
		if c := m.cur.Load(); c != nil {
			args = append(args, "serving_until", c.Leaf.NotAfter)
		}
		m.opts.Log.Error("acme: obtaining a certificate failed", args...)
		if !sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, m.retryMax)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// obtain orders a certificate for all the domains, answers the challenges,
// and stores and serves the result.
func (m *acmeManager) obtain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, acmeIssueTimeout)
	defer cancel()
	if err := m.register(ctx); err != nil {
		return err
	}
	// RFC 8555 section 7.4: a new order, one authorization per name.
	order, err := m.client.AuthorizeOrder(ctx, acme.DomainIDs(m.opts.Domains...))
	if err != nil {
		return fmt.Errorf("new order: %w", err)
	}
	for _, u := range order.AuthzURLs {
		if err := m.authorize(ctx, u); err != nil {
			return err
		}
	}
	if order, err = m.client.WaitOrder(ctx, order.URI); err != nil {
		return fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{DNSNames: m.opts.Domains}
	if len(m.opts.Domains[0]) <= 64 { // the longest common name X.509 allows
		tmpl.Subject = pkix.Name{CommonName: m.opts.Domains[0]}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return err
	}
	chain, _, err := m.client.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return fmt.Errorf("finalizing the order: %w", err)
	}
	cert, err := m.check(chain, key)
	if err != nil {
		return err
	}
	if err := m.store(chain, key); err != nil {
		// Served all the same; the next start orders again.
		m.opts.Log.Error("acme: keeping the certificate in the cache", "dir", m.dir, "err", err)
	}
	m.cur.Store(cert)
	m.opts.Log.Info("acme: certificate obtained", "names", cert.Leaf.DNSNames,
		"not_after", cert.Leaf.NotAfter, "renew_at", renewAt(cert.Leaf), "issuer", cert.Leaf.Issuer.String())
	return nil
}

// register makes sure the account exists (RFC 8555 section 7.3); an account
// key already known to the CA is fine.
func (m *acmeManager) register(ctx context.Context) error {
	m.mu.Lock()
	done := m.registered
	m.mu.Unlock()
	if done {
		return nil
	}
	if m.client.Key == nil {
		key, err := m.accountKey()
		if err != nil {
			return err
		}
		m.client.Key = key
	}
	acct := &acme.Account{}
	if m.opts.Email != "" {
		acct.Contact = []string{"mailto:" + m.opts.Email}
	}
	if _, err := m.client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("account at %s: %w", m.opts.Directory, err)
	}
	m.mu.Lock()
	m.registered = true
	m.mu.Unlock()
	return nil
}

// accountKey reads the account key from the cache, or makes and keeps one.
func (m *acmeManager) accountKey() (crypto.Signer, error) {
	path := filepath.Join(m.dir, acmeAccountFile)
	data, err := os.ReadFile(path)
	if err == nil {
		b, _ := pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("acme account key %s: not PEM", path)
		}
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("acme account key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("acme account key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("acme account key: %w", err)
	}
	return k, nil
}

// authorize proves control of one name: it provisions the challenge of the
// configured type, tells the CA to check it, and waits for the outcome.
func (m *acmeManager) authorize(ctx context.Context, authzURL string) error {
	z, err := m.client.GetAuthorization(ctx, authzURL)
	if err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	switch z.Status {
	case acme.StatusValid:
		return nil // authorized recently, for this account
	case acme.StatusPending:
	default:
		return fmt.Errorf("authorization for %s is %s", z.Identifier.Value, z.Status)
	}
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == m.opts.Challenge {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("the CA offers no %s challenge for %s", m.opts.Challenge, z.Identifier.Value)
	}
	name := strings.ToLower(z.Identifier.Value)
	switch chal.Type {
	case "http-01":
		body, err := m.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		path := m.client.HTTP01ChallengePath(chal.Token)
		m.mu.Lock()
		m.httpTokens[path] = []byte(body)
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.httpTokens, path)
			m.mu.Unlock()
		}()
	case "tls-alpn-01":
		cert, err := m.client.TLSALPN01ChallengeCert(chal.Token, name)
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.alpnCerts[name] = &cert
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.alpnCerts, name)
			m.mu.Unlock()
		}()
	}
	if _, err := m.client.Accept(ctx, chal); err != nil {
		return fmt.Errorf("%s challenge for %s: %w", chal.Type, name, err)
	}
	if _, err := m.client.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("%s challenge for %s: %w", chal.Type, name, err)
	}
	return nil
}

// check makes sure the CA sent what was asked for: a chain whose leaf holds our
// key and names every domain, valid now.
func (m *acmeManager) check(chain [][]byte, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("the CA sent no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the CA's certificate is not for our key")
	}
	if !covers(leaf, m.opts.Domains) {
		return nil, fmt.Errorf("the CA's certificate names %v, not all of %v", leaf.DNSNames, m.opts.Domains)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("the CA's certificate expired at %v", leaf.NotAfter)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// store keeps the chain and key in the cache. A crash between the two writes
// leaves a pair that does not load, and the next start orders a new one.
func (m *acmeManager) store(chain [][]byte, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	var certPEM []byte
	for _, c := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := writeFile(filepath.Join(m.dir, acmeKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	return writeFile(filepath.Join(m.dir, acmeCertFile), certPEM)
}

// writeFile replaces path with data durably: a temporary file, synced, renamed
// into place, the directory synced. Files are private (keys are among them).
func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
