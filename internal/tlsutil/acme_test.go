package tlsutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/tlsutil/pebbletest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLog returns a logger whose lines are shown when the test fails.
func testLog(t *testing.T) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("posthorn's log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// acmeConfig writes a posthorn.toml with [tls] acme on, for the CA, and loads it.
func acmeConfig(t *testing.T, dir string, ca *pebbletest.CA, tlsKeys string) *config.Config {
	t.Helper()
	text := fmt.Sprintf(`hostname = "mail.example.test"
data_dir = "data"
maps_dir = "."
[tls]
acme = true
acme_email = "postmaster@example.test"
acme_directory = %q
acme_ca_file = %q
%s
`, ca.URL, ca.CAFile, tlsKeys)
	path := filepath.Join(dir, "posthorn.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// names resolves the test names to 127.0.0.1 for Pebble's VA.
func names(t *testing.T, hosts ...string) *dnstest.Server {
	dns := dnstest.Start(t)
	for _, h := range hosts {
		dns.MustAdd(t, h+". 60 IN A 127.0.0.1")
	}
	return dns
}

// runProvider runs p until stop is called or the test ends; stop checks that
// Run returns nil once its context ends.
func runProvider(t *testing.T, p *Provider) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitVerified handshakes with addr until the certificate it serves verifies
// against roots for name, and returns it.
func waitVerified(t *testing.T, addr, name string, roots *x509.CertPool, timeout time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err == nil {
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s that verifies within %v: %v", name, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// served returns the leaf served at addr to a client sending SNI name (none
// when empty) and offering protos, without verifying it.
func served(addr, name string, protos ...string) (*x509.Certificate, tls.ConnectionState, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true, NextProtos: protos})
	if err != nil {
		return nil, tls.ConnectionState{}, err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	return cs.PeerCertificates[0], cs, nil
}

func TestACMEHTTP01AgainstPebble(t *testing.T) {
	dir := t.TempDir()
	dns := names(t, "mail.example.test", "smtp.example.test")
	ca := pebbletest.Listen(t)
	cfg := acmeConfig(t, dir, ca, `acme_domains = ["mail.example.test", "SMTP.example.test."]
acme_http_listen = "127.0.0.1:0"`)
	log, logs := testLog(t)
	p, err := FromConfig(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ca.Start(pebbletest.Options{HTTPPort: p.HTTPAddr().(*net.TCPAddr).Port, Resolver: dns.Addr})
	addr := serve(t, p.TLSConfig())

	// Before the CA has issued anything there is nothing to serve.
	if _, _, err := served(addr, "mail.example.test"); err == nil {
		t.Fatal("a handshake succeeded before any certificate was obtained")
	}
	stop := runProvider(t, p)
	leaf := waitVerified(t, addr, "smtp.example.test", ca.Roots(), time.Minute)
	slices.Sort(leaf.DNSNames)
	if strings.Join(leaf.DNSNames, ",") != "mail.example.test,smtp.example.test" {
		t.Errorf("certificate names %v", leaf.DNSNames)
	}
	waitVerified(t, addr, "mail.example.test", ca.Roots(), time.Second)
	if ca.Orders() != 1 {
		t.Errorf("%d orders for one certificate", ca.Orders())
	}
	// Clients that send no name, or another one, get the same certificate.
	for _, sni := range []string{"", "other.example.test"} {
		got, _, err := served(addr, sni)
		if err != nil || got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Errorf("SNI %q: served %v, %v; want the ACME certificate", sni, got, err)
		}
	}
	checkOldTLSRefused(t, addr)

	// The certificate, its key and the account key are kept, privately.
	cacheDir := filepath.Join(dir, "data", "acme", cacheName(ca.URL))
	for _, f := range []string{acmeAccountFile, acmeCertFile, acmeKeyFile} {
		fi, err := os.Stat(filepath.Join(cacheDir, f))
		if err != nil {
			t.Errorf("cache: %v", err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, fi.Mode().Perm())
		}
	}
	// Only the challenge path is answered on the http-01 port.
	resp, err := http.Get("http://" + p.HTTPAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / on the http-01 port: %s", resp.Status)
	}
	if !strings.Contains(logs.String(), "acme: certificate obtained") {
		t.Errorf("no log line for the new certificate")
	}

	// Run releases the http-01 port when it stops.
	httpAddr := p.HTTPAddr().String()
	stop()
	if c, err := net.Dial("tcp", httpAddr); err == nil {
		c.Close()
		t.Error("the http-01 port is still open after Run returned")
	}

	// A restart serves the cached certificate at once, orders nothing new,
	// and reuses the account.
	restart := func(domains string) (*Provider, string) {
		cfg := acmeConfig(t, dir, ca, fmt.Sprintf("acme_domains = %s\nacme_http_listen = %q", domains, httpAddr))
		log, _ := testLog(t)
		p, err := FromConfig(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		return p, serve(t, p.TLSConfig())
	}
	p2, addr2 := restart(`["mail.example.test", "smtp.example.test"]`)
	again := waitVerified(t, addr2, "mail.example.test", ca.Roots(), time.Second)
	if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("after a restart a different certificate is served")
	}
	stop2 := runProvider(t, p2)
	time.Sleep(time.Second)
	if ca.Orders() != 1 {
		t.Errorf("after a restart with a valid cached certificate, %d orders", ca.Orders())
	}
	stop2()

	// A name added to the config needs a new certificate: the next start
	// serves the cached one meanwhile, and orders one with all the names.
	dns.MustAdd(t, "imap.example.test. 60 IN A 127.0.0.1")
	p3, addr3 := restart(`["mail.example.test", "smtp.example.test", "imap.example.test"]`)
	if got, _, err := served(addr3, "mail.example.test"); err != nil || got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("before the new order the cached certificate is not served: %v", err)
	}
	runProvider(t, p3)
	waitVerified(t, addr3, "imap.example.test", ca.Roots(), time.Minute)
	if ca.Orders() != 2 {
		t.Errorf("%d orders, want 2", ca.Orders())
	}
}

func TestACMETLSALPN01AgainstPebble(t *testing.T) {
	dir := t.TempDir()
	dns := names(t, "mail.example.test")
	ca := pebbletest.Listen(t)
	cfg := acmeConfig(t, dir, ca, `acme_challenge = "tls-alpn-01"`)
	log, _ := testLog(t)
	p, err := FromConfig(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if p.HTTPAddr() != nil {
		t.Error("an http-01 port is open for tls-alpn-01")
	}
	// The CA checks the challenge on a listener that uses the configuration,
	// here one that also speaks another protocol, as the web server would.
	conf := p.TLSConfig()
	conf.NextProtos = []string{"http/1.1"}
	addr := serve(t, conf)
	_, port, _ := net.SplitHostPort(addr)
	var tlsPort int
	fmt.Sscan(port, &tlsPort)
	ca.Start(pebbletest.Options{TLSPort: tlsPort, Resolver: dns.Addr})
	runProvider(t, p)
	leaf := waitVerified(t, addr, "mail.example.test", ca.Roots(), time.Minute)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "mail.example.test" {
		t.Errorf("names %v, want the hostname by default", leaf.DNSNames)
	}
	// No challenge is pending any more: an acme-tls/1 handshake is refused,
	// and one for other protocols is served as usual.
	if _, _, err := served(addr, "mail.example.test", acme.ALPNProto); err == nil {
		t.Error("an acme-tls/1 handshake was served with no challenge pending")
	}
	got, cs, err := served(addr, "mail.example.test", "imap", "http/1.1")
	if err != nil || got.SerialNumber.Cmp(leaf.SerialNumber) != 0 || cs.NegotiatedProtocol != "http/1.1" {
		t.Errorf("a client offering imap and http/1.1: %v %q %v", got, cs.NegotiatedProtocol, err)
	}
	checkOldTLSRefused(t, addr)
}

func TestACMERenewsBeforeExpiry(t *testing.T) {
	dir := t.TempDir()
	dns := names(t, "mail.example.test")
	ca := pebbletest.Listen(t)
	cfg := acmeConfig(t, dir, ca, `acme_http_listen = "127.0.0.1:0"`)
	log, logs := testLog(t)
	p, err := FromConfig(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	// Certificates valid for 30 seconds are renewed 20 seconds in, which
	// leaves time for the renewal (a second or two of polling) before expiry.
	ca.Start(pebbletest.Options{HTTPPort: p.HTTPAddr().(*net.TCPAddr).Port, Resolver: dns.Addr, Validity: 30 * time.Second})
	addr := serve(t, p.TLSConfig())
	runProvider(t, p)
	first := waitVerified(t, addr, "mail.example.test", ca.Roots(), time.Minute)
	if life := first.NotAfter.Sub(first.NotBefore); life > 30*time.Second {
		t.Fatalf("Pebble issued a certificate for %v", life)
	}
	deadline := time.Now().Add(time.Minute)
	var second *x509.Certificate
	for {
		second = waitVerified(t, addr, "mail.example.test", ca.Roots(), time.Minute)
		if second.SerialNumber.Cmp(first.SerialNumber) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the certificate expiring at %v was not renewed", first.NotAfter)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Renewed before the old one expired, and no sooner than two thirds in.
	if now := time.Now(); now.After(first.NotAfter) {
		t.Errorf("renewed at %v, after the old certificate expired at %v", now, first.NotAfter)
	}
	if second.NotBefore.Before(renewAt(first).Truncate(time.Second)) {
		t.Errorf("renewed at %v, before %v", second.NotBefore, renewAt(first))
	}
	// The renewed certificate is the one in the cache.
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "data", "acme", cacheName(ca.URL), acmeCertFile),
		filepath.Join(dir, "data", "acme", cacheName(ca.URL), acmeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("the cache still holds the first certificate")
	}
	if n := strings.Count(logs.String(), "acme: certificate obtained"); n < 2 {
		t.Errorf("%d log lines for obtained certificates", n)
	}
}

// TestACMERetriesAfterFailure: a name the CA cannot check fails the order; it
// is tried again, with a growing wait, until it works.
func TestACMERetriesAfterFailure(t *testing.T) {
	dir := t.TempDir()
	dns := dnstest.Start(t) // mail.example.test does not resolve yet
	ca := pebbletest.Listen(t)
	cfg := acmeConfig(t, dir, ca, `acme_http_listen = "127.0.0.1:0"`)
	log, logs := testLog(t)
	p, err := FromConfig(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p.acme.retryMin = 100 * time.Millisecond
	p.acme.retryMax = 400 * time.Millisecond
	ca.Start(pebbletest.Options{HTTPPort: p.HTTPAddr().(*net.TCPAddr).Port, Resolver: dns.Addr})
	addr := serve(t, p.TLSConfig())
	runProvider(t, p)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "acme: obtaining a certificate failed") {
		if time.Now().After(deadline) {
			t.Fatal("no failure logged for a name that does not resolve")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := served(addr, "mail.example.test"); err == nil {
		t.Error("a certificate is served although the CA could not check the name")
	}
	dns.MustAdd(t, "mail.example.test. 60 IN A 127.0.0.1")
	waitVerified(t, addr, "mail.example.test", ca.Roots(), time.Minute)
	if ca.Orders() < 2 {
		t.Errorf("%d orders", ca.Orders())
	}
}

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	parse := func(text string) *config.Config {
		t.Helper()
		cfg, err := config.Parse(filepath.Join(dir, "posthorn.toml"), []byte("hostname = \"mail.example.test\"\ndata_dir = \"data\"\nmaps_dir = \".\"\n"+text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	// No certificate: no TLS.
	p, err := FromConfig(parse(""), nil)
	if err != nil || p.TLSConfig() != nil || p.HTTPAddr() != nil || p.Run(context.Background()) != nil {
		t.Errorf("without [tls]: %v %v", p, err)
	}
	// Files: the copy handed out may be changed without touching others.
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, "files.test")
	p, err = FromConfig(parse("[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.TLSConfig(), p.TLSConfig()
	a.NextProtos = []string{"h2"}
	if a.MinVersion != tls.VersionTLS12 || len(b.NextProtos) != 0 {
		t.Errorf("TLSConfig: %+v %+v", a, b)
	}
	addr := serve(t, b)
	if got := servedName(t, addr); got != "files.test" {
		t.Errorf("served %q", got)
	}
	checkOldTLSRefused(t, addr)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	for _, tc := range []struct{ text, want string }{
		{"[tls]\ncert_file = \"missing.pem\"\nkey_file = \"key.pem\"\n", "missing.pem"},
		{"[tls]\nacme = true\nacme_ca_file = \"missing-ca.pem\"\n", "acme_ca_file"},
		{"[tls]\nacme = true\nacme_ca_file = \"not.pem\"\n", "acme_ca_file " + notPEM + ": no PEM certificate"},
		{"[tls]\nacme = true\nacme_http_listen = \"" + busy.Addr().String() + "\"\n", "acme_http_listen " + busy.Addr().String()},
	} {
		p, err := FromConfig(parse(tc.text), nil)
		if err == nil {
			p.Close()
			t.Errorf("%q: no error", tc.text)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q does not name %q", tc.text, err, tc.want)
		}
	}

	// Close releases the http-01 port of a Provider that never ran.
	p, err = FromConfig(parse("[tls]\nacme = true\nacme_http_listen = \"127.0.0.1:0\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := p.HTTPAddr().String()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Errorf("the http-01 port is still taken after Close: %v", err)
	} else {
		ln.Close()
	}
	// Nothing is written before Run: a server started as root makes its
	// files only after becoming run_as.
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("FromConfig made the data directory")
	}
}

func TestCacheName(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"https://acme-v02.api.letsencrypt.org/directory", "acme-v02.api.letsencrypt.org_directory"},
		{"https://acme-staging-v02.api.letsencrypt.org/directory", "acme-staging-v02.api.letsencrypt.org_directory"},
		{"https://127.0.0.1:14000/dir", "127.0.0.1_14000_dir"},
		{"https://ca.example/../../etc/passwd", "ca.example_.._.._etc_passwd"},
		{"https://[::1]:443/dir", "___1__443_dir"},
	} {
		got := cacheName(tc.url)
		if got != tc.want {
			t.Errorf("cacheName(%q) = %q, want %q", tc.url, got, tc.want)
		}
		if filepath.Base(got) != got || got == "." || got == ".." {
			t.Errorf("cacheName(%q) = %q is not one plain file name", tc.url, got)
		}
	}
	if cacheName("https://a.example/x") == cacheName("https://b.example/x") {
		t.Error("two CAs share a cache")
	}
}

func TestRenewAt(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		life time.Duration
		want time.Duration // after NotBefore
	}{
		{90 * 24 * time.Hour, 60 * 24 * time.Hour}, // Let's Encrypt's 90 days: at day 60
		{6 * 24 * time.Hour, 4 * 24 * time.Hour},   // short-lived certificates
		{9 * time.Second, 6 * time.Second},
	} {
		leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(tc.life)}
		if got := renewAt(leaf).Sub(start); got != tc.want {
			t.Errorf("lifetime %v: renewed after %v, want %v", tc.life, got, tc.want)
		}
	}
}

// FuzzCacheName: whatever the directory URL, the cache is one plain
// directory inside acme_cache_dir.
func FuzzCacheName(f *testing.F) {
	for _, s := range []string{"https://acme-v02.api.letsencrypt.org/directory", "https://127.0.0.1:14000/dir",
		"https://x/../..", "..", "/", "", "https://%2e%2e/", "https://a/\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		got := cacheName(u)
		if got == "" || got == "." || got == ".." || strings.ContainsAny(got, "/\\\x00") || filepath.Base(got) != got {
			t.Errorf("cacheName(%q) = %q", u, got)
		}
		if filepath.Dir(filepath.Join("/cache", got)) != "/cache" {
			t.Errorf("cacheName(%q) = %q leaves the cache directory", u, got)
		}
	})
}

// TestHTTP01Responder: only a pending token's path is answered, to GET and
// HEAD, with the key authorization.
func TestHTTP01Responder(t *testing.T) {
	m, err := newACMEManager(acmeOptions{Directory: "https://ca.example/dir", Domains: []string{"mx.example.org"}, CacheDir: t.TempDir(), Challenge: "http-01"})
	if err != nil {
		t.Fatal(err)
	}
	m.httpTokens["/.well-known/acme-challenge/tok"] = []byte("tok.thumbprint")
	srv := &http.Server{Handler: m}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/.well-known/acme-challenge/tok", 200, "tok.thumbprint"},
		{"HEAD", "/.well-known/acme-challenge/tok", 200, ""},
		{"POST", "/.well-known/acme-challenge/tok", 404, ""},
		{"GET", "/.well-known/acme-challenge/other", 404, ""},
		{"GET", "/.well-known/acme-challenge/", 404, ""},
		{"GET", "/.well-known/acme-challenge/tok/../tok", 404, ""}, // only the exact path
		{"GET", "/", 404, ""},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.status == 200 && body.String() != tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body.String(), tc.status, tc.body)
		}
	}
}
