package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// IMAP configures the IMAP server (internal/imapd).
type IMAP struct {
	// Listen is port 143: plain text, then STARTTLS (RFC 9051 section 6.2.1).
	Listen Listeners `toml:"listen"`
	// TLSListen is port 993: TLS from the first byte (RFC 8314 section 3.3).
	TLSListen Listeners `toml:"tls_listen"`
	// AppendLimit is the largest message a client may APPEND, advertised as
	// APPENDLIMIT (RFC 7889); 64 MiB.
	AppendLimit Size `toml:"append_limit"`
	// IdleTimeout ends a logged-in session that sends nothing for this long.
	// RFC 9051 section 5.4 wants at least 30 minutes, so that a client in
	// IDLE, which re-issues it every 29 minutes, is never cut.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxConnections caps the sessions in total (20,000: clients stay
	// connected in IDLE, and an idle session costs about 30 KB);
	// MaxConnectionsPerIP those from one client address (100).
	MaxConnections      int `toml:"max_connections"`
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
}

// Defaults of the [imap] keys.
const (
	DefaultIMAPAppendLimit = 64 << 20
	DefaultIMAPIdleTimeout = 30 * time.Minute
	// MinIMAPIdleTimeout is RFC 9051 section 5.4's floor: "at least 30 minutes".
	MinIMAPIdleTimeout             = 30 * time.Minute
	DefaultIMAPMaxConnections      = 20000
	DefaultIMAPMaxConnectionsPerIP = 100
)

// imapDefaults completes [imap]. A key written with a zero value keeps it, so
// that validation can refuse it rather than a default hiding the mistake.
func (c *Config) imapDefaults(defined func(key ...string) bool) {
	if !defined("imap", "append_limit") {
		c.IMAP.AppendLimit = DefaultIMAPAppendLimit
	}
	if !defined("imap", "idle_timeout") {
		c.IMAP.IdleTimeout = Duration(DefaultIMAPIdleTimeout)
	}
	if !defined("imap", "max_connections") {
		c.IMAP.MaxConnections = DefaultIMAPMaxConnections
	}
	if !defined("imap", "max_connections_per_ip") {
		c.IMAP.MaxConnectionsPerIP = DefaultIMAPMaxConnectionsPerIP
	}
}

func (c *Config) validateIMAP(bad func(key, format string, args ...any)) {
	if c.IMAP.AppendLimit <= 0 {
		bad("imap.append_limit", "must be more than 0 (a size like 67108864, \"64MiB\" or \"50MB\")")
	}
	if c.IMAP.MaxConnections <= 0 {
		bad("imap.max_connections", "must be positive")
	}
	if c.IMAP.MaxConnectionsPerIP <= 0 {
		bad("imap.max_connections_per_ip", "must be positive")
	}
	if d := c.IMAP.IdleTimeout.D(); d < MinIMAPIdleTimeout {
		bad("imap.idle_timeout", "%v is less than 30m: RFC 9051 section 5.4 wants an idle client kept at least 30 minutes", d)
	}
}

// Size is a number of bytes, written as an integer (67108864) or a string
// with a unit: "64MiB", "64M" (both 2^20), "50MB" (10^6), "512KiB", "1GiB".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest first, so that "MiB" is not read as "B".
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// UnmarshalTOML accepts an integer or a string with a unit.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size %d is negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	return fmt.Errorf("want a size like 67108864 or \"64MiB\", not %T", v)
}

func parseSize(text string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(text))
	mult := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size like 67108864, \"64MiB\" or \"50MB\"", text)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", text)
	}
	return n * mult, nil
}

// ParseSize reads a size as the config writes one: octets, or a number
// with a unit ("64MiB", "50MB", "1GiB"); for `posthorn user quota`.
func ParseSize(text string) (int64, error) { return parseSize(text) }
