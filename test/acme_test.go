package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/tlsutil"
	"github.com/posthorn/posthorn/internal/tlsutil/pebbletest"
)

var errNoSTARTTLS = errors.New("STARTTLS not offered")

// startTLS says EHLO to the SMTP server at addr, starts TLS with conf and
// returns the certificate the server presented.
func startTLS(addr string, conf *tls.Config) (*x509.Certificate, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return nil, err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return nil, errNoSTARTTLS
	}
	if err := c.StartTLS(conf); err != nil {
		return nil, err
	}
	cs, _ := c.TLSConnectionState()
	c.Quit()
	return cs.PeerCertificates[0], nil
}

// writePair writes a self-signed certificate for host: into temporary files
// renamed into place, as certificate tools replace them.
func writePair(t *testing.T, dir, host string) {
	t.Helper()
	certPEM, keyPEM, err := tlsutil.SelfSigned([]string{host}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"key.pem": keyPEM, "cert.pem": certPEM} {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeDNS starts the fake resolver every instance uses, so that nothing asks
// the real DNS, and returns the config keys that point at it.
func fakeDNS(t *testing.T) (*dnstest.Server, string) {
	dns := dnstest.Start(t)
	return dns, fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = 1\n", dns.Addr)
}

// TestServerReloadsCertificateFiles: the running server picks up certificate
// files replaced under it, for new STARTTLS handshakes, and speaks TLS 1.2 and
// 1.3 only.
func TestServerReloadsCertificateFiles(t *testing.T) {
	tlsDir := t.TempDir()
	writePair(t, tlsDir, "first.mx.example.org")
	_, dnsKeys := fakeDNS(t)
	in := newInstanceWith(t, instanceOptions{extra: dnsKeys + fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n",
		filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem"))})
	in.start()
	insecure := &tls.Config{InsecureSkipVerify: true}
	cert, err := startTLS(in.smtp, insecure)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "first.mx.example.org" {
		t.Fatalf("served %q", cert.Subject.CommonName)
	}

	// TLS 1.0 and 1.1 are refused by the server (the client offers them
	// explicitly, with Go's own minimum lowered).
	old := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if _, err := startTLS(in.smtp, old); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("a TLS 1.1 client: %v, want the server's protocol_version alert", err)
	}

	writePair(t, tlsDir, "second.mx.example.org")
	deadline := time.Now().Add(20 * time.Second)
	for {
		cert, err := startTLS(in.smtp, insecure)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName == "second.mx.example.org" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving %q 20 s after the files were replaced", cert.Subject.CommonName)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// acmeKeys are the [tls] keys for ACME from ca, answering http-01 on httpAddr.
func acmeKeys(ca *pebbletest.CA, httpAddr string) string {
	return fmt.Sprintf("[tls]\nacme = true\nacme_email = \"postmaster@example.org\"\nacme_directory = %q\nacme_ca_file = %q\nacme_http_listen = %q\n",
		ca.URL, ca.CAFile, httpAddr)
}

// TestACMEWithPebble runs the ACME side as the server does, from a config
// written by `posthorn init` and accepted by `posthorn check`, against Pebble:
// a certificate is obtained by answering http-01, an implicit-TLS listener
// serves it to openssl, which verifies it against Pebble's root, and a
// restart serves it from the cache without a new order.
func TestACMEWithPebble(t *testing.T) {
	openssl := requireTool(t, "openssl")
	dns, dnsKeys := fakeDNS(t)
	dns.MustAdd(t, "mx.example.org. 60 IN A 127.0.0.1", "smtp.example.org. 60 IN A 127.0.0.1")
	ca := pebbletest.Listen(t)
	httpAddr := freePort(t)
	in := newInstanceWith(t, instanceOptions{extra: dnsKeys + acmeKeys(ca, httpAddr) +
		"acme_domains = [\"mx.example.org\", \"smtp.example.org\"]\n"})
	in.run("", "check", "--config", in.cfg)
	_, port, _ := net.SplitHostPort(httpAddr)
	httpPort, _ := strconv.Atoi(port)
	ca.Start(pebbletest.Options{HTTPPort: httpPort, Resolver: dns.Addr})
	rootFile := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(rootFile, ca.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	// start is what the server does: FromConfig, Run, and listeners using
	// the configuration (here one with implicit TLS, as on 465 and 995).
	start := func() (addr string, stop func()) {
		cfg, err := config.Load(in.cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tlsutil.FromConfig(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", p.TLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.(*tls.Conn).Handshake()
					c.Write([]byte("+OK posthorn\r\n"))
					c.Close()
				}()
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		return ln.Addr().String(), func() {
			cancel()
			ln.Close()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	// sClient runs openssl s_client, verifying the certificate for name.
	sClient := func(addr, name string, extra ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args := append([]string{"s_client", "-connect", addr, "-servername", name, "-verify_hostname", name,
			"-CAfile", rootFile, "-verify_return_error", "-ign_eof"}, extra...)
		cmd := exec.CommandContext(ctx, openssl, args...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	addr, stop := start()
	defer func() { stop() }()
	var out string
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		out, err = sClient(addr, "smtp.example.org")
		if err == nil && strings.Contains(out, "Verify return code: 0 (ok)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl did not verify a certificate within a minute: %v\n%s", err, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !strings.Contains(out, "+OK posthorn") {
		t.Errorf("no data after the handshake:\n%s", out)
	}
	if _, err := sClient(addr, "mx.example.org"); err != nil {
		t.Errorf("the hostname is not covered: %v", err)
	}
	// TLS 1.1 is refused by the server, not by openssl's own settings.
	if out, err := sClient(addr, "mx.example.org", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"); err == nil {
		t.Errorf("openssl -tls1_1 was served:\n%s", out)
	} else if !strings.Contains(out, "alert protocol version") {
		t.Errorf("openssl -tls1_1 failed, but not with the server's protocol_version alert:\n%s", out)
	}
	first, err := tlsDial(addr, ca)
	if err != nil {
		t.Fatal(err)
	}
	stop()

	addr, stop = start()
	again, err := tlsDial(addr, ca)
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("after a restart another certificate is served")
	}
	time.Sleep(500 * time.Millisecond)
	if n := ca.Orders(); n != 1 {
		t.Errorf("%d orders, want 1: the restart should use the cache", n)
	}
}

func tlsDial(addr string, ca *pebbletest.CA) (*x509.Certificate, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "mx.example.org", RootCAs: ca.Roots()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestACMEConfigErrors: `posthorn check` names the file and line of bad [tls]
// ACME keys.
func TestACMEConfigErrors(t *testing.T) {
	_, dnsKeys := fakeDNS(t)
	in := newInstanceWith(t, instanceOptions{extra: dnsKeys +
		"[tls]\nacme = true\nacme_directory = \"http://ca.example/dir\"\nacme_domains = [\"*.example.org\"]\n"})
	r := in.exec("", "check", "--config", in.cfg)
	if r.code != 1 {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	text, _ := os.ReadFile(in.cfg)
	for _, key := range []string{"acme_directory", "acme_domains"} {
		line := 0
		for i, l := range strings.Split(string(text), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), key+" =") {
				line = i + 1
			}
		}
		want := fmt.Sprintf("posthorn.toml:%d: tls.%s", line, key)
		if line == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, r.stderr)
		}
	}
}

// TestServerACMEFromPebble runs the built server with [tls] acme against
// Pebble: STARTTLS serves the certificate it obtained, and after a restart
// the cached one, with no new order.
func TestServerACMEFromPebble(t *testing.T) {
	dns, dnsKeys := fakeDNS(t)
	dns.MustAdd(t, "mx.example.org. 60 IN A 127.0.0.1")
	ca := pebbletest.Listen(t)
	httpAddr := freePort(t)
	// Implicit TLS too: submissions (465) and POP3S (995) serve the same certificate.
	smtps, pop3s := freePort(t), freePort(t)
	implicit := fmt.Sprintf("[smtp]\nsubmissions_listen = %q\n[pop3]\ntls_listen = %q\n", smtps, pop3s)
	in := newInstanceWith(t, instanceOptions{extra: dnsKeys + acmeKeys(ca, httpAddr) + implicit})
	_, port, _ := net.SplitHostPort(httpAddr)
	httpPort, _ := strconv.Atoi(port)
	ca.Start(pebbletest.Options{HTTPPort: httpPort, Resolver: dns.Addr})
	in.start()
	verify := &tls.Config{ServerName: "mx.example.org", RootCAs: ca.Roots()}
	if _, err := startTLS(in.smtp, verify); errors.Is(err, errNoSTARTTLS) {
		t.Fatal("no STARTTLS with [tls] acme: the server does not serve the ACME certificate")
	}
	var first *x509.Certificate
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		first, err = startTLS(in.smtp, verify)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verified certificate on STARTTLS within a minute: %v\n%s", err, in.stderr.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, a := range []string{smtps, pop3s} {
		c, err := tls.Dial("tcp", a, verify)
		if err != nil {
			t.Fatalf("implicit TLS on %s: %v", a, err)
		}
		got := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if got.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Errorf("%s serves another certificate than STARTTLS", a)
		}
	}
	in.stop()
	in.start()
	again, err := startTLS(in.smtp, verify)
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("after a restart another certificate is served")
	}
	if n := ca.Orders(); n != 1 {
		t.Errorf("%d orders, want 1: the restart should use the cache", n)
	}
}
