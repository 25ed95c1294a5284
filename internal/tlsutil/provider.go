package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/config"
)

// Provider is the TLS side of a running server, built from [tls] by FromConfig:
// the configuration every TLS listener and STARTTLS uses and, with ACME, the
// work that obtains and renews the certificate.
type Provider struct {
	conf   *tls.Config
	acme   *acmeManager
	httpLn net.Listener // the http-01 responder's port, bound by FromConfig
	log    *slog.Logger

	closeOnce sync.Once
}

// FromConfig builds the Provider for cfg's [tls]: certificates from cert_file
// and key_file (re-read when the files change), or from an ACME CA when
// acme = true. It reads the key files and binds acme_http_listen, so call it
// before a server started as root drops its privileges; it writes nothing
// (the ACME cache directory is made by Run).
func FromConfig(cfg *config.Config, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Provider{log: log}
	t := cfg.TLS
	switch {
	case t.ACME:
		roots, err := rootsWith(t.ACMECAFile)
		if err != nil {
			return nil, err
		}
		m, err := newACMEManager(acmeOptions{
			Directory: t.ACMEDirectory,
			Email:     t.ACMEEmail,
			Domains:   t.ACMEDomains,
			CacheDir:  t.ACMECacheDir,
			Challenge: t.ACMEChallenge,
			Roots:     roots,
			Log:       log,
		})
		if err != nil {
			return nil, err
		}
		p.acme = m
		p.conf = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: m.getCertificate}
		switch t.ACMEChallenge {
		case "tls-alpn-01":
			p.conf.GetConfigForClient = m.configForClient
		case "http-01":
			ln, err := net.Listen("tcp", t.ACMEHTTPListen)
			if err != nil {
				return nil, fmt.Errorf("[tls] acme_http_listen %s: %w", t.ACMEHTTPListen, err)
			}
			p.httpLn = ln
		default:
			return nil, fmt.Errorf("[tls] acme_challenge %q is not known", t.ACMEChallenge)
		}
	case t.CertFile != "":
		c, err := LoadCertificate(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		c.log = log
		p.conf = c.ServerConfig()
	}
	return p, nil
}

// rootsWith returns the system's roots plus the PEM certificates in file; nil
// (the system's roots) when file is empty.
func rootsWith(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("[tls] acme_ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("[tls] acme_ca_file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// TLSConfig returns a new copy of the server configuration, TLS 1.2 and 1.3
// only, for a listener to use or adjust; nil when [tls] names no certificate.
// It serves one certificate whatever name the client asks for (mail clients
// often send none). With tls-alpn-01 it also answers the CA's challenge
// handshakes, whatever NextProtos the listener sets.
func (p *Provider) TLSConfig() *tls.Config {
	if p.conf == nil {
		return nil
	}
	return p.conf.Clone()
}

// HTTPAddr is where http-01 challenges are answered; nil when they are not.
func (p *Provider) HTTPAddr() net.Addr {
	if p.httpLn == nil {
		return nil
	}
	return p.httpLn.Addr()
}

// Run does the ACME work until ctx ends: it obtains a certificate when the
// cache has none for the configured names, renews it two thirds into its
// lifetime, and answers http-01 challenges on acme_http_listen. Failures are
// logged and retried (the previous certificate is served meanwhile); Run
// returns nil when ctx ends, or the error that stopped the http-01 responder.
// Without ACME it returns nil at once. Call it once.
func (p *Provider) Run(ctx context.Context) error {
	if p.acme == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer p.Close()
	srvDone := make(chan error, 1)
	var srv *http.Server
	if p.httpLn != nil {
		srv = &http.Server{
			Handler:           p.acme,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		}
		p.log.Info("acme: answering http-01 challenges", "addr", p.httpLn.Addr().String())
		go func() {
			err := srv.Serve(p.httpLn)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			} else {
				err = fmt.Errorf("acme http-01 responder: %w", err)
				cancel() // no certificate can be obtained without it
			}
			srvDone <- err
		}()
	} else {
		srvDone <- nil
	}
	p.acme.run(ctx)
	if srv != nil {
		srv.Close()
	}
	return <-srvDone
}

// Close releases the http-01 port of a Provider whose Run was never called
// (when the server fails to start); Run releases it itself when ctx ends.
func (p *Provider) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if p.httpLn != nil {
			err = p.httpLn.Close()
		}
	})
	return err
}
