// Package tlsutil provides the TLS configuration every posthorn listener uses:
// certificates from files (reloaded when they change), a self-signed one for
// `serve --dev`, and certificates obtained and renewed from an ACME CA such as
// Let's Encrypt (RFC 8555). FromConfig builds the one for [tls]. TLS 1.2 is the
// oldest version offered.
package tlsutil

import (
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// checkEvery is how often, at most, a handshake looks whether the files changed.
const checkEvery = 5 * time.Second

// Certificate serves a certificate and key read from files, re-reading them when
// they change (a renewed certificate is used without a restart). A failed
// re-read keeps the previous certificate.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	checkEvery        time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	loaded    fileState // what cert was read from
	failed    fileState // the last state that did not load, reported once
	lastCheck time.Time
}

// fileState tells whether the two files changed: a new modification time or
// size, or another file in their place (a renamed or re-pointed symlink, as
// certbot's live/ directory does, even when the times were preserved).
type fileState struct {
	cert, key os.FileInfo
}

func (a fileState) same(b fileState) bool {
	eq := func(x, y os.FileInfo) bool {
		return x != nil && y != nil && os.SameFile(x, y) && x.ModTime().Equal(y.ModTime()) && x.Size() == y.Size()
	}
	return eq(a.cert, b.cert) && eq(a.key, b.key)
}

// LoadCertificate reads a PEM certificate chain and key.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: slog.New(slog.DiscardHandler), checkEvery: checkEvery}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certificate) stat() (fileState, error) {
	cs, err := os.Stat(c.certFile)
	if err != nil {
		return fileState{}, fmt.Errorf("tls certificate: %w", err)
	}
	ks, err := os.Stat(c.keyFile)
	if err != nil {
		return fileState{}, fmt.Errorf("tls key: %w", err)
	}
	return fileState{cs, ks}, nil
}

func (c *Certificate) reload() error {
	st, err := c.stat()
	if err != nil {
		return err
	}
	if c.cert != nil && st.same(c.loaded) {
		return nil
	}
	pair, err := loadPair(c.certFile, c.keyFile)
	if err != nil {
		err = fmt.Errorf("tls: loading %s and %s: %w", c.certFile, c.keyFile, err)
		if c.cert != nil && !st.same(c.failed) {
			c.failed = st
			c.log.Warn("tls: the changed certificate files do not load; keeping the previous certificate", "err", err)
		}
		return err
	}
	if c.cert != nil {
		c.log.Info("tls: certificate reloaded", "file", c.certFile, "not_after", pair.Leaf.NotAfter)
	}
	c.cert, c.loaded, c.failed = pair, st, fileState{}
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.lastCheck) >= c.checkEvery {
		c.lastCheck = now
		_ = c.reload() // on error keep serving the certificate we have
	}
	return c.cert, nil
}

// ServerConfig returns the server-side TLS configuration: TLS 1.2 and 1.3 only.
func (c *Certificate) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
	}
}

// EnsureSelfSigned writes a self-signed certificate and key for hosts to the two
// files unless both exist already. It is what `serve --dev` uses.
func EnsureSelfSigned(certFile, keyFile string, hosts []string) error {
	_, errC := os.Stat(certFile)
	_, errK := os.Stat(keyFile)
	if errC == nil && errK == nil {
		return nil
	}
	if !errors.Is(errC, os.ErrNotExist) && errC != nil {
		return errC
	}
	certPEM, keyPEM, err := SelfSigned(hosts, time.Now(), 5*365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, certPEM, 0o644)
}

// SelfSigned makes a self-signed ECDSA P-256 certificate for hosts (names or IP
// addresses), valid from now for validity.
func SelfSigned(hosts []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"posthorn self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}
