// Package maildrop is where local programs leave mail for the server: the
// `posthorn sendmail` command writes each message, with its envelope, as one
// file in a drop directory, and the running server picks the files up (Pickup)
// and delivers them. It plays the part of Postfix's maildrop queue and pickup
// daemon: a message is safe on disk once sendmail exits 0, whether or not the
// server is running.
//
// The drop directory has mode 01733: anyone may create files in it, no one but
// its owner (the server's user) may list it, and the sticky bit stops users
// from removing or renaming each other's files. Every user can therefore drop
// files, and a file's owner is the user who wrote it; the pickup trusts that
// owner, from stat, over the uid the file claims.
//
// # File format
//
// A drop file is a small text block, the envelope, then the message:
//
//	posthorn-maildrop 1\n
//	uid 1000\n
//	user pp\n                  (optional: the writer's login name)
//	from <pp@mx.example.org>\n (exactly one; "from <>" is the null sender)
//	rcpt <a@example.org>\n     (one or more)
//	\n
//	the message, CRLF line ends, to the end of the file
//
// The first line names the version; a file of another version, an unknown
// key, a value with control characters or an envelope over MaxEnvelope bytes
// is refused as a whole. Files are written under a name starting with "tmp."
// (the pickup never reads those), fsynced, and renamed to their final name,
// which is the ID: 10 hex digits of the time in seconds, then 20 hex digits
// from crypto/rand, so that names sort by age and cannot be guessed.
package maildrop

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
)

// Dir returns the drop directory for a data_dir: filepath.Join(dataDir, "maildrop").
func Dir(dataDir string) string { return filepath.Join(dataDir, "maildrop") }

// DirMode is the drop directory's mode: sticky, writable and searchable by
// all, readable (listable) by its owner only.
const DirMode = os.ModeDir | os.ModeSticky | 0o733

// FileMode is the mode of drop files: the server, running as another user,
// must be able to read them.
const FileMode fs.FileMode = 0o644

// MaxEnvelope bounds the envelope block of a drop file, in bytes.
const MaxEnvelope = 1 << 20

// Names: the magic first line, and the prefix of files still being written.
const (
	magic     = "posthorn-maildrop"
	version   = 1
	tmpPrefix = "tmp."
)

// Prepare creates dir with mode 01733 (anyone may drop, no one else may list),
// as the server does at start, or sets that mode on an existing directory. It
// must run as the user the pickup runs as: only the directory's owner may
// remove other users' files from a sticky directory. The parent directory
// must be searchable by the users who run sendmail.
func Prepare(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("maildrop: %w", err)
	}
	// Lstat: a symbolic link planted in place of the directory is refused,
	// not followed.
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("maildrop: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("maildrop: %s is not a directory", dir)
	}
	// Mkdir's mode is cut by the umask; Chmod's is not.
	if st.Mode() != DirMode {
		if err := os.Chmod(dir, DirMode); err != nil {
			return fmt.Errorf("maildrop: %w", err)
		}
	}
	return nil
}

// Envelope is what SMTP's MAIL FROM and RCPT TO would carry, plus who
// submitted the message.
type Envelope struct {
	From       string   // envelope sender ("" with Null)
	Null       bool     // the null reverse-path <>
	Recipients []string // already expanded (-t done by the command)
	// User is the login name of the submitting user (from the uid), recorded
	// for the Received: field. The pickup sets it from the file's owner.
	User string
	// UID is the submitting user's uid. Write ignores it and records the real
	// uid of the writing process; the pickup sets it from the file's owner.
	UID int
}

// Write stores env and the message bytes durably in dir and returns the file's
// ID. When it returns nil the message is on disk: the file and its directory
// entry are fsynced. An error reading msg is returned wrapped (errors.Is sees
// it); on any error nothing is left in dir.
func Write(dir string, env *Envelope, msg io.Reader) (string, error) {
	head, err := marshalEnvelope(env, os.Getuid())
	if err != nil {
		return "", err
	}
	id := newID(time.Now())
	tmp := filepath.Join(dir, tmpPrefix+id)
	// O_EXCL and O_NOFOLLOW: nothing another user planted under this name (it
	// is unguessable anyway) is opened or followed.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, FileMode)
	if err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The umask may have taken the read bits the server needs.
	if err := f.Chmod(FileMode); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	if _, err := w.Write(head); err != nil {
		return "", fmt.Errorf("maildrop: writing %s: %w", tmp, err)
	}
	src := &readErr{r: msg}
	if _, err := io.Copy(w, src); err != nil {
		if src.err != nil {
			return "", fmt.Errorf("maildrop: reading the message: %w", src.err)
		}
		return "", fmt.Errorf("maildrop: writing %s: %w", tmp, err)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("maildrop: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("maildrop: fsync %s: %w", tmp, err)
	}
	final := filepath.Join(dir, id)
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	// From here the file is in place; only its durability is at stake.
	if err := syncEntry(dir, f); err != nil {
		os.Remove(final)
		return "", err
	}
	done = true
	if err := f.Close(); err != nil {
		os.Remove(final)
		return "", fmt.Errorf("maildrop: %w", err)
	}
	return id, nil
}

// syncEntry makes the rename into dir durable. The directory's owner (the
// server, root) can open it and fsync it. Other users cannot: 01733 gives them
// no read permission, and Linux allows fsync only on a descriptor opened for
// reading or writing. For them, the file is fsynced again after the rename:
// the rename changed the file's inode (its ctime), so on the journalling file
// systems (ext4, XFS, btrfs) that fsync commits the journal transaction that
// holds the rename too. It is the best a writer that may not read the
// directory can do.
func syncEntry(dir string, f *os.File) error {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("maildrop: fsync %s: %w", dir, err)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("maildrop: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("maildrop: fsync %s: %w", f.Name(), err)
	}
	return nil
}

// readErr remembers an error of the reader, to tell it from one of the writer.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// newID returns a file name that sorts by creation time and cannot be guessed.
func newID(now time.Time) string {
	var b [15]byte
	s := uint64(now.Unix())
	for i := 4; i >= 0; i-- {
		b[i] = byte(s)
		s >>= 8
	}
	rand.Read(b[5:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// marshalEnvelope writes the envelope block for uid (see the package comment).
func marshalEnvelope(env *Envelope, uid int) ([]byte, error) {
	if env == nil {
		return nil, errors.New("maildrop: no envelope")
	}
	if env.Null && env.From != "" {
		return nil, errors.New("maildrop: a null sender has no address")
	}
	if !env.Null {
		if err := checkAddress(env.From); err != nil {
			return nil, fmt.Errorf("maildrop: sender %q: %w", env.From, err)
		}
	}
	if len(env.Recipients) == 0 {
		return nil, errors.New("maildrop: no recipients")
	}
	for _, r := range env.Recipients {
		if err := checkAddress(r); err != nil {
			return nil, fmt.Errorf("maildrop: recipient %q: %w", r, err)
		}
	}
	if err := checkValue(env.User); err != nil {
		return nil, fmt.Errorf("maildrop: user name %q: %w", env.User, err)
	}
	if uid < 0 {
		return nil, fmt.Errorf("maildrop: uid %d", uid)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d\nuid %d\n", magic, version, uid)
	if env.User != "" {
		fmt.Fprintf(&b, "user %s\n", env.User)
	}
	fmt.Fprintf(&b, "from <%s>\n", env.From)
	for _, r := range env.Recipients {
		fmt.Fprintf(&b, "rcpt <%s>\n", r)
	}
	b.WriteByte('\n')
	if b.Len() > MaxEnvelope {
		return nil, fmt.Errorf("maildrop: envelope of %d bytes is over the limit of %d", b.Len(), MaxEnvelope)
	}
	return b.Bytes(), nil
}

// checkAddress accepts what an SMTP path may hold, with a domain.
func checkAddress(s string) error {
	if _, err := addr.ParsePath(s, true); err != nil {
		return err
	}
	return checkValue(s)
}

// checkValue refuses what would break the line format: control characters
// (ParsePath allows none either), and over-long values.
func checkValue(s string) error {
	if len(s) > 1024 {
		return errors.New("too long")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}

// errFormat marks a drop file that is not in the format.
var errFormat = errors.New("maildrop: not a drop file")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errFormat, fmt.Sprintf(format, args...))
}

// readEnvelope reads the envelope block from r, leaving r at the message.
// Files come from any local user: it returns an error for anything not in the
// format, and never reads more than MaxEnvelope bytes doing so.
func readEnvelope(r *bufio.Reader) (*Envelope, error) {
	env := &Envelope{UID: -1}
	read := 0
	haveFrom := false
	for n := 0; ; n++ {
		line, err := readLine(r, MaxEnvelope-read)
		if err != nil {
			return nil, err
		}
		read += len(line) + 1
		if n == 0 {
			if line != magic+" "+strconv.Itoa(version) {
				if strings.HasPrefix(line, magic+" ") {
					return nil, formatErr("version %q is not %d", strings.TrimPrefix(line, magic+" "), version)
				}
				return nil, formatErr("no %q line", magic)
			}
			continue
		}
		if line == "" {
			break
		}
		key, val, ok := strings.Cut(line, " ")
		if !ok {
			return nil, formatErr("line %d: no value", n+1)
		}
		if err := checkValue(val); err != nil {
			return nil, formatErr("line %d: %v", n+1, err)
		}
		switch key {
		case "uid":
			if env.UID >= 0 {
				return nil, formatErr("line %d: a second uid", n+1)
			}
			uid, err := strconv.Atoi(val)
			if err != nil || uid < 0 || val != strconv.Itoa(uid) {
				return nil, formatErr("line %d: uid %q", n+1, val)
			}
			env.UID = uid
		case "user":
			if env.User != "" || val == "" {
				return nil, formatErr("line %d: a second or empty user", n+1)
			}
			env.User = val
		case "from":
			if haveFrom {
				return nil, formatErr("line %d: a second sender", n+1)
			}
			a, err := bracketed(val)
			if err != nil {
				return nil, formatErr("line %d: %v", n+1, err)
			}
			if a == "" {
				env.Null = true
			} else if err := checkAddress(a); err != nil {
				return nil, formatErr("line %d: sender: %v", n+1, err)
			}
			env.From, haveFrom = a, true
		case "rcpt":
			a, err := bracketed(val)
			if err == nil {
				err = checkAddress(a)
			}
			if err != nil {
				return nil, formatErr("line %d: recipient: %v", n+1, err)
			}
			env.Recipients = append(env.Recipients, a)
		default:
			return nil, formatErr("line %d: unknown key %q", n+1, key)
		}
	}
	switch {
	case env.UID < 0:
		return nil, formatErr("no uid")
	case !haveFrom:
		return nil, formatErr("no sender")
	case len(env.Recipients) == 0:
		return nil, formatErr("no recipients")
	}
	return env, nil
}

// readLine reads one "\n"-terminated line of at most limit bytes and returns
// it without the "\n". The end of the file before "\n" is an error: a
// truncated envelope.
func readLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(b)+len(frag) > limit {
			return "", formatErr("envelope over %d bytes", MaxEnvelope)
		}
		b = append(b, frag...)
		switch {
		case err == nil:
			return string(b[:len(b)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return "", formatErr("envelope cut short")
		default:
			return "", err
		}
	}
}

// bracketed returns what stands between < and >.
func bracketed(s string) (string, error) {
	if len(s) < 2 || s[0] != '<' || s[len(s)-1] != '>' {
		return "", fmt.Errorf("%q is not in angle brackets", s)
	}
	return s[1 : len(s)-1], nil
}
