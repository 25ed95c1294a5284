package imapwire

import (
	"strconv"
	"strings"
	"time"
)

// SeqRange is one element of a sequence set. Star (the "*" of RFC 9051
// section 9, the largest number in use) is represented by 0, which is
// never a valid message number. A single number has Start == Stop.
// Start may be greater than Stop: "4:2" means 2:4 (RFC 9051 section 9,
// seq-range).
type SeqRange struct {
	Start, Stop uint32
}

// SeqSet is a sequence-set, or "$" (RFC 5182 SEARCHRES) when Saved.
type SeqSet struct {
	Ranges []SeqRange
	Saved  bool
}

// String formats the set in wire syntax.
func (s SeqSet) String() string {
	if s.Saved {
		return "$"
	}
	var b strings.Builder
	for i, r := range s.Ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(seqNum(r.Start))
		if r.Stop != r.Start {
			b.WriteByte(':')
			b.WriteString(seqNum(r.Stop))
		}
	}
	return b.String()
}

func seqNum(n uint32) string {
	if n == 0 {
		return "*"
	}
	return strconv.FormatUint(uint64(n), 10)
}

// Contains reports whether n is in the set, with star standing for max.
// A Saved set contains nothing: the session resolves "$" first.
func (s SeqSet) Contains(n, max uint32) bool {
	for _, r := range s.Ranges {
		lo, hi := r.Start, r.Stop
		if lo == 0 {
			lo = max
		}
		if hi == 0 {
			hi = max
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo <= n && n <= hi {
			return true
		}
	}
	return false
}

// seqSet reads a sequence-set or "$".
func (r *Reader) seqSet() (SeqSet, error) {
	if r.peek() == '$' {
		r.pos++
		return SeqSet{Saved: true}, nil
	}
	var set SeqSet
	for {
		a, err := r.seqNumber()
		if err != nil {
			return SeqSet{}, err
		}
		b := a
		if r.peek() == ':' {
			r.pos++
			if b, err = r.seqNumber(); err != nil {
				return SeqSet{}, err
			}
		}
		set.Ranges = append(set.Ranges, SeqRange{a, b})
		if r.peek() != ',' {
			return set, nil
		}
		r.pos++
	}
}

func (r *Reader) seqNumber() (uint32, error) {
	if r.peek() == '*' {
		r.pos++
		return 0, nil
	}
	if r.eol() || r.peek() < '0' || r.peek() > '9' {
		return 0, r.badChar("sequence set")
	}
	return r.nzNumber()
}

var months = [...]string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}

// date reads date = date-text / DQUOTE date-text DQUOTE, date-text =
// date-day "-" date-month "-" date-year (RFC 9051 section 9).
func (r *Reader) date() (time.Time, error) {
	q := r.peek() == '"'
	if q {
		r.pos++
	}
	d, err := r.dateText(false)
	if err != nil {
		return time.Time{}, err
	}
	if q {
		if err := r.expect('"'); err != nil {
			return time.Time{}, err
		}
	}
	return d, nil
}

func (r *Reader) digits(min, max int) (int, error) {
	start := r.pos
	for r.pos < len(r.line) && r.pos-start < max && r.line[r.pos] >= '0' && r.line[r.pos] <= '9' {
		r.pos++
	}
	if r.pos-start < min {
		return 0, r.errf("bad date")
	}
	n, _ := strconv.Atoi(string(r.line[start:r.pos]))
	return n, nil
}

// dateText reads d-Mon-yyyy; fixedDay demands the 2-character date-day-fixed
// (SP digit or 2 digits) of date-time.
func (r *Reader) dateText(fixedDay bool) (time.Time, error) {
	if fixedDay && r.peek() == ' ' {
		r.pos++
	}
	day, err := r.digits(1, 2)
	if err != nil {
		return time.Time{}, err
	}
	if err := r.expect('-'); err != nil {
		return time.Time{}, r.errf("bad date")
	}
	if r.pos+3 > len(r.line) {
		return time.Time{}, r.errf("bad date")
	}
	mon := upper(string(r.line[r.pos : r.pos+3]))
	r.pos += 3
	m := 0
	for i, name := range months {
		if name == mon {
			m = i + 1
		}
	}
	if m == 0 {
		return time.Time{}, r.errf("bad month in date")
	}
	if err := r.expect('-'); err != nil {
		return time.Time{}, r.errf("bad date")
	}
	year, err := r.digits(4, 4)
	if err != nil {
		return time.Time{}, err
	}
	t := time.Date(year, time.Month(m), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, r.errf("no such day in date")
	}
	return t, nil
}

// dateTime reads DQUOTE date-day-fixed "-" date-month "-" date-year SP
// time SP zone DQUOTE (RFC 9051 section 9), as APPEND takes.
func (r *Reader) dateTime() (time.Time, error) {
	if err := r.expect('"'); err != nil {
		return time.Time{}, err
	}
	d, err := r.dateText(true)
	if err != nil {
		return time.Time{}, err
	}
	if err := r.sp(); err != nil {
		return time.Time{}, r.errf("bad date-time")
	}
	var hms [3]int
	for i := range hms {
		if i > 0 {
			if err := r.expect(':'); err != nil {
				return time.Time{}, r.errf("bad date-time")
			}
		}
		if hms[i], err = r.digits(2, 2); err != nil {
			return time.Time{}, r.errf("bad date-time")
		}
	}
	if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
		return time.Time{}, r.errf("bad time in date-time")
	}
	if err := r.sp(); err != nil {
		return time.Time{}, r.errf("bad date-time")
	}
	sign := r.peek()
	if sign != '+' && sign != '-' {
		return time.Time{}, r.errf("bad zone in date-time")
	}
	r.pos++
	z, err := r.digits(4, 4)
	if err != nil || z%100 > 59 {
		return time.Time{}, r.errf("bad zone in date-time")
	}
	off := (z/100*60 + z%100) * 60
	if sign == '-' {
		off = -off
	}
	if err := r.expect('"'); err != nil {
		return time.Time{}, r.errf("bad date-time")
	}
	loc := time.FixedZone("", off)
	return time.Date(d.Year(), d.Month(), d.Day(), hms[0], hms[1], hms[2], 0, loc), nil
}
