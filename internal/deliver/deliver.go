// Package deliver turns an accepted message and its resolved recipients into
// what the store keeps: a copy in each local account's mailbox and an outbound
// queue entry for remote recipients, written in one durable step; and it runs
// the aliases' "|command" and "/file" targets where the config allows them. It
// parses the message once (internal/msg) for the store. The SMTP server, the
// sendmail command and the webmail all deliver through it.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/srs"
	"github.com/posthorn/posthorn/internal/store"
)

// Recipient is one accepted recipient and what it resolved to.
type Recipient struct {
	Address addr.Address // as the client gave it
	Targets []route.Target
	ORCPT   string // RFC 3461 original recipient, decoded: "rfc822;addr" or "utf-8;addr" (RFC 6533); "" when not given
	Notify  string // RFC 3461 NOTIFY: "NEVER", or a comma list of SUCCESS, FAILURE, DELAY; "" when not given
	// Failed holds members of the recipient's expansion (an alias list) that
	// could not be resolved while others were: the sender hears of them.
	Failed []error
}

// Envelope is the SMTP envelope of a message.
type Envelope struct {
	ID         string // queue ID, already given to the client
	From       addr.Address
	Null       bool // the null reverse-path <>
	Recipients []Recipient
	EnvID      string // RFC 3461 ENVID, decoded; "" when not given
	Ret        string // RFC 3461 RET: "FULL", "HDRS" or ""
	// Sign asks for DKIM signatures (the message was sent by a local user
	// or program): added when it goes to remote recipients and its From:
	// domain has keys in Deliverer.DKIM.
	Sign bool
	// Quarantine sends the local copies to each account's Junk mailbox
	// (INBOX when it has none): a DMARC p=quarantine failure (RFC 7489
	// section 6.3), or an SPF fail the config treats so.
	Quarantine bool
}

// JunkMailbox is where quarantined mail goes (store.DefaultMailboxes).
const JunkMailbox = "Junk"

// Failure is a target the message could not be delivered to, while others took
// it. The outbound issue turns these into bounces to the sender.
type Failure struct {
	Recipient addr.Address
	Target    route.Target
	Err       error
}

// Result says what Deliver did.
type Result struct {
	QueueID   string
	Delivered int // local mailboxes that got a copy
	Queued    int // remote recipients put on the queue
	Failures  []Failure
}

// Deliverer delivers messages. The zero value is not usable: set Store.
type Deliverer struct {
	Store          store.Store
	AllowPrograms  bool
	AllowFiles     bool
	ProgramTimeout time.Duration
	Log            *slog.Logger
	// Queued, when set, is given each new queue entry once it is durable,
	// so that the queue sends it at once, with the message's bytes when it
	// is small (nil otherwise): the queue then need not read back what it
	// was just handed.
	Queued func(e *store.QueueEntry, body []byte)
	// SRS, when set, rewrites the envelope sender of forwarded mail from
	// other domains (IsLocalDomain says which are ours), so that SPF passes
	// where it goes. One queue entry has one sender: when a message is
	// forwarded and also relayed as sent, both go out with the SRS address,
	// whose bounces come back to the sender all the same.
	SRS           *srs.Rewriter
	IsLocalDomain func(domain string) bool
	// DKIM, when set, signs the messages whose Envelope says Sign.
	DKIM *KeyRing
}

// rewriteSender returns the envelope sender for forwarded mail.
func (d *Deliverer) rewriteSender(env *Envelope) string {
	from := env.From.String()
	if d.SRS == nil || env.From.Domain == "" || d.IsLocalDomain != nil && d.IsLocalDomain(env.From.Domain) {
		return from
	}
	r, err := d.SRS.Forward(from)
	if err != nil {
		// Too long for SRS, say: forwarded as it is (SPF may then fail).
		d.log().Warn("srs: sender not rewritten", "queue_id", env.ID, "from", from, "err", err)
		return from
	}
	return r
}

// Deliver stores body (the whole message as it is to be kept, trace fields
// included) for every recipient's targets and returns once that is durable. An
// error means nothing was delivered to accounts or the queue, and the client
// should be told to try again (or, for a *route.Rejection or store.ErrOverQuota,
// what that says). Program and file targets run before the store is written:
// when one fails temporarily the whole message is refused with a 4xx so that it
// comes back.
func (d *Deliverer) Deliver(ctx context.Context, env *Envelope, body store.Body) (*Result, error) {
	res := &Result{QueueID: env.ID}
	var (
		local     []store.LocalTarget
		localFor  []addr.Address // recipient of each local target, for failures
		localSeen = map[string]bool{}
		remote    []store.QueueRecipient
		rmtSeen   = map[string]bool{}
		forwarded bool
		sideJobs  []sideJob
	)
	for _, r := range env.Recipients {
		for _, t := range r.Targets {
			switch t.Kind {
			case route.TargetAccount:
				if !localSeen[t.Account] {
					localSeen[t.Account] = true
					lt := store.LocalTarget{Account: t.Account}
					if env.Quarantine {
						lt.Mailbox = JunkMailbox
					}
					local = append(local, lt)
					localFor = append(localFor, r.Address)
				}
			case route.TargetRemote:
				key := strings.ToLower(t.Address.String())
				if !rmtSeen[key] {
					rmtSeen[key] = true
					orcpt := r.ORCPT
					if r.Address.Local != "" && !strings.EqualFold(key, r.Address.String()) {
						// Forwarded by an alias or virtusertable entry.
						forwarded = true
						if orcpt == "" {
							// So that a report names the address the
							// sender used (RFC 3461 section 4.2).
							orcpt = "rfc822;" + r.Address.String()
						}
					}
					remote = append(remote, store.QueueRecipient{Address: t.Address.String(), ORCPT: orcpt, Notify: r.Notify})
				}
			case route.TargetFile, route.TargetProgram:
				sideJobs = append(sideJobs, sideJob{rcpt: r.Address, target: t})
			}
		}
	}

	// Programs and files first: their failure decides whether to accept at all.
	for _, j := range sideJobs {
		if err := d.runSideJob(ctx, env, body, j.target); err != nil {
			var rej *route.Rejection
			if errors.As(err, &rej) && rej.Code >= 500 && (len(local) > 0 || len(remote) > 0 || len(sideJobs) > 1) {
				res.Failures = append(res.Failures, Failure{Recipient: j.rcpt, Target: j.target, Err: err})
				continue
			}
			return nil, err
		}
	}
	if len(local) == 0 && len(remote) == 0 {
		return res, nil
	}
	// Signed before it is stored, so that the queue sends what was signed
	// (RFC 6376 section 5: the signer is the last to change the message).
	if env.Sign && d.DKIM != nil && len(remote) > 0 {
		body = d.sign(env, body)
	}

	// The parsed structure is kept with local copies (IMAP answers from it);
	// a message only for the queue does not need it.
	var meta []byte
	if len(local) > 0 {
		var err error
		if meta, err = parse(body); err != nil {
			return nil, fmt.Errorf("deliver %s: reading message: %w", env.ID, err)
		}
	}
	sd := &store.Delivery{
		Body:         body,
		Meta:         meta,
		InternalDate: time.Now(),
		Local:        local,
		Remote:       remote,
		EnvID:        env.EnvID,
		Ret:          env.Ret,
		QueueID:      env.ID,
	}
	if !env.Null {
		sd.From = env.From.String()
		if forwarded && len(remote) > 0 {
			sd.From = d.rewriteSender(env)
		}
	}
	sr, err := d.Store.Deliver(ctx, sd)
	if err != nil {
		return nil, fmt.Errorf("deliver %s: %w", env.ID, err)
	}
	if env.Quarantine {
		d.unjunk(ctx, env, sd, sr)
	}
	var failed []error
	for i, tr := range sr.Local {
		if tr.Err != nil {
			failed = append(failed, tr.Err)
			res.Failures = append(res.Failures, Failure{
				Recipient: localFor[i],
				Target:    route.Target{Kind: route.TargetAccount, Account: local[i].Account},
				Err:       tr.Err,
			})
			continue
		}
		res.Delivered++
	}
	res.Queued = len(remote)
	if res.Queued > 0 && d.Queued != nil {
		d.Queued(queuedEntry(sr.QueueID, sd, remote, body))
	}
	if res.Delivered == 0 && res.Queued == 0 && len(failed) > 0 && len(sideJobs) == 0 {
		// Nobody got it: refuse, with the reason of the first failure.
		return nil, fmt.Errorf("deliver %s: %w", env.ID, errors.Join(failed...))
	}
	for _, f := range res.Failures {
		d.log().Warn("delivery to a target failed", "queue_id", env.ID, "rcpt", f.Recipient.String(), "err", f.Err)
	}
	return res, nil
}

// unjunk delivers to INBOX the quarantined copies whose account has no
// Junk mailbox (deleted by its user): better in the inbox than lost.
func (d *Deliverer) unjunk(ctx context.Context, env *Envelope, sd *store.Delivery, sr *store.DeliveryResult) {
	var again []store.LocalTarget
	var at []int
	for i, tr := range sr.Local {
		if errors.Is(tr.Err, store.ErrNotFound) && sd.Local[i].Mailbox == JunkMailbox {
			again = append(again, store.LocalTarget{Account: sd.Local[i].Account, Flags: sd.Local[i].Flags})
			at = append(at, i)
		}
	}
	if len(again) == 0 {
		return
	}
	retry := *sd
	retry.Local, retry.Remote = again, nil
	rr, err := d.Store.Deliver(ctx, &retry)
	if err != nil {
		d.log().Warn("quarantine: no Junk mailbox, and INBOX failed", "queue_id", env.ID, "err", err)
		return
	}
	for j, i := range at {
		sr.Local[i] = rr.Local[j]
	}
}

// sender names the envelope sender for programs and mbox files; the null
// sender is MAILER-DAEMON there, as Sendmail writes it.
func (e *Envelope) sender() string {
	if e.Null {
		return "MAILER-DAEMON"
	}
	return e.From.String()
}

type sideJob struct {
	rcpt   addr.Address
	target route.Target
}

func (d *Deliverer) runSideJob(ctx context.Context, env *Envelope, body store.Body, t route.Target) error {
	r := io.NewSectionReader(body, 0, body.Size())
	switch t.Kind {
	case route.TargetProgram:
		if !d.AllowPrograms {
			return &route.Rejection{Code: 550, Enhanced: "5.7.1", Text: "Delivery to programs is not allowed"}
		}
		timeout := d.ProgramTimeout
		if timeout == 0 {
			timeout = time.Minute
		}
		return route.RunProgram(ctx, t.Command, r, []string{"SENDER=" + env.sender()}, timeout)
	case route.TargetFile:
		if !d.AllowFiles {
			return &route.Rejection{Code: 550, Enhanced: "5.7.1", Text: "Delivery to files is not allowed"}
		}
		return route.AppendFile(t.Path, "From "+env.sender()+" "+time.Now().UTC().Format(time.ANSIC), r)
	}
	return nil
}

func (d *Deliverer) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}

// bytesBody is implemented by bodies that hold their bytes in memory.
type bytesBody interface{ Bytes() []byte }

// parse parses the message once, for the store.
func parse(body store.Body) ([]byte, error) {
	if bb, ok := body.(bytesBody); ok {
		if b := bb.Bytes(); b != nil {
			return msg.ParseBytes(b).Marshal(), nil
		}
	}
	m, err := msg.Parse(body, body.Size())
	if err != nil {
		return nil, err
	}
	return m.Marshal(), nil
}

// maxHandOff is the largest message handed to the queue in memory.
const maxHandOff = 256 << 10

// queuedEntry is the queue entry a delivery made, as the store would read it
// back, and the bytes of a small message.
func queuedEntry(id string, sd *store.Delivery, remote []store.QueueRecipient, body store.Body) (*store.QueueEntry, []byte) {
	e := &store.QueueEntry{ID: id, From: sd.From, EnvID: sd.EnvID, Ret: sd.Ret,
		Created: sd.InternalDate, NextAttempt: sd.InternalDate, Size: body.Size()}
	for _, r := range remote {
		e.Recipients = append(e.Recipients, store.QueueRecipientState{QueueRecipient: r, Status: store.RcptPending})
	}
	if body.Size() > maxHandOff {
		return e, nil
	}
	b := make([]byte, body.Size())
	if n, err := body.ReadAt(b, 0); n != len(b) && err != nil {
		return e, nil
	}
	return e, b
}
