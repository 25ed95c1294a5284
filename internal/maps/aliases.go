package maps

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Aliases is a parsed aliases file (aliases(5)).
type Aliases struct {
	entries map[string][]string // lower-case name -> targets
	// Sendmail's statistics (newaliases): entries read, lhs+rhs bytes of
	// every entry, the longest rhs.
	count, total, longest int
}

// ParseAliases reads an aliases file: "name: target, target, ..." entries;
// a line that starts with a space or tab continues the previous one, as does a
// line ending in a backslash; lines starting with '#' and blank lines are
// skipped. Names are case-insensitive. A name without targets is an error, as
// in Sendmail ("missing value for alias").
func ParseAliases(file string, r io.Reader) (*Aliases, error) {
	a := &Aliases{entries: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLength)

	var (
		cur     strings.Builder // the entry being gathered
		curLine int             // where it started
		backsl  bool            // the previous line ended in a backslash
	)
	flush := func() error {
		if curLine == 0 {
			return nil
		}
		err := a.addEntry(file, curLine, cur.String())
		cur.Reset()
		curLine = 0
		return err
	}
	n := 1
	for ; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		cont := backsl || line != "" && (line[0] == ' ' || line[0] == '\t')
		backsl = strings.HasSuffix(line, "\\")
		if backsl {
			line = line[:len(line)-1]
		}
		if cont && curLine != 0 {
			if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") && !backsl {
				continue
			}
			if cur.Len()+len(line) > maxLineLength {
				return nil, &ParseError{file, curLine, "entry too long"}
			}
			cur.WriteString(line)
			continue
		}
		if strings.TrimSpace(line) == "" || line[0] == '#' {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if cont {
			return nil, &ParseError{file, n, "continuation line without an entry before it"}
		}
		if err := flush(); err != nil {
			return nil, err
		}
		if len(a.entries) >= maxEntries {
			return nil, &ParseError{file, n, "too many entries"}
		}
		cur.WriteString(line)
		curLine = n
	}
	if err := sc.Err(); err != nil {
		return nil, scanError(file, n, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Aliases) addEntry(file string, n int, text string) error {
	name, rhs, ok := cutAliasName(text)
	if !ok {
		return &ParseError{file, n, fmt.Sprintf("%q: expected \"name: target, ...\"", truncate(text, 40))}
	}
	// Sendmail skips the whitespace after the colon; the rest, continuation
	// lines with their leading whitespace included, is the right-hand side.
	rhs = strings.TrimLeft(rhs, " \t")
	targets := splitTargets(rhs)
	if len(targets) == 0 {
		return &ParseError{file, n, fmt.Sprintf("missing value for alias %q", name)}
	}
	// newaliases statistics, as sendmail's readaliases() counts them: every
	// entry (a repeated name too: the later one replaces the earlier), the
	// bytes of its name and of its right-hand side.
	a.count++
	a.total += len(name) + len(rhs)
	a.longest = max(a.longest, len(rhs))
	a.entries[strings.ToLower(name)] = targets
	return nil
}

// cutAliasName splits "name: rest"; the name may be quoted.
func cutAliasName(text string) (name, rest string, ok bool) {
	text = strings.TrimLeft(text, " \t")
	if strings.HasPrefix(text, `"`) {
		end := strings.IndexByte(text[1:], '"')
		if end < 0 {
			return "", "", false
		}
		name, rest = text[1:end+1], strings.TrimLeft(text[end+2:], " \t")
		if !strings.HasPrefix(rest, ":") {
			return "", "", false
		}
		return name, rest[1:], name != ""
	}
	name, rest, ok = strings.Cut(text, ":")
	name = strings.TrimRight(name, " \t")
	if !ok || name == "" || strings.ContainsAny(name, " \t,") {
		return "", "", false
	}
	return name, rest, true
}

// splitTargets splits a right-hand side at commas outside double quotes, and
// removes the quotes around a target ("|/usr/bin/program -a, b").
func splitTargets(rhs string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	emit := func() {
		t := strings.TrimSpace(cur.String())
		cur.Reset()
		if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
			t = t[1 : len(t)-1]
		}
		if t != "" {
			out = append(out, t)
		}
	}
	for i := 0; i < len(rhs); i++ {
		c := rhs[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			cur.WriteByte(c)
		case c == '\\' && inQuote && i+1 < len(rhs):
			i++
			cur.WriteByte(rhs[i])
		case c == ',' && !inQuote:
			emit()
		default:
			cur.WriteByte(c)
		}
	}
	emit()
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Lookup returns the targets of a local name. With "+detail" it tries
// user+detail, then user+*, then user (cf/README: the default without
// FEATURE(preserve_local_plus_detail)).
func (a *Aliases) Lookup(name string) ([]string, bool) {
	if a == nil {
		return nil, false
	}
	name = strings.ToLower(name)
	if t, ok := a.entries[name]; ok {
		return t, true
	}
	if i := strings.IndexByte(name, '+'); i >= 0 {
		if t, ok := a.entries[name[:i]+"+*"]; ok {
			return t, true
		}
		if t, ok := a.entries[name[:i]]; ok {
			return t, true
		}
	}
	return nil, false
}

// Stats returns what `sendmail -bi` (newaliases) prints, "N aliases, longest
// L bytes, T bytes total", counted as sendmail's readaliases() (alias.c) counts:
// N is the entries read (a name given twice counts twice), L the longest
// right-hand side and T the sum of the lengths of every name and right-hand
// side. The right-hand side is the text after the colon and its blanks, with
// continuation lines joined (the newlines dropped, their leading blanks kept).
func (a *Aliases) Stats() (count, longest, total int) {
	if a == nil {
		return 0, 0, 0
	}
	return a.count, a.longest, a.total
}

// Len is the number of aliases.
func (a *Aliases) Len() int {
	if a == nil {
		return 0
	}
	return len(a.entries)
}

// Names returns every alias name, lower-case.
func (a *Aliases) Names() []string {
	if a == nil {
		return nil
	}
	out := make([]string, 0, len(a.entries))
	for k := range a.entries {
		out = append(out, k)
	}
	return out
}
