package imapd

import "github.com/posthorn/posthorn/internal/metrics"

// The server's counters, resolved once: tagged answers by status (RFC 9051
// section 7.1), and sessions by how they ended (the log line's "end").
var (
	commandResults = metrics.Commands("imap", map[string]string{"OK": "ok", "NO": "no", "BAD": "bad"})
	sessionEnds    = metrics.SessionEnds("imap", map[string]string{
		"logout":               "logout",
		"connection closed":    "closed",
		"idle timeout":         "timeout",
		"shutdown":             "shutdown",
		"too many errors":      "too_many_errors",
		"protocol error":       "protocol_error",
		"read failed":          "read_error",
		"write failed":         "write_error",
		"TLS handshake failed": "tls_failed",
	})
)
