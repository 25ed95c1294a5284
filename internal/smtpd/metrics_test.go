package smtpd_test

import (
	"testing"

	"github.com/posthorn/posthorn/internal/metrics"
)

// Each transaction is counted once, where it is logged, by its result: the
// reply's class, or aborted when it had no final reply.
func TestTransactionMetrics(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *smtpdConfig) { c.MaxMessageBytes = 10000 }})
	tx := metrics.SMTPTransactions("smtp") // the counters port 25's server resolved
	acc, r4, r5, ab := tx.Accepted.Value(), tx.Rejected4xx.Value(), tx.Rejected5xx.Value(), tx.Aborted.Value()

	c := h.dial("127.0.0.2")
	c.hello()
	// Accepted.
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Fatal(r)
	}
	// Rejected with a 5xx: a bare LF.
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	if r := c.sendData("Subject: x\r\n\r\nline one\nline two\r\n"); r.code != 550 {
		t.Fatal(r)
	}
	// Aborted: RSET.
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RSET", 250, "")
	c.expect("QUIT", 221, "")

	for _, d := range []struct {
		name      string
		got, want uint64
	}{
		{"accepted", tx.Accepted.Value() - acc, 1},
		{"rejected_4xx", tx.Rejected4xx.Value() - r4, 0},
		{"rejected_5xx", tx.Rejected5xx.Value() - r5, 1},
		{"aborted", tx.Aborted.Value() - ab, 1},
	} {
		if d.got != d.want {
			t.Errorf("%s: %d, want %d", d.name, d.got, d.want)
		}
	}
}
