package webmail

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

func benchMessages() int {
	if n, err := strconv.Atoi(os.Getenv("POSTHORN_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 50000
}

// fillInbox delivers n messages of about 4 KiB to pp's INBOX from several
// goroutines, so that the store commits them in groups.
func fillInbox(b *testing.B, e *env, n int) {
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 60)
	var wg sync.WaitGroup
	const workers = 32
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				subject, refs := fmt.Sprintf("message %d", i), ""
				if i%10 == 9 {
					subject = fmt.Sprintf("Re: message %d", i-9)
					refs = fmt.Sprintf("References: <%d@remote.example>\r\nIn-Reply-To: <%d@remote.example>\r\n", i-9, i-9)
				}
				raw := fmt.Sprintf("From: Sender %d <s%d@remote.example>\r\nTo: pp@example.org\r\nSubject: %s\r\n"+
					"Date: Fri, 20 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@remote.example>\r\n%s\r\n%s", i%997, i, subject, i, refs, body)
				_, err := e.st.Deliver(context.Background(), &store.Delivery{Body: strings.NewReader(raw),
					Meta: msg.ParseBytes([]byte(raw)).Marshal(), InternalDate: time.Unix(int64(1e9+i), 0),
					Local: []store.LocalTarget{{Account: "pp"}}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
}

// BenchmarkInboxPage is issue 6's figure: GET of an inbox page of a
// 50,000-message mailbox (POSTHORN_BENCH_MESSAGES), over HTTP, a new
// message arriving every 100 requests (so the cache is brought up to date
// as in real use). It reports the 95th percentile.
func BenchmarkInboxPage(b *testing.B) {
	e := newEnv(b, envOptions{}, "pp")
	n := benchMessages()
	fillInbox(b, e, n)
	c := e.client(b)
	c.login("pp", "secret-pp")
	inbox := e.mailbox(b, "pp", store.Inbox)
	// "" and ?page= are the conversations (the default); ?view=plain the
	// messages. Every tenth message is a reply to one ten before it, so the
	// threading has chains to make.
	pages := []string{"", "?page=2", "?sort=from", "?sort=size&page=300", "?page=999", "?view=plain&page=3", "?open=1"}
	// The first page after a start reads every row once (cold cache; the
	// login above warmed it, so it is emptied).
	e.srv.cache = newListCache(e.st, 32)
	start := time.Now()
	if resp, _ := c.get(fmt.Sprintf("/mail/%d", inbox.ID)); resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	cold := time.Since(start)
	var times []time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		if i%100 == 99 {
			b.StopTimer()
			e.deliver(b, "pp", "", "From: new@remote.example\nSubject: new\n\nnew\n")
			b.StartTimer()
		}
		start := time.Now()
		resp, err := c.hc.Get(e.http.URL + fmt.Sprintf("/mail/%d%s", inbox.ID, pages[i%len(pages)]))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		times = append(times, time.Since(start))
		i++
	}
	reportPercentiles(b, times)
	b.ReportMetric(float64(cold.Microseconds())/1000, "cold-ms")
}

// BenchmarkOpenMessage is GET of a message's page in the same mailbox.
func BenchmarkOpenMessage(b *testing.B) {
	e := newEnv(b, envOptions{}, "pp")
	n := benchMessages()
	fillInbox(b, e, n)
	c := e.client(b)
	c.login("pp", "secret-pp")
	inbox := e.mailbox(b, "pp", store.Inbox)
	var times []time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		uid := uint32(1 + (i*7919)%n)
		start := time.Now()
		resp, err := c.hc.Get(e.http.URL + fmt.Sprintf("/msg/%d/%d", inbox.ID, uid))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		times = append(times, time.Since(start))
		i++
	}
	reportPercentiles(b, times)
}

func reportPercentiles(b *testing.B, times []time.Duration) {
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	p := func(q float64) float64 { return float64(times[int(q*float64(len(times)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.95), "p95-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}
