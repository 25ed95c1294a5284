// Package pebbletest runs Pebble, Let's Encrypt's ACME test CA, inside the test
// process on 127.0.0.1, so that ACME can be tested end to end: real orders,
// real challenge checks against our own listeners, real certificates. Its VA
// finds our listeners through a DNS server given to it (dnstest), at the ports
// given to Start.
//
// Use it in two steps, as each side needs the other's address: Listen (the
// directory URL is then known, to put in the config), then Start with the
// ports the challenges are answered on.
package pebbletest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// CA is a Pebble instance.
type CA struct {
	// URL is the ACME directory (the config's acme_directory).
	URL string
	// CAFile holds the certificate of the directory's HTTPS server (the
	// config's acme_ca_file).
	CAFile string

	t       testing.TB
	ln      net.Listener
	srvCert tls.Certificate
	ca      *ca.CAImpl
	logs    *lockedBuffer
	orders  atomic.Int64
}

// Options says where Pebble's VA checks challenges and what it issues.
type Options struct {
	// HTTPPort and TLSPort are where the VA connects for http-01 and
	// tls-alpn-01, at the addresses Resolver gives for the names.
	HTTPPort, TLSPort int
	// Resolver is the DNS server ("127.0.0.1:port") the VA asks.
	Resolver string
	// Validity of issued certificates; 90 days when zero.
	Validity time.Duration
}

// Listen binds the directory's HTTPS port on 127.0.0.1 and writes CAFile; the
// CA answers once Start is called. Everything stops when the test ends.
func Listen(t testing.TB) *CA {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := &CA{t: t, ln: ln, URL: "https://" + ln.Addr().String() + wfe.DirectoryPath, logs: &lockedBuffer{}}
	certPEM, cert := serverCert(t)
	c.srvCert = cert
	c.CAFile = filepath.Join(t.TempDir(), "pebble-server.pem")
	if err := os.WriteFile(c.CAFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble's log:\n%s", c.logs.String())
		}
	})
	return c
}

// Start runs the CA. Pebble's random waits before each check are turned off
// (PEBBLE_VA_NOSLEEP), and so are its deliberate badNonce refusals
// (PEBBLE_WFE_NONCEREJECT): each costs the client a growing wait, and tests
// that time renewals need issuance to take about a second. Setting them makes
// the test unable to run in parallel with others.
func (c *CA) Start(o Options) {
	c.t.Helper()
	c.t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	c.t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logger := log.New(c.logs, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	validity := uint64(o.Validity / time.Second)
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: validity},
	})
	c.ca = authority
	vai := va.New(logger, o.HTTPPort, o.TLSPort, false, o.Resolver, store)
	fe := wfe.New(logger, store, vai, authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	h := fe.Handler()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/order-plz") {
				// Counted when created: Pebble refuses some requests with
				// badNonce on purpose, and clients send them again.
				sw := &statusWriter{ResponseWriter: w}
				h.ServeHTTP(sw, r)
				if sw.status == http.StatusCreated {
					c.orders.Add(1)
				}
				return
			}
			h.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c.srvCert}},
		ErrorLog:  logger,
	}
	go srv.ServeTLS(c.ln, "", "")
	c.t.Cleanup(func() { srv.Close() })
}

// Roots holds Pebble's root: certificates it issues verify against it.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.ca.GetRootCert(0).Cert)
	return p
}

// RootPEM is Pebble's root in PEM, for clients that read a CA file.
func (c *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.ca.GetRootCert(0).DER})
}

// Orders counts the orders created (RFC 8555 section 7.4).
func (c *CA) Orders() int { return int(c.orders.Load()) }

// serverCert makes a self-signed certificate for 127.0.0.1, for the
// directory's HTTPS.
func serverCert(t testing.TB) ([]byte, tls.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "pebbletest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return certPEM, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
