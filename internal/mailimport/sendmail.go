package mailimport

// Reading a Sendmail system for `posthorn import sendmail`: its tables
// (checked with posthorn's own parsers), the settings of its .mc file, and
// its local users with their password hashes.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/posthorn/posthorn/internal/maps"
)

// Problem is a line that could not be carried over.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// parseTable parses a table by its file name with posthorn's parser.
func parseTable(name, file string, data []byte) error {
	r := bytes.NewReader(data)
	var err error
	switch name {
	case maps.FileAccess:
		_, err = maps.ParseAccess(file, r)
	case maps.FileAliases:
		_, err = maps.ParseAliases(file, r)
	case maps.FileLocalHostNames, maps.FileRelayDomains:
		_, err = maps.ParseDomainList(file, r)
	case maps.FileVirtusertable:
		_, err = maps.ParseVirtusertable(file, r)
	case maps.FileMailertable:
		_, err = maps.ParseMailertable(file, r)
	default:
		return fmt.Errorf("%s: not a table posthorn reads", file)
	}
	return err
}

// CheckTable parses a Sendmail table with posthorn's parser and returns a
// text posthorn loads: every line the parser refuses (and the continuation
// lines of an aliases entry it starts) is commented out, with the reason,
// and reported with its line number.
func CheckTable(name, file string, data []byte) ([]byte, []Problem, error) {
	lines := strings.SplitAfter(string(data), "\n")
	var probs []Problem
	for range len(lines) + 1 {
		err := parseTable(name, file, []byte(strings.Join(lines, "")))
		if err == nil {
			return []byte(strings.Join(lines, "")), probs, nil
		}
		var pe *maps.ParseError
		if !errors.As(err, &pe) || pe.Line < 1 || pe.Line > len(lines) {
			return nil, probs, err
		}
		probs = append(probs, Problem{file, pe.Line, pe.Msg})
		i := pe.Line - 1
		lines[i] = "# posthorn import: not carried over (" + oneLine(pe.Msg) + "): " + lines[i]
		if !strings.HasSuffix(lines[i], "\n") {
			lines[i] += "\n"
		}
		// An aliases entry goes on in lines that start with white space.
		for j := i + 1; name == maps.FileAliases && j < len(lines) && len(lines[j]) > 0 && (lines[j][0] == ' ' || lines[j][0] == '\t'); j++ {
			lines[j] = "#" + lines[j]
		}
	}
	return nil, probs, fmt.Errorf("%s: too many errors", file)
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

// MC is what posthorn takes from a Sendmail .mc file.
type MC struct {
	File       string
	SmartHost  string   // posthorn's smart_host form: "[host]:port" or "host"
	MailHub    string   // MAIL_HUB: no posthorn equivalent, reported
	LocalRelay string   // LOCAL_RELAY: likewise
	Listen     []string // DAEMON_OPTIONS of the MTA (port 25)
	Submission []string // DAEMON_OPTIONS of the MSA (port 587)
	Other      []string // DAEMON_OPTIONS not carried over, as written
}

// FindMC picks the .mc file of a Sendmail directory: the one named after
// the host (FreeBSD: /etc/mail/HOSTNAME.mc), else sendmail.mc (Debian),
// else the only one that is not a template or a submit.mc.
func FindMC(dir, hostname string) (string, error) {
	if hostname != "" {
		for _, h := range []string{hostname, strings.SplitN(hostname, ".", 2)[0]} {
			if p := filepath.Join(dir, h+".mc"); exists(p) {
				return p, nil
			}
		}
	}
	if p := filepath.Join(dir, "sendmail.mc"); exists(p) {
		return p, nil
	}
	all, _ := filepath.Glob(filepath.Join(dir, "*.mc"))
	var cands []string
	for _, p := range all {
		b := filepath.Base(p)
		if strings.HasSuffix(b, ".submit.mc") || b == "submit.mc" || b == "freebsd.mc" {
			continue
		}
		cands = append(cands, p)
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	if len(cands) == 0 {
		if p := filepath.Join(dir, "freebsd.mc"); exists(p) {
			return p, nil
		}
		return "", fmt.Errorf("no .mc file in %s", dir)
	}
	return "", fmt.Errorf("several .mc files in %s (%s): name one with --mc", dir, strings.Join(cands, ", "))
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

var (
	mcDefine = regexp.MustCompile("^define\\(\\s*`?([A-Za-z_]+)'?\\s*,\\s*`?([^')]*)'?\\s*\\)")
	mcDaemon = regexp.MustCompile("^DAEMON_OPTIONS\\(\\s*`([^']*)'\\s*\\)")
)

// ParseMC reads SMART_HOST, MAIL_HUB, LOCAL_RELAY and DAEMON_OPTIONS from a
// .mc file (m4: "dnl" starts a comment).
func ParseMC(path string) (*MC, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	mc := &MC{File: path}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "dnl") || strings.HasPrefix(line, "#") {
			continue
		}
		if m := mcDefine.FindStringSubmatch(line); m != nil {
			v := strings.TrimSpace(m[2])
			switch m[1] {
			case "SMART_HOST":
				mc.SmartHost = smartHost(v)
			case "MAIL_HUB":
				mc.MailHub = v
			case "LOCAL_RELAY":
				mc.LocalRelay = v
			}
			continue
		}
		if m := mcDaemon.FindStringSubmatch(line); m != nil {
			addr, kind := daemonAddr(m[1])
			switch kind {
			case "mta":
				mc.Listen = append(mc.Listen, addr)
			case "msa":
				mc.Submission = append(mc.Submission, addr)
			default:
				mc.Other = append(mc.Other, m[1])
			}
		}
	}
	return mc, nil
}

// smartHost turns Sendmail's "mailer:[host]:port" into posthorn's
// smart_host: the mailer (smtp, esmtp, relay, smtp8, dsmtp) is dropped.
func smartHost(v string) string {
	for _, m := range []string{"esmtp:", "smtp:", "smtp8:", "relay:", "dsmtp:"} {
		if strings.HasPrefix(strings.ToLower(v), m) {
			return v[len(m):]
		}
	}
	return v
}

// daemonAddr reads "Port=smtp, Addr=127.0.0.1, Name=MTA, Family=inet6"
// into a listen address and whether it is the MTA or the MSA.
func daemonAddr(opts string) (string, string) {
	kv := map[string]string{}
	for _, p := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	port := kv["port"]
	switch strings.ToLower(port) {
	case "", "smtp":
		port = "25"
	case "submission":
		port = "587"
	case "smtps":
		port = "465"
	}
	addr := kv["addr"]
	inet6 := strings.EqualFold(kv["family"], "inet6")
	if addr == "" {
		addr = "0.0.0.0"
		if inet6 {
			addr = "::"
		}
	}
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	if strings.EqualFold(kv["family"], "local") || strings.ContainsRune(kv["modifiers"], 's') && port != "465" {
		return "", "other"
	}
	kind := "mta"
	if port == "587" || strings.EqualFold(kv["name"], "MSA") {
		kind = "msa"
	}
	if port == "465" {
		return "", "other"
	}
	return addr + ":" + port, kind
}

// User is a local user of the old system.
type User struct {
	Name string
	Home string
	Hash string // from shadow (or passwd's second field), as it is
}

// ParsePasswd reads passwd(5) lines; with shadow (may be nil) the hashes
// come from shadow(5).
func ParsePasswd(passwd, shadow io.Reader) (map[string]*User, error) {
	users := map[string]*User{}
	sc := bufio.NewScanner(passwd)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || f[0] == "" || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], "+") {
			continue
		}
		users[f[0]] = &User{Name: f[0], Home: f[5], Hash: f[1]}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if shadow == nil {
		return users, nil
	}
	sc = bufio.NewScanner(shadow)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 2 {
			continue
		}
		if u := users[f[0]]; u != nil {
			u.Hash = f[1]
		}
	}
	return users, sc.Err()
}

// Recipients returns the local users who receive mail: those named (after
// following aliases) by the aliases and the virtusertable, and those with a
// spool file, that exist in users. Names are sorted.
func Recipients(tables *maps.Tables, spools []string, users map[string]*User) []string {
	set := map[string]bool{}
	var visit func(name string, depth int)
	visit = func(name string, depth int) {
		name = strings.ToLower(strings.TrimSpace(name))
		name = strings.TrimPrefix(name, `\`) // "\user": deliver to the user
		if name == "" || depth > 20 || strings.ContainsAny(name, "|/:\"") {
			return
		}
		if local, domain, ok := strings.Cut(name, "@"); ok {
			if tables == nil || tables.LocalHostNames == nil || !tables.LocalHostNames.Has(domain) {
				return
			}
			name = local
		}
		if tables != nil && tables.Aliases != nil {
			if targets, ok := tables.Aliases.Lookup(name); ok {
				for _, t := range targets {
					if strings.EqualFold(strings.TrimPrefix(t, `\`), name) {
						set[name] = true
						continue
					}
					visit(t, depth+1)
				}
				return
			}
		}
		if users[name] != nil {
			set[name] = true
		}
	}
	if tables != nil && tables.Aliases != nil {
		for _, n := range tables.Aliases.Names() {
			targets, _ := tables.Aliases.Lookup(n)
			for _, t := range targets {
				visit(t, 0)
			}
		}
	}
	if tables != nil && tables.Virtusertable != nil {
		for _, rhs := range tables.Virtusertable.Entries() {
			if strings.HasPrefix(strings.ToLower(rhs), "error:") {
				continue
			}
			visit(rhs, 0)
		}
	}
	for _, s := range spools {
		if users[s] != nil {
			set[s] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
