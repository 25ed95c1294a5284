package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sample is one parsed sample line.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// exposition is a parsed text exposition: the # TYPE and # HELP of each
// family, and the samples in order.
type exposition struct {
	types, helps map[string]string
	samples      []sample
}

// parseText reads the text format back, strictly: a test parser written from
// the format's description, independent of the writer, so that a writer bug
// (a missing quote, an unescaped value, a sample before its TYPE) fails here.
func parseText(t *testing.T, text string) exposition {
	t.Helper()
	e := exposition{types: map[string]string{}, helps: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		fail := func(why string) { t.Fatalf("line %d %q: %s", lineNo, line, why) }
		if line == "" {
			fail("empty line")
		}
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, _ := strings.Cut(rest, " ")
			e.helps[name] = unescape(t, help, false)
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			switch typ {
			case "counter", "gauge", "histogram":
			default:
				fail("unknown type")
			}
			if _, dup := e.types[name]; dup {
				fail("second TYPE")
			}
			e.types[name] = typ
			continue
		}
		if strings.HasPrefix(line, "#") {
			fail("unknown comment")
		}
		var s sample
		i := strings.IndexAny(line, "{ ")
		if i <= 0 {
			fail("no name")
		}
		s.name = line[:i]
		rest := line[i:]
		s.labels = map[string]string{}
		if rest[0] == '{' {
			rest = rest[1:]
			for !strings.HasPrefix(rest, "}") {
				eq := strings.Index(rest, `="`)
				if eq <= 0 {
					fail("label without =\"")
				}
				lname := rest[:eq]
				rest = rest[eq+2:]
				// The value ends at the first unescaped quote.
				var val strings.Builder
				j := 0
				for ; j < len(rest) && rest[j] != '"'; j++ {
					if rest[j] == '\\' {
						j++
						if j == len(rest) {
							fail("escape at the end")
						}
						switch rest[j] {
						case '\\':
							val.WriteByte('\\')
						case '"':
							val.WriteByte('"')
						case 'n':
							val.WriteByte('\n')
						default:
							fail("bad escape")
						}
						continue
					}
					val.WriteByte(rest[j])
				}
				if j == len(rest) {
					fail("unterminated label value")
				}
				if _, dup := s.labels[lname]; dup {
					fail("label twice")
				}
				s.labels[lname] = val.String()
				rest = rest[j+1:]
				if strings.HasPrefix(rest, ",") {
					rest = rest[1:]
				} else if !strings.HasPrefix(rest, "}") {
					fail("no , or } after a label")
				}
			}
			rest = rest[1:]
		}
		v, ok := strings.CutPrefix(rest, " ")
		if !ok {
			fail("no space before the value")
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			fail("bad value")
		}
		s.value = f
		base := s.name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(s.name, suf); ok && e.types[b] == "histogram" {
				base = b
			}
		}
		if _, ok := e.types[base]; !ok {
			fail("sample before its # TYPE")
		}
		e.samples = append(e.samples, s)
	}
	return e
}

func unescape(t *testing.T, s string, quote bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch {
		case i < len(s) && s[i] == '\\':
			b.WriteByte('\\')
		case i < len(s) && s[i] == 'n':
			b.WriteByte('\n')
		case quote && i < len(s) && s[i] == '"':
			b.WriteByte('"')
		default:
			t.Fatalf("bad escape in %q", s)
		}
	}
	return b.String()
}

// find returns the value of the sample with that name and exactly those labels.
func (e exposition) find(name string, labels ...string) (float64, bool) {
	for _, s := range e.samples {
		if s.name != name || len(s.labels) != len(labels)/2 {
			continue
		}
		match := true
		for i := 0; i < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func scrape(t *testing.T, r *Registry) exposition {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return parseText(t, b.String())
}

func TestExposition(t *testing.T) {
	r := NewRegistry()
	reqs := r.NewCounterVec("test_requests_total", "Requests by code\nand path \\ here.", "code", "path")
	reqs.With("200", "/").Add(3)
	// Values that must be escaped: a quote, a backslash, a line feed.
	reqs.With("500", "a\"b\\c\nd").Inc()
	up := r.NewGauge("test_up", "Up.")
	up.Set(1)
	temp := r.NewGaugeVec("test_temperature", "Temperature.", "room")
	temp.With("hall").Set(-2.5)
	temp.With("attic").Add(21.25)
	r.NewGaugeFunc("test_answer", "Computed at scrape.", func() float64 { return 42 })
	lat := r.NewHistogramVec("test_latency_seconds", "Latency.", []float64{0.1, 1}, "op")
	h := lat.With("read")
	for _, v := range []float64{0.05, 0.1, 0.5, 2, 3} {
		h.Observe(v)
	}
	inf := r.NewGauge("test_inf", "Infinite.")
	inf.Set(math.Inf(1))

	e := scrape(t, r)
	for name, typ := range map[string]string{
		"test_requests_total": "counter", "test_up": "gauge", "test_temperature": "gauge",
		"test_answer": "gauge", "test_latency_seconds": "histogram", "test_inf": "gauge",
	} {
		if e.types[name] != typ {
			t.Errorf("# TYPE %s = %q, want %q", name, e.types[name], typ)
		}
	}
	if got := e.helps["test_requests_total"]; got != "Requests by code\nand path \\ here." {
		t.Errorf("help read back as %q", got)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"test_requests_total", []string{"code", "200", "path", "/"}, 3},
		{"test_requests_total", []string{"code", "500", "path", "a\"b\\c\nd"}, 1},
		{"test_up", nil, 1},
		{"test_temperature", []string{"room", "hall"}, -2.5},
		{"test_temperature", []string{"room", "attic"}, 21.25},
		{"test_answer", nil, 42},
		{"test_inf", nil, math.Inf(1)},
		// Buckets are cumulative; le is inclusive (0.1 falls in le="0.1").
		{"test_latency_seconds_bucket", []string{"op", "read", "le", "0.1"}, 2},
		{"test_latency_seconds_bucket", []string{"op", "read", "le", "1"}, 3},
		{"test_latency_seconds_bucket", []string{"op", "read", "le", "+Inf"}, 5},
		{"test_latency_seconds_count", []string{"op", "read"}, 5},
		{"test_latency_seconds_sum", []string{"op", "read"}, 0.05 + 0.1 + 0.5 + 2 + 3},
	} {
		got, ok := e.find(c.name, c.labels...)
		if !ok {
			t.Errorf("%s%q: missing", c.name, c.labels)
			continue
		}
		if math.Abs(got-c.want) > 1e-9 && !(math.IsInf(got, 1) && math.IsInf(c.want, 1)) {
			t.Errorf("%s%q = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Every sample of a family follows its TYPE, and families do not interleave.
	seen := map[string]bool{}
	last := ""
	for _, s := range e.samples {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s.name, "_bucket"), "_sum"), "_count")
		if base != last {
			if seen[base] {
				t.Errorf("family %s is split", base)
			}
			seen[base], last = true, base
		}
	}
}

// Two scrapes of an unchanged registry are the same bytes: children are sorted.
func TestExpositionIsStable(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("x_total", "X.", "k")
	for _, k := range []string{"c", "a", "b", "e", "d"} {
		v.With(k).Inc()
	}
	var a, b bytes.Buffer
	r.WriteText(&a)
	r.WriteText(&b)
	if a.String() != b.String() {
		t.Fatalf("scrapes differ:\n%s\n%s", a.String(), b.String())
	}
	if i, j := strings.Index(a.String(), `k="a"`), strings.Index(a.String(), `k="e"`); i < 0 || j < i {
		t.Errorf("children not sorted:\n%s", a.String())
	}
}

// Many goroutines adding at once lose nothing (run with -race).
func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("c_total", "C.", "k")
	g := r.NewGauge("g", "G.")
	h := r.NewHistogramVec("h_seconds", "H.", []float64{1}, "k").With("x")
	const workers, each = 16, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// With from many goroutines yields the same child.
			c := v.With(fmt.Sprint(w % 2))
			for range each {
				c.Inc()
				g.Inc()
				g.Dec()
				g.Add(1)
				h.Observe(0.5)
			}
		})
	}
	// Scrapes while the updates run: the race detector sees the readers.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			r.WriteText(&bytes.Buffer{})
		}
	}()
	wg.Wait()
	<-done
	total := v.With("0").Value() + v.With("1").Value()
	if total != workers*each {
		t.Errorf("counters sum to %d, want %d", total, workers*each)
	}
	if g.Value() != workers*each {
		t.Errorf("gauge %v, want %d", g.Value(), workers*each)
	}
	e := scrape(t, r)
	if n, _ := e.find("h_seconds_count", "k", "x"); n != workers*each {
		t.Errorf("histogram count %v, want %d", n, workers*each)
	}
	if s, _ := e.find("h_seconds_sum", "k", "x"); s != 0.5*workers*each {
		t.Errorf("histogram sum %v, want %v", s, 0.5*workers*each)
	}
}

// The hot path does not allocate: a resolved counter, a Fixed lookup, a
// histogram observation.
func TestHotPathAllocations(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("a_total", "A.", "server", "reason")
	fx := v.Fixed([]string{"imap"}, map[string]string{"idle timeout": "timeout", "logout": "logout"})
	h := r.NewHistogramVec("b_seconds", "B.", DurationBuckets).With()
	reason := strings.Repeat("idle timeout", 1) // not a constant
	if n := testing.AllocsPerRun(1000, func() {
		fx.Of(reason).Inc()
		h.ObserveDuration(3 * time.Millisecond)
	}); n != 0 {
		t.Errorf("%v allocations per event", n)
	}
}

func TestFixed(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("ends_total", "Ends.", "server", "reason")
	fx := v.Fixed([]string{"pop3"}, map[string]string{"idle timeout": "timeout", "QUIT": "quit", "dropped": "closed"})
	for _, k := range []string{"QUIT", "QUIT", "idle timeout", "something new", "dropped"} {
		fx.Of(k).Inc()
	}
	e := scrape(t, r)
	for reason, want := range map[string]float64{"quit": 2, "timeout": 1, "closed": 1, "other": 1} {
		if got, ok := e.find("ends_total", "server", "pop3", "reason", reason); !ok || got != want {
			t.Errorf("reason %s: %v (found %v), want %v", reason, got, ok, want)
		}
	}
}

func TestSMTPTxEnd(t *testing.T) {
	tx := SMTPTransactions("test-smtp")
	before := [4]uint64{tx.Accepted.Value(), tx.Rejected4xx.Value(), tx.Rejected5xx.Value(), tx.Aborted.Value()}
	for _, c := range []struct {
		result string
		want   int // index into before
	}{
		{"250 2.0.0 Ok: queued as X", 0},
		{"452 4.3.1 Insufficient system storage", 1},
		{"554 5.7.1 Rejected", 2},
		{"550", 2},
		{"RSET", 3},
		{"disconnected during DATA", 3},
		{"", 3},
		{"2", 3},
		{"2xx", 3},
	} {
		tx.End(c.result)
		before[c.want]++
		got := [4]uint64{tx.Accepted.Value(), tx.Rejected4xx.Value(), tx.Rejected5xx.Value(), tx.Aborted.Value()}
		if got != before {
			t.Fatalf("after %q: %v, want %v", c.result, got, before)
		}
	}
}

func TestRegistryRejectsBadNames(t *testing.T) {
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"1abc", nil}, {"a-b", nil}, {"ok_total", []string{"le"}}, {"ok_total", []string{"__x"}}, {"ok_total", []string{"a b"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%q %q registered", c.name, c.labels)
				}
			}()
			NewRegistry().NewCounterVec(c.name, "x", c.labels...)
		}()
	}
	r := NewRegistry()
	r.NewCounter("twice_total", "x")
	defer func() {
		if recover() == nil {
			t.Error("a name registered twice")
		}
	}()
	r.NewGauge("twice_total", "x")
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("hits_total", "Hits.")
	ran := 0
	srv := httptest.NewServer(r.Handler(func(*http.Request) { ran++; c.Inc() }))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q", ct)
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	e := parseText(t, b.String())
	// before ran ahead of the rendering: the scrape shows its effect.
	if v, _ := e.find("hits_total"); v != 1 || ran != 1 {
		t.Errorf("hits_total %v after %d runs of before", v, ran)
	}
	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
}

// The default registry renders and parses back: every posthorn family is
// well-formed (names, help text, types).
func TestDefaultRegistry(t *testing.T) {
	e := scrape(t, Default)
	for _, name := range []string{
		"posthorn_connections_accepted_total", "posthorn_connections_refused_total", "posthorn_connections_live",
		"posthorn_smtp_transactions_total", "posthorn_commands_total", "posthorn_sessions_ended_total",
		"posthorn_queue_messages", "posthorn_queue_oldest_age_seconds", "posthorn_queue_deliveries_total",
		"posthorn_login_failures_total", "posthorn_store_duration_seconds", "posthorn_store_errors_total",
	} {
		if e.types[name] == "" || e.helps[name] == "" {
			t.Errorf("%s: type %q help %q", name, e.types[name], e.helps[name])
		}
	}
}
