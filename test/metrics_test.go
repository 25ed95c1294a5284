package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
)

// scrapeMetrics GETs /metrics and returns each sample's value by its line's
// name and labels as written (`name{a="b"}`).
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad sample line %q", l)
		}
		out[l[:i]] = v
	}
	return out
}

func getHealthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A server with [metrics] listen: mail over SMTP, failed POP3 and IMAP
// logins and a message waiting on the queue move the counters a scrape of
// /metrics shows; /healthz names every listener and the store.
func TestMetricsAndHealthz(t *testing.T) {
	dns := dnstest.Start(t)
	dns.MustAdd(t, "remote.example. 60 IN MX 10 mx.remote.example.", "mx.remote.example. 60 IN A 127.0.0.1")
	pop3, imap, metricsAddr := freePort(t), freePort(t), freePort(t)
	extra := fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = 1\n\n[pop3]\nlisten = %q\n\n[imap]\nlisten = %q\n\n[metrics]\nlisten = %q\n",
		dns.Addr, pop3, imap, metricsAddr)
	in := newInstanceWith(t, instanceOptions{extra: extra}, "pp")
	in.start()

	code, body := getHealthz(t, metricsAddr)
	if code != http.StatusOK || !strings.HasPrefix(body, "ok\n") {
		t.Fatalf("/healthz: %d\n%s", code, body)
	}
	for _, want := range []string{"ok smtp " + in.smtp, "ok pop3 " + pop3, "ok imap " + imap, "ok store"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/healthz lacks %q:\n%s", want, body)
		}
	}

	before := scrapeMetrics(t, metricsAddr)
	// One message for pp, one for a remote address (port 1 refuses: it
	// waits on the queue).
	for _, rcpt := range []string{"pp@example.org", "friend@remote.example"} {
		c, err := gosmtp.Dial(in.smtp)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("pp@example.org", []string{rcpt}, strings.NewReader("Subject: metrics\r\n\r\nhello\r\n")); err != nil {
			t.Fatalf("to %s: %v", rcpt, err)
		}
		c.Quit()
	}
	// A failed POP3 login and a failed IMAP login.
	talk(t, pop3, "+OK", []string{"USER pp", "+OK"}, []string{"PASS wrong", "-ERR"}, []string{"QUIT", "+OK"})
	talk(t, imap, "* OK", []string{"a1 LOGIN pp wrong", "a1 NO"}, []string{"a2 LOGOUT", "* BYE"})

	// Deliveries to the queue are tried at once; wait for the deferral.
	var after map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		after = scrapeMetrics(t, metricsAddr)
		if after[`posthorn_queue_deliveries_total{result="deferred"}`] >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	moved := func(key string) float64 { return after[key] - before[key] }
	for _, c := range []struct {
		key  string
		want float64 // at least
	}{
		{`posthorn_smtp_transactions_total{server="smtp",result="accepted"}`, 2},
		{`posthorn_connections_accepted_total{server="smtp"}`, 2},
		{`posthorn_connections_accepted_total{server="pop3"}`, 1},
		{`posthorn_connections_accepted_total{server="imap"}`, 1},
		{`posthorn_login_failures_total{protocol="pop3",reason="wrong_password"}`, 1},
		{`posthorn_login_failures_total{protocol="imap",reason="wrong_password"}`, 1},
		{`posthorn_commands_total{server="imap",result="no"}`, 1},
		{`posthorn_sessions_ended_total{server="pop3",reason="quit"}`, 1},
		{`posthorn_store_duration_seconds_count{op="deliver"}`, 2},
		{`posthorn_store_duration_seconds_bucket{op="deliver",le="+Inf"}`, 2},
		{`posthorn_queue_deliveries_total{result="deferred"}`, 1},
	} {
		if got := moved(c.key); got < c.want {
			t.Errorf("%s moved by %v, want at least %v", c.key, got, c.want)
		}
	}
	// Exactly: nothing else failed a login, nothing was rejected.
	for key, want := range map[string]float64{
		`posthorn_login_failures_total{protocol="smtp",reason="wrong_password"}`: 0,
		`posthorn_smtp_transactions_total{server="smtp",result="rejected_5xx"}`:  0,
		`posthorn_queue_messages`: 1,
	} {
		if got := after[key]; got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if age := after["posthorn_queue_oldest_age_seconds"]; age <= 0 || age > 60 {
		t.Errorf("oldest queue entry is %v s old", age)
	}
	if after[`posthorn_store_duration_seconds_sum{op="deliver"}`] <= before[`posthorn_store_duration_seconds_sum{op="deliver"}`] {
		t.Error("store latency sum did not grow")
	}

	// The server stopped, nothing answers on the metrics port.
	in.stop()
	if c, err := net.DialTimeout("tcp", metricsAddr, time.Second); err == nil {
		c.Close()
		t.Error("the metrics port still accepts after shutdown")
	}
}

// talk dials addr, expects a greeting starting with greet, then sends each
// pair's command and expects a line starting with its answer.
func talk(t *testing.T, addr, greet string, exchanges ...[]string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, greet) {
		t.Fatalf("%s greeted %q", addr, l)
	}
	for _, ex := range exchanges {
		fmt.Fprintf(nc, "%s\r\n", ex[0])
		if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, ex[1]) {
			t.Fatalf("%s: %q, want %s...", ex[0], l, ex[1])
		}
	}
}
