package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/smtpc"
	"github.com/posthorn/posthorn/internal/store"
)

// Config says how the runner schedules.
type Config struct {
	Hostname          string
	Lifetime          time.Duration // retried this long, then bounced (5 days)
	DelayWarning      time.Duration // delay notice after this (4 hours); 0: never
	MinBackoff        time.Duration // first wait after a temporary failure
	MaxBackoff        time.Duration // the wait doubles up to this
	MaxConnections    int           // outbound connections in total
	MaxPerDestination int           // outbound connections to one destination
	// SmartHost is the [smtp] smart_host value: all mail not routed by the
	// mailertable goes there.
	SmartHost string
	// ScanInterval is how often the store is asked for due entries (2 s):
	// retries, entries left by a restart, `posthorn queue flush` from another
	// process. New mail does not wait for it (Enqueued).
	ScanInterval time.Duration
	// IdleTimeout is how long an idle connection stays open for more mail (2 s).
	IdleTimeout time.Duration
	// MaxReturned is the size above which a bounce returns only the original's
	// header (10 MiB).
	MaxReturned int
	// HandOffGrace is how long a new entry is left to its hand-over before a
	// scan takes it (10 s; after a restart, that is how long new mail waits).
	HandOffGrace time.Duration
}

// Notifier hands a notice (bounce, delay, success) to local delivery or the
// queue: msg goes from the null sender to one recipient.
type Notifier func(ctx context.Context, to string, msg []byte) error

// Runner delivers the outbound queue: it picks up entries as they are queued
// and when they are due, groups each entry's recipients by destination, sends
// them over connections kept per destination, and records each recipient's
// fate; it retries with growing waits, and tells the sender about failures and
// long delays (RFC 3464 reports, built by internal/dsn).
type Runner struct {
	Store  store.Store
	Client *smtpc.Client
	Tables func() *maps.Tables // the mailertable (nil: none)
	Notify Notifier
	Config Config
	Log    *slog.Logger

	now func() time.Time // tests

	kick chan struct{}
	wg   sync.WaitGroup
	ctx  context.Context

	mu     sync.Mutex
	active map[string]*entryRun // queue ID -> attempt in progress
	dests  map[string]*dest
	conns  int
	newEnt []handOff
	// held is the size of the message bytes handed over in memory and not
	// yet sent; over maxHeld, bodies are read from the store instead.
	held int64
}

// handOff is an entry handed over by delivery, with its bytes when small.
type handOff struct {
	e    *store.QueueEntry
	body []byte
}

// maxHeld bounds the message bytes the runner keeps in memory for entries
// handed over: a slow destination must not make the queue grow in RAM.
const maxHeld = 64 << 20

// entryRun is one attempt at the pending recipients of one entry; it ends
// when every job for it is done.
type entryRun struct {
	e       store.QueueEntry
	body    []byte // the message, when handed over in memory
	mu      sync.Mutex
	jobs    int
	results map[string]outcome // by recipient address
}

// outcome is what became of one recipient in one attempt.
type outcome struct {
	delivered bool
	temporary bool
	status    string // RFC 3463 code
	diag      string // the reply or error text
	remoteMTA string
	dsnOnward bool // the next hop took NOTIFY itself
}

type job struct {
	run   *entryRun
	dest  smtpc.Destination
	rcpts []store.QueueRecipientState
}

type dest struct {
	d     smtpc.Destination
	jobs  []*job
	conns int
	idle  int
	wake  chan struct{}
}

// maxRcptsPerTransaction splits long recipient lists: RFC 5321 section
// 4.5.3.1.8 obliges servers to take 100.
const maxRcptsPerTransaction = 100

func (r *Runner) init() {
	if r.now == nil {
		r.now = time.Now
	}
	c := &r.Config
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Lifetime, config.DefaultQueueLifetime)
	def(&c.MinBackoff, config.DefaultMinBackoff)
	def(&c.MaxBackoff, config.DefaultMaxBackoff)
	def(&c.ScanInterval, 2*time.Second)
	def(&c.IdleTimeout, 2*time.Second)
	def(&c.HandOffGrace, 10*time.Second)
	if c.MaxConnections <= 0 {
		c.MaxConnections = config.DefaultQueueConnections
	}
	if c.MaxPerDestination <= 0 {
		c.MaxPerDestination = config.DefaultPerDestination
	}
	if c.MaxReturned <= 0 {
		c.MaxReturned = 10 << 20
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	r.kick = make(chan struct{}, 1)
	r.active = map[string]*entryRun{}
	r.dests = map[string]*dest{}
}

// EnqueuedEntry tells the runner that an entry was just queued, so that it
// goes out at once rather than at a later scan: the delivery hands over the
// entry it made, and the message's bytes when small (body may be nil), which
// the runner then does not read back from the store. Safe to call before Run.
func (r *Runner) EnqueuedEntry(e *store.QueueEntry, body []byte) {
	r.mu.Lock()
	if r.kick != nil {
		if body != nil && r.held+int64(len(body)) > maxHeld {
			body = nil
		}
		r.held += int64(len(body))
		r.newEnt = append(r.newEnt, handOff{e, body})
	}
	r.mu.Unlock()
	r.Kick()
}

// Kick makes the runner look at the store now.
func (r *Runner) Kick() {
	if r.kick == nil {
		return
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// NewRunner returns a runner ready for Enqueued and Run.
func NewRunner(r *Runner) *Runner {
	r.init()
	return r
}

// Run delivers until ctx is done, then waits for the attempts in progress to
// end (they are cut short) and their results to be recorded.
func (r *Runner) Run(ctx context.Context) {
	if r.kick == nil {
		r.init()
	}
	r.ctx = ctx
	t := time.NewTimer(0)
	defer t.Stop()
	scan := true
	for {
		if scan {
			r.scan(ctx)
			t.Reset(r.Config.ScanInterval)
		} else {
			r.takeNew(ctx)
		}
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return
		case <-r.kick:
			scan = false
		case <-t.C:
			scan = true
		}
	}
}

// takeNew starts the entries handed over by EnqueuedEntry.
func (r *Runner) takeNew(ctx context.Context) {
	r.mu.Lock()
	ents := r.newEnt
	r.newEnt = nil
	r.mu.Unlock()
	for _, h := range ents {
		if !r.startRun(ctx, *h.e, h.body) {
			r.release(h.body)
		}
	}
}

// scan starts every due entry that is not in progress.
func (r *Runner) scan(ctx context.Context) {
	r.takeNew(ctx)
	const page = 1000
	due, err := r.Store.DueQueue(ctx, r.now(), page)
	if err != nil {
		if ctx.Err() == nil {
			r.Log.Warn("queue: reading due entries", "err", err)
		}
		return
	}
	now := r.now()
	for _, e := range due {
		if now.Sub(e.Created) < r.Config.HandOffGrace && neverTried(e) {
			// Just queued: its delivery hands it over (EnqueuedEntry), and
			// starting it here too could send it twice.
			continue
		}
		r.startScanned(ctx, e.ID)
	}
}

func neverTried(e store.QueueEntry) bool {
	for _, rc := range e.Recipients {
		if rc.Attempts > 0 {
			return false
		}
	}
	return true
}

// startScanned starts an entry found by a scan, with its state read again
// once it is ours: between the scan's read and now an attempt may have ended
// and recorded delivered recipients, which must not be sent again.
func (r *Runner) startScanned(ctx context.Context, id string) {
	r.mu.Lock()
	if _, ok := r.active[id]; ok {
		r.mu.Unlock()
		return
	}
	r.active[id] = nil // reserved
	r.mu.Unlock()
	e, err := r.Store.GetQueueEntry(ctx, id)
	if err != nil || e.Held || e.NextAttempt.After(r.now()) {
		r.mu.Lock()
		delete(r.active, id)
		r.mu.Unlock()
		return
	}
	r.begin(ctx, *e, nil)
}

// start begins an attempt at e's pending recipients unless one is running.
func (r *Runner) start(ctx context.Context, e store.QueueEntry) { r.startRun(ctx, e, nil) }

// release gives back the memory budget of a body handed over.
func (r *Runner) release(body []byte) {
	if body != nil {
		r.mu.Lock()
		r.held -= int64(len(body))
		r.mu.Unlock()
	}
}

// startRun is start with the message's bytes when they were handed over; it
// reports whether an attempt began.
func (r *Runner) startRun(ctx context.Context, e store.QueueEntry, body []byte) bool {
	r.mu.Lock()
	if _, ok := r.active[e.ID]; ok {
		r.mu.Unlock()
		return false
	}
	r.active[e.ID] = nil // reserved
	r.mu.Unlock()
	r.begin(ctx, e, body)
	return true
}

// begin runs an attempt at an entry whose slot in active the caller reserved.
func (r *Runner) begin(ctx context.Context, e store.QueueEntry, body []byte) {
	run := &entryRun{e: e, body: body, results: map[string]outcome{}}
	r.mu.Lock()
	r.active[e.ID] = run
	r.mu.Unlock()

	// Group the pending recipients by destination.
	groups := map[string]*job{}
	var order []*job
	var tables *maps.Tables
	if r.Tables != nil {
		tables = r.Tables()
	}
	for _, rc := range e.Recipients {
		if rc.Status != store.RcptPending {
			continue
		}
		d, fail := r.destination(tables, domainOf(rc.Address))
		if fail != nil {
			run.results[rc.Address] = *fail
			continue
		}
		key := d.Key()
		j := groups[key]
		if j == nil || len(j.rcpts) >= maxRcptsPerTransaction {
			j = &job{run: run, dest: d}
			groups[key] = j
			order = append(order, j)
		}
		j.rcpts = append(j.rcpts, rc)
	}
	run.jobs = len(order)
	if len(order) == 0 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.finish(run)
		}()
		return
	}
	for _, j := range order {
		r.push(ctx, j)
	}
}

func domainOf(address string) string {
	if i := strings.LastIndexByte(address, '@'); i >= 0 {
		return strings.ToLower(address[i+1:])
	}
	return ""
}

// destination routes a domain as Sendmail does: the mailertable (exact, then
// .parent entries), then the smart host, then the domain's MX.
func (r *Runner) destination(t *maps.Tables, domain string) (smtpc.Destination, *outcome) {
	if domain == "" {
		return smtpc.Destination{}, &outcome{status: "5.1.3", diag: "no domain in the recipient address"}
	}
	if t != nil && t.Mailertable != nil {
		if rt, ok := t.Mailertable.Lookup(domain); ok {
			switch rt.Mailer {
			case "error":
				return smtpc.Destination{}, mailertableError(rt.Host)
			case "local":
				return smtpc.Destination{}, &outcome{status: "5.3.5", diag: "mailertable routes " + domain + " to local:, which posthorn does not deliver"}
			}
			return smtpc.Destination{Host: rt.Host, Port: rt.Port, NoMX: rt.NoMX, ImplicitTLS: rt.Port == 465}, nil
		}
	}
	if r.Config.SmartHost != "" {
		host, port, err := config.ParseSmartHost(r.Config.SmartHost)
		if err != nil {
			return smtpc.Destination{}, &outcome{temporary: true, status: "4.3.5", diag: "smart_host: " + err.Error()}
		}
		return smtpc.Destination{Host: host, Port: port, NoMX: strings.HasPrefix(r.Config.SmartHost, "["), Smart: true, ImplicitTLS: port == 465}, nil
	}
	return smtpc.Destination{Host: domain}, nil
}

// mailertableError reads an "error:" right-hand side: "5.7.1:550 text",
// "550 text", or a word such as "nouser" (Sendmail's sysexits names).
func mailertableError(s string) *outcome {
	o := &outcome{status: "5.0.0", diag: s}
	status, rest, ok := strings.Cut(s, ":")
	if ok && len(status) >= 5 && status[1] == '.' && (status[0] == '4' || status[0] == '5') {
		o.status, o.diag = status, rest
	}
	if strings.HasPrefix(o.diag, "4") || strings.HasPrefix(o.status, "4") {
		o.temporary = true
		if o.status == "5.0.0" {
			o.status = "4.0.0"
		}
	}
	return o
}

// push puts a job on its destination's list and starts a connection when
// none is free and the limits allow.
func (r *Runner) push(ctx context.Context, j *job) {
	key := j.dest.Key()
	r.mu.Lock()
	d := r.dests[key]
	if d == nil {
		d = &dest{d: j.dest, wake: make(chan struct{}, 1)}
		r.dests[key] = d
	}
	d.jobs = append(d.jobs, j)
	r.spawnLocked(ctx, d)
	r.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) spawnLocked(ctx context.Context, d *dest) {
	if len(d.jobs) > d.idle && d.conns < r.Config.MaxPerDestination && r.conns < r.Config.MaxConnections {
		d.conns++
		r.conns++
		r.wg.Add(1)
		go r.worker(ctx, d)
	}
}

// next takes the next job of d, waiting up to the idle timeout for one.
func (r *Runner) next(ctx context.Context, d *dest) *job {
	deadline := time.Now().Add(r.Config.IdleTimeout)
	for {
		r.mu.Lock()
		if len(d.jobs) > 0 {
			j := d.jobs[0]
			d.jobs[0] = nil
			d.jobs = d.jobs[1:]
			r.mu.Unlock()
			return j
		}
		wait := time.Until(deadline)
		if ctx.Err() != nil || wait <= 0 {
			r.mu.Unlock()
			return nil
		}
		d.idle++
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-d.wake:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		r.mu.Lock()
		d.idle--
		r.mu.Unlock()
	}
}

// worker is one connection to a destination, for as long as it has work.
func (r *Runner) worker(ctx context.Context, d *dest) {
	defer r.wg.Done()
	var cn *smtpc.Conn
	defer func() {
		if cn != nil {
			cn.Close()
		}
		r.mu.Lock()
		d.conns--
		r.conns--
		// A connection slot is free: destinations waiting for one get it.
		for _, o := range r.dests {
			r.spawnLocked(ctx, o)
		}
		if d.conns == 0 && len(d.jobs) == 0 {
			for k, v := range r.dests {
				if v == d {
					delete(r.dests, k)
				}
			}
		}
		r.mu.Unlock()
	}()
	for {
		j := r.next(ctx, d)
		if j == nil {
			return
		}
		if ctx.Err() != nil {
			r.jobFailed(j, &smtpc.Error{Temporary: true, Status: "4.3.2", Err: errors.New("posthorn is shutting down")})
			continue
		}
		if cn == nil {
			var err error
			cn, err = r.Client.Connect(ctx, d.d)
			if err != nil {
				// The destination is down: so are the other jobs waiting for it
				// (Postfix's "dead destination"), which fail now rather than
				// each wait out its own connection attempts.
				r.jobFailed(j, err)
				r.mu.Lock()
				rest := d.jobs
				d.jobs = nil
				r.mu.Unlock()
				for _, o := range rest {
					r.jobFailed(o, err)
				}
				return
			}
		}
		if err := r.send(ctx, cn, j); err != nil {
			cn = nil // Send closed it
		}
	}
}

// send runs one transaction for a job.
func (r *Runner) send(ctx context.Context, cn *smtpc.Conn, j *job) error {
	e := &j.run.e
	var body io.Reader
	if j.run.body != nil {
		body = bytes.NewReader(j.run.body)
	} else {
		m, err := r.Store.OpenQueueMessage(ctx, e.ID)
		if err != nil {
			r.jobFailed(j, &smtpc.Error{Temporary: true, Status: "4.3.0", Err: fmt.Errorf("reading the queued message: %w", err)})
			return nil
		}
		defer m.Close()
		body = m
	}
	env := &smtpc.Envelope{From: e.From, EnvID: e.EnvID, Ret: e.Ret, Size: e.Size}
	for _, rc := range j.rcpts {
		env.Recipients = append(env.Recipients, smtpc.Recipient{Address: rc.Address, Notify: rc.Notify, ORCPT: rc.ORCPT})
	}
	res, err := cn.Send(ctx, env, body)
	outs := make([]outcome, len(j.rcpts))
	for i := range j.rcpts {
		if i >= len(res) {
			outs[i] = outcome{temporary: true, status: "4.4.2", diag: fmt.Sprint(err), remoteMTA: cn.Host()}
			continue
		}
		rs := res[i]
		outs[i] = outcome{
			delivered: rs.Delivered,
			temporary: rs.Temporary(),
			status:    rs.Reply.Status(),
			diag:      rs.Reply.String(),
			remoteMTA: cn.Host(),
			dsnOnward: rs.DSN,
		}
	}
	r.jobDone(j, outs)
	return err
}

// jobFailed records an error that applies to all of a job's recipients.
func (r *Runner) jobFailed(j *job, err error) {
	o := outcome{temporary: true, status: "4.4.1", diag: err.Error()}
	var se *smtpc.Error
	if errors.As(err, &se) {
		o.temporary, o.status, o.remoteMTA = se.Temporary, se.Status, se.Host
		if se.Reply != nil {
			o.diag = se.Reply.String()
		} else if se.Err != nil {
			o.diag = se.Err.Error()
		}
	}
	outs := make([]outcome, len(j.rcpts))
	for i := range outs {
		outs[i] = o
	}
	r.jobDone(j, outs)
}

// jobDone records a job's outcomes; the last job of an attempt finishes it.
func (r *Runner) jobDone(j *job, outs []outcome) {
	run := j.run
	run.mu.Lock()
	for i, rc := range j.rcpts {
		run.results[rc.Address] = outs[i]
	}
	run.jobs--
	last := run.jobs == 0
	run.mu.Unlock()
	if last {
		// Recording (a store write, perhaps a notice) must not hold up the
		// connection, which goes on with the next message.
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.finish(run)
		}()
	}
}

// backoff is the wait before attempt n+1 after n failed ones: MinBackoff,
// doubling up to MaxBackoff.
func (r *Runner) backoff(n int) time.Duration {
	d := r.Config.MinBackoff
	for i := 1; i < n && d < r.Config.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.Config.MaxBackoff)
}

func (r *Runner) done(run *entryRun) {
	r.mu.Lock()
	delete(r.active, run.e.ID)
	r.held -= int64(len(run.body))
	r.mu.Unlock()
}

// openOriginal reads the queued message for a notice, up to max bytes plus one.
func (r *Runner) openOriginal(ctx context.Context, id string, inMemory []byte) []byte {
	if inMemory != nil {
		return inMemory[:min(len(inMemory), r.Config.MaxReturned+1)]
	}
	m, err := r.Store.OpenQueueMessage(ctx, id)
	if err != nil {
		return nil
	}
	defer m.Close()
	b, _ := io.ReadAll(io.LimitReader(m, int64(r.Config.MaxReturned)+1))
	return b
}
