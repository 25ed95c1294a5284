// Package testkit holds what the protocol servers' tests share: a
// self-signed certificate and password credentials made once per test
// binary (both are slow to make), and a log buffer safe for the server's
// goroutines. Only tests import it.
package testkit

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/tlsutil"
)

var (
	certOnce sync.Once
	certPair tls.Certificate
	certPool *x509.CertPool
	certErr  error

	credMu    sync.Mutex
	credCache = map[string][2]string{}
)

// Cert returns a certificate for localhost and 127.0.0.1, valid for an
// hour, and a pool that trusts it.
func Cert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certOnce.Do(func() {
		certPEM, keyPEM, err := tlsutil.SelfSigned([]string{"localhost", "127.0.0.1"}, time.Now(), time.Hour)
		if err != nil {
			certErr = err
			return
		}
		if certPair, certErr = tls.X509KeyPair(certPEM, keyPEM); certErr != nil {
			return
		}
		certPool = x509.NewCertPool()
		certPool.AppendCertsFromPEM(certPEM)
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
	return certPair, certPool
}

// Credentials returns the password hash and SCRAM-SHA-256 credential of
// password, as auth.NewCredentials makes them.
func Credentials(t testing.TB, password string) (hash, scram string) {
	t.Helper()
	credMu.Lock()
	defer credMu.Unlock()
	if c, ok := credCache[password]; ok {
		return c[0], c[1]
	}
	h, s, err := auth.NewCredentials(password)
	if err != nil {
		t.Fatal(err)
	}
	credCache[password] = [2]string{h, s}
	return h, s
}

// SyncBuffer is a bytes.Buffer for logs written from several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
