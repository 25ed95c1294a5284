package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/config"
)

// newTestServer makes a Server (not running) with SMTP, IMAP and POP3 on
// free 127.0.0.1 ports and the starter's tables.
func newTestServer(t *testing.T) *Server {
	t.Helper()
	dir := t.TempDir()
	for name, text := range config.StarterFiles(config.Starter{Hostname: "mx.example.org", Domain: "example.org", Admin: "pp", DataDir: "data", MapsDir: "."}) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "posthorn.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.SMTP.Listen = config.Listeners{"127.0.0.1:0"}
	cfg.SMTP.SubmissionListen, cfg.SMTP.SubmissionsListen = nil, nil
	cfg.IMAP.Listen, cfg.IMAP.TLSListen = config.Listeners{"127.0.0.1:0"}, nil
	cfg.POP3.Listen, cfg.POP3.TLSListen = config.Listeners{"127.0.0.1:0"}, nil
	cfg.Web.Listen, cfg.Web.TLSListen = nil, nil
	cfg.Metrics.Listen = config.Listeners{"127.0.0.1:0"}
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// /healthz is ok while every listener takes connections and the store
// reads; a closed listener, or a closed store, turns it to 503 naming them.
func TestHealthz(t *testing.T) {
	s := newTestServer(t)
	h := s.metricsHandler()
	code, body := get(t, h, "/healthz")
	if code != http.StatusOK {
		t.Fatalf("healthz %d:\n%s", code, body)
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	// "ok", then smtp, imap, pop3 and the store.
	if len(lines) != 5 || lines[0] != "ok" {
		t.Fatalf("healthz body:\n%s", body)
	}
	for _, l := range s.listeners {
		want := "ok " + l.kind + " " + l.ln.Addr().String()
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no line %q in:\n%s", want, body)
		}
	}
	if !strings.Contains(body, "ok store\n") {
		t.Errorf("no store line in:\n%s", body)
	}

	// The listeners are bound but not served (Run is not running): the
	// kernel accepts anyway, so the check sees them open. Close IMAP's.
	var imapAddr string
	for _, l := range s.listeners {
		if l.kind == "imap" {
			imapAddr = l.ln.Addr().String()
			l.ln.Close()
		}
	}
	code, body = get(t, h, "/healthz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("healthz with IMAP's port closed: %d:\n%s", code, body)
	}
	if !strings.HasPrefix(body, "FAIL imap "+imapAddr+": ") || strings.Count(body, "\n") != 1 {
		t.Errorf("want only the failing IMAP line, got:\n%s", body)
	}

	s.Store.Close()
	code, body = get(t, h, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "FAIL store: ") {
		t.Errorf("healthz with the store closed: %d:\n%s", code, body)
	}
}

// Run serves /metrics on [metrics] listen, with the queue gauges, and stops
// serving it at shutdown.
func TestMetricsListener(t *testing.T) {
	s := newTestServer(t)
	var metricsAddr string
	for _, l := range s.Listeners() {
		if l.Kind == "metrics" {
			metricsAddr = l.Addr.String()
		}
	}
	if metricsAddr == "" {
		t.Fatalf("no metrics listener in %v", s.Listeners())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, 0) }()

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), " ")
		found[name] = true
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	for _, name := range []string{"posthorn_queue_messages", "posthorn_queue_oldest_age_seconds"} {
		if !found[name] {
			t.Errorf("no %s sample", name)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get("http://" + metricsAddr + "/healthz"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Errorf("the metrics listener still answers after shutdown: %s", resp.Status)
	}
}
