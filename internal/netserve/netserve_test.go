package netserve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testSession speaks a tiny line protocol: "hello" on connect, "ok <line>"
// for each line; "slow" makes it busy until the next line (which it reads
// as part of the command, like a message body), so that Shutdown lets it
// finish; at Shutdown an idle session says "bye" and ends.
type testSession struct {
	nc        net.Conn
	dc        *DeadlineConn
	stopped   atomic.Bool
	mu        sync.Mutex
	busy      bool
	closing   bool
	shutdowns atomic.Int32 // how often Shutdown was called
	readErr   error        // the read that ended Serve
}

func newTestSession(nc net.Conn) *testSession {
	t := &testSession{nc: nc}
	t.dc = &DeadlineConn{Conn: nc, Timeout: time.Minute, Stopped: &t.stopped}
	return t
}

func (t *testSession) Serve() {
	defer t.nc.Close()
	br := bufio.NewReader(t.dc)
	io.WriteString(t.dc, "hello\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.readErr = err
			t.mu.Lock()
			closing := t.closing
			t.mu.Unlock()
			if closing {
				io.WriteString(t.dc, "bye\r\n")
			}
			return
		}
		line = strings.TrimSpace(line)
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			io.WriteString(t.dc, "bye\r\n")
			return
		}
		t.busy = true
		t.mu.Unlock()
		if line == "slow" {
			io.WriteString(t.dc, "ok slow\r\n")
			more, err := br.ReadString('\n') // the rest of the command
			if err != nil {
				t.readErr = err
				return
			}
			line += " " + strings.TrimSpace(more)
		}
		io.WriteString(t.dc, "ok "+line+"\r\n")
		t.mu.Lock()
		t.busy = false
		closing := t.closing
		t.mu.Unlock()
		if closing {
			io.WriteString(t.dc, "bye\r\n")
			return
		}
	}
}

func (t *testSession) Shutdown() {
	t.shutdowns.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	if !t.busy {
		t.dc.Stop()
	}
}

func (t *testSession) Close() { t.nc.Close() }

// harness runs a Server on a 127.0.0.1 listener with testSessions.
type harness struct {
	t        *testing.T
	srv      *Server
	addr     string
	served   chan error // Serve's result
	mu       sync.Mutex
	sessions []*testSession
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHarness(t *testing.T, srv *Server, implicitTLS bool) *harness {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv.Log == nil {
		srv.Log = quietLog()
	}
	h := &harness{t: t, srv: srv, addr: l.Addr().String(), served: make(chan error, 1)}
	go func() {
		h.served <- srv.Serve(l, implicitTLS, func(nc net.Conn, ip netip.Addr) Session {
			s := newTestSession(nc)
			h.mu.Lock()
			h.sessions = append(h.sessions, s)
			h.mu.Unlock()
			return s
		})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		l.Close()
	})
	return h
}

type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dial connects from the local address from ("127.0.0.2"; "" for any).
func (h *harness) dial(from string) *client {
	h.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	h.t.Cleanup(func() { nc.Close() })
	return &client{t: h.t, nc: nc, br: bufio.NewReader(nc)}
}

// line reads a line; "EOF" when the server closed the connection.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if errors.Is(err, io.EOF) && l == "" {
		return "EOF"
	}
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

func refusal(why string) string { return "no " + why + "\r\n" }

func TestCaps(t *testing.T) {
	type dial struct {
		from string
		want string // the first line the client gets
	}
	repeat := func(n int, d dial) []dial {
		ds := make([]dial, n)
		for i := range ds {
			ds[i] = d
		}
		return ds
	}
	tests := []struct {
		name               string
		maxConns, maxPerIP int
		dials              []dial
	}{
		{"in total", 2, 10, []dial{
			{"127.0.0.2", "hello"}, {"127.0.0.3", "hello"},
			{"127.0.0.2", "no too many connections, try again later"},
			{"127.0.0.3", "no too many connections, try again later"},
		}},
		{"per IP", 10, 2, []dial{
			{"127.0.0.2", "hello"}, {"127.0.0.2", "hello"},
			{"127.0.0.2", "no too many connections from your address, try again later"},
			{"127.0.0.3", "hello"}, {"127.0.0.3", "hello"},
			{"127.0.0.3", "no too many connections from your address, try again later"},
		}},
		{"per IP by default 50", 0, 0, append(repeat(50, dial{"127.0.0.2", "hello"}),
			dial{"127.0.0.2", "no too many connections from your address, try again later"},
			dial{"127.0.0.3", "hello"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, &Server{Name: "test", MaxConns: tt.maxConns, MaxConnsPerIP: tt.maxPerIP, Refusal: refusal}, false)
			var live []*client
			for i, d := range tt.dials {
				c := h.dial(d.from)
				if got := c.line(); got != d.want {
					t.Fatalf("dial %d from %s: got %q, want %q", i, d.from, got, d.want)
				}
				if d.want == "hello" {
					live = append(live, c)
				} else if got := c.line(); got != "EOF" {
					t.Errorf("dial %d: after the refusal got %q, want the connection closed", i, got)
				}
			}
			// A session that ends frees its place: the same dials that
			// were refused are taken once the live ones are gone.
			for _, c := range live {
				c.nc.Close()
			}
			waitFor(t, func() bool { total, _ := h.srv.Len(netip.Addr{}); return total == 0 })
			for i, d := range tt.dials {
				if d.want == "hello" {
					continue
				}
				c := h.dial(d.from)
				if got := c.line(); got != "hello" {
					t.Errorf("dial %d again after release: got %q, want hello", i, got)
				}
				c.nc.Close()
			}
		})
	}
}

func TestRefusalLine(t *testing.T) {
	tests := []struct {
		name        string
		refusal     func(string) string
		implicitTLS bool
		want        string
	}{
		{"line", refusal, false, "no too many connections, try again later"},
		{"implicit TLS gets nothing", refusal, true, "EOF"},
		{"nil Refusal writes nothing", nil, false, "EOF"},
		{"empty line writes nothing", func(string) string { return "" }, false, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, &Server{Name: "test", MaxConns: 1, Refusal: tt.refusal}, tt.implicitTLS)
			first := h.dial("")
			if got := first.line(); got != "hello" {
				t.Fatalf("first: %q", got)
			}
			c := h.dial("")
			if got := c.line(); got != tt.want {
				t.Errorf("refused client got %q, want %q", got, tt.want)
			}
			if tt.want != "EOF" {
				if got := c.line(); got != "EOF" {
					t.Errorf("after the refusal: %q, want EOF", got)
				}
			}
		})
	}
}

func TestShutdownIdle(t *testing.T) {
	h := newHarness(t, &Server{Name: "test", Refusal: refusal}, false)
	c := h.dial("")
	if got := c.line(); got != "hello" {
		t.Fatal(got)
	}
	c.send("noop")
	if got := c.line(); got != "ok noop" {
		t.Fatal(got)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The session waits with a minute's timeout: only Stop can have woken it.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if got := c.line(); got != "bye" {
		t.Errorf("idle client at shutdown got %q, want bye", got)
	}
	if got := c.line(); got != "EOF" {
		t.Errorf("after bye: %q", got)
	}
	if !errors.Is(h.sessions[0].readErr, os.ErrDeadlineExceeded) {
		t.Errorf("session's read ended with %v, want a deadline", h.sessions[0].readErr)
	}
	if err := <-h.served; err != ErrServerClosed {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	if !h.srv.Closing() {
		t.Error("Closing is false after Shutdown")
	}
}

// TestShutdownBusyFinishes: a busy session finishes its command before it
// ends, and Shutdown waits for it.
func TestShutdownBusyFinishes(t *testing.T) {
	h := newHarness(t, &Server{Name: "test"}, false)
	c := h.dial("")
	c.line()
	c.send("slow")
	if got := c.line(); got != "ok slow" {
		t.Fatal(got)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- h.srv.Shutdown(ctx)
	}()
	waitFor(t, h.srv.Closing)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a session was busy", err)
	case <-time.After(100 * time.Millisecond):
	}
	c.send("body")
	if got := c.line(); got != "ok slow body" {
		t.Errorf("busy command's answer: %q", got)
	}
	if got := c.line(); got != "bye" {
		t.Errorf("after the busy command: %q, want bye", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestShutdownCut: when Shutdown's ctx ends, a session still busy is cut,
// and an idle one has said goodbye.
func TestShutdownCut(t *testing.T) {
	h := newHarness(t, &Server{Name: "test"}, false)
	busy, idle := h.dial("127.0.0.2"), h.dial("127.0.0.3")
	busy.line()
	idle.line()
	busy.send("slow")
	if got := busy.line(); got != "ok slow" {
		t.Fatal(got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if got := idle.line(); got != "bye" {
		t.Errorf("idle client: %q, want bye", got)
	}
	if got := busy.line(); got != "EOF" {
		t.Errorf("busy client: %q, want the connection cut", got)
	}
	// Shutdown returned only once the cut session's Serve had.
	if total, _ := h.srv.Len(netip.Addr{}); total != 0 {
		t.Errorf("%d sessions live after Shutdown", total)
	}
}

func TestServeAfterShutdown(t *testing.T) {
	srv := &Server{Name: "test", Log: quietLog(), Refusal: refusal}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	made := false
	newSess := func(nc net.Conn, ip netip.Addr) Session { made = true; return newTestSession(nc) }
	if err := srv.Serve(l, false, newSess); err != ErrServerClosed {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	if err := srv.ServeConn(a, newSess); err != ErrServerClosed {
		t.Errorf("ServeConn after Shutdown: %v", err)
	}
	if made {
		t.Error("a session was made after Shutdown")
	}
}

// TestShutdownClosesListener: Serve blocked in Accept returns
// ErrServerClosed, and the port takes no more connections.
func TestShutdownClosesListener(t *testing.T) {
	h := newHarness(t, &Server{Name: "test"}, false)
	c := h.dial("")
	c.line()
	if err := h.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-h.served; err != ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
	if nc, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		nc.Close()
		t.Error("dial after Shutdown succeeded")
	}
}

func TestServeConn(t *testing.T) {
	srv := &Server{Name: "test", MaxConns: 1, Log: quietLog(), Refusal: refusal}
	a, b := net.Pipe()
	cb := &client{t: t, nc: b, br: bufio.NewReader(b)}
	var ip netip.Addr
	done := make(chan error, 1)
	go func() {
		done <- srv.ServeConn(a, func(nc net.Conn, got netip.Addr) Session {
			ip = got
			return newTestSession(nc)
		})
	}()
	if got := cb.line(); got != "hello" {
		t.Fatal(got)
	}
	if total, _ := srv.Len(netip.Addr{}); total != 1 {
		t.Errorf("ServeConn's session not counted: %d", total)
	}
	// The cap counts it: a second is refused, at once, with the line.
	c, d := net.Pipe()
	cd := &client{t: t, nc: d, br: bufio.NewReader(d)}
	refused := make(chan error, 1)
	go func() {
		refused <- srv.ServeConn(c, func(net.Conn, netip.Addr) Session { t.Error("session over the cap"); return nil })
	}()
	if got := cd.line(); got != "no too many connections, try again later" {
		t.Errorf("refused ServeConn: %q", got)
	}
	if err := <-refused; err == nil || !strings.Contains(err.Error(), "too many connections") {
		t.Errorf("refused ServeConn returned %v", err)
	}
	b.Close()
	if err := <-done; err != nil {
		t.Errorf("ServeConn: %v", err)
	}
	if ip.IsValid() {
		t.Errorf("a pipe has an IP: %v", ip)
	}
	if total, _ := srv.Len(netip.Addr{}); total != 0 {
		t.Errorf("ServeConn's session not released: %d", total)
	}
}

// TestShutdownRace starts connections while Shutdown runs: every session
// made gets Shutdown exactly once and has ended when Shutdown returns.
func TestShutdownRace(t *testing.T) {
	for round := range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{Name: "test", Log: quietLog(), MaxConnsPerIP: 1000}
		var mu sync.Mutex
		var made []*testSession
		var ended atomic.Int32
		go srv.Serve(l, false, func(nc net.Conn, ip netip.Addr) Session {
			time.Sleep(time.Millisecond) // widen the window in which the entry has no session
			s := newTestSession(nc)
			mu.Lock()
			made = append(made, s)
			mu.Unlock()
			return endCounter{s, &ended}
		})
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
				if err != nil {
					return // the listener closed first
				}
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, nc)
				nc.Close()
			}()
		}
		time.Sleep(time.Duration(round) * 2 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("round %d: Shutdown: %v", round, err)
		}
		cancel()
		mu.Lock()
		if int(ended.Load()) != len(made) {
			t.Errorf("round %d: %d sessions made, %d ended when Shutdown returned", round, len(made), ended.Load())
		}
		for i, s := range made {
			if n := s.shutdowns.Load(); n != 1 {
				t.Errorf("round %d: session %d got Shutdown %d times", round, i, n)
			}
		}
		mu.Unlock()
		l.Close() // when Serve had not begun before Shutdown, it did not take l
		wg.Wait()
	}
}

type endCounter struct {
	*testSession
	ended *atomic.Int32
}

func (e endCounter) Serve() {
	defer e.ended.Add(1)
	e.testSession.Serve()
}

// flakyListener fails Accept with each of errs in turn, then accepts from
// the real listener.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestAcceptErrors(t *testing.T) {
	permanent := errors.New("listener broken")
	tests := []struct {
		name    string
		errs    []error
		wantErr error // nil: Serve goes on and takes a connection
	}{
		{"EMFILE is retried", []error{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept", syscall.EMFILE)}}, nil},
		{"ENFILE and a timeout are retried", []error{syscall.ENFILE, timeoutErr{}}, nil},
		{"other errors end Serve", []error{permanent}, permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			srv := &Server{Name: "test", Log: quietLog()}
			defer srv.Shutdown(context.Background())
			served := make(chan error, 1)
			go func() {
				served <- srv.Serve(&flakyListener{Listener: l, errs: tt.errs}, false,
					func(nc net.Conn, ip netip.Addr) Session { return newTestSession(nc) })
			}()
			if tt.wantErr != nil {
				select {
				case err := <-served:
					if !errors.Is(err, tt.wantErr) {
						t.Errorf("Serve: %v, want %v", err, tt.wantErr)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Serve did not return")
				}
				return
			}
			nc, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			if got, err := bufio.NewReader(nc).ReadString('\n'); got != "hello\r\n" {
				t.Errorf("after the accept errors: %q, %v", got, err)
			}
		})
	}
}

func TestRemoteIP(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}, "2001:db8::1"},
		{(*net.TCPAddr)(nil), "-"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:198.51.100.7"), Port: 1}, "198.51.100.7"},
		{pipeAddr{}, "-"},
		{nil, "-"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.addr), func(t *testing.T) {
			if got := IPString(RemoteIP(addrConn{addr: tt.addr})); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

type addrConn struct {
	net.Conn
	addr net.Addr
}

func (a addrConn) RemoteAddr() net.Addr { return a.addr }

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 5s")
}
