package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/metrics"
	"github.com/posthorn/posthorn/internal/store"
)

// healthTimeout bounds each check of /healthz: a listener's dial, the store's
// read. A server that takes longer to accept is not healthy.
const healthTimeout = 2 * time.Second

// bindMetrics binds [metrics] listen, with the other ports (before run_as).
func (s *Server) bindMetrics() error {
	for _, a := range s.Config.Metrics.Listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("[metrics] listen %s: %w", a, err)
		}
		s.metricsLns = append(s.metricsLns, ln)
	}
	return nil
}

// metricsHandler serves /metrics (the Prometheus text format) and /healthz.
func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Default.Handler(func(r *http.Request) { s.collectQueue(r.Context()) }))
	mux.HandleFunc("/healthz", s.healthz)
	return mux
}

// collectQueue sets the queue gauges from the store, at scrape time.
func (s *Server) collectQueue(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	entries, err := s.Store.ListQueue(ctx)
	if err != nil {
		s.Log.Warn("metrics: reading the queue", "err", err)
		return
	}
	metrics.QueueMessages.Set(float64(len(entries)))
	var oldest time.Time
	for _, e := range entries {
		if oldest.IsZero() || e.Created.Before(oldest) {
			oldest = e.Created
		}
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(time.Since(oldest).Seconds(), 0)
	}
	metrics.QueueOldestAge.Set(age)
}

// serveMetrics serves the metrics listeners until shutdownMetrics; a failure
// goes to errc, as the protocol servers' do.
func (s *Server) serveMetrics(errc chan<- error) {
	if len(s.metricsLns) == 0 {
		return
	}
	s.metricsSrv = &http.Server{
		Handler:           s.metricsHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}
	for _, ln := range s.metricsLns {
		go func() {
			if err := s.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics on %s: %w", ln.Addr(), err)
			}
		}()
	}
}

func (s *Server) shutdownMetrics(ctx context.Context) {
	if s.metricsSrv != nil {
		s.metricsSrv.Shutdown(ctx)
	}
}

// healthCheck is one line of /healthz.
type healthCheck struct {
	name string // "smtp 127.0.0.1:25", "store"
	err  error
}

func (c healthCheck) String() string {
	if c.err != nil {
		return "FAIL " + c.name + ": " + c.err.Error()
	}
	return "ok " + c.name
}

// healthz answers 200 "ok" and one line per check when every listener
// accepts a connection and the store answers a read; else 503 and the lines
// of the checks that failed. The checks run at once, each within healthTimeout.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	checks := make([]healthCheck, len(s.listeners)+1)
	var wg sync.WaitGroup
	for i, l := range s.listeners {
		wg.Go(func() {
			checks[i] = healthCheck{name: l.kind + " " + l.ln.Addr().String(), err: dialCheck(ctx, l.ln.Addr())}
		})
	}
	wg.Go(func() { checks[len(checks)-1] = healthCheck{name: "store", err: storeCheck(ctx, s.Store)} })
	wg.Wait()

	var b strings.Builder
	status := http.StatusOK
	for _, c := range checks {
		if c.err != nil {
			status = http.StatusServiceUnavailable
		}
	}
	if status == http.StatusOK {
		b.WriteString("ok\n")
	}
	for _, c := range checks {
		if status == http.StatusOK || c.err != nil {
			b.WriteString(c.String())
			b.WriteByte('\n')
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(b.String()))
}

// dialCheck connects to a listener's address from inside and closes at once:
// the kernel completing the handshake says the socket is open, and netserve's
// accept loop then takes it (a session that sees the close at once). A
// wildcard address (0.0.0.0, ::) is dialed on the loopback of its family.
func dialCheck(ctx context.Context, a net.Addr) error {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("not a TCP address: %s", a)
	}
	ip := ta.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port)))
	if err != nil {
		return err
	}
	return c.Close()
}

// storeCheck is a cheap read: a mailbox that cannot exist, answered
// ErrNotFound by a store that works.
func storeCheck(ctx context.Context, st store.Store) error {
	if st == nil {
		return errors.New("no store")
	}
	_, err := st.GetMailboxByID(ctx, 0)
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
