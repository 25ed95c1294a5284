package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
	"github.com/posthorn/posthorn/internal/dsn"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/smtpc"
	"github.com/posthorn/posthorn/internal/smtpc/smtptest"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/store/storetest"
)

// harness is a store, a fake DNS, a runner whose notices are captured, and
// a next hop at 127.0.0.1 that the domains under test have as MX.
type harness struct {
	t       *testing.T
	st      store.Store
	dns     *dnstest.Server
	r       *Runner
	next    *smtptest.Server
	mu      sync.Mutex
	notices []notice
	cancel  context.CancelFunc
	done    chan struct{}
}

type notice struct {
	to  string
	msg []byte
}

func newHarness(t *testing.T, next smtptest.Options, cfg Config) *harness {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, dns: dnstest.Start(t), next: smtptest.Start(t, next)}
	h.dns.MustAdd(t, "mx.remote.test. 60 IN A 127.0.0.1")
	for _, d := range []string{"remote.test", "other.test"} {
		h.dns.MustAdd(t, d+". 60 IN MX 10 mx.remote.test.")
	}
	cfg.Hostname = "mx.posthorn.test"
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
	}
	cfg.ScanInterval = 30 * time.Millisecond
	cfg.IdleTimeout = 200 * time.Millisecond
	h.r = NewRunner(&Runner{
		Store: st,
		Client: &smtpc.Client{Hostname: "mx.posthorn.test", Resolver: dnsutil.New(h.dns.Addr), Port: h.next.Port(),
			ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second},
		Notify: func(ctx context.Context, to string, msg []byte) error {
			h.mu.Lock()
			h.notices = append(h.notices, notice{to, msg})
			h.mu.Unlock()
			return nil
		},
		Config: cfg,
	})
	t.Cleanup(func() {
		h.stop()
		st.Close()
	})
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		h.r.Run(ctx)
		close(h.done)
	}()
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

// queue puts a message on the queue as the SMTP server does, and tells the runner.
func (h *harness) queue(from string, rcpts ...store.QueueRecipient) string {
	h.t.Helper()
	res, err := h.st.Deliver(context.Background(), &store.Delivery{Body: storetest.Msg("out"), From: from, Remote: rcpts})
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := h.st.GetQueueEntry(context.Background(), res.QueueID)
	if err != nil {
		h.t.Fatal(err)
	}
	h.r.EnqueuedEntry(e, nil)
	return res.QueueID
}

// leave puts a message on the queue without telling the runner, as a
// previous run of the server left it.
func (h *harness) leave(from string, rcpts ...store.QueueRecipient) {
	h.t.Helper()
	if _, err := h.st.Deliver(context.Background(), &store.Delivery{Body: storetest.Msg("out"), From: from, Remote: rcpts}); err != nil {
		h.t.Fatal(err)
	}
}

func rcpts(addrs ...string) []store.QueueRecipient {
	var out []store.QueueRecipient
	for _, a := range addrs {
		out = append(out, store.QueueRecipient{Address: a})
	}
	return out
}

// waitEmpty waits until the queue is empty.
func (h *harness) waitEmpty() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		q, err := h.st.ListQueue(context.Background())
		if err != nil {
			h.t.Fatal(err)
		}
		if len(q) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	q, _ := h.st.ListQueue(context.Background())
	h.t.Fatalf("queue not empty: %+v", q)
}

func (h *harness) getNotices() []notice {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notice(nil), h.notices...)
}

func parseNotice(t *testing.T, n notice) *dsn.Parsed {
	t.Helper()
	p, err := dsn.Parse(n.msg)
	if err != nil {
		t.Fatalf("notice does not parse: %v\n%s", err, n.msg)
	}
	return p
}

func TestDeliversAndGroupsByDestination(t *testing.T) {
	h := newHarness(t, smtptest.Options{}, Config{})
	h.start()
	h.queue("pp@posthorn.test", rcpts("a@remote.test", "b@remote.test", "c@other.test")...)
	h.waitEmpty()
	m := h.next.Wait(2, 5*time.Second)
	if len(m) != 2 {
		t.Fatalf("%d transactions, want 2 (one per destination)", len(m))
	}
	var tos []string
	for _, x := range m {
		tos = append(tos, strings.Join(x.To, ","))
		if x.From != "pp@posthorn.test" || !strings.Contains(string(x.Data), "Subject: out") {
			t.Errorf("received %+v", x)
		}
	}
	if !(tos[0] == "a@remote.test,b@remote.test" && tos[1] == "c@other.test" || tos[1] == "a@remote.test,b@remote.test" && tos[0] == "c@other.test") {
		t.Errorf("transactions to %q", tos)
	}
	if n := h.getNotices(); len(n) != 0 {
		t.Errorf("notices for delivered mail: %d", len(n))
	}
}

// Entries already on the queue when the runner starts (a restart) go out.
func TestPicksUpAfterRestart(t *testing.T) {
	// Nothing is handed over: only the scan can find them (at once, with no
	// grace for hand-overs that will never come).
	h := newHarness(t, smtptest.Options{}, Config{HandOffGrace: time.Nanosecond})
	for i := 0; i < 5; i++ {
		h.leave("pp@posthorn.test", rcpts(fmt.Sprintf("r%d@remote.test", i))...)
	}
	h.start()
	h.waitEmpty()
	if m := h.next.Wait(5, 5*time.Second); len(m) != 5 {
		t.Fatalf("%d delivered, want 5", len(m))
	}
}

func TestRetryAfterTemporaryFailure(t *testing.T) {
	h := newHarness(t, smtptest.Options{Data: func(n int) error {
		if n <= 2 {
			return smtptest.Temp("greylisted, come back later")
		}
		return nil
	}}, Config{})
	h.start()
	id := h.queue("pp@posthorn.test", rcpts("a@remote.test")...)
	h.waitEmpty()
	m := h.next.Messages()
	if len(m) != 1 {
		t.Fatalf("%d messages arrived, want 1 (after two 4xx)", len(m))
	}
	if n := h.getNotices(); len(n) != 0 {
		t.Errorf("a notice for a delivered message (delay warning is off): %d", len(n))
	}
	_ = id
}

func TestBackoffGrows(t *testing.T) {
	r := NewRunner(&Runner{Config: Config{MinBackoff: time.Minute, MaxBackoff: 10 * time.Minute}})
	want := []time.Duration{time.Minute, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	for n, w := range want {
		if got := r.backoff(n); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n, got, w)
		}
	}
}

func TestPermanentFailureBounces(t *testing.T) {
	h := newHarness(t, smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone@") {
			return smtptest.Perm(550, [3]int{5, 1, 1}, "no such user here")
		}
		return nil
	}}, Config{})
	h.start()
	id := h.queue("pp@posthorn.test",
		store.QueueRecipient{Address: "gone@remote.test", ORCPT: "rfc822;gone@remote.test"},
		store.QueueRecipient{Address: "ok@remote.test"})
	h.waitEmpty()
	n := h.getNotices()
	if len(n) != 1 || n[0].to != "pp@posthorn.test" {
		t.Fatalf("notices %+v", n)
	}
	p := parseNotice(t, n[0])
	if len(p.Recipients) != 1 {
		t.Fatalf("%d recipients in the report, want the failed one", len(p.Recipients))
	}
	rc := p.Recipients[0]
	for k, want := range map[string]string{
		"Action":             "failed",
		"Status":             "5.1.1",
		"Final-Recipient":    "rfc822; gone@remote.test",
		"Original-Recipient": "rfc822;gone@remote.test",
		"Remote-Mta":         "dns; mx.remote.test",
	} {
		if got := rc.Get(k); !strings.EqualFold(strings.ReplaceAll(got, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if d := rc.Get("Diagnostic-Code"); !strings.Contains(d, "smtp;") || !strings.Contains(d, "550") || !strings.Contains(d, "no such user here") {
		t.Errorf("Diagnostic-Code %q", d)
	}
	if !strings.Contains(p.PerMessage.Get("Reporting-Mta"), "mx.posthorn.test") {
		t.Errorf("Reporting-MTA %q", p.PerMessage.Get("Reporting-Mta"))
	}
	if p.ReturnedType != "message/rfc822" || !strings.Contains(string(p.Returned), "Subject: out") {
		t.Errorf("returned %s %q", p.ReturnedType, p.Returned)
	}
	if !strings.Contains(p.Text, id) {
		t.Errorf("the text does not name queue ID %s", id)
	}
	if m := h.next.Messages(); len(m) != 1 || m[0].To[0] != "ok@remote.test" {
		t.Errorf("the good recipient: %+v", m)
	}
}

// A failure of mail from the null sender (a bounce) makes no bounce.
func TestNoBounceOfABounce(t *testing.T) {
	h := newHarness(t, smtptest.Options{Rcpt: func(string) error { return smtptest.Perm(550, [3]int{5, 1, 1}, "no") }}, Config{})
	h.start()
	h.queue("", rcpts("gone@remote.test")...)
	h.waitEmpty()
	if n := h.getNotices(); len(n) != 0 {
		t.Fatalf("a notice about a notice: %+v", n)
	}
}

func TestNotifyNever(t *testing.T) {
	h := newHarness(t, smtptest.Options{Rcpt: func(string) error { return smtptest.Perm(550, [3]int{5, 1, 1}, "no") }}, Config{})
	h.start()
	h.queue("pp@posthorn.test", store.QueueRecipient{Address: "gone@remote.test", Notify: "NEVER"})
	h.waitEmpty()
	if n := h.getNotices(); len(n) != 0 {
		t.Fatalf("NOTIFY=NEVER got a notice: %+v", n)
	}
}

// Temporary failures until the lifetime ends: a failure report with the
// last error; before that, one delay notice.
func TestDelayNoticeThenExpiry(t *testing.T) {
	h := newHarness(t, smtptest.Options{Data: func(int) error { return smtptest.Temp("disk full") }},
		Config{DelayWarning: time.Nanosecond, Lifetime: 1500 * time.Millisecond})
	h.start()
	h.queue("pp@posthorn.test", rcpts("a@remote.test")...)
	h.waitEmpty()
	n := h.getNotices()
	if len(n) != 2 {
		t.Fatalf("%d notices, want a delay notice and a failure", len(n))
	}
	d, f := parseNotice(t, n[0]), parseNotice(t, n[1])
	if a := d.Recipients[0].Get("Action"); a != "delayed" || d.Recipients[0].Get("Will-Retry-Until") == "" {
		t.Errorf("first notice: action %q, %v", a, d.Recipients[0])
	}
	if d.ReturnedType != "text/rfc822-headers" {
		t.Errorf("a delay notice returns %s", d.ReturnedType)
	}
	if a := f.Recipients[0].Get("Action"); a != "failed" || !strings.HasPrefix(f.Recipients[0].Get("Status"), "4.") ||
		!strings.Contains(f.Recipients[0].Get("Diagnostic-Code"), "disk full") {
		t.Errorf("second notice: %v", f.Recipients[0])
	}
}

func TestRelayedNoticeWhenNextHopHasNoDSN(t *testing.T) {
	for _, withDSN := range []bool{false, true} {
		h := newHarness(t, smtptest.Options{DSN: withDSN}, Config{})
		h.start()
		h.queue("pp@posthorn.test", store.QueueRecipient{Address: "a@remote.test", Notify: "SUCCESS,FAILURE"})
		h.waitEmpty()
		n := h.getNotices()
		if withDSN {
			if len(n) != 0 {
				t.Errorf("next hop with DSN: we sent a notice too")
			}
			continue
		}
		if len(n) != 1 {
			t.Fatalf("%d notices, want one \"relayed\"", len(n))
		}
		if a := parseNotice(t, n[0]).Recipients[0].Get("Action"); a != "relayed" {
			t.Errorf("action %q", a)
		}
	}
}

func TestConnectionLimitsAndReuse(t *testing.T) {
	h := newHarness(t, smtptest.Options{}, Config{MaxPerDestination: 2})
	for i := 0; i < 30; i++ {
		h.queue("pp@posthorn.test", rcpts(fmt.Sprintf("r%d@remote.test", i))...)
	}
	h.start()
	h.waitEmpty()
	if m := h.next.Wait(30, 5*time.Second); len(m) != 30 {
		t.Fatalf("%d delivered", len(m))
	}
	if s := h.next.Sessions(); s > 2 {
		t.Errorf("%d connections for 30 messages, want at most 2", s)
	}
}

func TestMailertableAndSmartHost(t *testing.T) {
	// The next hop listens on 127.0.0.1 at a port only the mailertable knows.
	h := newHarness(t, smtptest.Options{}, Config{})
	port := h.next.Port()
	h.r.Client.Port = 1 // MX delivery would fail
	mt, err := maps.ParseMailertable("mailertable", strings.NewReader(fmt.Sprintf(
		"routed.test esmtp:[127.0.0.1]:%d\n.sub.test relay:[127.0.0.1]:%d\nblocked.test error:5.7.1:550 we do not send there\n", port, port)))
	if err != nil {
		t.Fatal(err)
	}
	h.r.Tables = func() *maps.Tables { return &maps.Tables{Mailertable: mt} }
	h.start()
	h.queue("pp@posthorn.test", rcpts("a@routed.test", "b@x.sub.test", "c@blocked.test")...)
	h.waitEmpty()
	// Both routes name the same host: one transaction.
	m := h.next.Wait(1, 5*time.Second)
	if len(m) != 1 || strings.Join(m[0].To, ",") != "a@routed.test,b@x.sub.test" {
		t.Fatalf("through the mailertable: %+v", m)
	}
	n := h.getNotices()
	if len(n) != 1 {
		t.Fatalf("%d notices, want one for blocked.test", len(n))
	}
	rc := parseNotice(t, n[0]).Recipients[0]
	if rc.Get("Status") != "5.7.1" || !strings.Contains(rc.Get("Final-Recipient"), "c@blocked.test") {
		t.Errorf("error: mailer notice %v", rc)
	}

	// A smart host takes what the mailertable does not route.
	h.stop()
	h.r.Tables = nil
	h.r.Config.SmartHost = fmt.Sprintf("[127.0.0.1]:%d", port)
	h.start()
	h.queue("pp@posthorn.test", rcpts("z@anywhere.test")...)
	h.waitEmpty()
	if m := h.next.Wait(2, 5*time.Second); len(m) != 2 || m[1].To[0] != "z@anywhere.test" {
		t.Fatalf("smart host: %+v", m)
	}
}

// A destination that cannot be reached: every waiting entry is deferred, not
// lost; when it comes back, all go out.
func TestDeadDestinationComesBack(t *testing.T) {
	h := newHarness(t, smtptest.Options{}, Config{})
	good := h.r.Client.Port
	h.r.Client.Port = 1
	h.start()
	for i := 0; i < 5; i++ {
		h.queue("pp@posthorn.test", rcpts(fmt.Sprintf("r%d@remote.test", i))...)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, _ := h.st.ListQueue(context.Background())
		tried := 0
		for _, e := range q {
			if e.Recipients[0].Attempts > 0 {
				tried++
			}
		}
		if tried == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all deferred: %+v", q)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop()
	h.r.Client.Port = good
	h.start()
	h.waitEmpty()
	if m := h.next.Wait(5, 5*time.Second); len(m) != 5 {
		t.Fatalf("%d delivered after the destination came back", len(m))
	}
	if n := h.getNotices(); len(n) != 0 {
		t.Errorf("notices: %d", len(n))
	}
}

// An entry handed over with its bytes is sent from memory, and the memory
// budget is given back once it is done.
func TestHandedOverEntry(t *testing.T) {
	h := newHarness(t, smtptest.Options{}, Config{})
	res, err := h.st.Deliver(context.Background(), &store.Delivery{Body: storetest.Msg("stored"), From: "pp@posthorn.test", Remote: rcpts("a@remote.test")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := h.st.GetQueueEntry(context.Background(), res.QueueID)
	if err != nil {
		t.Fatal(err)
	}
	// Bytes that differ from the stored ones show which were sent.
	h.r.EnqueuedEntry(e, []byte("Subject: from memory\r\n\r\nhi\r\n"))
	h.start() // handed-over entries are taken before the store is scanned
	h.waitEmpty()
	m := h.next.Wait(1, 5*time.Second)
	if len(m) != 1 || !strings.Contains(string(m[0].Data), "Subject: from memory") {
		t.Fatalf("received %+v", m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.r.mu.Lock()
		held := h.r.held
		h.r.mu.Unlock()
		if held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still counted as held", held)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// staleDue returns DueQueue's list only after the attempt already running on
// its first entry has been recorded: the window between a scan's read and its
// start of the entries, made wide.
type staleDue struct {
	store.Store
	armed atomic.Bool
}

func (s *staleDue) DueQueue(ctx context.Context, now time.Time, limit int) ([]store.QueueEntry, error) {
	due, err := s.Store.DueQueue(ctx, now, limit)
	if err != nil || !s.armed.Load() || len(due) == 0 {
		return due, err
	}
	s.armed.Store(false)
	id := due[0].ID
	for i := 0; i < 200; i++ {
		e, err := s.Store.GetQueueEntry(ctx, id)
		if err == nil && e.Recipients[0].Attempts > 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the attempt's end (done) runs
	return due, nil
}

// A scan that read an entry before an attempt on it ended does not send it
// again to the recipients that attempt delivered.
func TestScanDoesNotResendFromStaleState(t *testing.T) {
	h := newHarness(t, smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "later@") {
			return smtptest.Temp("later")
		}
		return nil
	}}, Config{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	sd := &staleDue{Store: h.st}
	h.r.Store = sd
	h.r.Config.ScanInterval = 24 * time.Hour // one scan, at the start
	ctx := context.Background()
	res, err := h.st.Deliver(ctx, &store.Delivery{Body: storetest.Msg("out"), From: "a@posthorn.test",
		Remote: rcpts("now@remote.test", "later@other.test")})
	if err != nil {
		t.Fatal(err)
	}
	// An entry tried before (so that the scan does not leave it to a hand-over).
	var states []store.QueueRecipientState
	for _, a := range []string{"now@remote.test", "later@other.test"} {
		states = append(states, store.QueueRecipientState{QueueRecipient: store.QueueRecipient{Address: a}, Status: store.RcptPending, Attempts: 1})
	}
	if err := h.st.UpdateQueueEntry(ctx, res.QueueID, store.QueueUpdate{Recipients: states, NextAttempt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	e, err := h.st.GetQueueEntry(ctx, res.QueueID)
	if err != nil {
		t.Fatal(err)
	}
	h.r.EnqueuedEntry(e, nil)
	sd.armed.Store(true)
	h.start()
	time.Sleep(2 * time.Second)
	n := 0
	for _, m := range h.next.Messages() {
		for _, to := range m.To {
			if to == "now@remote.test" {
				n++
			}
		}
	}
	if n != 1 {
		t.Errorf("now@remote.test got %d copies, want 1", n)
	}
}

func TestWants(t *testing.T) {
	for _, tc := range []struct {
		notify, kind string
		want         bool
	}{
		{"", "FAILURE", true}, {"", "DELAY", true}, {"", "SUCCESS", false},
		{"NEVER", "FAILURE", false}, {"NEVER", "DELAY", false},
		{"SUCCESS", "SUCCESS", true}, {"SUCCESS", "FAILURE", false},
		{"SUCCESS,DELAY", "DELAY", true}, {"success,failure", "FAILURE", true},
		{"FAILURE", "DELAY", false}, {"SUCCESSX", "SUCCESS", false},
	} {
		if got := Wants(tc.notify, tc.kind); got != tc.want {
			t.Errorf("Wants(%q, %q) = %v, want %v", tc.notify, tc.kind, got, tc.want)
		}
	}
}

// A failure notice that cannot be handed on (the store is failing, say)
// keeps the recipient on the queue: the next round fails it again and
// tries the notice again, until the sender has it.
func TestFailureNoticeRetried(t *testing.T) {
	var tries atomic.Int32
	h := newHarness(t, smtptest.Options{Rcpt: func(string) error { return smtptest.Perm(550, [3]int{5, 1, 1}, "no such user") }}, Config{})
	sent := h.r.Notify
	h.r.Notify = func(ctx context.Context, to string, msg []byte) error {
		if tries.Add(1) <= 2 {
			return errors.New("disk full")
		}
		return sent(ctx, to, msg)
	}
	h.start()
	h.queue("pp@posthorn.test", store.QueueRecipient{Address: "gone@remote.test"})
	h.waitEmpty()
	if n := h.getNotices(); len(n) != 1 || n[0].to != "pp@posthorn.test" {
		t.Fatalf("notices %+v", n)
	}
	if got := tries.Load(); got != 3 {
		t.Errorf("notice tried %d times, want 3", got)
	}
}
