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

// Sendmail's error mailer names (sysexits.h) and the replies they give.
var sysexits = map[string]struct {
	code     int
	enhanced string
}{
	"usage":       {550, "5.5.4"}, // EX_USAGE 64
	"dataerr":     {550, "5.6.0"}, // EX_DATAERR 65
	"noinput":     {550, "5.3.0"}, // EX_NOINPUT 66
	"nouser":      {550, "5.1.1"}, // EX_NOUSER 67
	"nohost":      {550, "5.1.2"}, // EX_NOHOST 68
	"unavailable": {550, "5.0.0"}, // EX_UNAVAILABLE 69
	"software":    {554, "5.3.0"}, // EX_SOFTWARE 70
	"oserr":       {451, "4.0.0"}, // EX_OSERR 71
	"osfile":      {550, "5.3.0"}, // EX_OSFILE 72
	"cantcreat":   {550, "5.0.0"}, // EX_CANTCREAT 73
	"ioerr":       {451, "4.0.0"}, // EX_IOERR 74
	"tempfail":    {451, "4.0.0"}, // EX_TEMPFAIL 75
	"protocol":    {554, "5.5.0"}, // EX_PROTOCOL 76
	"noperm":      {550, "5.7.1"}, // EX_NOPERM 77
	"config":      {554, "5.3.5"}, // EX_CONFIG 78
}

var sysexitNames = map[int]string{
	64: "usage", 65: "dataerr", 66: "noinput", 67: "nouser", 68: "nohost", 69: "unavailable",
	70: "software", 71: "oserr", 72: "osfile", 73: "cantcreat", 74: "ioerr", 75: "tempfail",
	76: "protocol", 77: "noperm", 78: "config",
}

var (
	dsnCodeRE = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3}):([245]\d\d)(?:\s+(.*))?$`)
	codeRE    = regexp.MustCompile(`^([245]\d\d)(?:\s+(.*))?$`)
)

// ParseErrorTarget reads an "error:" right-hand side of virtusertable or aliases
// (cf/README, FEATURE(virtusertable)):
//
//	error:nouser No such user here       (a sysexits name: 550 5.1.1)
//	error:nouser 550 text                (the name, then the reply code)
//	error:5.7.0:550 text                 (enhanced code and reply code)
//	error:550 text
//
// The text comes back to the client word for word.
func ParseErrorTarget(rhs string) (*Rejection, bool) {
	if len(rhs) < 6 || !strings.EqualFold(rhs[:6], "error:") {
		return nil, false
	}
	v := strings.TrimSpace(rhs[6:])
	if m := dsnCodeRE.FindStringSubmatch(v); m != nil {
		code, _ := strconv.Atoi(m[2])
		enh := m[1]
		if enh[0] != m[2][0] {
			enh = m[2][:1] + enh[1:] // RFC 3463: the classes agree
		}
		return &Rejection{code, enh, textOr(m[3])}, true
	}
	if m := codeRE.FindStringSubmatch(v); m != nil {
		code, _ := strconv.Atoi(m[1])
		return &Rejection{code, m[1][:1] + ".0.0", textOr(m[2])}, true
	}
	name, text, _ := strings.Cut(v, " ")
	if se, ok := sysexits[strings.ToLower(name)]; ok {
		text = strings.TrimSpace(text)
		code, enh := se.code, se.enhanced
		if m := codeRE.FindStringSubmatch(text); m != nil {
			code, _ = strconv.Atoi(m[1])
			text = m[2]
			if enh[0] != m[1][0] {
				enh = m[1][:1] + enh[1:]
			}
		}
		return &Rejection{code, enh, textOr(text)}, true
	}
	return &Rejection{550, "5.0.0", textOr(v)}, true
}

func textOr(t string) string {
	if t = strings.TrimSpace(t); t != "" {
		return t
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
	line := firstLine(out.String())
	if ctx.Err() != nil {
		return &Rejection{451, "4.4.7", "Program timed out: " + truncate(command, 60)}
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return &Rejection{451, "4.3.0", fmt.Sprintf("Cannot run program: %v", err)}
	}
	status := ee.ExitCode()
	name := sysexitNames[status]
	se, ok := sysexits[name]
	if !ok {
		se = sysexits["unavailable"]
	}
	if line == "" {
		line = fmt.Sprintf("Program exited with status %d", status)
		if name != "" {
			line += " (EX_" + strings.ToUpper(name) + ")"
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
