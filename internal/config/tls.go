package config

import (
	"net"
	"net/url"
	"path/filepath"
	"strings"
)

// TLS names the certificate the servers present: from files (cert_file and
// key_file, reloaded when they change), or obtained and renewed from an ACME
// certificate authority such as Let's Encrypt (acme = true).
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`

	// ACME turns on certificates from an ACME CA (RFC 8555) for ACMEDomains.
	ACME bool `toml:"acme"`
	// ACMEEmail is the account's contact address, for the CA's notices. Optional.
	ACMEEmail string `toml:"acme_email"`
	// ACMEDirectory is the CA's directory URL (Let's Encrypt's production one
	// by default).
	ACMEDirectory string `toml:"acme_directory"`
	// ACMEDomains are the names the one certificate covers; the hostname by
	// default.
	ACMEDomains []string `toml:"acme_domains"`
	// ACMECAFile adds PEM certificates to the system's roots for reaching the
	// directory over HTTPS (a test CA like Pebble).
	ACMECAFile string `toml:"acme_ca_file"`
	// ACMECacheDir keeps the account key and the certificate across restarts
	// (data_dir/acme by default).
	ACMECacheDir string `toml:"acme_cache_dir"`
	// ACMEChallenge is how the CA checks that we hold the names: "http-01"
	// (answered on ACMEHTTPListen) or "tls-alpn-01" (answered by the TLS
	// listeners; the CA connects to port 443).
	ACMEChallenge string `toml:"acme_challenge"`
	// ACMEHTTPListen is where http-01 challenges are answered; the CA connects
	// to port 80 (RFC 8555 section 8.3).
	ACMEHTTPListen string `toml:"acme_http_listen"`
}

// Defaults of the [tls] ACME keys.
const (
	DefaultACMEDirectory  = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultACMEChallenge  = "http-01"
	DefaultACMEHTTPListen = ":80"
)

// tlsDefaults completes [tls]; it runs after resolvePaths, as the cache
// directory's default lies under the absolute data_dir.
func (c *Config) tlsDefaults() {
	t := &c.TLS
	if t.ACMEDirectory == "" {
		t.ACMEDirectory = DefaultACMEDirectory
	}
	if t.ACMEChallenge == "" {
		t.ACMEChallenge = DefaultACMEChallenge
	}
	if t.ACMEHTTPListen == "" {
		t.ACMEHTTPListen = DefaultACMEHTTPListen
	}
	if t.ACMECacheDir == "" && c.DataDir != "" {
		t.ACMECacheDir = filepath.Join(c.DataDir, "acme")
	}
	if len(t.ACMEDomains) == 0 && c.Hostname != "" {
		t.ACMEDomains = []string{c.Hostname}
	}
	// Names are compared lower-case and without the root's dot; a name given
	// twice is asked for once.
	seen := map[string]bool{}
	var doms []string
	for _, d := range t.ACMEDomains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if !seen[d] {
			seen[d] = true
			doms = append(doms, d)
		}
	}
	t.ACMEDomains = doms
}

// validateTLS checks [tls]; bad reports a problem at a key's line.
func (c *Config) validateTLS(bad func(key, format string, args ...any)) {
	t := &c.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls.cert_file", "cert_file and key_file go together")
	}
	if !t.ACME {
		return
	}
	if t.CertFile != "" {
		bad("tls.acme", "acme = true and cert_file name two different certificates: keep one")
	}
	// RFC 8555 section 6.1: ACME runs over HTTPS only.
	if u, err := url.Parse(t.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("tls.acme_directory", "%q is not an https:// URL", t.ACMEDirectory)
	}
	for _, d := range t.ACMEDomains {
		switch {
		case strings.HasPrefix(d, "*."):
			// A wildcard needs the dns-01 challenge, which posthorn does not answer.
			bad("tls.acme_domains", "%q: wildcard names need dns-01, which posthorn does not do", d)
		case net.ParseIP(d) != nil:
			bad("tls.acme_domains", "%q: an IP address, not a name", d)
		case len(d) > 253 || !hostnameRE.MatchString(d):
			bad("tls.acme_domains", "%q is not a valid host name", d)
		case !strings.Contains(d, "."):
			bad("tls.acme_domains", "%q: a CA certifies only fully qualified names", d)
		}
	}
	if e := t.ACMEEmail; e != "" {
		local, domain, ok := strings.Cut(e, "@")
		if !ok || local == "" || domain == "" || strings.ContainsAny(e, " \t,<>;:\"") {
			bad("tls.acme_email", "%q is not an address like \"postmaster@example.org\"", e)
		}
	}
	switch t.ACMEChallenge {
	case "http-01":
		if err := checkHostPort(t.ACMEHTTPListen); err != nil {
			bad("tls.acme_http_listen", "%v", err)
		}
	case "tls-alpn-01":
	default:
		bad("tls.acme_challenge", "%q is not \"http-01\" or \"tls-alpn-01\"", t.ACMEChallenge)
	}
}
