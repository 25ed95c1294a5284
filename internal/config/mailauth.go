package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// DKIM configures the signing of mail sent from local domains (RFC 6376,
// RFC 8463: an Ed25519 and an RSA signature on every message).
type DKIM struct {
	// Sign turns signing on (default true). A domain without keys in
	// KeysDir is sent unsigned.
	Sign *bool `toml:"sign"`
	// KeysDir holds <domain>/<selector>.<algorithm>.pem files, made by
	// `posthorn init` and `posthorn dkim keygen` (default data_dir/dkim).
	KeysDir string `toml:"keys_dir"`
}

// Signing reports whether outbound mail is signed.
func (d DKIM) Signing() bool { return d.Sign == nil || *d.Sign }

// AuthCheck configures the checks of received mail: SPF (RFC 7208), DKIM
// (RFC 6376) and DMARC (RFC 7489), and what a failure costs the message.
type AuthCheck struct {
	// Enabled runs the checks on mail from clients that are neither logged
	// in nor local (default true).
	Enabled *bool `toml:"enabled"`
	// DMARCReject is what a DMARC failure under p=reject gets: "reject"
	// (550 5.7.1, the default) or "quarantine" (the Junk mailbox; RFC 7489
	// section 6.7 lets a receiver be milder than the policy).
	DMARCReject string `toml:"dmarc_reject"`
	// DMARCQuarantine is what a failure under p=quarantine gets:
	// "quarantine" (the default) or "accept".
	DMARCQuarantine string `toml:"dmarc_quarantine"`
	// SPFFail is what an SPF "fail" (-all) gets when the From domain has no
	// DMARC record: "reject" (the default, as for DMARC p=reject),
	// "quarantine" or "accept".
	SPFFail string `toml:"spf_fail"`
	// MaxSignatures caps the DKIM signatures verified per message (5).
	MaxSignatures int `toml:"max_signatures"`
	// Timeout bounds the DNS work for one message (20s).
	Timeout Duration `toml:"timeout"`
}

// On reports whether received mail is checked.
func (a AuthCheck) On() bool { return a.Enabled == nil || *a.Enabled }

// Antispam configures the SMTP server's defences (internal/antispam). Out of
// the box (ARCHITECTURE.md): no DNSBL, no greylisting, no early-talker
// pause, and per-address limits well above 10,000 messages a minute.
type Antispam struct {
	// DNSBL lists the blocklist zones asked at connect ("zen.spamhaus.org").
	DNSBL        []string `toml:"dnsbl"`
	DNSBLTimeout Duration `toml:"dnsbl_timeout"`

	// Greylist defers the first attempt of each (client /24, sender,
	// recipient) triplet with 451 4.7.1 (RFC 6647).
	Greylist              bool     `toml:"greylist"`
	GreylistDelay         Duration `toml:"greylist_delay"`
	GreylistExpiry        Duration `toml:"greylist_expiry"`
	GreylistPassLifetime  Duration `toml:"greylist_pass_lifetime"`
	GreylistAutoWhitelist int      `toml:"greylist_auto_whitelist"`
	// GreylistFile is the greylist's own SQLite file (data_dir/greylist.db).
	GreylistFile string `toml:"greylist_file"`

	// ConnectionsPerMinute and MessagesPerMinute limit each client address
	// (IPv6: each /64); 127.0.0.1, ::1 and access RELAY clients are exempt.
	ConnectionsPerMinute int `toml:"connections_per_minute"`
	MessagesPerMinute    int `toml:"messages_per_minute"`

	// EarlyTalkerWait holds the greeting back this long and drops a client
	// that speaks meanwhile (RFC 5321 section 4.3.1). "0s": off.
	EarlyTalkerWait Duration `toml:"early_talker_wait"`
	// HELOChecks refuses a HELO/EHLO name that is not a fully qualified
	// domain or the client's own address literal, or that claims to be
	// this host.
	HELOChecks bool `toml:"helo_checks"`
	// RequireFCrDNS refuses clients without forward-confirmed reverse DNS
	// (RFC 8601's iprev): 550 5.7.25, 450 4.7.25 when DNS fails.
	RequireFCrDNS bool `toml:"require_fcrdns"`
}

// Defaults of [authcheck] and [antispam].
const (
	DefaultAuthCheckTimeout     = 20 * time.Second
	DefaultDNSBLTimeout         = 5 * time.Second
	DefaultGreylistDelay        = 5 * time.Minute
	DefaultGreylistExpiry       = 4 * time.Hour
	DefaultGreylistPassLifetime = 36 * 24 * time.Hour
	DefaultConnectionsPerMinute = 20_000
	DefaultMessagesPerMinute    = 20_000
)

// The actions [authcheck] takes.
const (
	ActionReject     = "reject"
	ActionQuarantine = "quarantine"
	ActionAccept     = "accept"
)

func (c *Config) mailauthDefaults() {
	if c.DKIM.KeysDir == "" && c.DataDir != "" {
		c.DKIM.KeysDir = filepath.Join(c.DataDir, "dkim")
	}
	a := &c.AuthCheck
	if a.DMARCReject == "" {
		a.DMARCReject = ActionReject
	}
	if a.DMARCQuarantine == "" {
		a.DMARCQuarantine = ActionQuarantine
	}
	if a.SPFFail == "" {
		a.SPFFail = ActionReject
	}
	if a.Timeout == 0 {
		a.Timeout = Duration(DefaultAuthCheckTimeout)
	}
	s := &c.Antispam
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{
		{&s.DNSBLTimeout, DefaultDNSBLTimeout},
		{&s.GreylistDelay, DefaultGreylistDelay},
		{&s.GreylistExpiry, DefaultGreylistExpiry},
		{&s.GreylistPassLifetime, DefaultGreylistPassLifetime},
	} {
		if *d.v == 0 {
			*d.v = Duration(d.def)
		}
	}
	if s.GreylistFile == "" && c.DataDir != "" {
		s.GreylistFile = filepath.Join(c.DataDir, "greylist.db")
	}
	if s.ConnectionsPerMinute == 0 {
		s.ConnectionsPerMinute = DefaultConnectionsPerMinute
	}
	if s.MessagesPerMinute == 0 {
		s.MessagesPerMinute = DefaultMessagesPerMinute
	}
	for i, z := range s.DNSBL {
		s.DNSBL[i] = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(z), "."))
	}
}

func (c *Config) validateMailauth(bad func(key, format string, args ...any)) {
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	oneOf("authcheck.dmarc_reject", c.AuthCheck.DMARCReject, ActionReject, ActionQuarantine)
	oneOf("authcheck.dmarc_quarantine", c.AuthCheck.DMARCQuarantine, ActionQuarantine, ActionAccept)
	oneOf("authcheck.spf_fail", c.AuthCheck.SPFFail, ActionReject, ActionQuarantine, ActionAccept)
	if c.AuthCheck.MaxSignatures < 0 {
		bad("authcheck.max_signatures", "must be positive")
	}
	for _, z := range c.Antispam.DNSBL {
		if z == "" || len(z) > 200 || !hostnameRE.MatchString(z) || !strings.Contains(z, ".") {
			bad("antispam.dnsbl", "%q is not a DNS zone name", z)
		}
	}
	s := c.Antispam
	if s.GreylistDelay > s.GreylistExpiry {
		bad("antispam.greylist_delay", "%v is more than greylist_expiry (%v)", s.GreylistDelay.D(), s.GreylistExpiry.D())
	}
	if s.GreylistAutoWhitelist < 0 {
		bad("antispam.greylist_auto_whitelist", "must be positive")
	}
	if s.ConnectionsPerMinute < 0 {
		bad("antispam.connections_per_minute", "must be positive")
	}
	if s.MessagesPerMinute < 0 {
		bad("antispam.messages_per_minute", "must be positive")
	}
	if s.EarlyTalkerWait.D() > time.Minute {
		bad("antispam.early_talker_wait", "%v is too long: clients give up on a greeting after 5 minutes, and each waiting client holds a connection (keep it under 1m)", s.EarlyTalkerWait.D())
	}
}

// String names an action for `posthorn check`.
func (a AuthCheck) String() string {
	if !a.On() {
		return "off"
	}
	return fmt.Sprintf("dmarc p=reject: %s, p=quarantine: %s, spf -all without DMARC: %s", a.DMARCReject, a.DMARCQuarantine, a.SPFFail)
}
