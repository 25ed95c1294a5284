package pop3d

import (
	"errors"
	"strconv"
	"strings"
)

// Line limits. RFC 2449 section 4: a command line is at most 255 octets,
// CRLF included, and its keyword and each argument at most 40. A SASL
// response (RFC 5034 section 4) is not a command and is not bound by that:
// SCRAM messages and PLAIN with a long password may be longer.
const (
	maxCommandLine  = 255
	maxArgLen       = 40
	maxResponseLine = 8192
	// maxDiscard is how much of an over-long line is read and thrown away
	// before the connection is closed instead.
	maxDiscard = 64 << 10
)

var (
	errEmpty      = errors.New("empty command")
	errKeyword    = errors.New("a command is a keyword of 3 or 4 letters")
	errControl    = errors.New("control characters in the command")
	errArgTooLong = errors.New("argument longer than 40 octets")
	errArgs       = errors.New("wrong number of arguments")
	errNumber     = errors.New("not a valid number")
)

// command is a parsed command line.
type command struct {
	keyword string // upper case
	// rest is everything after the single space that follows the keyword,
	// as sent: PASS takes it whole, since a password may hold spaces (RFC
	// 1939 section 7).
	rest string
}

// parseCommand splits a command line (without its CRLF) into the keyword and
// the rest. Keywords are case-insensitive (RFC 1939 section 3).
func parseCommand(line string) (command, error) {
	if line == "" {
		return command{}, errEmpty
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c == 0x7f {
			return command{}, errControl
		}
	}
	kw, rest, _ := strings.Cut(line, " ")
	if len(kw) < 3 || len(kw) > 4 {
		return command{}, errKeyword
	}
	for i := 0; i < len(kw); i++ {
		if c := kw[i] | 0x20; c < 'a' || c > 'z' {
			return command{}, errKeyword
		}
	}
	return command{keyword: strings.ToUpper(kw), rest: rest}, nil
}

// args splits the arguments of a command other than PASS: separated by
// spaces, at most 40 octets each. Between min and max of them are accepted.
func (c command) args(min, max int) ([]string, error) {
	f := strings.Fields(c.rest)
	if len(f) < min || len(f) > max {
		return nil, errArgs
	}
	for _, a := range f {
		if len(a) > maxArgLen {
			return nil, errArgTooLong
		}
	}
	return f, nil
}

// parseNumber reads a message number or a line count: decimal digits only
// (no sign, no spaces), below 2^31. A message number must be at least 1;
// TOP's line count may be 0.
func parseNumber(s string, allowZero bool) (int, error) {
	if s == "" || len(s) > 10 {
		return 0, errNumber
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errNumber
		}
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || n == 0 && !allowZero {
		return 0, errNumber
	}
	return int(n), nil
}
