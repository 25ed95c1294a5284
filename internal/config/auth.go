package config

// Auth configures logins, the same for SMTP submission, POP3, IMAP and the
// webmail (internal/auth).
type Auth struct {
	// AllowPlaintext lets clients send a password whole (SASL PLAIN and
	// LOGIN, POP3 USER/PASS, IMAP LOGIN) on an unencrypted connection from
	// any address. Off by default: only 127.0.0.1 and ::1 may, so that a
	// password never crosses a network in clear. SCRAM-SHA-256, which never
	// sends the password, is allowed everywhere either way.
	AllowPlaintext bool `toml:"allow_plaintext"`
}
