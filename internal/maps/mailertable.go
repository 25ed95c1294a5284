package maps

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Route is a mailertable right-hand side: "mailer:host" (cf/README "mailertable").
type Route struct {
	Mailer string // relay, esmtp, smtp, smtp8, dsmtp, local, error...
	Host   string // the next hop, without brackets; for error: the reply text
	Port   int    // 0: the default port
	NoMX   bool   // "[host]": no MX lookup
}

// Mailertable is a parsed mailertable.
type Mailertable struct {
	entries map[string]string // lower-case domain or .domain -> rhs
}

// ParseMailertable reads a mailertable: "domain mailer:host" or
// ".domain mailer:host" lines.
func ParseMailertable(file string, r io.Reader) (*Mailertable, error) {
	lines, err := readEntries(file, r, true)
	if err != nil {
		return nil, err
	}
	m := &Mailertable{entries: make(map[string]string, len(lines))}
	for _, l := range lines {
		if _, err := parseRoute(l.value, ""); err != nil {
			return nil, &ParseError{file, l.n, err.Error()}
		}
		m.entries[strings.ToLower(strings.TrimSuffix(l.key, "."))] = l.value
	}
	return m, nil
}

func parseRoute(v, p1 string) (Route, error) {
	mailer, host, ok := strings.Cut(v, ":")
	if !ok || mailer == "" {
		return Route{}, fmt.Errorf("%q: expected mailer:host", v)
	}
	r := Route{Mailer: strings.ToLower(mailer)}
	host = substitute(host, p1, "", "")
	if r.Mailer == "error" || r.Mailer == "local" {
		r.Host = host
		return r, nil
	}
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return Route{}, fmt.Errorf("%q: missing ]", v)
		}
		r.NoMX = true
		r.Host, host = host[1:end], host[end+1:]
	} else {
		r.Host, host, _ = strings.Cut(host, ":")
		if host != "" {
			host = ":" + host
		}
	}
	if host != "" {
		p, err := strconv.Atoi(strings.TrimPrefix(host, ":"))
		if !strings.HasPrefix(host, ":") || err != nil || p <= 0 || p > 65535 {
			return Route{}, fmt.Errorf("%q: bad port", v)
		}
		r.Port = p
	}
	if r.Host == "" {
		return Route{}, fmt.Errorf("%q: no host", v)
	}
	return r, nil
}

// Lookup finds the route for a domain: the exact key, then ".parent" keys from
// the most to the least specific (".example.org" does not match example.org
// itself); %1 in the right-hand side is the part before the matched ".parent".
func (m *Mailertable) Lookup(domain string) (Route, bool) {
	if m == nil {
		return Route{}, false
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if v, ok := m.entries[domain]; ok {
		r, err := parseRoute(v, "")
		return r, err == nil
	}
	for i := 0; i < len(domain); i++ {
		if domain[i] != '.' {
			continue
		}
		if v, ok := m.entries[domain[i:]]; ok {
			r, err := parseRoute(v, domain[:i])
			return r, err == nil
		}
	}
	return Route{}, false
}

// Len is the number of entries.
func (m *Mailertable) Len() int {
	if m == nil {
		return 0
	}
	return len(m.entries)
}
