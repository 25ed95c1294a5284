package maps

import (
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/addr"
)

// Action is the right-hand side of an access entry (cf/README "The access
// database").
type Action int

const (
	ActionOK         Action = iota + 1 // accept, overriding other checks; does not permit relaying
	ActionRelay                        // permit relaying (implies OK)
	ActionReject                       // refuse with the generic 5xx
	ActionDiscard                      // accept, then drop the message silently
	ActionSkip                         // stop searching this key: take the default
	ActionError                        // refuse with the entry's own reply
	ActionQuarantine                   // accept and hold (QUARANTINE:reason)
)

func (a Action) String() string {
	switch a {
	case ActionOK:
		return "OK"
	case ActionRelay:
		return "RELAY"
	case ActionReject:
		return "REJECT"
	case ActionDiscard:
		return "DISCARD"
	case ActionSkip:
		return "SKIP"
	case ActionError:
		return "ERROR"
	case ActionQuarantine:
		return "QUARANTINE"
	}
	return "?"
}

// AccessResult is the entry that matched a lookup.
type AccessResult struct {
	Action   Action
	Code     int    // ActionError: the reply code
	Enhanced string // ActionError: the enhanced status code
	Text     string // ActionError: the reply text; ActionQuarantine: the reason
	Key      string // the key that matched, with its tag ("Connect:192.168.69")
}

// Tags of access keys (cf/README). Connect:, From: and To: are used; the others
// are accepted so that a Sendmail file can be brought over, and not consulted.
var accessTags = map[string]string{
	"connect": "Connect", "from": "From", "to": "To",
	"spam": "Spam", "compat": "Compat", "greetpause": "GreetPause",
	"clientrate": "ClientRate", "clientconn": "ClientConn", "mta": "MTA",
	"srv_features": "Srv_Features", "try_tls": "Try_TLS", "tls_clt_features": "TLS_Clt_Features",
	"tls_srv": "TLS_Srv", "tls_clt": "TLS_Clt", "auth": "AUTH", "qgrp": "QGRP",
}

// Access is a parsed access table.
type Access struct {
	entries map[string]AccessResult // by "tag:key" ("" tag for untagged keys), lower-case
}

var (
	// ERROR:D.S.N:### text
	errorDSNRE = regexp.MustCompile(`^([245])\.(\d{1,3})\.(\d{1,3}):([245]\d\d)(?:[ \t]+(.*))?$`)
	// ERROR:### text, and the legacy bare "### text"
	errorCodeRE = regexp.MustCompile(`^([245]\d\d)(?:[ \t]+(.*))?$`)
)

// ParseAccess reads an access table.
func ParseAccess(file string, r io.Reader) (*Access, error) {
	lines, err := readEntries(file, r, true)
	if err != nil {
		return nil, err
	}
	a := &Access{entries: make(map[string]AccessResult, len(lines))}
	for _, l := range lines {
		tag, key, err := splitAccessKey(l.key)
		if err != nil {
			return nil, &ParseError{file, l.n, err.Error()}
		}
		res, err := parseAccessValue(l.value)
		if err != nil {
			return nil, &ParseError{file, l.n, err.Error()}
		}
		res.Key = l.key
		a.entries[tag+":"+key] = res
	}
	return a, nil
}

// splitAccessKey separates an optional tag and normalises the key.
func splitAccessKey(k string) (tag, key string, err error) {
	if i := strings.IndexByte(k, ':'); i > 0 {
		if t, ok := accessTags[strings.ToLower(k[:i])]; ok {
			tag, k = t, k[i+1:]
		} else if !strings.EqualFold(k[:i], "IPv6") {
			return "", "", fmt.Errorf("unknown tag %q (Connect:, From:, To: ...)", k[:i+1])
		}
	}
	if k == "" {
		return "", "", fmt.Errorf("empty key after %s:", tag)
	}
	return tag, normaliseAccessKey(k), nil
}

// normaliseAccessKey lower-cases a key and writes IPv6 keys in one form so that
// "IPv6:2001:DB8::1" and "IPv6:2001:db8:0:0:0:0:0:1" are the same key.
func normaliseAccessKey(k string) string {
	k = strings.ToLower(k)
	if v6, ok := strings.CutPrefix(k, "ipv6:"); ok {
		if ip, err := netip.ParseAddr(v6); err == nil && ip.Is6() {
			return "ipv6:" + expandIPv6(ip)
		}
		// A prefix of whole groups: strip leading zeros of each group.
		groups := strings.Split(v6, ":")
		for i, g := range groups {
			if t := strings.TrimLeft(g, "0"); t != "" || g != "" {
				if t == "" {
					t = "0"
				}
				groups[i] = t
			}
		}
		return "ipv6:" + strings.Join(groups, ":")
	}
	return strings.TrimSuffix(k, ".")
}

// expandIPv6 writes all eight groups, without leading zeros.
func expandIPv6(ip netip.Addr) string {
	b := ip.As16()
	parts := make([]string, 8)
	for i := range parts {
		parts[i] = strconv.FormatUint(uint64(b[2*i])<<8|uint64(b[2*i+1]), 16)
	}
	return strings.Join(parts, ":")
}

func parseAccessValue(v string) (AccessResult, error) {
	upper := strings.ToUpper(v)
	switch upper {
	case "OK":
		return AccessResult{Action: ActionOK}, nil
	case "RELAY":
		return AccessResult{Action: ActionRelay}, nil
	case "REJECT":
		return AccessResult{Action: ActionReject}, nil
	case "DISCARD":
		return AccessResult{Action: ActionDiscard}, nil
	case "SKIP":
		return AccessResult{Action: ActionSkip}, nil
	}
	if strings.HasPrefix(upper, "QUARANTINE:") {
		return AccessResult{Action: ActionQuarantine, Text: unquote(v[len("QUARANTINE:"):])}, nil
	}
	text := v
	if strings.HasPrefix(upper, "ERROR:") {
		text = v[len("ERROR:"):]
	} else if v == "" || v[0] < '0' || v[0] > '9' {
		if strings.HasPrefix(v, `"`) {
			text = v // legacy quoted "### text"
		} else {
			return AccessResult{}, fmt.Errorf("unknown action %q (OK, RELAY, REJECT, DISCARD, SKIP, ERROR:...)", v)
		}
	}
	return parseErrorReply(unquote(text))
}

// parseErrorReply reads "D.S.N:### text" or "### text".
func parseErrorReply(s string) (AccessResult, error) {
	s = strings.TrimSpace(s)
	if m := errorDSNRE.FindStringSubmatch(s); m != nil {
		code, _ := strconv.Atoi(m[4])
		if m[1][0] != m[4][0] {
			return AccessResult{}, fmt.Errorf("enhanced code %s.%s.%s does not match reply code %s (RFC 3463: the classes must agree)", m[1], m[2], m[3], m[4])
		}
		if code < 400 {
			return AccessResult{}, fmt.Errorf("reply code %d is not an error", code)
		}
		return AccessResult{Action: ActionError, Code: code, Enhanced: m[1] + "." + m[2] + "." + m[3], Text: textOr(m[5], code)}, nil
	}
	if m := errorCodeRE.FindStringSubmatch(s); m != nil {
		code, _ := strconv.Atoi(m[1])
		if code < 400 {
			return AccessResult{}, fmt.Errorf("reply code %d is not an error", code)
		}
		// Sendmail would answer "450 5.0.0" here (the semantics notes); an
		// enhanced code must share the reply's class (RFC 3463 section 2), so we
		// say "4.0.0" for a 4xx and "5.0.0" for a 5xx.
		return AccessResult{Action: ActionError, Code: code, Enhanced: m[1][:1] + ".0.0", Text: textOr(m[2], code)}, nil
	}
	return AccessResult{}, fmt.Errorf("ERROR: needs a reply code: ERROR:\"550 text\" or ERROR:5.7.1:550 text, not %q", s)
}

func textOr(t string, code int) string {
	t = strings.TrimSpace(t)
	if t != "" {
		return t
	}
	if code/100 == 4 {
		return "Temporary failure"
	}
	return "Access denied"
}

// unquote removes one pair of surrounding double quotes, which keep spacing in
// a value (cf/README).
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// Len is the number of entries.
func (a *Access) Len() int {
	if a == nil {
		return 0
	}
	return len(a.entries)
}

// lookup tries tag:key then, as Sendmail's "+" lookups do, the untagged key.
func (a *Access) lookup(tag, key string) (AccessResult, bool) {
	if a == nil {
		return AccessResult{}, false
	}
	if r, ok := a.entries[tag+":"+key]; ok {
		return r, true
	}
	r, ok := a.entries[":"+key]
	return r, ok
}

// search looks keys up in order; the first hit decides, and SKIP ends the
// search with no result (cf/README: SKIP "stops the search for this key").
func (a *Access) search(tag string, keys []string) (AccessResult, bool) {
	for _, k := range keys {
		if r, ok := a.lookup(tag, k); ok {
			if r.Action == ActionSkip {
				return AccessResult{}, false
			}
			return r, true
		}
	}
	return AccessResult{}, false
}

// ipKeys returns the lookup keys of an address, most specific first:
// 192.168.69.5, 192.168.69, 192.168, 192; for IPv6 "ipv6:" and the groups of
// the expanded form, dropped from the right (proto.m4 ruleset A).
func ipKeys(ip netip.Addr) []string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		out := make([]string, 0, 4)
		for n := 4; n >= 1; n-- {
			parts := make([]string, n)
			for i := 0; i < n; i++ {
				parts[i] = strconv.Itoa(int(b[i]))
			}
			out = append(out, strings.Join(parts, "."))
		}
		return out
	}
	groups := strings.Split(expandIPv6(ip), ":")
	out := make([]string, 0, 8)
	for n := 8; n >= 1; n-- {
		out = append(out, "ipv6:"+strings.Join(groups[:n], ":"))
	}
	return out
}

// LookupConnect finds the entry for a client: its verified host name and
// parents first, then its address and prefixes (proto.m4 check_relay). A client
// without a name is known as "[ip]", which only a "[ip]" key matches.
func (a *Access) LookupConnect(ip netip.Addr, hostname string) (AccessResult, bool) {
	var nameKeys []string
	if hostname != "" {
		nameKeys = parentDomains(strings.ToLower(strings.TrimSuffix(hostname, ".")))
	} else if ip.IsValid() {
		nameKeys = []string{"[" + ip.Unmap().String() + "]"}
	}
	if r, ok := a.search("Connect", nameKeys); ok {
		return r, true
	}
	if !ip.IsValid() {
		return AccessResult{}, false
	}
	return a.search("Connect", ipKeys(ip))
}

// addressKeys returns the keys for an address: user@domain, user@, then the
// domain and its parents (proto.m4 lines 1955-1962).
func addressKeys(a addr.Address) []string {
	local := strings.ToLower(a.Local)
	if a.Domain == "" {
		return []string{local + "@"}
	}
	keys := []string{local + "@" + a.Domain, local + "@"}
	return append(keys, parentDomains(a.Domain)...)
}

// LookupFrom finds the entry for a MAIL FROM address. The null sender is looked
// up as "<>".
func (a *Access) LookupFrom(from addr.Address) (AccessResult, bool) {
	if from.IsZero() {
		return a.search("From", []string{"<>"})
	}
	return a.search("From", addressKeys(from))
}

// LookupTo finds the entry for a RCPT TO address: user@domain, user@, then the
// domain and its parents (FEATURE(blocklist_recipients) and the To:domain relay
// rule together).
func (a *Access) LookupTo(to addr.Address) (AccessResult, bool) {
	return a.search("To", addressKeys(to))
}

// LookupToDomain finds the entry for a recipient domain and its parents only
// (the relay check of proto.m4: To:user@domain is not consulted for relaying).
func (a *Access) LookupToDomain(domain string) (AccessResult, bool) {
	return a.search("To", parentDomains(domain))
}
