package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
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

	checkOldTLSRefused(t, ln.Addr().String())
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

// serve accepts TLS connections with conf on 127.0.0.1 until the test ends,
// completing each handshake.
func serve(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.(*tls.Conn).Handshake()
				conn.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// servedName does a handshake and returns the common name of the certificate
// the server presents.
func servedName(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func writePair(t *testing.T, certFile, keyFile, host string) {
	t.Helper()
	c, k, err := SelfSigned([]string{host}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCertificateReloadsChangedFiles replaces the files in the ways
// certificate tools do and checks what new handshakes are served.
func TestCertificateReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, "first.test")
	c, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c.checkEvery = 0 // look at the files on every handshake
	addr := serve(t, c.ServerConfig())
	if got := servedName(t, addr); got != "first.test" {
		t.Fatalf("first certificate is %q", got)
	}

	// Written in place.
	writePair(t, certFile, keyFile, "in-place.test")
	if got := servedName(t, addr); got != "in-place.test" {
		t.Errorf("after the files were rewritten the certificate is %q", got)
	}

	// Renamed into place with the old modification time kept (install -p):
	// another file, so it is read again.
	old, _ := os.Stat(certFile)
	newCert, newKey := filepath.Join(dir, "new-cert.pem"), filepath.Join(dir, "new-key.pem")
	writePair(t, newCert, newKey, "renamed.test")
	for _, f := range []string{newCert, newKey} {
		os.Chtimes(f, old.ModTime(), old.ModTime())
	}
	if err := os.Rename(newKey, keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newCert, certFile); err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, addr); got != "renamed.test" {
		t.Errorf("after a rename over the files the certificate is %q", got)
	}

	// Symlinks re-pointed, as in certbot's live/ directory.
	lcert, lkey := filepath.Join(dir, "live-cert.pem"), filepath.Join(dir, "live-key.pem")
	a1c, a1k := filepath.Join(dir, "cert1.pem"), filepath.Join(dir, "key1.pem")
	a2c, a2k := filepath.Join(dir, "cert2.pem"), filepath.Join(dir, "key2.pem")
	writePair(t, a1c, a1k, "archive1.test")
	writePair(t, a2c, a2k, "archive2.test")
	os.Symlink(a1c, lcert)
	os.Symlink(a1k, lkey)
	lc, err := LoadCertificate(lcert, lkey)
	if err != nil {
		t.Fatal(err)
	}
	lc.checkEvery = 0
	laddr := serve(t, lc.ServerConfig())
	if got := servedName(t, laddr); got != "archive1.test" {
		t.Fatalf("through the symlinks: %q", got)
	}
	for _, l := range []struct{ link, target string }{{lkey, a2k}, {lcert, a2c}} {
		tmp := l.link + ".new"
		os.Symlink(l.target, tmp)
		if err := os.Rename(tmp, l.link); err != nil {
			t.Fatal(err)
		}
	}
	if got := servedName(t, laddr); got != "archive2.test" {
		t.Errorf("after the symlinks moved the certificate is %q", got)
	}

	// A broken file, or a certificate whose key is not there yet, keeps the
	// last good certificate; once both are right the new one is served.
	os.WriteFile(certFile, []byte("garbage"), 0o644)
	if got := servedName(t, addr); got != "renamed.test" {
		t.Errorf("after a broken write the certificate is %q, want renamed.test kept", got)
	}
	otherCert, otherKey := filepath.Join(dir, "o-cert.pem"), filepath.Join(dir, "o-key.pem")
	writePair(t, otherCert, otherKey, "half.test")
	data, _ := os.ReadFile(otherCert)
	os.WriteFile(certFile, data, 0o644)
	if got := servedName(t, addr); got != "renamed.test" {
		t.Errorf("with a certificate that does not match the key, served %q", got)
	}
	data, _ = os.ReadFile(otherKey)
	os.WriteFile(keyFile, data, 0o600)
	if got := servedName(t, addr); got != "half.test" {
		t.Errorf("once the key matches, served %q", got)
	}
}

// TestCertificateChecksAtMostEvery: between checks the files are not looked at,
// so a handshake costs no file system work.
func TestCertificateChecksAtMostEvery(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, "first.test")
	c, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c.checkEvery = time.Hour
	addr := serve(t, c.ServerConfig())
	servedName(t, addr) // the first check
	writePair(t, certFile, keyFile, "second.test")
	if got := servedName(t, addr); got != "first.test" {
		t.Errorf("within the check interval served %q", got)
	}
	c.mu.Lock()
	c.lastCheck = time.Now().Add(-time.Hour)
	c.mu.Unlock()
	if got := servedName(t, addr); got != "second.test" {
		t.Errorf("after the check interval served %q", got)
	}
}

// checkOldTLSRefused makes sure the server at addr refuses TLS 1.0 and 1.1 and
// takes 1.2 and 1.3. The client offers the old versions explicitly (Go's
// default minimum would refuse them on the client's side and prove nothing),
// and the refusal must be the server's protocol_version alert.
func checkOldTLSRefused(t *testing.T, addr string) {
	t.Helper()
	for _, tc := range []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tc.min, MaxVersion: tc.max})
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if v := conn.ConnectionState().Version; v != tc.max {
				t.Errorf("%s: negotiated %x", tc.name, v)
			}
		} else if err == nil {
			t.Errorf("%s client was served", tc.name)
		} else if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("%s: refused, but not by the server's protocol_version alert: %v", tc.name, err)
		}
		if conn != nil {
			conn.Close()
		}
	}
}
