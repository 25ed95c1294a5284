package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSelfSignedServesTLS12Plus(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := EnsureSelfSigned(certFile, keyFile, []string{"mail.example.test", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	c, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { conn.(*tls.Conn).Handshake(); conn.Close() }()
		}
	}()

	pemData, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)

	// A client that trusts the certificate and asks for mail.example.test gets in.
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "mail.example.test"})
	if err != nil {
		t.Fatalf("TLS handshake with the self-signed certificate: %v", err)
	}
	if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("negotiated version %x", v)
	}
	conn.Close()

	// The certificate also names the IP address.
	conn, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("IP SAN: %v", err)
	}
	conn.Close()

	// TLS 1.1 and older are refused.
	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Error("a TLS 1.1 client was served")
	}
}

func TestEnsureSelfSignedKeepsExisting(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := EnsureSelfSigned(certFile, keyFile, []string{"a.test"}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(certFile)
	if err := EnsureSelfSigned(certFile, keyFile, []string{"a.test"}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(certFile)
	if string(before) != string(after) {
		t.Error("an existing certificate was replaced")
	}
}

func TestCertificateReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(host string, mod time.Time) {
		c, k, err := SelfSigned([]string{host}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(certFile, c, 0o644)
		os.WriteFile(keyFile, k, 0o600)
		os.Chtimes(certFile, mod, mod)
		os.Chtimes(keyFile, mod, mod)
	}
	write("old.test", time.Now().Add(-time.Hour))
	c, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		cert, _ := c.GetCertificate(nil)
		x, _ := x509.ParseCertificate(cert.Certificate[0])
		return x.Subject.CommonName
	}
	if got := name(); got != "old.test" {
		t.Fatalf("first certificate is %q", got)
	}
	write("new.test", time.Now())
	c.mu.Lock()
	c.lastCheck = time.Time{} // do not wait for the check interval
	c.mu.Unlock()
	if got := name(); got != "new.test" {
		t.Errorf("after the files changed the certificate is %q, want new.test", got)
	}
	// A broken file keeps the last good certificate.
	os.WriteFile(certFile, []byte("garbage"), 0o644)
	os.Chtimes(certFile, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	c.mu.Lock()
	c.lastCheck = time.Time{}
	c.mu.Unlock()
	if got := name(); got != "new.test" {
		t.Errorf("after a broken write the certificate is %q, want new.test kept", got)
	}
}
