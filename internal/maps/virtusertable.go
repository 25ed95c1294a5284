package maps

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/posthorn/posthorn/internal/addr"
)

// Virtusertable is a parsed virtusertable (FEATURE(virtusertable)).
type Virtusertable struct {
	entries map[string]string // lower-case key -> right-hand side as written
	domains map[string]bool
}

// ParseVirtusertable reads a virtusertable: "address target" lines, where the
// address is user@domain, @domain, user+*@domain, user++@domain, ++@domain or
// +*@domain.
func ParseVirtusertable(file string, r io.Reader) (*Virtusertable, error) {
	lines, err := readEntries(file, r, true)
	if err != nil {
		return nil, err
	}
	v := &Virtusertable{entries: make(map[string]string, len(lines)), domains: map[string]bool{}}
	for _, l := range lines {
		key := strings.ToLower(l.key)
		at := strings.LastIndexByte(key, '@')
		if at < 0 {
			return nil, &ParseError{file, l.n, fmt.Sprintf("%q has no @domain", l.key)}
		}
		domain := strings.TrimSuffix(key[at+1:], ".")
		if !addr.ValidDomain(domain) {
			return nil, &ParseError{file, l.n, fmt.Sprintf("%q: bad domain", l.key)}
		}
		key = key[:at+1] + domain
		v.entries[key] = l.value
		v.domains[domain] = true
	}
	return v, nil
}

// Lookup finds the entry for an address in Sendmail's order (proto.m4
// 1125-1151) and returns its right-hand side with %1 %2 %3 substituted, and the
// key that matched. For user+detail@domain:
//
//	user+detail@domain  (%1 = user+detail)
//	user++@domain       (non-empty detail; %1 = user, %2 = detail, %3 = +detail)
//	user+*@domain
//	user@domain
//	++@domain           (non-empty detail)
//	+*@domain
//	@domain             (%1 = user, %2 = detail, %3 = +detail)
//
// Without a +detail: user@domain, then @domain with %1 = user.
func (v *Virtusertable) Lookup(a addr.Address) (rhs, key string, ok bool) {
	if v == nil || a.Domain == "" {
		return "", "", false
	}
	local := strings.ToLower(a.Local)
	d := "@" + a.Domain
	user, detail, plus := addr.SplitDetail(local)
	// The rules for +detail need a user before the '+' ($+ + $*): "+x@dom"
	// is looked up as a plain local part.
	plus = plus && user != ""
	try := func(k, p1, p2, p3 string) bool {
		if r, found := v.entries[k]; found {
			rhs, key, ok = substitute(r, p1, p2, p3), k, true
			return true
		}
		return false
	}
	if !plus {
		if try(local+d, local, "", "") || try(d, local, "", "") {
			return
		}
		return "", "", false
	}
	p3 := "+" + detail
	switch {
	case try(local+d, local, "", ""):
	case detail != "" && try(user+"++"+d, user, detail, p3):
	case try(user+"+*"+d, user, detail, p3):
	case try(user+d, user, detail, p3):
	case detail != "" && try("++"+d, user, detail, p3):
	case try("+*"+d, user, detail, p3):
	case try(d, user, detail, p3):
	}
	return
}

// substitute replaces %1, %2 and %3 (and %% by %).
func substitute(s, p1, p2, p3 string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '1':
			b.WriteString(p1)
		case '2':
			b.WriteString(p2)
		case '3':
			b.WriteString(p3)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(s[i+1])
		}
		i++
	}
	return b.String()
}

// Domains returns the domains that have entries, sorted: they are local.
func (v *Virtusertable) Domains() []string {
	if v == nil {
		return nil
	}
	out := make([]string, 0, len(v.domains))
	for d := range v.domains {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// HasDomain reports whether domain has entries.
func (v *Virtusertable) HasDomain(domain string) bool {
	return v != nil && v.domains[domain]
}

// Len is the number of entries.
func (v *Virtusertable) Len() int {
	if v == nil {
		return 0
	}
	return len(v.entries)
}

// Entries returns the entries (key -> right-hand side).
func (v *Virtusertable) Entries() map[string]string {
	if v == nil {
		return nil
	}
	out := make(map[string]string, len(v.entries))
	for k, r := range v.entries {
		out[k] = r
	}
	return out
}
