package webmail

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/posthorn/posthorn/internal/msg"
)

// maxImageSenders bounds the senders one account allows images from.
const maxImageSenders = 1000

// imageSenders remembers, per account, the senders whose mail shows remote
// images without asking: one small JSON file per account in
// Config.StateDir ("images-<account>.json", a sorted list of lower-case
// addresses), written atomically at each change; in memory only when there
// is no state dir. The sender is the From: address, which anyone can
// write: allowing a sender trusts that address, as every mail program's
// "always show images from" does — the images still load in the
// script-less sandboxed frame.
type imageSenders struct {
	dir string
	log *slog.Logger
	mu  sync.Mutex
	m   map[string]map[string]bool // account -> senders; loaded on first use
}

func newImageSenders(dir string, log *slog.Logger) *imageSenders {
	return &imageSenders{dir: dir, log: log, m: map[string]map[string]bool{}}
}

var plainAccountRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,63}$`)

// file is the account's file; a name that is not plain is hex-encoded, so
// that no account name reaches outside the directory.
func (is *imageSenders) file(account string) string {
	name := account
	if !plainAccountRE.MatchString(account) {
		name = "x" + hex.EncodeToString([]byte(account))
	}
	return filepath.Join(is.dir, "images-"+name+".json")
}

// loadLocked returns the account's set, read from its file the first time.
func (is *imageSenders) loadLocked(account string) map[string]bool {
	if set := is.m[account]; set != nil {
		return set
	}
	set := map[string]bool{}
	if is.dir != "" {
		data, err := os.ReadFile(is.file(account))
		var list []string
		switch {
		case err == nil:
			if err := json.Unmarshal(data, &list); err != nil {
				is.log.Warn("webmail: image senders unreadable; starting again", "account", account, "err", err)
			}
		case !errors.Is(err, fs.ErrNotExist):
			is.log.Warn("webmail: image senders not read", "account", account, "err", err)
		}
		for _, s := range list {
			set[strings.ToLower(s)] = true
		}
	}
	is.m[account] = set
	return set
}

// allowed reports whether the account shows remote images from sender.
func (is *imageSenders) allowed(account, sender string) bool {
	if sender == "" {
		return false
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.loadLocked(account)[strings.ToLower(sender)]
}

// set allows (or revokes) remote images from sender, and writes the file.
func (is *imageSenders) set(account, sender string, allow bool) error {
	sender = strings.ToLower(sender)
	is.mu.Lock()
	defer is.mu.Unlock()
	set := is.loadLocked(account)
	if allow == set[sender] {
		return nil
	}
	if allow && len(set) >= maxImageSenders {
		return fmt.Errorf("at most %d senders", maxImageSenders)
	}
	if allow {
		set[sender] = true
	} else {
		delete(set, sender)
	}
	if is.dir == "" {
		return nil
	}
	list := make([]string, 0, len(set))
	for s := range set {
		list = append(list, s)
	}
	slices.Sort(list)
	data, _ := json.Marshal(list)
	if err := writeFileAtomic(is.file(account), data); err != nil {
		// Memory and file agree again: undo.
		if allow {
			delete(set, sender)
		} else {
			set[sender] = true
		}
		return err
	}
	return nil
}

// writeFileAtomic writes data to path by a temporary file, fsync, rename.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// senderOf is the address remote images are allowed by: the first From:.
func senderOf(m *msg.Message) string {
	for _, a := range m.Envelope.From {
		if a.Host != "" {
			_, address := displayAddress(a)
			return strings.ToLower(address)
		}
	}
	return ""
}

// imagesPost allows ("allow") or revokes ("revoke") remote images from a
// sender (form "sender"), then goes back to the page (form "back").
func (s *Server) imagesPost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	action := r.PathValue("action")
	sender := strings.TrimSpace(r.PostFormValue("sender"))
	if action != "allow" && action != "revoke" {
		s.fail(w, r, c, http.StatusNotFound, "No such action.")
		return
	}
	if sender == "" || len(sender) > 320 || !strings.Contains(sender, "@") || strings.ContainsAny(sender, " \t\r\n<>\"") {
		s.fail(w, r, c, http.StatusBadRequest, "No sender named.")
		return
	}
	if err := s.images.set(c.sess.account, sender, action == "allow"); err != nil {
		s.log.Warn("webmail image senders", "user", c.sess.account, "err", err)
		s.fail(w, r, c, http.StatusInternalServerError, "It could not be saved: "+err.Error())
		return
	}
	back := r.PostFormValue("back")
	if !localPath(back) {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
