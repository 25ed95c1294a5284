package mailimport

// Maildir (https://cr.yp.to/proto/maildir.html): one file per message in
// cur/ (seen by a mail reader, flags in the ":2," suffix of the name) or new/
// (not yet seen); Maildir++ subfolders are directories ".A.B" beside them
// (mailbox "A/B"), and plain nested Maildirs "A/B/cur" are taken as well.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// MaildirFolder is one folder of a Maildir tree and the mailbox it becomes.
type MaildirFolder struct {
	Mailbox string // "INBOX", "A/B"
	Path    string
}

func isMaildir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "cur"))
	return err == nil && st.IsDir()
}

// MaildirFolders lists the folders of the Maildir tree at root: root itself
// (INBOX) and its subfolders, sorted by mailbox name.
func MaildirFolders(root string) ([]MaildirFolder, error) {
	if !isMaildir(root) {
		return nil, fmt.Errorf("%s is not a Maildir (no cur/ in it)", root)
	}
	out := []MaildirFolder{{store.Inbox, root}}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() || path == root {
			return nil
		}
		base := d.Name()
		if base == "cur" || base == "new" || base == "tmp" {
			return filepath.SkipDir
		}
		if !isMaildir(path) {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		var name string
		if strings.HasPrefix(base, ".") && !strings.Contains(rel, string(filepath.Separator)) {
			name = strings.ReplaceAll(strings.TrimPrefix(base, "."), ".", "/") // Maildir++
		} else {
			name = filepath.ToSlash(rel)
		}
		if name != "" && !strings.EqualFold(name, store.Inbox) {
			out = append(out, MaildirFolder{name, path})
		}
		return nil
	})
	sort.Slice(out[1:], func(i, j int) bool { return out[1+i].Mailbox < out[1+j].Mailbox })
	return out, err
}

// maildirFlags maps the info letters (the ":2," suffix) to flags; P
// (passed: forwarded) becomes the $Forwarded keyword.
var maildirFlags = []struct {
	letter byte
	flag   string
}{
	{'D', store.FlagDraft},
	{'F', store.FlagFlagged},
	{'P', "$Forwarded"},
	{'R', store.FlagAnswered},
	{'S', store.FlagSeen},
	{'T', store.FlagDeleted},
}

// flagsOfName reads the flags in a Maildir file name.
func flagsOfName(name string) []string {
	_, info, ok := strings.Cut(name, ":2,")
	if !ok {
		return nil
	}
	var f []string
	for _, m := range maildirFlags {
		if strings.IndexByte(info, m.letter) >= 0 {
			f = append(f, m.flag)
		}
	}
	return f
}

// ReadMaildirFolder calls each for every message of one folder (new/ then
// cur/, each sorted by date then name), with CRLF line ends and the file's
// modification time as date.
func ReadMaildirFolder(path string, each func(*Message) error) error {
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(path, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		type file struct {
			name string
			mod  time.Time
		}
		var files []file
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			files = append(files, file{e.Name(), info.ModTime()})
		}
		sort.Slice(files, func(i, j int) bool {
			if !files[i].mod.Equal(files[j].mod) {
				return files[i].mod.Before(files[j].mod)
			}
			return files[i].name < files[j].name
		})
		for _, f := range files {
			raw, err := os.ReadFile(filepath.Join(path, sub, f.name))
			if err != nil {
				return err
			}
			m := &Message{Data: toCRLF(raw), Date: f.mod}
			if sub == "cur" {
				m.Flags = flagsOfName(f.name)
			}
			if err := each(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// toCRLF gives every line a CRLF end.
func toCRLF(raw []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(raw) + len(raw)/30)
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			writeCRLF(&b, raw)
			break
		}
		writeCRLF(&b, raw[:i+1])
		raw = raw[i+1:]
	}
	return b.Bytes()
}

// fromCRLF turns CRLF line ends into LF, as files on Unix have them.
func fromCRLF(data []byte) []byte {
	return bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
}

// MaildirFolderPath is where ExportMaildir puts a mailbox: root for INBOX,
// root/.A.B for "A/B" (Maildir++).
func MaildirFolderPath(root, mailbox string) string {
	if strings.EqualFold(mailbox, store.Inbox) {
		return root
	}
	parts := strings.Split(mailbox, "/")
	for i, p := range parts {
		parts[i] = safeLevel(p)
	}
	return filepath.Join(root, "."+strings.Join(parts, "."))
}

// safeLevel keeps a level of a mailbox name from naming a directory of its
// own when it becomes part of a path: "." and ".." (which the store no
// longer takes, but older stores may hold) are written %2E and %2E%2E, and
// path separators are never in a level.
func safeLevel(l string) string {
	switch l {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return strings.ReplaceAll(l, string(filepath.Separator), "%2F")
}

var maildirSeq atomic.Int64

// WriteMaildirMessage writes one message into the folder at dir (made with
// cur/, new/ and tmp/ when missing): written in tmp/, synced, then renamed
// into cur/ with its flags, its modification time set to date.
func WriteMaildirMessage(dir string, data []byte, flags []string, date time.Time) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	name := fmt.Sprintf("%d.P%dQ%d.%s", date.Unix(), os.Getpid(), maildirSeq.Add(1), host)
	info := &store.MessageInfo{Flags: flags}
	var letters []byte
	for _, m := range maildirFlags {
		if info.HasFlag(m.flag) {
			letters = append(letters, m.letter)
		}
	}
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(fromCRLF(data)); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if !date.IsZero() {
		os.Chtimes(tmp, date, date)
	}
	return os.Rename(tmp, filepath.Join(dir, "cur", name+":2,"+string(letters)))
}
