package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// [pop3] listen and tls_listen take one address or a list; a bad one is an
// error naming the file, the line and the key.
func TestPOP3Listeners(t *testing.T) {
	const base = "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/posthorn\"\nmaps_dir = \"/etc/posthorn\"\n"
	for _, tc := range []struct {
		name      string
		text      string
		listen    []string
		tlsListen []string
		errLine   int // 0: no error
	}{
		{"none", base, nil, nil, 0},
		{"one string", base + "[pop3]\nlisten = \"127.0.0.1:110\"\n", []string{"127.0.0.1:110"}, nil, 0},
		{"lists", base + "[pop3]\nlisten = [\"0.0.0.0:110\", \"[::]:110\"]\ntls_listen = [\"0.0.0.0:995\"]\n",
			[]string{"0.0.0.0:110", "[::]:110"}, []string{"0.0.0.0:995"}, 0},
		{"no port", base + "[pop3]\nlisten = \"127.0.0.1:110\"\ntls_listen = \"127.0.0.1\"\n", nil, nil, 6},
	} {
		c, err := Parse("/etc/posthorn/posthorn.toml", []byte(tc.text))
		if tc.errLine != 0 {
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != tc.errLine || !strings.Contains(ce.Msg, "pop3.tls_listen") {
				t.Errorf("%s: error %v, want one for pop3.tls_listen at line %d", tc.name, err, tc.errLine)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(c.POP3.Listen, tc.listen) || !slices.Equal(c.POP3.TLSListen, tc.tlsListen) {
			t.Errorf("%s: listen %q, tls_listen %q", tc.name, c.POP3.Listen, c.POP3.TLSListen)
		}
	}
}

// The starting config shows [pop3], off, and still parses.
func TestStarterHasPOP3(t *testing.T) {
	text := StarterFiles(Starter{Hostname: "mx.example.org", Domain: "example.org", Admin: "pp",
		DataDir: "/var/lib/posthorn", MapsDir: "/etc/posthorn"})["posthorn.toml"]
	if !strings.Contains(text, "[pop3]\n") || !strings.Contains(text, `# tls_listen = ["0.0.0.0:995"`) {
		t.Errorf("starter config lacks [pop3]:\n%s", text)
	}
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.POP3.Listen) != 0 || len(c.POP3.TLSListen) != 0 {
		t.Errorf("starter config listens for POP3: %q %q", c.POP3.Listen, c.POP3.TLSListen)
	}
}
