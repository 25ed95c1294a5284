package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// [metrics] listen is off by default, takes one address or a list, and an
// address without a port is an error naming the file, the line and the key.
func TestMetricsListen(t *testing.T) {
	const base = "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/posthorn\"\nmaps_dir = \"/etc/posthorn\"\n"
	for _, tc := range []struct {
		name    string
		text    string
		listen  []string
		errLine int // 0: no error
	}{
		{"default none", base, nil, 0},
		{"one string", base + "[metrics]\nlisten = \"127.0.0.1:9090\"\n", []string{"127.0.0.1:9090"}, 0},
		{"list", base + "[metrics]\nlisten = [\"127.0.0.1:9090\", \"[::1]:9090\"]\n", []string{"127.0.0.1:9090", "[::1]:9090"}, 0},
		{"no port", base + "\n[metrics]\nlisten = \"127.0.0.1\"\n", nil, 6},
		{"bad port", base + "[metrics]\nlisten = \"127.0.0.1:99999\"\n", nil, 5},
		{"not a string", base + "[metrics]\nlisten = 9090\n", nil, -1},
	} {
		c, err := Parse("/etc/posthorn/posthorn.toml", []byte(tc.text))
		switch {
		case tc.errLine > 0:
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != tc.errLine || !strings.Contains(ce.Error(), "metrics.listen") {
				t.Errorf("%s: error %v, want one for metrics.listen at line %d", tc.name, err, tc.errLine)
			}
		case tc.errLine < 0:
			if err == nil {
				t.Errorf("%s: accepted", tc.name)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !slices.Equal(c.Metrics.Listen, tc.listen):
			t.Errorf("%s: listen %q, want %q", tc.name, c.Metrics.Listen, tc.listen)
		}
	}
}
