// Package config loads posthorn.toml: the keys named in ARCHITECTURE.md, their
// defaults, and validation whose errors name the file and the line.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the config is looked for when neither --config nor
// $POSTHORN_CONFIG says otherwise.
const DefaultPath = "/etc/posthorn/posthorn.toml"

// EnvConfig names the environment variable that points at the config file.
const EnvConfig = "POSTHORN_CONFIG"

// Config is the whole of posthorn.toml. Paths are absolute after Load: relative
// ones are taken relative to the directory of the config file.
type Config struct {
	Hostname string `toml:"hostname"`
	DataDir  string `toml:"data_dir"`
	MapsDir  string `toml:"maps_dir"`
	// RunAs is the user to become after binding the listening ports, when started
	// as root. Empty: stay whoever started the server.
	RunAs    string `toml:"run_as"`
	LogLevel string `toml:"log_level"`

	SMTP    SMTP    `toml:"smtp"`
	Aliases Aliases `toml:"aliases"`
	IMAP    IMAP    `toml:"imap"`
	POP3    POP3    `toml:"pop3"`
	Web     Web     `toml:"web"`
	TLS     TLS     `toml:"tls"`
	DNS     DNS     `toml:"dns"`
	SMTPC   SMTPC   `toml:"smtpc"`
	Queue   Queue   `toml:"queue"`
	SRS     SRS     `toml:"srs"`
	Auth    Auth    `toml:"auth"`

	DKIM      DKIM      `toml:"dkim"`
	AuthCheck AuthCheck `toml:"authcheck"`
	Antispam  Antispam  `toml:"antispam"`
	Metrics   Metrics   `toml:"metrics"`

	// File is the path the config was read from.
	File string `toml:"-"`
}

// SMTP configures the SMTP server and the relay through a smart host.
type SMTP struct {
	Listen            Listeners `toml:"listen"`
	SubmissionListen  Listeners `toml:"submission_listen"`
	SubmissionsListen Listeners `toml:"submissions_listen"`
	MaxMessageBytes   int64     `toml:"max_message_bytes"`
	MaxRecipients     int       `toml:"max_recipients"`
	// MaxConnectionsPerIP caps the simultaneous connections of one client address.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// MaxConnections caps the simultaneous connections in total.
	MaxConnections int      `toml:"max_connections"`
	CommandTimeout Duration `toml:"command_timeout"`
	DataTimeout    Duration `toml:"data_timeout"`

	SmartHost             string `toml:"smart_host"`
	SmartHostUser         string `toml:"smart_host_user"`
	SmartHostPasswordFile string `toml:"smart_host_password_file"`
}

// Aliases configures what the aliases file may do besides naming addresses.
type Aliases struct {
	// AllowPrograms permits "|command" targets; AllowFiles permits "/path".
	AllowPrograms  bool     `toml:"allow_programs"`
	AllowFiles     bool     `toml:"allow_files"`
	ProgramTimeout Duration `toml:"program_timeout"`
}

// POP3 configures the POP3 listeners.
type POP3 struct {
	Listen    Listeners `toml:"listen"`
	TLSListen Listeners `toml:"tls_listen"`
}

// Web configures the webmail listeners (internal/webmail).
type Web struct {
	// Listen serves plain HTTP: logins are then taken only from 127.0.0.1
	// and ::1 (or with [auth] allow_plaintext), as for every protocol.
	Listen Listeners `toml:"listen"`
	// TLSListen serves HTTPS with the [tls] certificate.
	TLSListen Listeners `toml:"tls_listen"`
}

// DNS configures name resolution.
type DNS struct {
	// Resolver, "host:port", sends every DNS query to that server (UDP, TCP on
	// truncation). Empty: the system's resolver.
	Resolver string `toml:"resolver"`
}

// SMTPC configures outbound delivery.
type SMTPC struct {
	// Port is the port used to reach an MX (25 unless a test says otherwise).
	Port int `toml:"port"`
	// CAFile adds PEM certificates to the system's roots for verifying the
	// next hop (a smart host with a private CA).
	CAFile         string   `toml:"ca_file"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout"`
}

// Queue configures the outbound queue: how long and how often it retries, and
// how many connections it opens.
type Queue struct {
	// Lifetime is how long a message is retried before it bounces (5 days).
	Lifetime Duration `toml:"queue_lifetime"`
	// DelayWarning is when the sender hears that a message is still waiting (4 hours).
	DelayWarning Duration `toml:"delay_warning"`
	// MinBackoff and MaxBackoff bound the growing wait between attempts.
	MinBackoff Duration `toml:"min_backoff"`
	MaxBackoff Duration `toml:"max_backoff"`
	// MaxConnections caps outbound connections in total; MaxPerDestination per
	// destination (a domain, or the smart host).
	MaxConnections    int `toml:"max_connections"`
	MaxPerDestination int `toml:"max_connections_per_destination"`
}

// SRS configures the Sender Rewriting Scheme for forwarded mail.
type SRS struct {
	// SecretFile holds the secret (one line; more lines are older secrets,
	// still accepted on bounces). Empty: forwarded mail keeps its sender.
	SecretFile string `toml:"secret_file"`
	// Domain is the domain of rewritten addresses (the hostname when empty).
	Domain string `toml:"domain"`
}

// Listeners is a list of "host:port" addresses; the config may give one string
// or a list of strings.
type Listeners []string

// UnmarshalTOML accepts a string or an array of strings.
func (l *Listeners) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*l = Listeners{v}
		return nil
	case []any:
		out := make(Listeners, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("a listener must be a \"host:port\" string, not %T", e)
			}
			out = append(out, s)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("want \"host:port\" or a list of them, not %T", v)
}

// Duration is a time.Duration written as "30s", "5m", "1h".
type Duration time.Duration

// UnmarshalText parses a Go duration string, or a number of days ("5d", as
// queue lifetimes are usually written).
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	var v time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		if err == nil && (n < 0 || n > 10000) {
			err = errors.New("out of range")
		}
		v = time.Duration(n) * 24 * time.Hour
	} else {
		v, err = time.ParseDuration(s)
	}
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"30s\", \"5m\" or \"5d\"", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults used for keys the file leaves out.
const (
	DefaultMaxMessageBytes     = 50 << 20
	DefaultMaxRecipients       = 100
	DefaultMaxConnectionsPerIP = 50
	// DefaultMaxConnections is high on purpose: the per-address cap is
	// what stops one client; a total cap near what a few hundred idle
	// clients reach would let them shut everyone else out.
	DefaultMaxConnections   = 10000
	DefaultCommandTimeout   = 5 * time.Minute
	DefaultDataTimeout      = 10 * time.Minute
	DefaultProgramTimeout   = time.Minute
	DefaultSMTPCPort        = 25
	DefaultConnectTimeout   = 30 * time.Second
	DefaultQueueLifetime    = 5 * 24 * time.Hour
	DefaultDelayWarning     = 4 * time.Hour
	DefaultMinBackoff       = 5 * time.Minute
	DefaultMaxBackoff       = time.Hour
	DefaultQueueConnections = 100
	DefaultPerDestination   = 10
)

// Error is a problem in a config file, with the line it is on when known.
type Error struct {
	File string
	Line int // 0 when the problem is not on one line
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Path returns the config file to use: flag if set, else $POSTHORN_CONFIG, else
// DefaultPath.
func Path(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(EnvConfig); env != "" {
		return env
	}
	return DefaultPath
}

// Load reads, completes and validates a config file. Every problem found is
// returned (errors.Join of *Error), so that one run of `posthorn check` shows them all.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; path names the file in errors and anchors
// relative paths.
func Parse(path string, data []byte) (*Config, error) {
	c := &Config{File: path}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, tomlError(path, data, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, &Error{
			File: path,
			Line: keyLine(data, k),
			Msg:  fmt.Sprintf("unknown key %q", k.String()),
		})
	}
	// delay_warning = "0s" turns the delay notice off; left out, it is 4h.
	noDelayWarning := md.IsDefined("queue", "delay_warning") && c.Queue.DelayWarning == 0
	c.applyDefaults()
	c.imapDefaults(md.IsDefined)
	if noDelayWarning {
		c.Queue.DelayWarning = 0
	}
	c.resolvePaths(filepath.Dir(path))
	c.tlsDefaults()
	c.mailauthDefaults()
	errs = append(errs, c.validate(data)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.SMTP.MaxMessageBytes == 0 {
		c.SMTP.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.SMTP.MaxRecipients == 0 {
		c.SMTP.MaxRecipients = DefaultMaxRecipients
	}
	if c.SMTP.MaxConnectionsPerIP == 0 {
		c.SMTP.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	if c.SMTP.MaxConnections == 0 {
		c.SMTP.MaxConnections = DefaultMaxConnections
	}
	if c.SMTP.CommandTimeout == 0 {
		c.SMTP.CommandTimeout = Duration(DefaultCommandTimeout)
	}
	if c.SMTP.DataTimeout == 0 {
		c.SMTP.DataTimeout = Duration(DefaultDataTimeout)
	}
	if c.Aliases.ProgramTimeout == 0 {
		c.Aliases.ProgramTimeout = Duration(DefaultProgramTimeout)
	}
	if c.SMTPC.Port == 0 {
		c.SMTPC.Port = DefaultSMTPCPort
	}
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{
		{&c.SMTPC.ConnectTimeout, DefaultConnectTimeout},
		{&c.SMTPC.CommandTimeout, DefaultCommandTimeout},
		{&c.Queue.Lifetime, DefaultQueueLifetime},
		{&c.Queue.DelayWarning, DefaultDelayWarning},
		{&c.Queue.MinBackoff, DefaultMinBackoff},
		{&c.Queue.MaxBackoff, DefaultMaxBackoff},
	} {
		if *d.v == 0 {
			*d.v = Duration(d.def)
		}
	}
	if c.Queue.MaxConnections == 0 {
		c.Queue.MaxConnections = DefaultQueueConnections
	}
	if c.Queue.MaxPerDestination == 0 {
		c.Queue.MaxPerDestination = DefaultPerDestination
	}
	if c.SRS.Domain == "" {
		c.SRS.Domain = strings.ToLower(strings.TrimSuffix(c.Hostname, "."))
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	c.Hostname = strings.ToLower(strings.TrimSuffix(c.Hostname, "."))
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	if b, err := filepath.Abs(base); err == nil {
		base = b
	}
	abs(&c.DataDir)
	abs(&c.MapsDir)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.TLS.ACMECAFile)
	abs(&c.TLS.ACMECacheDir)
	abs(&c.SMTP.SmartHostPasswordFile)
	abs(&c.SMTPC.CAFile)
	abs(&c.SRS.SecretFile)
	abs(&c.DKIM.KeysDir)
	abs(&c.Antispam.GreylistFile)
}

var hostnameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validate checks values; data is the file's text, to find the line of a key.
func (c *Config) validate(data []byte) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: c.File, Line: keyLine(data, toml.Key(strings.Split(key, "."))),
			Msg: key + ": " + fmt.Sprintf(format, args...)})
	}
	switch {
	case c.Hostname == "":
		bad("hostname", "missing: the server's fully qualified name, like \"mx.example.org\"")
	case len(c.Hostname) > 253 || !hostnameRE.MatchString(c.Hostname):
		bad("hostname", "%q is not a valid host name", c.Hostname)
	}
	if c.DataDir == "" {
		bad("data_dir", "missing: the directory that holds the mail store and the queue")
	}
	if c.MapsDir == "" {
		bad("maps_dir", "missing: the directory that holds access, aliases, local-host-names and virtusertable")
	}
	for key, l := range map[string]Listeners{
		"smtp.listen": c.SMTP.Listen, "smtp.submission_listen": c.SMTP.SubmissionListen,
		"smtp.submissions_listen": c.SMTP.SubmissionsListen,
		"imap.listen":             c.IMAP.Listen, "imap.tls_listen": c.IMAP.TLSListen,
		"pop3.listen": c.POP3.Listen, "pop3.tls_listen": c.POP3.TLSListen,
		"web.listen": c.Web.Listen, "web.tls_listen": c.Web.TLSListen,
	} {
		for _, a := range l {
			if err := checkHostPort(a); err != nil {
				bad(key, "%v", err)
			}
		}
	}
	if c.DNS.Resolver != "" {
		if err := checkHostPort(c.DNS.Resolver); err != nil {
			bad("dns.resolver", "%v", err)
		}
	}
	if c.SMTP.MaxMessageBytes < 0 {
		bad("smtp.max_message_bytes", "must be positive")
	}
	if c.SMTP.MaxRecipients < 0 {
		bad("smtp.max_recipients", "must be positive")
	} else if c.SMTP.MaxRecipients < 100 {
		// RFC 5321 section 4.5.3.1.8: a server MUST accept at least 100 recipients.
		bad("smtp.max_recipients", "must be at least 100 (RFC 5321 section 4.5.3.1.8)")
	}
	if c.SMTP.MaxConnectionsPerIP < 0 {
		bad("smtp.max_connections_per_ip", "must be positive")
	}
	if c.SMTP.MaxConnections < 0 {
		bad("smtp.max_connections", "must be positive")
	}
	if c.SMTPC.Port < 0 || c.SMTPC.Port > 65535 {
		bad("smtpc.port", "%d is not a port number", c.SMTPC.Port)
	}
	if c.Queue.MaxConnections < 0 {
		bad("queue.max_connections", "must be positive")
	}
	if c.Queue.MaxPerDestination < 0 {
		bad("queue.max_connections_per_destination", "must be positive")
	}
	if c.Queue.MinBackoff > c.Queue.MaxBackoff {
		bad("queue.min_backoff", "%v is more than max_backoff (%v)", c.Queue.MinBackoff.D(), c.Queue.MaxBackoff.D())
	}
	c.validateTLS(bad)
	c.validateIMAP(bad)
	c.validateMailauth(bad)
	c.validateMetrics(bad)
	if c.SMTP.SmartHost != "" {
		if _, _, err := ParseSmartHost(c.SMTP.SmartHost); err != nil {
			bad("smtp.smart_host", "%v", err)
		}
	}
	if c.SMTP.SmartHostUser != "" && c.SMTP.SmartHostPasswordFile == "" {
		bad("smtp.smart_host_password_file", "missing: smart_host_user needs a password file")
	}
	if c.RunAs != "" {
		if _, err := user.Lookup(c.RunAs); err != nil {
			bad("run_as", "no user %q on this system", c.RunAs)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	return errs
}

func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	if host != "" && net.ParseIP(host) == nil && !hostnameRE.MatchString(strings.ToLower(host)) {
		return fmt.Errorf("%q: %q is not an IP address or host name", a, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: %q is not a port number", a, port)
	}
	return nil
}

// ParseSmartHost splits a smart_host value: "[host]:port" or "[host]" (no MX
// lookup, as in Sendmail's SMART_HOST), or "host" / "host:port" (MX lookup of
// host). port is 0 when not given.
func ParseSmartHost(s string) (host string, port int, err error) {
	noMX := strings.HasPrefix(s, "[")
	rest := s
	if noMX {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("%q: missing ]", s)
		}
		host, rest = s[1:end], s[end+1:]
	} else {
		host, rest, _ = strings.Cut(s, ":")
		if rest != "" {
			rest = ":" + rest
		}
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: no host", s)
	}
	if rest != "" {
		p, ok := strings.CutPrefix(rest, ":")
		n, perr := strconv.Atoi(p)
		if !ok || perr != nil || n <= 0 || n > 65535 {
			return "", 0, fmt.Errorf("%q: bad port", s)
		}
		port = n
	}
	return host, port, nil
}

// keyLine finds the line that sets key (["smtp","listen"]) in a TOML text: a
// "key =" line inside the key's [table]. It returns 0 when it cannot tell.
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	table := strings.Join(key[:len(key)-1], ".")
	name := key[len(key)-1]
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			h := strings.Trim(line, "[] \t")
			if i := strings.Index(h, "#"); i >= 0 {
				h = strings.TrimSpace(strings.TrimRight(h[:i], "] \t"))
			}
			cur = h
			// A whole unknown table: its header is the line.
			if cur == strings.Join(key, ".") {
				return n
			}
			continue
		}
		if cur != table {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		if k == name {
			return n
		}
	}
	return 0
}

var tomlLineRE = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "[^"]*"\))?: (.*)$`)

// tomlError turns a TOML decoding error into an *Error with the line.
func tomlError(path string, data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg = pe.LastKey + ": " + msg
		}
		line := pe.Position.Line
		// The decoder counts an error found at a line's end (an unclosed "[smtp")
		// on the next line; the byte offset says which line it is on.
		if s := pe.Position.Start; s > 0 && s <= len(data) {
			line = 1 + bytes.Count(data[:s], []byte("\n"))
		}
		return &Error{File: path, Line: line, Msg: msg}
	}
	if m := tomlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: path, Line: n, Msg: m[2]}
	}
	return &Error{File: path, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}
