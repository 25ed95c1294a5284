package imapsearch

import (
	"strings"
	"time"
)

// sentDate is what could be read of a Date: header (RFC 5322 section 3.3,
// with the obsolete forms of section 4.3 and the asctime order some old
// software writes).
type sentDate struct {
	year, month, day int
	hour, min, sec   int
	offset           int // seconds east of UTC; 0 when the zone is unknown
}

var monthNames = [...]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

var fullMonths = [...]string{"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}

// RFC 5322 section 4.3 obsolete zone names.
var zoneNames = map[string]int{
	"UT": 0, "GMT": 0, "Z": 0, "UTC": 0,
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

// parseSentDate reads a Date: header leniently. ok is false when no day,
// month and year could be found.
func parseSentDate(s string) (d sentDate, ok bool) {
	s = stripComments(s)
	toks := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '\r' || r == '\n' })
	mi := -1
	for i, t := range toks {
		if len(t) >= 3 {
			for m, name := range monthNames {
				// "Feb" or "February", not any word that starts alike.
				if strings.EqualFold(t[:3], name) && (len(t) == 3 || strings.EqualFold(t, fullMonths[m])) {
					mi, d.month = i, m+1
					break
				}
			}
		}
		if mi >= 0 {
			break
		}
	}
	if mi < 0 {
		return d, false
	}
	rest := toks[mi+1:]
	if day, good := number(toks, mi-1, 2); good {
		d.day = day
	} else if len(rest) > 0 {
		// asctime: "Mon Jan  2 15:04:05 2006".
		if day, good := number(rest, 0, 2); good {
			d.day, rest = day, rest[1:]
		}
	}
	yearFound := false
	for _, t := range rest {
		if y, good := number([]string{t}, 0, 4); good && len(t) != 1 && !yearFound && !strings.Contains(t, ":") {
			switch {
			case len(t) == 2 && y < 50:
				y += 2000
			case len(t) <= 3:
				y += 1900 // RFC 5322 section 4.3
			}
			d.year, yearFound = y, true
			continue
		}
		if strings.Count(t, ":") >= 1 {
			parseClock(t, &d)
			continue
		}
		if t[0] == '+' || t[0] == '-' {
			if n, good := number([]string{t[1:]}, 0, 4); good && len(t) == 5 && n%100 < 60 {
				off := (n/100*60 + n%100) * 60
				if t[0] == '-' {
					off = -off
				}
				d.offset = off
			}
			continue
		}
		if h, known := zoneNames[strings.ToUpper(t)]; known {
			d.offset = h * 3600
		}
	}
	if !yearFound || d.day < 1 {
		return d, false
	}
	if t := time.Date(d.year, time.Month(d.month), d.day, 0, 0, 0, 0, time.UTC); t.Day() != d.day {
		return d, false
	}
	return d, true
}

// number reads toks[i] as a decimal of 1 to max digits.
func number(toks []string, i, max int) (int, bool) {
	if i < 0 || i >= len(toks) {
		return 0, false
	}
	t := toks[i]
	if len(t) == 0 || len(t) > max {
		return 0, false
	}
	n := 0
	for j := 0; j < len(t); j++ {
		if t[j] < '0' || t[j] > '9' {
			return 0, false
		}
		n = n*10 + int(t[j]-'0')
	}
	return n, true
}

// parseClock reads hh:mm[:ss]; an invalid time is left at 00:00:00 (RFC
// 5256 section 2.2).
func parseClock(t string, d *sentDate) {
	parts := strings.Split(t, ":")
	if len(parts) > 3 {
		return
	}
	var v [3]int
	for i, p := range parts {
		n, ok := number([]string{p}, 0, 2)
		if !ok {
			return
		}
		v[i] = n
	}
	if v[0] > 23 || v[1] > 59 || v[2] > 60 {
		return
	}
	d.hour, d.min, d.sec = v[0], v[1], v[2]
}

// stripComments removes RFC 5322 comments, which dates often carry
// ("+0000 (UTC)").
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// civil is a calendar date as yyyymmdd, for the day comparisons of SEARCH.
type civil int

func civilOf(y int, m time.Month, d int) civil { return civil(y*10000 + int(m)*100 + d) }

func civilTime(t time.Time) civil { return civilOf(t.Date()) }

// sentTime is the sent date of RFC 5256 section 2.2 for SORT and THREAD:
// the Date: header's time normalised to UTC; the INTERNALDATE when the
// header is absent or unreadable.
func sentTime(env string, internal time.Time) time.Time {
	d, ok := parseSentDate(env)
	if !ok {
		return internal
	}
	return time.Date(d.year, time.Month(d.month), d.day, d.hour, d.min, d.sec, 0, time.FixedZone("", d.offset)).UTC()
}
