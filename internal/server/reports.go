package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
)

// reportingDeliverer is the deliverer the SMTP server uses: local delivery and
// queueing as deliver does, then the notices that the queue cannot send
// because the message never reaches it: members of an alias list that failed
// while the rest took the message (Sendmail accepts such a recipient and
// bounces the members), local mailboxes that refused it (over quota), and
// "delivered" reports for NOTIFY=SUCCESS recipients delivered here (RFC 3461
// section 6.2.6). Relayed recipients get theirs from the queue.
type reportingDeliverer struct{ s *Server }

// maxReturnedLocal bounds the original returned in these notices.
const maxReturnedLocal = 10 << 20

func (d reportingDeliverer) Deliver(ctx context.Context, env *deliver.Envelope, body store.Body) (*deliver.Result, error) {
	res, err := d.s.deliverer.Deliver(ctx, env, body)
	if err != nil || env.Null || !mayReport(env, res) {
		return res, err
	}
	var failed, delivered []dsn.Recipient
	now := time.Now()
	report := func(r deliver.Recipient, final string, action dsn.Action, status, diag string) dsn.Recipient {
		return dsn.Recipient{Final: final, Original: r.ORCPT, Action: action, Status: status, Diagnostic: diag, LastAttempt: now}
	}
	failedFor := map[string]bool{}
	for _, f := range res.Failures {
		failedFor[strings.ToLower(f.Recipient.String())] = true
	}
	for _, r := range env.Recipients {
		if queue.Wants(r.Notify, "FAILURE") {
			for _, e := range r.Failed {
				failed = append(failed, report(r, r.Address.String(), dsn.ActionFailed, statusOf(e), e.Error()))
			}
			for _, f := range res.Failures {
				if strings.EqualFold(f.Recipient.String(), r.Address.String()) {
					failed = append(failed, report(r, targetName(f), dsn.ActionFailed, statusOf(f.Err), f.Err.Error()))
				}
			}
		}
		if queue.Wants(r.Notify, "SUCCESS") && !failedFor[strings.ToLower(r.Address.String())] && hasLocal(r.Targets) {
			delivered = append(delivered, report(r, r.Address.String(), dsn.ActionDelivered, "2.0.0", ""))
		}
	}
	if len(failed) > 0 {
		d.s.report(ctx, env, body, failed, true)
	}
	if len(delivered) > 0 {
		d.s.report(ctx, env, body, delivered, false)
	}
	return res, nil
}

// mayReport says whether a delivery can need a notice at all, so that the
// common one (no failure, no NOTIFY=SUCCESS) costs nothing more.
func mayReport(env *deliver.Envelope, res *deliver.Result) bool {
	if len(res.Failures) > 0 {
		return true
	}
	for _, r := range env.Recipients {
		if len(r.Failed) > 0 || r.Notify != "" && queue.Wants(r.Notify, "SUCCESS") {
			return true
		}
	}
	return false
}

func hasLocal(ts []route.Target) bool {
	for _, t := range ts {
		if t.Kind == route.TargetAccount {
			return true
		}
	}
	return false
}

func targetName(f deliver.Failure) string {
	switch f.Target.Kind {
	case route.TargetAccount:
		return f.Recipient.String()
	case route.TargetFile:
		return f.Target.Path
	case route.TargetProgram:
		return "|" + f.Target.Command
	}
	return f.Recipient.String()
}

// statusOf gives the RFC 3463 code for a delivery error.
func statusOf(err error) string {
	var rej *route.Rejection
	switch {
	case errors.As(err, &rej) && len(rej.Enhanced) > 2 && rej.Enhanced[1] == '.':
		// Final now whatever its class: the message was accepted.
		return "5" + rej.Enhanced[1:]
	case errors.Is(err, store.ErrOverQuota):
		return "5.2.2"
	case errors.Is(err, store.ErrNotFound):
		return "5.1.1"
	}
	return "5.0.0"
}

// report sends one notice about env to its sender.
func (s *Server) report(ctx context.Context, env *deliver.Envelope, body store.Body, rcpts []dsn.Recipient, full bool) {
	orig, _ := io.ReadAll(io.LimitReader(io.NewSectionReader(body, 0, body.Size()), maxReturnedLocal+1))
	msg, err := dsn.Build(&dsn.Report{
		ReportingMTA: s.Config.Hostname,
		From:         "MAILER-DAEMON@" + s.Config.Hostname,
		To:           env.From.String(),
		EnvID:        env.EnvID,
		ArrivalDate:  time.Now(),
		QueueID:      env.ID,
		Recipients:   rcpts,
		ReturnFull:   full && !strings.EqualFold(env.Ret, "HDRS"),
		Original:     orig,
		MaxFull:      maxReturnedLocal,
	})
	if err == nil {
		err = s.notify(ctx, env.From.String(), msg)
	}
	if err != nil {
		s.Log.Error("notice to the sender", "queue_id", env.ID, "to", env.From.String(), "action", string(rcpts[0].Action), "err", err)
		return
	}
	s.Log.Info("notice to the sender", "queue_id", env.ID, "to", env.From.String(), "action", string(rcpts[0].Action), "recipients", len(rcpts))
}
