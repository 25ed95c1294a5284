package pop3d

import "github.com/posthorn/posthorn/internal/metrics"

// Commands by answer (+OK or a failed command's -ERR), resolved once.
var commandResults = metrics.Commands("pop3", map[string]string{"ok": "ok", "err": "err"})

// Sessions by how they ended (the log line's "end"), resolved once.
var sessionEnds = metrics.SessionEnds("pop3", map[string]string{
	"quit":                 "quit",
	"closed":               "closed",
	"dropped":              "closed",
	"idle timeout":         "timeout",
	"shutdown":             "shutdown",
	"too many errors":      "too_many_errors",
	"read failed":          "read_error",
	"write failed":         "write_error",
	"TLS handshake failed": "tls_failed",
})
