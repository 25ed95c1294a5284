package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The summary (issue 8): after the per-workload tables, one table with every
// figure of every workload run, for each system, with the ratios posthorn /
// other. Each workload adds its rows as it finishes.

// The summary's columns.
const (
	colPosthorn = iota
	colOther    // Postfix, Dovecot, or both, as the row says
	colSink     // smtp-sink: the protocol-only ceiling
	nCols
)

// summaryRow is one figure: its runs for each column.
type summaryRow struct {
	figure      string // what is measured, with its unit
	format      string // of one value: "%.0f", "%.3f"
	lowerBetter bool   // seconds and bytes
	other       string // who the other column is for this row
	vals        [nCols][]float64
	note        string // printed under the table
}

var summary []*summaryRow

func addSummary(r *summaryRow) { summary = append(summary, r) }

// cell is "median (lo–hi)" of v, or the one value with "1 run", or "-".
func (r *summaryRow) cell(col int) string {
	v := r.vals[col]
	switch len(v) {
	case 0:
		return "-"
	case 1:
		return thousands(r.format, v[0]) + " (1 run)"
	}
	lo, hi := minMax(v)
	return fmt.Sprintf("%s (%s–%s)", thousands(r.format, median(v)), thousands(r.format, lo), thousands(r.format, hi))
}

// ratio is the median of posthorn over the median of col, or "-".
func (r *summaryRow) ratio(col int) string {
	p, o := r.vals[colPosthorn], r.vals[col]
	if len(p) == 0 || len(o) == 0 || median(o) == 0 {
		return "-"
	}
	return strconv.FormatFloat(median(p)/median(o), 'f', 2, 64)
}

// thousands formats x with format and puts commas in its integer part
// (7,304), as the README writes figures.
func thousands(format string, x float64) string {
	s := fmt.Sprintf(format, x)
	if math.Abs(x) < 1000 {
		return s
	}
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// printSummary writes the summary table to w: tab-aligned for the terminal,
// then the same table in Markdown for the README.
func printSummary(w io.Writer, started time.Time, loadBefore string) {
	if len(summary) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSUMMARY: median (lowest–highest) of the runs; %d cores; %s; load average %s before, %s after; %s in all\n",
		runtimeCPUs(), time.Now().UTC().Format("2006-01-02"), loadBefore, loadAvg(), time.Since(started).Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tposthorn\tPostfix/Dovecot\tsmtp-sink\tposthorn/other\tposthorn/sink\t")
	for _, r := range summary {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", r.label(), r.cell(colPosthorn), r.cell(colOther), r.cell(colSink),
			r.ratio(colOther), r.ratio(colSink))
	}
	tw.Flush()
	fmt.Fprintln(w, "(higher is better for msgs/s and ops/s; lower for seconds and memory)")
	if len(loads) > 0 {
		// The bench's own processes count in it too: Dovecot's
		// thousands of IDLE processes raise it for minutes.
		fmt.Fprintf(w, "load average (1 min) along the way: %s\n", strings.Join(loads, ", "))
	}
	for _, r := range summary {
		if r.note != "" {
			fmt.Fprintf(w, "%s: %s\n", r.figure, r.note)
		}
	}
	fmt.Fprintln(w, "\nThe same, in Markdown:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | posthorn | Postfix/Dovecot | smtp-sink | posthorn / other | posthorn / sink |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range summary {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.label(), r.cell(colPosthorn), r.cell(colOther), r.cell(colSink),
			r.ratio(colOther), r.ratio(colSink))
	}
	fmt.Fprintln(w)
}

// label is the figure with, when set, who the other column is.
func (r *summaryRow) label() string {
	if r.other == "" {
		return r.figure
	}
	return r.figure + " [vs " + r.other + "]"
}

// memSampler follows the memory of a system's processes while it works:
// every 100 ms the resident and proportional set sizes summed over its
// processes, keeping the highest. Summed RSS counts the pages that
// processes share once per process; PSS shares them out, so for a system
// of many processes (Postfix, Dovecot) PSS is what it costs the machine.
type memSampler struct {
	stop    chan struct{}
	done    chan struct{}
	rss     int64
	pss     int64
	samples int
}

func sampleMemory(pids func() []int) *memSampler {
	s := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			rss, pss := memoryOf(pids())
			s.rss, s.pss = max(s.rss, rss), max(s.pss, pss)
			s.samples++
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops the sampling and returns the peaks in bytes.
func (s *memSampler) end() (rss, pss int64) {
	close(s.stop)
	<-s.done
	return s.rss, s.pss
}

// loads are the load averages noted along the way, "what value".
var loads []string

// noteLoad returns the load average now and keeps it for the summary.
func noteLoad(what string) string {
	l := loadAvg()
	loads = append(loads, what+" "+l)
	return l
}

// mb is bytes in megabytes, for the summary.
func mb(b int64) float64 { return float64(b) / 1e6 }

// writeSummary prints the summary on standard output.
func writeSummary(started time.Time, loadBefore string) { printSummary(os.Stdout, started, loadBefore) }
