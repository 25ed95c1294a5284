package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// [imap] listen and tls_listen take one address or a list; append_limit a
// size; idle_timeout a duration of 30 minutes or more. A bad value is an
// error naming the file, the line and the key.
func TestIMAPKeys(t *testing.T) {
	const base = "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/posthorn\"\nmaps_dir = \"/etc/posthorn\"\n"
	for _, tc := range []struct {
		name        string
		text        string
		listen      []string
		tlsListen   []string
		appendLimit int64
		idle        time.Duration
		errKey      string // "": no error
		errLine     int
	}{
		{"none", base, nil, nil, 64 * 1024 * 1024, 30 * time.Minute, "", 0},
		{"one string", base + "[imap]\nlisten = \"127.0.0.1:143\"\n", []string{"127.0.0.1:143"}, nil, 64 * 1024 * 1024, 30 * time.Minute, "", 0},
		{"lists", base + "[imap]\nlisten = [\"0.0.0.0:143\", \"[::]:143\"]\ntls_listen = [\"0.0.0.0:993\"]\n",
			[]string{"0.0.0.0:143", "[::]:143"}, []string{"0.0.0.0:993"}, 64 * 1024 * 1024, 30 * time.Minute, "", 0},
		{"bytes", base + "[imap]\nappend_limit = 1000000\n", nil, nil, 1000000, 30 * time.Minute, "", 0},
		{"MiB", base + "[imap]\nappend_limit = \"10MiB\"\n", nil, nil, 10 * 1024 * 1024, 30 * time.Minute, "", 0},
		{"M", base + "[imap]\nappend_limit = \"10M\"\n", nil, nil, 10 * 1024 * 1024, 30 * time.Minute, "", 0},
		{"MB", base + "[imap]\nappend_limit = \"10 MB\"\n", nil, nil, 10 * 1000 * 1000, 30 * time.Minute, "", 0},
		{"KiB", base + "[imap]\nappend_limit = \"512kib\"\n", nil, nil, 512 * 1024, 30 * time.Minute, "", 0},
		{"GiB", base + "[imap]\nappend_limit = \"1GiB\"\n", nil, nil, 1 << 30, 30 * time.Minute, "", 0},
		{"long idle", base + "[imap]\nidle_timeout = \"2h\"\n", nil, nil, 64 * 1024 * 1024, 2 * time.Hour, "", 0},
		{"idle exactly 30m", base + "[imap]\nidle_timeout = \"30m\"\n", nil, nil, 64 * 1024 * 1024, 30 * time.Minute, "", 0},
		{"no port", base + "[imap]\nlisten = \"127.0.0.1:143\"\ntls_listen = \"127.0.0.1\"\n", nil, nil, 0, 0, "imap.tls_listen", 6},
		{"short idle", base + "[imap]\n\nidle_timeout = \"29m59s\"\n", nil, nil, 0, 0, "imap.idle_timeout", 6},
		{"zero idle", base + "[imap]\nidle_timeout = \"0s\"\n", nil, nil, 0, 0, "imap.idle_timeout", 5},
		{"zero limit", base + "[imap]\nappend_limit = 0\n", nil, nil, 0, 0, "imap.append_limit", 5},
		{"negative limit", base + "[imap]\nappend_limit = -1\n", nil, nil, 0, 0, "append_limit", 5},
		{"bad unit", base + "[imap]\nappend_limit = \"10 parsecs\"\n", nil, nil, 0, 0, "append_limit", 5},
		{"overflow", base + "[imap]\nappend_limit = \"9999999999999GiB\"\n", nil, nil, 0, 0, "append_limit", 5},
		{"not a size", base + "[imap]\nappend_limit = true\n", nil, nil, 0, 0, "append_limit", 5},
	} {
		c, err := Parse("/etc/posthorn/posthorn.toml", []byte(tc.text))
		if tc.errKey != "" {
			var ce *Error
			if !errors.As(err, &ce) || ce.Line != tc.errLine || !strings.Contains(ce.Error(), tc.errKey) ||
				!strings.HasPrefix(ce.Error(), "/etc/posthorn/posthorn.toml:") {
				t.Errorf("%s: error %v, want one for %s at line %d", tc.name, err, tc.errKey, tc.errLine)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(c.IMAP.Listen, tc.listen) || !slices.Equal(c.IMAP.TLSListen, tc.tlsListen) {
			t.Errorf("%s: listen %q, tls_listen %q", tc.name, c.IMAP.Listen, c.IMAP.TLSListen)
		}
		if int64(c.IMAP.AppendLimit) != tc.appendLimit {
			t.Errorf("%s: append_limit %d, want %d", tc.name, c.IMAP.AppendLimit, tc.appendLimit)
		}
		if c.IMAP.IdleTimeout.D() != tc.idle {
			t.Errorf("%s: idle_timeout %v, want %v", tc.name, c.IMAP.IdleTimeout.D(), tc.idle)
		}
	}
}

// The starting config shows [imap], off, with every key commented, and still
// parses; uncommented, its example values are valid.
func TestStarterHasIMAP(t *testing.T) {
	text := StarterFiles(Starter{Hostname: "mx.example.org", Domain: "example.org", Admin: "pp",
		DataDir: "/var/lib/posthorn", MapsDir: "/etc/posthorn"})["posthorn.toml"]
	for _, want := range []string{"[imap]\n", `# listen = ["0.0.0.0:143"`, `# tls_listen = ["0.0.0.0:993"`,
		"# append_limit = ", "# idle_timeout = "} {
		if !strings.Contains(text, want) {
			t.Errorf("starter config lacks %q:\n%s", want, text)
		}
	}
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.IMAP.Listen) != 0 || len(c.IMAP.TLSListen) != 0 {
		t.Errorf("starter config listens for IMAP: %q %q", c.IMAP.Listen, c.IMAP.TLSListen)
	}
	// Uncomment the [imap] keys (not tls_listen: it needs [tls]).
	var lines []string
	inIMAP := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "[") {
			inIMAP = l == "[imap]"
		}
		if inIMAP && (strings.HasPrefix(l, "# listen") || strings.HasPrefix(l, "# append_limit") || strings.HasPrefix(l, "# idle_timeout")) {
			l = strings.TrimPrefix(l, "# ")
		}
		lines = append(lines, l)
	}
	c, err = Parse("/etc/posthorn/posthorn.toml", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("starter [imap] uncommented: %v", err)
	}
	if len(c.IMAP.Listen) != 2 || c.IMAP.AppendLimit != DefaultIMAPAppendLimit || c.IMAP.IdleTimeout.D() != DefaultIMAPIdleTimeout {
		t.Errorf("starter [imap] uncommented: %+v", c.IMAP)
	}
}

// [imap] max_connections and max_connections_per_ip default to 20,000 and
// 100; zero or less is an error naming the key.
func TestIMAPConnectionCaps(t *testing.T) {
	const base = "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/posthorn\"\nmaps_dir = \"/etc/posthorn\"\n"
	c, err := Parse("p.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.IMAP.MaxConnections != 20000 || c.IMAP.MaxConnectionsPerIP != 100 {
		t.Errorf("defaults %d, %d", c.IMAP.MaxConnections, c.IMAP.MaxConnectionsPerIP)
	}
	c, err = Parse("p.toml", []byte(base+"[imap]\nmax_connections = 30000\nmax_connections_per_ip = 2000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.IMAP.MaxConnections != 30000 || c.IMAP.MaxConnectionsPerIP != 2000 {
		t.Errorf("set %d, %d", c.IMAP.MaxConnections, c.IMAP.MaxConnectionsPerIP)
	}
	for _, key := range []string{"max_connections", "max_connections_per_ip"} {
		_, err := Parse("p.toml", []byte(base+"[imap]\n"+key+" = 0\n"))
		if err == nil || !strings.Contains(err.Error(), "imap."+key) {
			t.Errorf("%s = 0: %v", key, err)
		}
	}
}
