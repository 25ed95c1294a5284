package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// [web] listen and tls_listen take one address or a list; an address
// without a port is an error naming the file, the line and the key.
func TestWebKeys(t *testing.T) {
	const base = "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/posthorn\"\nmaps_dir = \"/etc/posthorn\"\n"
	for _, tc := range []struct {
		name              string
		text              string
		listen, tlsListen []string
		errKey            string
		errLine           int
	}{
		{"none", base, nil, nil, "", 0},
		{"one string", base + "[web]\nlisten = \"127.0.0.1:8080\"\n", []string{"127.0.0.1:8080"}, nil, "", 0},
		{"lists", base + "[web]\nlisten = [\"127.0.0.1:80\", \"[::1]:80\"]\ntls_listen = [\"0.0.0.0:443\"]\n",
			[]string{"127.0.0.1:80", "[::1]:80"}, []string{"0.0.0.0:443"}, "", 0},
		{"tls only", base + "[web]\ntls_listen = \"[::]:8443\"\n", nil, []string{"[::]:8443"}, "", 0},
		{"no port", base + "[web]\nlisten = \"127.0.0.1:8080\"\ntls_listen = \"127.0.0.1\"\n", nil, nil, "web.tls_listen", 6},
		{"bad listen", base + "[web]\nlisten = \"localhost:http-alt:1\"\n", nil, nil, "web.listen", 5},
	} {
		c, err := Parse("/etc/posthorn/posthorn.toml", []byte(tc.text))
		if tc.errKey != "" {
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != tc.errLine || !strings.Contains(ce.Error(), tc.errKey) {
				t.Errorf("%s: error %v, want one for %s at line %d", tc.name, err, tc.errKey, tc.errLine)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(c.Web.Listen, tc.listen) || !slices.Equal(c.Web.TLSListen, tc.tlsListen) {
			t.Errorf("%s: listen %q, tls_listen %q", tc.name, c.Web.Listen, c.Web.TLSListen)
		}
	}
}
