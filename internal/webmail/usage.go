package webmail

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/store"
)

// usageFile is the file in Config.StateDir that keeps the counts of mail to
// virtusertable addresses.
const usageFile = "address-use.json"

// Bounds of the usage book: the senders kept per address, the addresses
// kept (the least recently used go first), how long writes are gathered.
const (
	maxSenders     = 5
	maxUsageAddrs  = 100000
	usageSaveDelay = 2 * time.Second
	maxHeaderRead  = 64 << 10
)

// addrUse is what is known of the mail one address received.
type addrUse struct {
	Count   int64     `json:"count"`
	Last    time.Time `json:"last"`
	Senders []string  `json:"senders,omitempty"` // domains, the latest first, each once
}

// usageBook counts the messages delivered to each virtusertable address
// (lower-case "local@domain"), for the disposable addresses page: how many,
// when the last came, and from which domains, so that the user sees which
// site gave the address away. It lives in a small JSON file of its own (not
// in the tables, which people edit, nor the store's schema), written
// atomically a moment after changes gather, and at Shutdown.
type usageBook struct {
	path string // "" : memory only
	log  *slog.Logger

	mu    sync.Mutex
	m     map[string]*addrUse
	timer *time.Timer
}

func loadUsage(dir string, log *slog.Logger) *usageBook {
	u := &usageBook{log: log, m: map[string]*addrUse{}}
	if dir == "" {
		return u
	}
	u.path = filepath.Join(dir, usageFile)
	data, err := os.ReadFile(u.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("webmail: address counts not read", "file", u.path, "err", err)
		}
		return u
	}
	if err := json.Unmarshal(data, &u.m); err != nil || u.m == nil {
		log.Warn("webmail: address counts unreadable; starting again", "file", u.path, "err", err)
		u.m = map[string]*addrUse{}
	}
	return u
}

// record counts one message to address from the sender's domain.
func (u *usageBook) record(address, senderDomain string, t time.Time) {
	address = strings.ToLower(address)
	u.mu.Lock()
	defer u.mu.Unlock()
	a := u.m[address]
	if a == nil {
		if len(u.m) >= maxUsageAddrs {
			u.dropOldestLocked()
		}
		a = &addrUse{}
		u.m[address] = a
	}
	a.Count++
	if t.After(a.Last) {
		a.Last = t
	}
	senders := []string{senderDomain}
	for _, s := range a.Senders {
		if s != senderDomain && len(senders) < maxSenders {
			senders = append(senders, s)
		}
	}
	a.Senders = senders
	u.scheduleLocked()
}

func (u *usageBook) dropOldestLocked() {
	var oldest string
	var at time.Time
	for k, v := range u.m {
		if oldest == "" || v.Last.Before(at) {
			oldest, at = k, v.Last
		}
	}
	delete(u.m, oldest)
}

// get returns the counts of address (zero when none came).
func (u *usageBook) get(address string) addrUse {
	u.mu.Lock()
	defer u.mu.Unlock()
	if a := u.m[strings.ToLower(address)]; a != nil {
		c := *a
		c.Senders = append([]string(nil), a.Senders...)
		return c
	}
	return addrUse{}
}

// forget drops the counts of a deleted address, so that one made again
// later with the same name starts at zero.
func (u *usageBook) forget(address string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.m[strings.ToLower(address)]; ok {
		delete(u.m, strings.ToLower(address))
		u.scheduleLocked()
	}
}

func (u *usageBook) scheduleLocked() {
	if u.path == "" || u.timer != nil {
		return
	}
	u.timer = time.AfterFunc(usageSaveDelay, func() {
		if err := u.save(); err != nil {
			u.log.Warn("webmail: address counts not saved", "file", u.path, "err", err)
		}
	})
}

// save writes the book now (temp file, fsync, rename).
func (u *usageBook) save() error {
	u.mu.Lock()
	if u.timer != nil {
		u.timer.Stop()
		u.timer = nil
	}
	data, err := json.Marshal(u.m)
	u.mu.Unlock()
	if err != nil || u.path == "" {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(u.path), "."+usageFile+".tmp*")
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
		err = os.Rename(tmp.Name(), u.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// CountDeliveries wraps the SMTP server's deliverer so that every message
// delivered to an address of its own in virtusertable (an exact
// "local@domain" key: the disposable addresses, and the others) is counted
// for the disposable addresses page, with the domain of its From: (the
// envelope sender's when From: has none). Recipients whose delivery failed
// are not counted.
func (s *Server) CountDeliveries(next Deliverer) Deliverer { return counting{s, next} }

type counting struct {
	s    *Server
	next Deliverer
}

func (c counting) Deliver(ctx context.Context, env *deliver.Envelope, body store.Body) (*deliver.Result, error) {
	res, err := c.next.Deliver(ctx, env, body)
	if err != nil || res == nil || c.s.cfg.Tables == nil {
		return res, err
	}
	vt := c.s.cfg.Tables().Virtusertable
	failed := map[string]bool{}
	for _, f := range res.Failures {
		failed[strings.ToLower(f.Recipient.String())] = true
	}
	sender := ""
	now := time.Now()
	for _, r := range env.Recipients {
		a := strings.ToLower(r.Address.String())
		if r.Address.Domain == "" || failed[a] {
			continue
		}
		if _, key, ok := vt.Lookup(r.Address); !ok || key != a {
			continue
		}
		if sender == "" {
			sender = senderDomain(env, body)
		}
		c.s.usage.record(a, sender, now)
	}
	return res, err
}

// senderDomain is the domain of the message's From: address, else of the
// envelope sender; "(bounce)" for the null sender without From:.
func senderDomain(env *deliver.Envelope, body store.Body) string {
	n := min(body.Size(), maxHeaderRead)
	if m, err := mail.ReadMessage(io.NewSectionReader(body, 0, n)); err == nil {
		if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
			if at := strings.LastIndexByte(a.Address, '@'); at >= 0 && at < len(a.Address)-1 {
				return strings.ToLower(a.Address[at+1:])
			}
		}
	}
	if !env.Null && env.From.Domain != "" {
		return strings.ToLower(env.From.Domain)
	}
	return "(bounce)"
}
