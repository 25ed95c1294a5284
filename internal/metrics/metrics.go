// Package metrics counts what posthorn does and writes it in the Prometheus
// text exposition format (version 0.0.4), without a client library.
//
// The hot path is an atomic add on a *Counter, *Gauge or *Histogram that the
// caller resolved once, at init: Vec.With looks up (and makes) a label set
// under a lock and may allocate, so it is for init only; Fixed resolves a
// closed set of label values into a read-only map that a hot path may index
// without locking or allocating.
//
// Registry.WriteText renders every family, children sorted by their labels,
// so that two scrapes of an idle server are byte for byte the same.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Counter only goes up (a Prometheus counter).
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge goes up and down (a Prometheus gauge); it holds a float64.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (negative to subtract).
func (g *Gauge) Add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Inc adds one; Dec subtracts one.
func (g *Gauge) Inc() { g.Add(1) }
func (g *Gauge) Dec() { g.Add(-1) }

// Value returns the value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// Histogram counts observations into fixed buckets (a Prometheus histogram).
type Histogram struct {
	bounds  []float64       // upper bounds, ascending; +Inf implied
	counts  []atomic.Uint64 // per bucket, not cumulative; len(bounds)+1
	sumBits atomic.Uint64
	count   atomic.Uint64
}

func newHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	// The buckets are few (a dozen): a linear search beats a binary one.
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// ObserveDuration records d in seconds, the unit Prometheus uses.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(d.Seconds()) }

// Since records the time since start.
func (h *Histogram) Since(start time.Time) { h.ObserveDuration(time.Since(start)) }

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// DurationBuckets are the default buckets of a latency histogram, in seconds:
// from 0.5 ms (a store write that hit the group commit) to 10 s (a disk that
// is in trouble).
var DurationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Metric types as the # TYPE line spells them.
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
)

// family is one metric name with its children (one per label set).
type family struct {
	name, help, typ string
	labels          []string
	buckets         []float64 // histograms
	fn              func() float64

	mu       sync.Mutex
	children map[string]*child // by rendered label set
}

type child struct {
	labels string // `{a="x",b="y"}`, or "" without labels
	values []string
	c      *Counter
	g      *Gauge
	h      *Histogram
}

// Registry holds metric families. The zero value is not usable: NewRegistry.
type Registry struct {
	mu     sync.Mutex
	fams   []*family
	byName map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{byName: map[string]bool{}} }

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// add registers a family; a bad or repeated name is a programming error and
// panics at init, where it cannot be missed.
func (r *Registry) add(f *family) *family {
	if !nameRE.MatchString(f.name) {
		panic("metrics: bad metric name " + strconv.Quote(f.name))
	}
	for _, l := range f.labels {
		// "le" is the histogram's bucket label; "__" names are reserved.
		if !labelRE.MatchString(l) || strings.HasPrefix(l, "__") || l == "le" {
			panic("metrics: bad label name " + strconv.Quote(l) + " of " + f.name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byName[f.name] {
		panic("metrics: " + f.name + " registered twice")
	}
	r.byName[f.name] = true
	f.children = map[string]*child{}
	r.fams = append(r.fams, f)
	return f
}

// get returns the child of f for values, making it on first use.
func (f *family) get(values []string) *child {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s takes %d label values, got %d", f.name, len(f.labels), len(values)))
	}
	key := renderLabels(f.labels, values, "")
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.children[key]; ok {
		return ch
	}
	ch := &child{labels: key, values: slices.Clone(values)}
	switch f.typ {
	case typeCounter:
		ch.c = new(Counter)
	case typeGauge:
		ch.g = new(Gauge)
	case typeHistogram:
		ch.h = newHistogram(f.buckets)
	}
	f.children[key] = ch
	return ch
}

// CounterVec is a counter family with labels.
type CounterVec struct{ f *family }

// NewCounterVec registers a counter family. Counter names end in _total.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{r.add(&family{name: name, help: help, typ: typeCounter, labels: labels})}
}

// NewCounter registers a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.NewCounterVec(name, help).With()
}

// With returns the counter of the label values (in the order of the label
// names), making it on first use: it is shown (at 0) from then on. Call it at
// init and keep the pointer.
func (v *CounterVec) With(values ...string) *Counter { return v.f.get(values).c }

// Fixed resolves, now, the counters whose label values are prefix followed
// by each value of byKey (the caller's word → the label value), and "other".
// Of finds one of them later without a lock or an allocation.
func (v *CounterVec) Fixed(prefix []string, byKey map[string]string) Fixed {
	vals := func(last string) []string { return append(slices.Clone(prefix), last) }
	fx := Fixed{m: make(map[string]*Counter, len(byKey)), other: v.With(vals("other")...)}
	for k, val := range byKey {
		fx.m[k] = v.With(vals(val)...)
	}
	return fx
}

// Fixed is a closed set of counters of one family, by a key; read-only after
// CounterVec.Fixed, so safe for concurrent use.
type Fixed struct {
	m     map[string]*Counter
	other *Counter
}

// Of returns the counter for key, or the "other" one.
func (f Fixed) Of(key string) *Counter {
	if c, ok := f.m[key]; ok {
		return c
	}
	return f.other
}

// GaugeVec is a gauge family with labels.
type GaugeVec struct{ f *family }

// NewGaugeVec registers a gauge family.
func (r *Registry) NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	return &GaugeVec{r.add(&family{name: name, help: help, typ: typeGauge, labels: labels})}
}

// NewGauge registers a gauge without labels.
func (r *Registry) NewGauge(name, help string) *Gauge { return r.NewGaugeVec(name, help).With() }

// NewGaugeFunc registers a gauge whose value fn gives at each scrape.
func (r *Registry) NewGaugeFunc(name, help string, fn func() float64) {
	r.add(&family{name: name, help: help, typ: typeGauge, fn: fn})
}

// With returns the gauge of the label values (see CounterVec.With).
func (v *GaugeVec) With(values ...string) *Gauge { return v.f.get(values).g }

// HistogramVec is a histogram family with labels.
type HistogramVec struct{ f *family }

// NewHistogramVec registers a histogram family with the given bucket upper
// bounds (ascending; +Inf is added).
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	if len(buckets) == 0 || !slices.IsSorted(buckets) || math.IsInf(buckets[len(buckets)-1], 1) {
		panic("metrics: " + name + ": buckets must be ascending and finite")
	}
	return &HistogramVec{r.add(&family{name: name, help: help, typ: typeHistogram, labels: labels, buckets: slices.Clone(buckets)})}
}

// With returns the histogram of the label values (see CounterVec.With).
func (v *HistogramVec) With(values ...string) *Histogram { return v.f.get(values).h }

// ContentType is the Content-Type of WriteText's output.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteText writes every family in the text exposition format: # HELP and
// # TYPE, then one line per child (histograms: _bucket per bound with le,
// cumulative, then _sum and _count).
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := slices.Clone(r.fams)
	r.mu.Unlock()
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
		if f.fn != nil {
			fmt.Fprintf(bw, "%s %s\n", f.name, formatFloat(f.fn()))
			continue
		}
		f.mu.Lock()
		kids := make([]*child, 0, len(f.children))
		for _, ch := range f.children {
			kids = append(kids, ch)
		}
		f.mu.Unlock()
		slices.SortFunc(kids, func(a, b *child) int { return strings.Compare(a.labels, b.labels) })
		for _, ch := range kids {
			switch {
			case ch.c != nil:
				fmt.Fprintf(bw, "%s%s %d\n", f.name, ch.labels, ch.c.Value())
			case ch.g != nil:
				fmt.Fprintf(bw, "%s%s %s\n", f.name, ch.labels, formatFloat(ch.g.Value()))
			case ch.h != nil:
				writeHistogram(bw, f, ch)
			}
		}
	}
	return bw.Flush()
}

func writeHistogram(w io.Writer, f *family, ch *child) {
	h := ch.h
	// Read the buckets first and derive the count from them, so that the
	// lines agree with one another even while observations go on.
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket%s %d\n", f.name, renderLabels(f.labels, ch.values, formatFloat(b)), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket%s %d\n", f.name, renderLabels(f.labels, ch.values, "+Inf"), cum)
	fmt.Fprintf(w, "%s_sum%s %s\n", f.name, ch.labels, formatFloat(math.Float64frombits(h.sumBits.Load())))
	fmt.Fprintf(w, "%s_count%s %d\n", f.name, ch.labels, cum)
}

// renderLabels writes {a="x",b="y"} (and le="…" when le is not empty), or
// "" when there is nothing to write.
func renderLabels(names, values []string, le string) string {
	if len(names) == 0 && le == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	if le != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`le="`)
		b.WriteString(le)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// The format escapes backslash, double quote and line feed in label values,
// backslash and line feed in help text.
var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

// formatFloat writes a sample value as the format wants it: Go's shortest
// representation, +Inf, -Inf, NaN.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
