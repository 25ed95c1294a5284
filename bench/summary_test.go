package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestThousands(t *testing.T) {
	for _, tc := range []struct {
		format string
		x      float64
		want   string
	}{
		{"%.0f", 7304, "7,304"},
		{"%.0f", 999, "999"},
		{"%.0f", 1000, "1,000"},
		{"%.0f", 1234567, "1,234,567"},
		{"%.3f", 0.027, "0.027"},
		{"%.1f", 12345.67, "12,345.7"},
		{"%.0f", -26590, "-26,590"},
	} {
		if got := thousands(tc.format, tc.x); got != tc.want {
			t.Errorf("thousands(%q, %v) = %q, want %q", tc.format, tc.x, got, tc.want)
		}
	}
}

func TestSummaryRow(t *testing.T) {
	r := &summaryRow{figure: "f", format: "%.0f"}
	r.vals[colPosthorn] = []float64{7000, 8000, 7500}
	r.vals[colOther] = []float64{500}
	for _, tc := range []struct{ got, want string }{
		{r.cell(colPosthorn), "7,500 (7,000–8,000)"},
		{r.cell(colOther), "500 (1 run)"},
		{r.cell(colSink), "-"},
		{r.ratio(colOther), "15.00"},
		{r.ratio(colSink), "-"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// The summary prints every row twice (aligned and in Markdown) with its
// ratios, and the notes once.
func TestPrintSummary(t *testing.T) {
	defer func(s []*summaryRow) { summary = s }(summary)
	summary = nil
	a := &summaryRow{figure: "accept, msgs/s", format: "%.0f", other: "Postfix", note: "a note"}
	a.vals[colPosthorn], a.vals[colOther], a.vals[colSink] = []float64{10, 20, 30}, []float64{4, 5, 6}, []float64{40}
	addSummary(a)
	var b bytes.Buffer
	printSummary(&b, time.Now(), "1.00")
	out := b.String()
	for _, want := range []string{"20 (10–30)", "5 (4–6)", "40 (1 run)", "4.00", "0.50", "accept, msgs/s: a note",
		"| accept, msgs/s [vs Postfix] | 20 (10–30) | 5 (4–6) | 40 (1 run) | 4.00 | 0.50 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "accept, msgs/s [vs Postfix]"); n != 2 {
		t.Errorf("the row is printed %d times, want 2:\n%s", n, out)
	}
}

// The sampler sees this process's memory, and its peak is at least what
// was resident when it started.
func TestMemSampler(t *testing.T) {
	pid := os.Getpid()
	rss0, _ := memoryOf([]int{pid})
	if rss0 == 0 {
		t.Skip("no /proc here")
	}
	s := sampleMemory(func() []int { return []int{pid} })
	time.Sleep(250 * time.Millisecond)
	rss, pss := s.end()
	if rss < rss0/2 || pss <= 0 {
		t.Errorf("peaks rss %d, pss %d; rss at the start %d", rss, pss, rss0)
	}
	if s.samples < 2 {
		t.Errorf("%d samples in 250 ms, want at least 2", s.samples)
	}
}
