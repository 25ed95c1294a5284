package server

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/webmail"
)

// rejectsKept is how many of the latest refusals the status page shows.
const rejectsKept = 50

// rejectRing keeps the latest refusals of the SMTP servers for the admin
// status page, taken from the log lines they write anyway ("smtp ...
// rejected", "... refused", "... quarantined"): one place says why, the
// log and the page agree.
type rejectRing struct {
	mu   sync.Mutex
	buf  [rejectsKept]webmail.StatusReject
	next int
	n    int
}

func (r *rejectRing) add(x webmail.StatusReject) {
	r.mu.Lock()
	r.buf[r.next] = x
	r.next = (r.next + 1) % rejectsKept
	r.n = min(r.n+1, rejectsKept)
	r.mu.Unlock()
}

// latest returns the refusals kept, newest first.
func (r *rejectRing) latest() []webmail.StatusReject {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]webmail.StatusReject, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+rejectsKept)%rejectsKept])
	}
	return out
}

// isRefusal tells the log lines that record a refusal.
func isRefusal(msg string) bool {
	return strings.HasPrefix(msg, "smtp ") &&
		(strings.HasSuffix(msg, " rejected") || strings.HasSuffix(msg, " refused") ||
			strings.HasSuffix(msg, " quarantined") || strings.HasSuffix(msg, " not owned"))
}

// rejectHandler passes every record on and keeps the refusals. It takes
// Info records even when the log is quieter, for the page.
type rejectHandler struct {
	inner slog.Handler
	ring  *rejectRing
	attrs []slog.Attr // from WithAttrs
}

func (h rejectHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.inner.Enabled(ctx, l)
}

func (h rejectHandler) Handle(ctx context.Context, r slog.Record) error {
	if isRefusal(r.Message) {
		x := webmail.StatusReject{Time: r.Time, What: strings.TrimPrefix(r.Message, "smtp ")}
		if x.Time.IsZero() {
			x.Time = time.Now()
		}
		var details []string
		visit := func(a slog.Attr) bool {
			v := a.Value.String()
			switch a.Key {
			case "client_ip":
				x.Client = v
			case "reason", "from", "rcpt", "to", "reply", "zone":
				if v != "" {
					details = append(details, a.Key+"="+v)
				}
			}
			return true
		}
		for _, a := range h.attrs {
			visit(a)
		}
		r.Attrs(visit)
		x.Detail = strings.Join(details, " ")
		if len(x.Detail) > 300 {
			x.Detail = x.Detail[:300]
		}
		h.ring.add(x)
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h rejectHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return rejectHandler{inner: h.inner.WithAttrs(as), ring: h.ring, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h rejectHandler) WithGroup(name string) slog.Handler {
	return rejectHandler{inner: h.inner.WithGroup(name), ring: h.ring, attrs: h.attrs}
}
