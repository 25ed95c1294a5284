package config

import (
	"strings"
	"testing"
)

func TestAuthAllowPlaintext(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       bool
		wantErr    string
	}{
		{"default", minimal, false, ""},
		{"off", minimal + "[auth]\nallow_plaintext = false\n", false, ""},
		{"on", minimal + "[auth]\nallow_plaintext = true\n", true, ""},
		{"not a boolean", minimal + "[auth]\nallow_plaintext = \"yes\"\n", false, "p.toml:5:"},
		{"typo", minimal + "[auth]\nallow_plaintxt = true\n", false, `p.toml:5: unknown key "auth.allow_plaintxt"`},
	} {
		c, err := Parse("p.toml", []byte(tc.text))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Auth.AllowPlaintext != tc.want {
			t.Errorf("%s: allow_plaintext = %v", tc.name, c.Auth.AllowPlaintext)
		}
	}
}

// The starting config names the key, off, and still parses.
func TestStarterHasAuth(t *testing.T) {
	text := StarterFiles(Starter{Hostname: "mx.example.org", Domain: "example.org", Admin: "pp",
		DataDir: "/var/lib/posthorn", MapsDir: "/etc/posthorn"})["posthorn.toml"]
	if !strings.Contains(text, "[auth]\n") || !strings.Contains(text, "# allow_plaintext = false") {
		t.Errorf("starter config lacks [auth] allow_plaintext:\n%s", text)
	}
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.AllowPlaintext {
		t.Error("starter config allows plain-text passwords")
	}
}
