package config

import (
	"strings"
	"testing"
)

func TestTLSDefaults(t *testing.T) {
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(minimal+"[tls]\nacme = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	tl := c.TLS
	if tl.ACMEDirectory != "https://acme-v02.api.letsencrypt.org/directory" {
		t.Errorf("acme_directory default %q, want Let's Encrypt's production directory", tl.ACMEDirectory)
	}
	if strings.Join(tl.ACMEDomains, ",") != "mx.example.org" {
		t.Errorf("acme_domains default %q, want the hostname", tl.ACMEDomains)
	}
	if tl.ACMECacheDir != "/etc/posthorn/data/acme" {
		t.Errorf("acme_cache_dir default %q, want data_dir/acme", tl.ACMECacheDir)
	}
	if tl.ACMEChallenge != "http-01" || tl.ACMEHTTPListen != ":80" {
		t.Errorf("challenge defaults %q %q", tl.ACMEChallenge, tl.ACMEHTTPListen)
	}
}

func TestTLSKeys(t *testing.T) {
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(minimal+`[tls]
acme = true
acme_email = "postmaster@example.org"
acme_directory = "https://127.0.0.1:14000/dir"
acme_domains = ["MX.example.org.", "smtp.example.org", "mx.example.org"]
acme_ca_file = "pebble.pem"
acme_cache_dir = "/var/lib/posthorn/acme"
acme_challenge = "tls-alpn-01"
`))
	if err != nil {
		t.Fatal(err)
	}
	tl := c.TLS
	// Names are lower-cased, lose the root's dot, and are asked for once.
	if strings.Join(tl.ACMEDomains, ",") != "mx.example.org,smtp.example.org" {
		t.Errorf("acme_domains %q", tl.ACMEDomains)
	}
	if tl.ACMECAFile != "/etc/posthorn/pebble.pem" || tl.ACMECacheDir != "/var/lib/posthorn/acme" {
		t.Errorf("paths %q %q", tl.ACMECAFile, tl.ACMECacheDir)
	}
	if tl.ACMEEmail != "postmaster@example.org" || tl.ACMEDirectory != "https://127.0.0.1:14000/dir" || tl.ACMEChallenge != "tls-alpn-01" {
		t.Errorf("keys %+v", tl)
	}
	// With acme off the ACME keys are not checked (they may wait there).
	if _, err := Parse("p.toml", []byte(minimal+"[tls]\nacme_directory = \"http://x\"\n")); err != nil {
		t.Errorf("acme off: %v", err)
	}
}

func TestTLSErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"cert without key", "[tls]\ncert_file = \"c.pem\"\n", "p.toml:5: tls.cert_file: cert_file and key_file go together"},
		{"acme and files", "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nacme = true\n", "p.toml:7: tls.acme: acme = true and cert_file"},
		{"plain http directory", "[tls]\nacme = true\nacme_directory = \"http://ca.example/dir\"\n", "p.toml:6: tls.acme_directory: \"http://ca.example/dir\" is not an https:// URL"},
		{"directory without host", "[tls]\nacme = true\nacme_directory = \"https:///dir\"\n", "p.toml:6: tls.acme_directory:"},
		{"wildcard", "[tls]\nacme = true\nacme_domains = [\"*.example.org\"]\n", "p.toml:6: tls.acme_domains: \"*.example.org\": wildcard"},
		{"IP address", "[tls]\nacme = true\nacme_domains = [\"192.0.2.1\"]\n", "p.toml:6: tls.acme_domains: \"192.0.2.1\": an IP address"},
		{"bad name", "[tls]\nacme = true\nacme_domains = [\"mx..example.org\"]\n", "p.toml:6: tls.acme_domains: \"mx..example.org\" is not a valid host name"},
		{"single label", "[tls]\nacme = true\nacme_domains = [\"localhost\"]\n", "p.toml:6: tls.acme_domains: \"localhost\": a CA certifies only fully qualified names"},
		{"bad email", "[tls]\nacme = true\nacme_email = \"postmaster\"\n", "p.toml:6: tls.acme_email:"},
		{"email with a display name", "[tls]\nacme = true\nacme_email = \"Post <pm@example.org>\"\n", "p.toml:6: tls.acme_email:"},
		{"bad challenge", "[tls]\nacme = true\nacme_challenge = \"dns-01\"\n", "p.toml:6: tls.acme_challenge: \"dns-01\" is not"},
		{"bad http listen", "[tls]\nacme = true\nacme_http_listen = \"80\"\n", "p.toml:6: tls.acme_http_listen:"},
		{"domains not a list", "[tls]\nacme = true\nacme_domains = \"mx.example.org\"\n", "p.toml:6:"},
		{"acme not a boolean", "[tls]\nacme = \"yes\"\n", "p.toml:5:"},
		{"typo", "[tls]\nacme = true\nacme_domain = [\"mx.example.org\"]\n", "p.toml:6: unknown key \"tls.acme_domain\""},
	} {
		_, err := Parse("p.toml", []byte(minimal+tc.text))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

// TestStarterACMEComment: the ACME lines the starter config carries as
// comments make a valid config once uncommented.
func TestStarterACMEComment(t *testing.T) {
	text := StarterFiles(Starter{Hostname: "mx.example.org", Domain: "example.org", Admin: "pp", DataDir: "data", MapsDir: "."})["posthorn.toml"]
	var lines []string
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "# acme") {
			l = strings.TrimPrefix(l, "# ")
			n++
		}
		lines = append(lines, l)
	}
	if n < 3 {
		t.Fatalf("%d commented acme lines in the starter config", n)
	}
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS.ACME || c.TLS.ACMEEmail != "postmaster@example.org" || strings.Join(c.TLS.ACMEDomains, ",") != "mx.example.org" {
		t.Errorf("uncommented: %+v", c.TLS)
	}
}
