package queue

import (
	"context"
	"errors"
	"strings"

	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/metrics"
	"github.com/posthorn/posthorn/internal/store"
)

// finish records an attempt: each recipient delivered, failed for good, or
// waiting for the next attempt; sends the notices the sender asked for (RFC
// 3461 NOTIFY; by default failures and delays); and removes the entry when no
// recipient is left waiting.
func (r *Runner) finish(run *entryRun) {
	defer r.done(run)
	// Recording goes on during shutdown: the attempt happened.
	ctx := context.WithoutCancel(r.runCtx())
	e := &run.e
	now := r.now()
	expired := now.Sub(e.Created) >= r.Config.Lifetime

	var (
		states                      []store.QueueRecipientState
		failed, delayed, successful []dsn.Recipient
		pending                     int
		maxAttempts                 int
	)
	run.mu.Lock()
	results := run.results
	run.mu.Unlock()
	for _, rc := range e.Recipients {
		if rc.Status != store.RcptPending {
			continue
		}
		o, ok := results[rc.Address]
		if !ok {
			// Not tried (cannot happen: every pending recipient is in a job).
			pending++
			continue
		}
		rc.Attempts++
		rc.LastTry = now
		rc.LastError = o.diag
		report := dsn.Recipient{
			Final: rc.Address, Original: rc.ORCPT, Status: o.status,
			RemoteMTA: o.remoteMTA, Diagnostic: o.diag, LastAttempt: now,
		}
		switch {
		case o.delivered:
			rc.Status = store.RcptDelivered
			// RFC 3461 section 6.2.6: a next hop without DSN gets the mail
			// "relayed"; with DSN it reports success itself.
			if Wants(rc.Notify, "SUCCESS") && !o.dsnOnward {
				report.Action = dsn.ActionRelayed
				successful = append(successful, report)
			}
			r.Log.Info("queue delivery", "queue_id", e.ID, "rcpt", rc.Address, "relay", o.remoteMTA, "status", "sent", "reply", o.diag)
			metrics.DeliveriesSent.Inc()
		case !o.temporary || expired:
			rc.Status = store.RcptFailed
			// An expired recipient keeps the class-4 status of its last
			// temporary failure, as Postfix reports it (RFC 3464 section
			// 2.3.4 allows "failed" with 4.x.x); the diagnostic says why.
			if Wants(rc.Notify, "FAILURE") {
				report.Action = dsn.ActionFailed
				failed = append(failed, report)
			}
			r.Log.Info("queue delivery", "queue_id", e.ID, "rcpt", rc.Address, "relay", o.remoteMTA, "status", "bounced", "reply", o.diag, "expired", expired)
			metrics.DeliveriesBounced.Inc()
		default:
			pending++
			maxAttempts = max(maxAttempts, rc.Attempts)
			if Wants(rc.Notify, "DELAY") {
				report.Action = dsn.ActionDelayed
				report.WillRetryUntil = e.Created.Add(r.Config.Lifetime)
				delayed = append(delayed, report)
			}
			r.Log.Info("queue delivery", "queue_id", e.ID, "rcpt", rc.Address, "relay", o.remoteMTA, "status", "deferred", "reply", o.diag, "attempts", rc.Attempts)
			metrics.DeliveriesDeferred.Inc()
		}
		states = append(states, rc)
	}

	warned := e.Warned
	if len(failed) > 0 {
		if err := r.notice(ctx, run, failed); err != nil {
			// The sender must hear of the failure: the recipients stay
			// on the queue as they were, so the next round fails them
			// again (the next hop answers as before, or the lifetime is
			// over) and tries the notice again. Nothing is lost but an
			// attempt.
			for i := range states {
				for _, f := range failed {
					if states[i].Address == f.Final && states[i].Status == store.RcptFailed {
						states[i].Status = store.RcptPending
						pending++
						maxAttempts = max(maxAttempts, states[i].Attempts)
					}
				}
			}
			r.Log.Warn("queue: the failure notice will be tried again with the recipients", "queue_id", e.ID, "recipients", len(failed))
		}
	}
	if len(successful) > 0 {
		r.notice(ctx, run, successful)
	}
	if pending > 0 && len(delayed) > 0 && !e.Warned && r.Config.DelayWarning > 0 && now.Sub(e.Created) >= r.Config.DelayWarning {
		// A delay notice that could not be sent is tried at the next round.
		warned = r.notice(ctx, run, delayed) == nil
	}

	var err error
	if pending == 0 {
		err = r.Store.DeleteQueueEntry(ctx, e.ID)
	} else {
		err = r.Store.UpdateQueueEntry(ctx, e.ID, store.QueueUpdate{
			Recipients:  states,
			NextAttempt: now.Add(r.backoff(maxAttempts)),
			Warned:      warned,
		})
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		// ErrNotFound: deleted by hand meanwhile (posthorn queue delete).
		r.Log.Error("queue: recording delivery attempts", "queue_id", e.ID, "err", err)
	}
}

// notice sends a delivery status notification about e to its sender. Never to
// the null sender: a notice about a notice would start a loop (RFC 5321
// section 4.5.5, RFC 3461 section 6.2).
// The error says the notice could not be handed on (built, stored or
// queued); a notice that is not to be sent at all is no error.
func (r *Runner) notice(ctx context.Context, run *entryRun, rcpts []dsn.Recipient) error {
	e := &run.e
	if e.From == "" {
		r.Log.Info("queue: no notice for mail from the null sender", "queue_id", e.ID, "action", string(rcpts[0].Action))
		return nil
	}
	if r.Notify == nil {
		return nil
	}
	rep := &dsn.Report{
		ReportingMTA: r.Config.Hostname,
		From:         "MAILER-DAEMON@" + r.Config.Hostname,
		To:           e.From,
		EnvID:        e.EnvID,
		ArrivalDate:  e.Created,
		QueueID:      e.ID,
		Recipients:   rcpts,
		// Sendmail and Postfix return the whole message unless RET=HDRS.
		ReturnFull: !strings.EqualFold(e.Ret, "HDRS"),
		MaxFull:    r.Config.MaxReturned,
		Date:       r.now(),
	}
	if rcpts[0].Action != dsn.ActionFailed {
		// Delays and successes return only the header (RFC 3461 section 4.3
		// leaves it to us; the sender still has the message).
		rep.ReturnFull = false
	}
	rep.Original = r.openOriginal(ctx, e.ID, run.body)
	msg, err := dsn.Build(rep)
	if err != nil {
		r.Log.Error("queue: building a notice", "queue_id", e.ID, "err", err)
		return err
	}
	if err := r.Notify(ctx, e.From, msg); err != nil {
		r.Log.Error("queue: sending a notice", "queue_id", e.ID, "to", e.From, "err", err)
		return err
	}
	r.Log.Info("queue notice", "queue_id", e.ID, "to", e.From, "action", string(rcpts[0].Action), "recipients", len(rcpts))
	return nil
}

// Wants reports whether an RFC 3461 NOTIFY value asks for notices of kind
// (SUCCESS, FAILURE or DELAY). Without NOTIFY the sender gets failures and
// delays, as Sendmail sends them (section 4.1 leaves the default to us).
// It allocates nothing: it runs for every recipient of every message.
func Wants(notify, kind string) bool {
	if notify == "" {
		return kind == "FAILURE" || kind == "DELAY"
	}
	for notify != "" {
		var v string
		v, notify, _ = strings.Cut(notify, ",")
		if strings.EqualFold(strings.TrimSpace(v), kind) {
			return true
		}
	}
	return false
}

func (r *Runner) runCtx() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return context.Background()
}
