package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `hostname = "mx.example.org"
data_dir = "data"
maps_dir = "/etc/posthorn"
`

func TestParseMinimalGetsDefaults(t *testing.T) {
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/etc/posthorn/data" {
		t.Errorf("relative data_dir = %q, want it under the config's directory", c.DataDir)
	}
	if c.MapsDir != "/etc/posthorn" {
		t.Errorf("maps_dir = %q", c.MapsDir)
	}
	if c.SMTP.MaxMessageBytes != 50<<20 || c.SMTP.MaxRecipients != 100 || c.SMTPC.Port != 25 {
		t.Errorf("defaults not applied: %+v %+v", c.SMTP, c.SMTPC)
	}
	if c.SMTP.CommandTimeout.D() != 5*time.Minute {
		t.Errorf("command_timeout default = %v", c.SMTP.CommandTimeout.D())
	}
}

func TestListenersStringOrList(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{`listen = "127.0.0.1:2525"`, []string{"127.0.0.1:2525"}},
		{`listen = ["127.0.0.1:25", "[::1]:25"]`, []string{"127.0.0.1:25", "[::1]:25"}},
		{`listen = []`, []string{}},
	} {
		c, err := Parse("p.toml", []byte(minimal+"[smtp]\n"+tc.text+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.text, err)
		}
		if strings.Join(c.SMTP.Listen, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %q, want %q", tc.text, c.SMTP.Listen, tc.want)
		}
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       string // substring of the error, including "file:line:"
	}{
		{"typo'd top key", minimal + "hostnme = \"x\"\n", `p.toml:4: unknown key "hostnme"`},
		{"typo'd table key", minimal + "[smtp]\nlisten = \"127.0.0.1:25\"\nmax_mesage_bytes = 10\n", `p.toml:6: unknown key "smtp.max_mesage_bytes"`},
		{"unknown table", minimal + "\n[smpt]\nlisten = \"x\"\n", `p.toml:5: unknown key "smpt"`},
		{"wrong type", minimal + "[smtp]\nmax_message_bytes = \"big\"\n", "p.toml:5:"},
		{"syntax", minimal + "[smtp\n", "p.toml:4:"},
		{"bad listener", minimal + "[smtp]\nlisten = \"localhost\"\n", `p.toml:5: smtp.listen: "localhost" is not host:port`},
		{"bad duration", minimal + "[smtp]\ncommand_timeout = \"5 minutes\"\n", "p.toml:5:"},
		{"too few recipients", minimal + "[smtp]\nmax_recipients = 10\n", "p.toml:5: smtp.max_recipients: must be at least 100"},
		{"missing hostname", "data_dir = \"d\"\nmaps_dir = \"m\"\n", "p.toml: hostname: missing"},
		{"bad hostname", "hostname = \"mx..example\"\ndata_dir = \"d\"\nmaps_dir = \"m\"\n", "p.toml:1: hostname:"},
		{"bad smart host", minimal + "[smtp]\nsmart_host = \"[relay.isp.example:587\"\n", "p.toml:5: smtp.smart_host:"},
		{"user without password file", minimal + "[smtp]\nsmart_host = \"relay.isp.example\"\nsmart_host_user = \"me\"\n", "smart_host_password_file: missing"},
		{"bad resolver", minimal + "[dns]\nresolver = \"127.0.0.1\"\n", "p.toml:5: dns.resolver:"},
		{"unknown run_as user", minimal + "run_as = \"no-such-user-here\"\n", "p.toml:4: run_as: no user"},
	} {
		_, err := Parse("p.toml", []byte(tc.text))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := Parse("p.toml", []byte("hostnme = 1\nmaps_dir = \"m\"\n[smtp]\nlisten = \"nope\"\n"))
	if err == nil {
		t.Fatal("no error")
	}
	var n int
	for _, e := range unwrapAll(err) {
		var ce *Error
		if errors.As(e, &ce) {
			n++
		}
	}
	// unknown key, missing hostname, missing data_dir, bad listener
	if n != 4 {
		t.Errorf("got %d errors, want 4: %v", n, err)
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestParseSmartHost(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"[relay.isp.example]:587", "relay.isp.example", 587, true},
		{"[relay.isp.example]", "relay.isp.example", 0, true},
		{"relay.isp.example", "relay.isp.example", 0, true},
		{"relay.isp.example:2525", "relay.isp.example", 2525, true},
		{"[127.0.0.1]:2526", "127.0.0.1", 2526, true},
		{"[relay", "", 0, false},
		{"[]:25", "", 0, false},
		{"[x]:port", "", 0, false},
		{"[x]:70000", "", 0, false},
	} {
		h, p, err := ParseSmartHost(tc.in)
		if (err == nil) != tc.ok || h != tc.host || p != tc.port {
			t.Errorf("ParseSmartHost(%q) = %q, %d, %v; want %q, %d, ok=%v", tc.in, h, p, err, tc.host, tc.port, tc.ok)
		}
	}
}

func TestPathPrecedence(t *testing.T) {
	t.Setenv(EnvConfig, "/from/env.toml")
	if got := Path("/from/flag.toml"); got != "/from/flag.toml" {
		t.Errorf("flag: %q", got)
	}
	if got := Path(""); got != "/from/env.toml" {
		t.Errorf("env: %q", got)
	}
	t.Setenv(EnvConfig, "")
	if got := Path(""); got != DefaultPath {
		t.Errorf("default: %q", got)
	}
}

func TestLoadReadsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "posthorn.toml")
	if _, err := Load(p); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func TestQueueKeys(t *testing.T) {
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.Lifetime.D() != 5*24*time.Hour || c.Queue.DelayWarning.D() != 4*time.Hour ||
		c.Queue.MaxConnections != 100 || c.Queue.MaxPerDestination != 10 || c.SRS.Domain != "mx.example.org" {
		t.Errorf("queue defaults: %+v %+v", c.Queue, c.SRS)
	}
	c, err = Parse("/etc/posthorn/posthorn.toml", []byte(minimal+"[queue]\nqueue_lifetime = \"2d\"\nmin_backoff = \"1s\"\nmax_backoff = \"10s\"\n[srs]\nsecret_file = \"srs.key\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.Lifetime.D() != 48*time.Hour || c.Queue.MinBackoff.D() != time.Second || c.SRS.SecretFile != "/etc/posthorn/srs.key" {
		t.Errorf("queue keys: %+v %+v", c.Queue, c.SRS)
	}
	for _, bad := range []struct{ text, want string }{
		{"[queue]\nqueue_lifetime = \"5 days\"\n", "posthorn.toml:5: queue.queue_lifetime"},
		{"[queue]\nmin_backoff = \"2h\"\n", "queue.min_backoff"},
		{"[queue]\nmax_connections = -1\n", "queue.max_connections"},
	} {
		_, err := Parse("/etc/posthorn/posthorn.toml", []byte(minimal+bad.text))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want it to name %q", bad.text, err, bad.want)
		}
	}
}

func TestDelayWarningOff(t *testing.T) {
	c, err := Parse("/etc/posthorn/posthorn.toml", []byte(minimal+"[queue]\ndelay_warning = \"0s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.DelayWarning != 0 {
		t.Errorf("delay_warning = \"0s\" gave %v, want 0 (off)", c.Queue.DelayWarning.D())
	}
}
