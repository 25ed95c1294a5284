package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The [dkim], [authcheck] and [antispam] defaults are ARCHITECTURE.md's
// "out of the box": signing and checking on, no DNSBL, no greylisting, limits
// above 10,000 messages a minute.
func TestMailauthDefaults(t *testing.T) {
	const base = "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/posthorn\"\nmaps_dir = \"/etc/posthorn\"\n"
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DKIM.Signing() || c.DKIM.KeysDir != "/var/lib/posthorn/dkim" {
		t.Errorf("dkim: signing %v, keys_dir %q", c.DKIM.Signing(), c.DKIM.KeysDir)
	}
	if !c.AuthCheck.On() || c.AuthCheck.DMARCReject != "reject" || c.AuthCheck.DMARCQuarantine != "quarantine" || c.AuthCheck.SPFFail != "reject" {
		t.Errorf("authcheck: %+v", c.AuthCheck)
	}
	s := c.Antispam
	if len(s.DNSBL) != 0 || s.Greylist || s.EarlyTalkerWait != 0 || s.HELOChecks || s.RequireFCrDNS {
		t.Errorf("antispam is not off by default: %+v", s)
	}
	if s.MessagesPerMinute < 10_000 || s.ConnectionsPerMinute < 10_000 {
		t.Errorf("limits %d messages, %d connections a minute: below a benchmark's 10,000", s.MessagesPerMinute, s.ConnectionsPerMinute)
	}
	if s.GreylistDelay.D() != 5*time.Minute || s.GreylistExpiry.D() != 4*time.Hour || s.GreylistFile != "/var/lib/posthorn/greylist.db" {
		t.Errorf("greylist defaults: %+v", s)
	}
}

func TestMailauthKeys(t *testing.T) {
	const base = "hostname = \"mx.example.org\"\ndata_dir = \"/var/lib/posthorn\"\nmaps_dir = \"/etc/posthorn\"\n"
	for _, tc := range []struct {
		name    string
		text    string
		check   func(c *Config) bool
		errKey  string
		errLine int
	}{
		{"relative keys_dir", base + "[dkim]\nkeys_dir = \"keys\"\nsign = false\n",
			func(c *Config) bool { return c.DKIM.KeysDir == "/etc/posthorn/keys" && !c.DKIM.Signing() }, "", 0},
		{"actions", base + "[authcheck]\ndmarc_reject = \"quarantine\"\ndmarc_quarantine = \"accept\"\nspf_fail = \"accept\"\n",
			func(c *Config) bool {
				return c.AuthCheck.DMARCReject == "quarantine" && c.AuthCheck.DMARCQuarantine == "accept" && c.AuthCheck.SPFFail == "accept"
			}, "", 0},
		{"off", base + "[authcheck]\nenabled = false\n", func(c *Config) bool { return !c.AuthCheck.On() }, "", 0},
		{"greylist", base + "[antispam]\ngreylist = true\ngreylist_delay = \"1s\"\ngreylist_expiry = \"1m\"\ndnsbl = [\"Bl.Example.\"]\nearly_talker_wait = \"2s\"\n",
			func(c *Config) bool {
				s := c.Antispam
				return s.Greylist && s.GreylistDelay.D() == time.Second && s.GreylistExpiry.D() == time.Minute &&
					len(s.DNSBL) == 1 && s.DNSBL[0] == "bl.example" && s.EarlyTalkerWait.D() == 2*time.Second
			}, "", 0},
		{"bad dmarc_reject", base + "[authcheck]\ndmarc_reject = \"drop\"\n", nil, "authcheck.dmarc_reject", 5},
		{"p=reject cannot be accepted", base + "[authcheck]\ndmarc_reject = \"accept\"\n", nil, "authcheck.dmarc_reject", 5},
		{"quarantine cannot reject", base + "[authcheck]\n\ndmarc_quarantine = \"reject\"\n", nil, "authcheck.dmarc_quarantine", 6},
		{"bad spf_fail", base + "[authcheck]\nspf_fail = \"\"\nspf_fail2 = 1\n", nil, "spf_fail2", 6},
		{"bad zone", base + "[antispam]\ndnsbl = [\"bl example\"]\n", nil, "antispam.dnsbl", 5},
		{"delay over expiry", base + "[antispam]\ngreylist_delay = \"5h\"\n", nil, "antispam.greylist_delay", 5},
		{"negative limit", base + "[antispam]\nmessages_per_minute = -1\n", nil, "antispam.messages_per_minute", 5},
		{"long pause", base + "[antispam]\nearly_talker_wait = \"2m\"\n", nil, "antispam.early_talker_wait", 5},
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
		if !tc.check(c) {
			t.Errorf("%s: %+v %+v %+v", tc.name, c.DKIM, c.AuthCheck, c.Antispam)
		}
	}
}
