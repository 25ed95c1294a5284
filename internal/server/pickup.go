package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/maildrop"
	"github.com/posthorn/posthorn/internal/queue"
	"github.com/posthorn/posthorn/internal/route"
)

// pickup delivers a message that a local program handed to `posthorn
// sendmail`: as Sendmail does for its local submissions, with a Received:
// field naming the user, relaying allowed (the user is on this machine), and
// recipients that do not resolve reported to the sender in a failure notice.
// A temporary error leaves the file for the next scan.
func (s *Server) pickupMessage(ctx context.Context, env *maildrop.Envelope, msg io.Reader, dropID string) error {
	qid := queue.NewID()
	var from addr.Address
	if !env.Null {
		var err error
		if from, err = addr.ParsePath(env.From, true); err != nil {
			return fmt.Errorf("%w: sender %q: %v", maildrop.ErrPermanent, env.From, err)
		}
	}
	max := s.Config.SMTP.MaxMessageBytes
	data, err := io.ReadAll(io.LimitReader(msg, max+1))
	if err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", env.From)
	user := env.User
	if user == "" {
		user = fmt.Sprintf("uid%d", env.UID)
	}
	fmt.Fprintf(&b, "Received: (from %s@localhost uid %d)\r\n\tby %s (posthorn) id %s;\r\n\t%s\r\n",
		user, env.UID, s.Config.Hostname, qid, time.Now().Format(time.RFC1123Z))
	b.Write(data)

	var (
		rcpts  []deliver.Recipient
		failed []dsn.Recipient
	)
	fail := func(rcpt string, rej *route.Rejection) {
		failed = append(failed, dsn.Recipient{Final: rcpt, Action: dsn.ActionFailed, Status: rej.Enhanced,
			Diagnostic: fmt.Sprintf("%d %s %s", rej.Code, rej.Enhanced, rej.Text), LastAttempt: time.Now()})
	}
	for _, r := range env.Recipients {
		if int64(len(data)) > max {
			fail(r, &route.Rejection{Code: 552, Enhanced: "5.3.4", Text: fmt.Sprintf("message over the limit of %d bytes", max)})
			continue
		}
		a, err := addr.ParsePath(r, false)
		if err == nil && a.Domain == "" {
			a.Domain = s.Config.Hostname
		}
		if err != nil {
			fail(r, &route.Rejection{Code: 553, Enhanced: "5.1.3", Text: "bad address syntax"})
			continue
		}
		res, err := s.router.Resolve(ctx, a)
		var rej *route.Rejection
		switch {
		case errors.As(err, &rej):
			fail(r, rej)
			continue
		case err != nil:
			return err
		}
		rcpts = append(rcpts, deliver.Recipient{Address: a, Targets: res.Targets})
	}
	delivered := false
	if len(rcpts) > 0 {
		_, err := s.deliverer.Deliver(ctx, &deliver.Envelope{ID: qid, From: from, Null: env.Null, Recipients: rcpts, Sign: true}, bytes.NewReader(b.Bytes()))
		var rej *route.Rejection
		switch {
		case errors.As(err, &rej):
			for _, r := range rcpts {
				fail(r.Address.String(), rej)
			}
		case err != nil:
			return err
		default:
			delivered = true
		}
	}
	s.Log.Info("sendmail pickup", "drop_id", dropID, "queue_id", qid, "user", user, "from", env.From,
		"rcpts", len(env.Recipients), "failed", len(failed), "size", len(data))
	if len(failed) == 0 {
		return nil
	}
	// From here on the message is delivered (or refused for good): whatever
	// happens to the notice, the file must not be taken again, or the
	// recipients that took it would get it once more at every scan.
	if env.Null {
		if delivered {
			return nil
		}
		return fmt.Errorf("%w: no recipient took it and the sender is <>", maildrop.ErrPermanent)
	}
	report, err := dsn.Build(&dsn.Report{
		ReportingMTA: s.Config.Hostname,
		From:         "MAILER-DAEMON@" + s.Config.Hostname,
		To:           env.From,
		ArrivalDate:  time.Now(),
		QueueID:      qid,
		Recipients:   failed,
		ReturnFull:   true,
		Original:     data,
		MaxFull:      10 << 20,
	})
	if err == nil {
		err = s.notify(ctx, env.From, report)
	}
	if err != nil {
		s.Log.Error("sendmail pickup: failure notice not sent", "drop_id", dropID, "queue_id", qid, "to", env.From, "err", err)
		if !delivered {
			return fmt.Errorf("%w: notice: %v", maildrop.ErrPermanent, err)
		}
	}
	return nil
}

// prepareMaildrop makes data_dir traversable (not readable) by local users
// and the drop directory writable by them, so that `posthorn sendmail` works
// for every user as it does for Postfix's postdrop. What data_dir holds stays
// private: the database files are 0600 and the other directories 0700.
func prepareMaildrop(dataDir string) (string, error) {
	if err := chmodTraversable(dataDir); err != nil {
		return "", err
	}
	dir := maildrop.Dir(dataDir)
	if err := maildrop.Prepare(dir); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	return dir, nil
}

func chmodTraversable(dir string) error {
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	return nil
}
