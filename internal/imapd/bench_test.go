package imapd

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
)

// benchMessage is a typical small message: a multipart/alternative of
// about 4 KiB.
func benchMessage(i int) string {
	body := ""
	for len(body) < 3000 {
		body += "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
	}
	return fmt.Sprintf("From: Sender %d <sender%d@example.org>\r\n"+
		"To: pp@example.net\r\nSubject: Message number %d\r\n"+
		"Date: Fri, 20 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@example.org>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"+
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n"+
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>%d</p>\r\n--b--\r\n", i, i, i, i, body, i)
}

// fill delivers n messages to pp's INBOX, from several goroutines so that
// the store commits them in groups.
func fill(b testing.TB, ts *testServer, n int) {
	var wg sync.WaitGroup
	const workers = 32
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				ts.deliver("pp", "", benchMessage(i))
			}
		}(w)
	}
	wg.Wait()
}

func benchSize() int {
	if n, err := strconv.Atoi(os.Getenv("POSTHORN_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 5000
}

// BenchmarkSelectFetchAll is issue 5's first speed figure: SELECT then
// UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE) over one connection.
func BenchmarkSelectFetchAll(b *testing.B) {
	n := benchSize()
	ts := newTestServer(b, serverOptions{}, "pp")
	fill(b, ts, n)
	c := ts.login("pp")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.ok("SELECT INBOX")
		lines := c.ok("UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)")
		if len(lines) != n {
			b.Fatalf("%d lines, want %d", len(lines), n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/msg")
}
