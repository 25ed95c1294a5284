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
	// byTag holds the entries by tag ("" for untagged keys), then by key in
	// its normal form (lower-case, IP keys written out).
	byTag map[string]map[string]AccessResult
	n     int
}

var (
	// ERROR:D.S.N:### text
	errorDSNRE = regexp.MustCompile(`^([45])\.(\d{1,3})\.(\d{1,3}):([45]\d\d)(?:[ \t]+(.*))?$`)
	// ERROR:### text, and the legacy bare "### text"
	errorCodeRE = regexp.MustCompile(`^([45]\d\d)(?:[ \t]+(.*))?$`)
)

// ParseAccess reads an access table.
func ParseAccess(file string, r io.Reader) (*Access, error) {
	lines, err := readEntries(file, r, true)
	if err != nil {
		return nil, err
	}
	a := &Access{byTag: map[string]map[string]AccessResult{}}
	for _, l := range lines {
		tag, key, err := splitAccessKey(l.key)
		if err != nil {
			return nil, &ParseError{file, l.n, err.Error()}
		}
		var res AccessResult
		switch tag {
		case "", "Connect", "From", "To":
			if res, err = parseAccessValue(l.value); err != nil {
				return nil, &ParseError{file, l.n, err.Error()}
			}
		default:
			// Spam:, GreetPause:, Srv_Features:, TLS_Clt: ... have values of
			// their own (FRIEND, a number, flags, VERIFY): kept so that a
			// Sendmail file loads, and not consulted.
			res.Text = l.value
		}
		res.Key = l.key
		m := a.byTag[tag]
		if m == nil {
			m = map[string]AccessResult{}
			a.byTag[tag] = m
		}
		if _, dup := m[key]; !dup {
			a.n++
		}
		m[key] = res // a repeated key: the last one counts, as makemap -r
	}
	return a, nil
}

// splitAccessKey separates an optional tag and normalises the key. A word
// before the first ':' is a tag, and must be one Sendmail knows: a typo such as
// "Conect:" would otherwise be an untagged key that never matches. "IPv6:" and
// "[IPv6:...]" keys are untagged.
func splitAccessKey(k string) (tag, key string, err error) {
	if i := strings.IndexByte(k, ':'); i > 0 && isTagWord(k[:i]) {
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

func isTagWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// normaliseAccessKey lower-cases a key and writes IP keys in one form, so that
// "IPv6:2001:DB8::1" and "IPv6:2001:db8:0:0:0:0:0:1" are the same key, as are
// "[IPv6:2001:db8::1]" and "[IPv6:2001:DB8:0::1]".
func normaliseAccessKey(k string) string {
	k = strings.ToLower(k)
	if v6, ok := strings.CutPrefix(k, "ipv6:"); ok {
		return "ipv6:" + normaliseIPv6Prefix(v6)
	}
	if strings.HasPrefix(k, "[") && strings.HasSuffix(k, "]") {
		return "[" + normaliseLiteral(k[1:len(k)-1]) + "]"
	}
	return strings.TrimSuffix(k, ".")
}

// normaliseLiteral writes the inside of an address literal key in one form.
func normaliseLiteral(in string) string {
	if v6, ok := strings.CutPrefix(in, "ipv6:"); ok {
		return "ipv6:" + normaliseIPv6Prefix(v6)
	}
	return in
}

// normaliseIPv6Prefix writes a whole IPv6 address with all eight groups, and a
// prefix of whole groups ("2002:c0a8:02c7") without leading zeros.
func normaliseIPv6Prefix(v6 string) string {
	if ip, err := netip.ParseAddr(v6); err == nil && ip.Is6() && ip.Zone() == "" {
		return expandIPv6(ip)
	}
	groups := strings.Split(v6, ":")
	for i, g := range groups {
		if t := strings.TrimLeft(g, "0"); t != "" || g != "" {
			if t == "" {
				t = "0"
			}
			groups[i] = t
		}
	}
	return strings.Join(groups, ":")
}

// expandIPv6 writes all eight groups, without leading zeros.
func expandIPv6(ip netip.Addr) string {
	b := ip.As16()
	var out strings.Builder
	out.Grow(40)
	for i := 0; i < 8; i++ {
		if i > 0 {
			out.WriteByte(':')
		}
		out.WriteString(strconv.FormatUint(uint64(b[2*i])<<8|uint64(b[2*i+1]), 16))
	}
	return out.String()
}

func parseAccessValue(v string) (AccessResult, error) {
	upper := strings.ToUpper(v)
	// A keyword may be followed by more words, which are ignored: the guide's
	// access file has "localhost RELAY RELAY", and Sendmail acts on the
	// first word.
	if first, _, ok := strings.Cut(upper, " "); ok {
		switch first {
		case "OK", "RELAY", "REJECT", "DISCARD", "SKIP":
			upper = first
		}
	}
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
	if strings.HasPrefix(upper, "ERROR:") {
		return parseErrorReply(v[len("ERROR:"):])
	}
	// The deprecated bare form: "### any text", best quoted (README).
	if t := unquote(v); t != "" && t[0] >= '0' && t[0] <= '9' {
		return parseErrorReply(v)
	}
	return AccessResult{}, fmt.Errorf("unknown action %q (OK, RELAY, REJECT, DISCARD, SKIP, ERROR:..., QUARANTINE:...)", v)
}

// parseErrorReply reads what follows ERROR: (README "The access database"):
//
//	### any text             ERROR:"### any text"
//	D.S.N:### any text       ERROR:D.S.N:"### any text"   ERROR:"D.S.N:### any text"
//
// The quotes only keep the spacing of the text.
func parseErrorReply(s string) (AccessResult, error) {
	s = unquote(s)
	if dsn, rest, ok := strings.Cut(s, ":"); ok && dsnRE.MatchString(dsn) {
		// ERROR:D.S.N:"### any text"
		s = dsn + ":" + unquote(rest)
	}
	if m := errorDSNRE.FindStringSubmatch(s); m != nil {
		code, _ := strconv.Atoi(m[4])
		if m[1][0] != m[4][0] {
			return AccessResult{}, fmt.Errorf("enhanced code %s.%s.%s does not match reply code %s (RFC 3463: the classes must agree)", m[1], m[2], m[3], m[4])
		}
		return AccessResult{Action: ActionError, Code: code, Enhanced: m[1] + "." + m[2] + "." + m[3], Text: textOr(m[5], code)}, nil
	}
	if m := errorCodeRE.FindStringSubmatch(s); m != nil {
		code, _ := strconv.Atoi(m[1])
		// Sendmail's usrerr() derives the enhanced code from the reply's first
		// digit: "4.0.0" for 4xx, "5.0.0" for 5xx (err.c). cf/README warns that
		// "ERROR:450 mailbox full" gives "450 5.0.0"; that was true of older
		// versions, and would be wrong (RFC 3463 section 2: the classes agree).
		return AccessResult{Action: ActionError, Code: code, Enhanced: m[1][:1] + ".0.0", Text: textOr(m[2], code)}, nil
	}
	return AccessResult{}, fmt.Errorf("ERROR: needs a 4xx or 5xx reply code: ERROR:\"550 text\" or ERROR:5.7.1:550 text, not %q", s)
}

var dsnRE = regexp.MustCompile(`^[45]\.\d{1,3}\.\d{1,3}$`)

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
	return a.n
}

// lookup tries tag:key then, as Sendmail's "+" lookups do, the untagged key
// (README: "tried first with the corresponding tag in front, then (as fallback
// to enable backward compatibility) without any tag").
func (a *Access) lookup(tag, key string) (AccessResult, bool) {
	if r, ok := a.byTag[tag][key]; ok {
		return r, true
	}
	r, ok := a.byTag[""][key]
	return r, ok
}

// search looks up the keys of one item (a host name and its parents, an
// address and its prefixes, user+detail@domain and its variants) in order: the
// first hit decides. SKIP ends the search of the item with no result, and the
// caller goes on with its next item (proto.m4 rulesets D and A: "found SKIP:
// return <default>"; SearchList goes on after a default).
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

// searchList searches items in turn, as proto.m4's SearchList does: the first
// item with a result decides.
func (a *Access) searchList(tag string, items ...[]string) (AccessResult, bool) {
	if a == nil || a.n == 0 {
		return AccessResult{}, false
	}
	for _, keys := range items {
		if r, ok := a.search(tag, keys); ok {
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
		s := ip.String()
		out := make([]string, 0, 4)
		for {
			out = append(out, s)
			i := strings.LastIndexByte(s, '.')
			if i < 0 {
				return out
			}
			s = s[:i]
		}
	}
	s := "ipv6:" + expandIPv6(ip)
	out := make([]string, 0, 8)
	for {
		out = append(out, s)
		i := strings.LastIndexByte(s, ':')
		if i <= len("ipv6") {
			return out
		}
		s = s[:i]
	}
}

// nameKeys returns the lookup keys of a host name, most specific first: the
// name, then its parents (a.b.example.com, b.example.com, example.com, com).
// An address literal, which is how an unnamed client is known ("[192.0.2.1]"),
// loses its last octet or group instead: [192.0.2.1], [192.0.2], [192.0],
// [192] (proto.m4 ruleset D).
func nameKeys(name string) []string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return nil
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		inner := normaliseLiteral(name[1 : len(name)-1])
		sep := byte('.')
		if strings.HasPrefix(inner, "ipv6:") {
			sep = ':'
		}
		var out []string
		for {
			out = append(out, "["+inner+"]")
			i := strings.LastIndexByte(inner, sep)
			if i <= 0 || sep == ':' && i <= len("ipv6") {
				return out
			}
			inner = inner[:i]
		}
	}
	return parentDomains(name)
}

// literalName is how Sendmail names a client without a (verified) host name:
// its address in brackets, "[192.0.2.1]" or "[IPv6:2001:db8::1]".
func literalName(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		return "[ipv6:" + expandIPv6(ip) + "]"
	}
	return "[" + ip.String() + "]"
}

// LookupConnect finds the entry for a client as check_relay does (proto.m4
// Basic_check_relay): its host name and parents first, then its address and
// prefixes. A client without a verified name is known by its address in
// brackets, which only a "[...]" key matches (README: "using square brackets
// means these are host names, not network numbers").
func (a *Access) LookupConnect(ip netip.Addr, hostname string) (AccessResult, bool) {
	if r, ok := a.LookupConnectName(clientName(ip, hostname)); ok {
		return r, true
	}
	return a.LookupConnectAddr(ip)
}

func clientName(ip netip.Addr, hostname string) string {
	if hostname == "" && ip.IsValid() {
		return literalName(ip)
	}
	return hostname
}

// LookupConnectName finds the Connect: entry for a client host name or its
// parents (proto.m4 ruleset D with the Connect: tag).
func (a *Access) LookupConnectName(name string) (AccessResult, bool) {
	if a == nil || a.n == 0 || name == "" {
		return AccessResult{}, false
	}
	return a.searchList("Connect", nameKeys(name))
}

// LookupConnectAddr finds the Connect: entry for a client address or its
// prefixes (proto.m4 ruleset A with the Connect: tag).
func (a *Access) LookupConnectAddr(ip netip.Addr) (AccessResult, bool) {
	if a == nil || a.n == 0 || !ip.IsValid() {
		return AccessResult{}, false
	}
	return a.searchList("Connect", ipKeys(ip))
}

// fullKeys are the keys of proto.m4's F ruleset (LookUpFull) for
// user+detail@domain: user+detail@domain, user+*@domain, user@domain.
func fullKeys(local, domain string) []string {
	keys := []string{local + "@" + domain}
	if user, _, plus := addr.SplitDetail(local); plus && user != "" {
		keys = append(keys, user+"+*@"+domain, user+"@"+domain)
	}
	return keys
}

// userKeys are the keys of proto.m4's U ruleset (LookUpUser): user+detail@,
// user+*@, user@. The trailing @ marks a local part (README: "you must include
// the @ after the username").
func userKeys(local string) []string {
	keys := []string{local + "@"}
	if user, _, plus := addr.SplitDetail(local); plus && user != "" {
		keys = append(keys, user+"+*@", user+"@")
	}
	return keys
}

// LookupFrom finds the entry for a MAIL FROM address as check_mail does
// (proto.m4 Basic_check_mail: <F:user@domain> <U:user@> <D:domain>): the full
// address (with its +detail variants), then the local part with a trailing @,
// then the domain and its parents. An unqualified sender has only the user@
// item. The null sender has no entry (Sendmail accepts <> before looking).
func (a *Access) LookupFrom(from addr.Address) (AccessResult, bool) {
	if a == nil || a.n == 0 || from.IsZero() {
		return AccessResult{}, false
	}
	local := strings.ToLower(from.Local)
	if from.Domain == "" {
		return a.searchList("From", userKeys(local))
	}
	return a.searchList("From", fullKeys(local, from.Domain), userKeys(local), nameKeys(from.Domain))
}

// LookupTo finds the entry for a RCPT TO address in the same order as
// LookupFrom: user@domain (and +detail variants), user@, the domain and its
// parents.
func (a *Access) LookupTo(to addr.Address) (AccessResult, bool) {
	return a.LookupRcpt(to, true)
}

// LookupRcpt finds the entry that may refuse a recipient, as
// FEATURE(blocklist_recipients) does (proto.m4 Rcpt_ok): the full address, the
// local part with a trailing @ only for a local domain (README: "a recipient of
// badlocaluser in any of the local domains"), then the domain and its parents.
func (a *Access) LookupRcpt(to addr.Address, local bool) (AccessResult, bool) {
	if a == nil || a.n == 0 || to.IsZero() {
		return AccessResult{}, false
	}
	lp := strings.ToLower(to.Local)
	if to.Domain == "" {
		return a.searchList("To", userKeys(lp))
	}
	if local {
		return a.searchList("To", fullKeys(lp, to.Domain), userKeys(lp), nameKeys(to.Domain))
	}
	return a.searchList("To", fullKeys(lp, to.Domain), nameKeys(to.Domain))
}

// LookupToDomain finds the To: entry for a recipient domain and its parents
// only: the relay check of proto.m4 Rcpt_ok ("To:user@domain" counts for
// relaying only with the relaytofulladdress option, which posthorn does not
// have). An address literal loses octets as a host name loses labels.
func (a *Access) LookupToDomain(domain string) (AccessResult, bool) {
	if a == nil || a.n == 0 {
		return AccessResult{}, false
	}
	return a.searchList("To", nameKeys(domain))
}
