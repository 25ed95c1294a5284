package queue

import (
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/metrics"
	"github.com/posthorn/posthorn/internal/smtpc/smtptest"
	"github.com/posthorn/posthorn/internal/store"
)

// Each recipient's attempt is counted once, by its result, as it is logged.
func TestDeliveryMetrics(t *testing.T) {
	h := newHarness(t, smtptest.Options{
		Rcpt: func(to string) error {
			if strings.HasPrefix(to, "gone@") {
				return smtptest.Perm(550, [3]int{5, 1, 1}, "no such user here")
			}
			return nil
		},
		Data: func(n int) error {
			if n <= 2 {
				return smtptest.Temp("greylisted, come back later")
			}
			return nil
		},
	}, Config{})
	sent, deferred, bounced := metrics.DeliveriesSent.Value(), metrics.DeliveriesDeferred.Value(), metrics.DeliveriesBounced.Value()
	h.start()
	h.queue("pp@posthorn.test", store.QueueRecipient{Address: "gone@remote.test"}, store.QueueRecipient{Address: "ok@remote.test"})
	h.waitEmpty()
	// gone@ bounces at the first attempt; ok@ waits twice (the DATA 4xx),
	// then goes.
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"sent", metrics.DeliveriesSent.Value() - sent, 1},
		{"deferred", metrics.DeliveriesDeferred.Value() - deferred, 2},
		{"bounced", metrics.DeliveriesBounced.Value() - bounced, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
}
