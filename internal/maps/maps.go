// Package maps reads the classic Sendmail tables — access, aliases,
// local-host-names, virtusertable, relay-domains, mailertable — from their text
// sources, in Sendmail's formats and with Sendmail's lookup rules (see
// shared/conformance/sendmail-semantics.md, written from Sendmail 8.18's
// cf/README, proto.m4 and aliases(5)), and keeps them current: a Watcher
// reloads a table when its file changes, and keeps the previous version of a
// table whose new text has an error.
package maps

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// File names of the tables in maps_dir: Sendmail's own.
const (
	FileAccess         = "access"
	FileAliases        = "aliases"
	FileLocalHostNames = "local-host-names"
	FileVirtusertable  = "virtusertable"
	FileRelayDomains   = "relay-domains"
	FileMailertable    = "mailertable"
)

// Files lists every table file, in the order they are loaded.
var Files = []string{FileAccess, FileAliases, FileLocalHostNames, FileVirtusertable, FileRelayDomains, FileMailertable}

// Bounds on what a table may hold, so that a runaway file cannot exhaust memory.
const (
	maxLineLength = 64 * 1024
	maxEntries    = 1_000_000
)

// ParseError is a problem on one line of a table.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// scanError reports a line that could not be read (longer than
// maxLineLength) with the file and line, like a syntax error.
func scanError(file string, n int, err error) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return &ParseError{file, n, fmt.Sprintf("line longer than %d bytes", maxLineLength)}
	}
	return fmt.Errorf("%s:%d: %w", file, n, err)
}

// entryLine is one "key value" line of a makemap-style table.
type entryLine struct {
	n          int
	key, value string
}

// readEntries reads a makemap-style text table: one "key value" per line,
// separated by whitespace; lines that start with '#' and blank lines are
// skipped, as makemap(8) does. A key without a value is an error.
func readEntries(file string, r io.Reader, needValue bool) ([]entryLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLength)
	var out []entryLine
	n := 1
	for ; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		key, value, _ := strings.Cut(trimmed, " ")
		if k2, v2, ok := strings.Cut(trimmed, "\t"); ok && len(k2) < len(key) {
			key, value = k2, v2
		}
		value = strings.TrimLeft(value, " \t")
		if needValue && value == "" {
			return nil, &ParseError{file, n, fmt.Sprintf("%q has no value", key)}
		}
		if len(out) >= maxEntries {
			return nil, &ParseError{file, n, "too many entries"}
		}
		out = append(out, entryLine{n, key, value})
	}
	if err := sc.Err(); err != nil {
		return nil, scanError(file, n, err)
	}
	return out, nil
}

// parentDomains returns d and each of its parents, most specific first:
// a.b.example -> [a.b.example b.example example].
func parentDomains(d string) []string {
	if d == "" || strings.HasPrefix(d, "[") {
		return []string{d}
	}
	out := []string{d}
	for {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return out
		}
		d = d[i+1:]
		if d != "" {
			out = append(out, d)
		}
	}
}
