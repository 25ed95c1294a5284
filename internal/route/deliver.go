package route

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysexit is the reply Sendmail gives for an exit status of sysexits.h
// (sendmail/sysexits.c, SysExMsg).
type sysexit struct {
	name     string
	code     int
	enhanced string
	text     string
}

var sysexitsByStatus = map[int]sysexit{
	64: {"usage", 500, "5.0.0", "Bad usage"},
	65: {"dataerr", 501, "5.6.0", "Data format error"},
	66: {"noinput", 550, "5.3.0", "Cannot open input"},
	67: {"nouser", 550, "5.1.1", "User unknown"},
	68: {"nohost", 550, "5.1.2", "Host unknown"},
	69: {"unavailable", 554, "5.0.0", "Service unavailable"},
	70: {"software", 554, "5.3.0", "Internal error"},
	71: {"oserr", 451, "4.0.0", "Operating system error"},
	72: {"osfile", 554, "5.3.5", "System file missing"},
	73: {"cantcreat", 550, "5.0.0", "Can't create output"},
	74: {"ioerr", 451, "4.0.0", "I/O error"},
	75: {"tempfail", 450, "4.0.0", "Deferred"},
	76: {"protocol", 554, "5.5.0", "Remote protocol error"},
	77: {"noperm", 550, "5.0.0", "Insufficient permission"},
	78: {"config", 554, "5.3.5", "Local configuration error"},
}

// errorNames are the names an "error:" right-hand side may give (parseaddr.c,
// ErrorCodes); any other name means EX_UNAVAILABLE, as there.
var errorNames = map[string]int{
	"usage": 64, "nouser": 67, "nohost": 68, "unavailable": 69,
	"software": 70, "tempfail": 75, "protocol": 76, "config": 78,
}

var (
	dsnCodeRE   = regexp.MustCompile(`^([45])\.(\d{1,3}\.\d{1,3}):([45]\d\d)(?:\s+(.*))?$`)
	codeRE      = regexp.MustCompile(`^([45]\d\d)(?:\s+(.*))?$`)
	leadDSNRE   = regexp.MustCompile(`^([245])\.(\d{1,3}\.\d{1,3})(?:\s+(.*))?$`)
	errorNameRE = regexp.MustCompile(`^[A-Za-z]+$`)
)

// ParseErrorTarget reads an "error:" right-hand side of virtusertable or
// aliases (cf/README FEATURE(virtusertable); proto.m4 "error : $-.$-.$- : $+"
// and "error : $- $+"):
//
//	error:5.7.0:550 text           that enhanced code and reply code
//	error:550 text                 the reply code; the enhanced code x.0.0
//	error:nouser 550 text          a sysexits name, then the reply code
//	error:nouser No such user here a sysexits name alone: its reply
//	                               (nouser: 550 5.1.1), with this text
//
// The names are Sendmail's (usage, nouser, nohost, unavailable, software,
// tempfail, protocol, config); their replies are those of sysexits.c (tempfail:
// 450 4.0.0, unavailable: 554 5.0.0, ...). With a name and a reply code, the
// name's enhanced code is kept when its class agrees with the reply
// (Sendmail would say x.0.0). The text goes back to the client as written.
func ParseErrorTarget(rhs string) (*Rejection, bool) {
	if len(rhs) < 6 || !strings.EqualFold(rhs[:6], "error:") {
		return nil, false
	}
	v := strings.TrimSpace(unquoteText(rhs[6:]))
	if m := dsnCodeRE.FindStringSubmatch(v); m != nil {
		code, _ := strconv.Atoi(m[3])
		// RFC 3463 section 2: the class of the enhanced code is the reply's.
		return &Rejection{code, m[3][:1] + "." + m[2], textOr(unquoteText(m[4]), "")}, true
	}
	if rej, ok := replyWithCode(v, ""); ok {
		return rej, true
	}
	name, rest, _ := strings.Cut(v, " ")
	status, known := errorNames[strings.ToLower(name)]
	if !known {
		// Not one of the names: EX_UNAVAILABLE (parseaddr.c), and all of it is
		// the text.
		status, rest = 69, v
	}
	se := sysexitsByStatus[status]
	rest = strings.TrimSpace(rest)
	if rej, ok := replyWithCode(rest, se.enhanced); ok {
		return rej, true
	}
	return &Rejection{se.code, se.enhanced, textOr(unquoteText(rest), se.text)}, true
}

// replyWithCode reads "### text" or "### D.S.N text". Without an enhanced
// code in the text, it takes enhanced when its class agrees with the reply,
// else x.0.0 (err.c usrerr).
func replyWithCode(s, enhanced string) (*Rejection, bool) {
	m := codeRE.FindStringSubmatch(s)
	if m == nil {
		return nil, false
	}
	code, _ := strconv.Atoi(m[1])
	text := m[2]
	enh := m[1][:1] + ".0.0"
	if enhanced != "" && enhanced[0] == m[1][0] {
		enh = enhanced
	}
	if d := leadDSNRE.FindStringSubmatch(text); d != nil && d[1][0] == m[1][0] {
		enh, text = d[1]+"."+d[2], d[3]
	}
	return &Rejection{code, enh, textOr(unquoteText(text), "")}, true
}

// unquoteText removes one pair of double quotes around a text, which keep its
// spacing in Sendmail's tables.
func unquoteText(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func textOr(t, def string) string {
	if t = strings.TrimSpace(t); t != "" {
		return t
	}
	if def != "" {
		return def
	}
	return "Address rejected"
}

// maxProgramOutput bounds what is kept of a program's output for the reply.
const maxProgramOutput = 4096

// RunProgram pipes a message into a command ("|command" aliases), run by
// /bin/sh with env added to a minimal environment, killed after timeout. Its exit
// status becomes the answer, as Sendmail maps it: 0 delivered; EX_TEMPFAIL,
// EX_OSERR, EX_IOERR and a timeout are temporary (4xx); other failures are
// permanent (5xx). The first line of its output is the reply text.
func RunProgram(ctx context.Context, command string, msg io.Reader, env []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/", "SHELL=/bin/sh"}, env...)
	cmd.Stdin = msg
	out := &limitedBuffer{max: maxProgramOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	ps := cmd.ProcessState
	if ps == nil {
		return &Rejection{451, "4.3.0", fmt.Sprintf("Cannot run program: %v", err)}
	}
	// The shell's own exit decides. A child it left in the background may hold
	// the output open (WaitDelay, or the timeout, then closes it): that is no
	// failure of the delivery.
	if ps.Exited() && ps.ExitCode() == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return &Rejection{451, "4.4.7", "Program timed out: " + truncate(command, 60)}
	}
	line := firstLine(out.String())
	status := ps.ExitCode() // -1 when killed by a signal
	se, ok := sysexitsByStatus[status]
	if !ok {
		// Not a sysexits.h status (a signal, exit 1...): permanent, as
		// Sendmail's "554 5.3.0 unknown mailer error".
		se = sysexit{code: 554, enhanced: "5.3.0", text: "unknown mailer error"}
	}
	if line == "" {
		line = fmt.Sprintf("%s (program exited with status %d)", se.text, status)
		if se.name != "" {
			line = fmt.Sprintf("%s (program exited with EX_%s, %d)", se.text, strings.ToUpper(se.name), status)
		}
	}
	return &Rejection{se.code, se.enhanced, line}
}

type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return l.buf.String() }

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	// Keep the reply one printable line.
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, truncate(s, 200))
}

// AppendFile appends a message to an mbox file ("/path" aliases): the "From "
// line, the message with CRLF made LF and lines that start with ">*From "
// quoted with one more ">" (mboxrd), and a blank line; under an exclusive lock,
// fsynced. A failure is temporary unless the file cannot be opened at all.
func AppendFile(path string, fromLine string, msg io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return &Rejection{550, "5.3.0", fmt.Sprintf("Cannot open %s", path)}
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return &Rejection{451, "4.3.0", fmt.Sprintf("Cannot lock %s", path)}
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	st, err := f.Stat()
	if err != nil {
		return &Rejection{451, "4.3.0", "Cannot stat " + path}
	}
	start := st.Size()
	w := bufio.NewWriter(f)
	w.WriteString(strings.TrimRight(fromLine, "\r\n") + "\n")
	br := bufio.NewReader(msg)
	lastEmpty := false
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
				w.WriteByte('>')
			}
			w.WriteString(line)
			w.WriteByte('\n')
			lastEmpty = line == ""
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Truncate(start)
			return &Rejection{451, "4.3.0", "Reading the message failed"}
		}
	}
	if !lastEmpty {
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Truncate(start) // leave no half-written message behind
		return &Rejection{451, "4.3.0", fmt.Sprintf("Cannot write %s", path)}
	}
	if err := f.Sync(); err != nil {
		f.Truncate(start)
		return &Rejection{451, "4.3.0", fmt.Sprintf("Cannot sync %s", path)}
	}
	return nil
}
