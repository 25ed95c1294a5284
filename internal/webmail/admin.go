package webmail

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/tableedit"
)

// The admin pages (accounts marked Admin; the route table's access admin
// checks the mark on every request): accounts, the tables, the outbound
// queue and a status page. They do what the command line does (`posthorn
// user`, `posthorn queue`, an editor on maps_dir) through the same
// functions: the store's account and queue methods, auth.NewCredentials,
// config.ParseSize, and internal/tableedit for the files, which are checked
// with the loading parser before they are written and then loaded by the
// server's watcher like a hand edit.

// Status is what the running server tells the status page.
type Status struct {
	Listeners    []StatusListener
	Certificates []StatusCertificate
	Rejects      []StatusReject // the latest refusals, newest first
}

// StatusReject is one refusal of the SMTP server, as it logged it.
type StatusReject struct {
	Time   time.Time
	What   string // "recipient rejected", "connection rejected", ...
	Client string // the client's address
	Detail string // reason, sender or recipient, as logged
}

// StatusListener is one bound listener.
type StatusListener struct {
	Kind string // "smtp", "submission", "imaps", "web", ...
	Addr string
}

// StatusCertificate is a certificate the server presents.
type StatusCertificate struct {
	Names    []string // the DNS names it is for
	Issuer   string
	NotAfter time.Time
	Err      string // why there is none, when there is none
}

// DaysLeft is how many whole days the certificate is still valid.
func (c StatusCertificate) DaysLeft() int { return int(time.Until(c.NotAfter) / (24 * time.Hour)) }

// Soon reports whether it expires within two weeks.
func (c StatusCertificate) Soon() bool { return time.Until(c.NotAfter) < 14*24*time.Hour }

// adminTables are the tables the admin pages edit, with what each is for.
var adminTables = []struct{ Name, Title, Help string }{
	{maps.FileLocalHostNames, "Local domains", "Domains this server takes mail for (local-host-names): one per line."},
	{maps.FileVirtusertable, "Virtual addresses", "address target: user@domain, @domain (catch-all), user+*@domain; the target is an account, an address, or error:nouser text."},
	{maps.FileAliases, "Aliases", "name: target, target — local names for accounts, lists and forwards (aliases(5))."},
	{maps.FileAccess, "Access rules", "Connect:ip, From:addr, To:addr with OK, RELAY, REJECT, DISCARD, ERROR:5.7.1:550 text (Sendmail's access database)."},
	{maps.FileRelayDomains, "Relay domains", "Domains this server relays mail to (relay-domains)."},
	{maps.FileMailertable, "Mail routes", "domain mailer:host — where mail for a domain goes (mailertable)."},
}

// notices are the fixed messages a redirect may ask for (?ok=), so that a
// link cannot put text of its own on the page.
var notices = map[string]string{
	"added": "Added.", "password": "Password changed.", "quota": "Quota set.", "deleted": "Deleted.",
	"admin": "Admin mark changed.", "saved": "Saved. The server loads it within a second or two.",
	"flushed": "Queued for another try now.",
}

func notice(r *http.Request) string { return notices[r.URL.Query().Get("ok")] }

// adminStatus is the status page: listeners, certificates, queue, accounts
// and tables.
func (s *Server) adminStatus(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	ctx := r.Context()
	data := map[string]any{"Title": "Status", "Section": "status"}
	if s.cfg.Status != nil {
		data["Status"] = s.cfg.Status()
	}
	if q, err := s.cfg.Store.ListQueue(ctx); err == nil {
		held, rcpts := 0, 0
		var oldest time.Time
		for _, e := range q {
			if e.Held {
				held++
			}
			for _, rc := range e.Recipients {
				if rc.Status == store.RcptPending {
					rcpts++
				}
			}
			if oldest.IsZero() || e.Created.Before(oldest) {
				oldest = e.Created
			}
		}
		data["Queue"] = map[string]any{"Entries": len(q), "Held": held, "Recipients": rcpts, "Oldest": oldest}
	}
	if accts, err := s.cfg.Store.ListAccounts(ctx); err == nil {
		data["Accounts"] = len(accts)
	}
	t := s.cfg.Tables()
	data["Domains"] = append([]string{strings.ToLower(s.cfg.Hostname)}, t.LocalHostNames.Names()...)
	data["Tables"] = []struct {
		Name string
		N    int
	}{
		{maps.FileAccess, t.Access.Len()}, {maps.FileAliases, t.Aliases.Len()}, {maps.FileVirtusertable, t.Virtusertable.Len()},
		{maps.FileLocalHostNames, t.LocalHostNames.Len()}, {maps.FileRelayDomains, t.RelayDomains.Len()},
	}
	s.render(w, r, c, http.StatusOK, "admin_status", data)
}

// accountRow is an account on the accounts page.
type accountRow struct {
	store.Account
	Self bool
}

func (s *Server) adminAccounts(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	s.showAccounts(w, r, c, http.StatusOK, "")
}

func (s *Server) showAccounts(w http.ResponseWriter, r *http.Request, c *reqCtx, code int, errText string) {
	accts, err := s.cfg.Store.ListAccounts(r.Context())
	if err != nil {
		s.fail(w, r, c, http.StatusInternalServerError, "The accounts could not be read now.")
		return
	}
	rows := make([]accountRow, len(accts))
	for i, a := range accts {
		rows[i] = accountRow{a, a.Name == c.sess.account}
	}
	s.render(w, r, c, code, "admin_accounts", map[string]any{
		"Title": "Accounts", "Section": "accounts", "Accounts": rows, "Error": errText, "Notice": notice(r),
		"NewName": r.PostFormValue("name"),
	})
}

// adminAccountsPost: add (name, password, admin), password (name,
// password), quota (name, quota: "2GiB", "500MB", "0" or "none"), admin
// (name, admin "1" or ""), delete (name). An admin cannot delete their own
// account or take their own mark away (nobody would be left to give it back).
func (s *Server) adminAccountsPost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	ctx := r.Context()
	st := s.cfg.Store
	action := r.PostFormValue("action")
	name := strings.ToLower(strings.TrimSpace(r.PostFormValue("name")))
	bad := func(code int, msg string) { s.showAccounts(w, r, c, code, msg) }
	accountErr := func(err error) {
		switch {
		case errors.Is(err, store.ErrNotFound):
			bad(http.StatusNotFound, fmt.Sprintf("No account %q.", name))
		case errors.Is(err, store.ErrExists):
			bad(http.StatusConflict, fmt.Sprintf("Account %q exists already.", name))
		case errors.Is(err, store.ErrInvalidName):
			bad(http.StatusBadRequest, fmt.Sprintf("%q is not a valid account name (lower-case letters, digits, . _ -).", name))
		case errors.Is(err, auth.ErrBadPassword):
			bad(http.StatusBadRequest, fmt.Sprintf("That password cannot be used (empty or longer than %d bytes).", auth.MaxPasswordLen))
		default:
			s.log.Warn("webmail admin: account change failed", "admin", c.sess.account, "action", action, "account", name, "err", err)
			bad(http.StatusInternalServerError, "The change could not be made now.")
		}
	}
	var err error
	ok := ""
	switch action {
	case "add", "password":
		var hash, scram string
		if hash, scram, err = auth.NewCredentials(r.PostFormValue("password")); err != nil {
			accountErr(err)
			return
		}
		if action == "add" {
			if _, err = st.CreateAccount(ctx, name, hash); err == nil {
				// The SCRAM-SHA-256 credential goes with the hash, as `posthorn user add` does.
				err = st.SetPassword(ctx, name, hash, scram)
			}
			if err == nil && r.PostFormValue("admin") != "" {
				err = st.SetAdmin(ctx, name, true)
			}
			ok = "added"
		} else {
			if _, err = st.GetAccount(ctx, name); err == nil {
				err = st.SetPassword(ctx, name, hash, scram)
			}
			ok = "password"
		}
	case "quota":
		text := strings.TrimSpace(r.PostFormValue("quota"))
		var quota int64
		if !strings.EqualFold(text, "none") && text != "" {
			if quota, err = config.ParseSize(text); err != nil {
				bad(http.StatusBadRequest, "Quota: "+err.Error())
				return
			}
		}
		err, ok = st.SetQuota(ctx, name, quota), "quota"
	case "admin":
		on := r.PostFormValue("admin") != ""
		if name == c.sess.account && !on {
			bad(http.StatusBadRequest, "You cannot take your own admin mark away.")
			return
		}
		err, ok = st.SetAdmin(ctx, name, on), "admin"
	case "delete":
		if name == c.sess.account {
			bad(http.StatusBadRequest, "You cannot delete your own account here.")
			return
		}
		err, ok = st.DeleteAccount(ctx, name), "deleted"
	default:
		bad(http.StatusBadRequest, "Unknown action.")
		return
	}
	if err != nil {
		accountErr(err)
		return
	}
	if action == "delete" || action == "password" {
		// A deleted account, or one whose password was taken back, is
		// logged out of the webmail everywhere (but this browser).
		s.sess.endAccount(name, c.sess.id)
	}
	s.log.Info("webmail admin: account changed", "admin", c.sess.account, "action", action, "account", name)
	http.Redirect(w, r, "/admin/accounts?ok="+ok, http.StatusSeeOther)
}

// tableInfo returns the admin table named in the path.
func tableInfo(name string) (title, help string, ok bool) {
	for _, t := range adminTables {
		if t.Name == name {
			return t.Title, t.Help, true
		}
	}
	return "", "", false
}

func (s *Server) adminTable(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	s.showTable(w, r, c, http.StatusOK, "")
}

func (s *Server) showTable(w http.ResponseWriter, r *http.Request, c *reqCtx, code int, errText string) {
	name := r.PathValue("table")
	title, help, ok := tableInfo(name)
	if !ok || s.cfg.MapsDir == "" {
		s.fail(w, r, c, http.StatusNotFound, "No such table.")
		return
	}
	f, err := tableedit.Read(s.cfg.MapsDir, name)
	if err != nil {
		s.log.Warn("webmail admin: table not read", "table", name, "err", err)
		s.fail(w, r, c, http.StatusInternalServerError, "The table could not be read: "+err.Error())
		return
	}
	s.render(w, r, c, code, "admin_tables", map[string]any{
		"Title": title, "Section": name, "Table": name, "Help": help, "Entries": f.Entries(),
		"Raw": string(f.Bytes()), "Error": errText, "Notice": notice(r), "Tables": adminTables,
		"Class":   name == maps.FileLocalHostNames || name == maps.FileRelayDomains,
		"Aliases": name == maps.FileAliases,
		"Key":     r.PostFormValue("key"), "Value": r.PostFormValue("value"),
	})
}

// adminTablePost: add (key and value; for class files the text), replace
// (line, old, text) and delete (line, old). "old" is the entry's text as
// the page showed it: when the file changed meanwhile, nothing is done. The
// new file is refused with the parser's message when it does not parse.
func (s *Server) adminTablePost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	name := r.PathValue("table")
	if _, _, ok := tableInfo(name); !ok || s.cfg.MapsDir == "" {
		s.fail(w, r, c, http.StatusNotFound, "No such table.")
		return
	}
	action := r.PostFormValue("action")
	clean := func(v string, multi bool) (string, bool) {
		v = strings.TrimRight(strings.ReplaceAll(v, "\r\n", "\n"), "\n ")
		return v, !strings.ContainsRune(v, '\r') && (multi || !strings.ContainsRune(v, '\n'))
	}
	var line string
	switch action {
	case "add":
		key, ok1 := clean(strings.TrimSpace(r.PostFormValue("key")), false)
		value, ok2 := clean(strings.TrimSpace(r.PostFormValue("value")), false)
		if !ok1 || !ok2 || key == "" {
			s.showTable(w, r, c, http.StatusBadRequest, "Give the entry on one line.")
			return
		}
		switch name {
		case maps.FileLocalHostNames, maps.FileRelayDomains:
			line = strings.TrimSpace(key + " " + value)
		case maps.FileAliases:
			line = key + ": " + value
		default:
			if strings.ContainsAny(key, " \t") {
				s.showTable(w, r, c, http.StatusBadRequest, "A key has no spaces.")
				return
			}
			line = key + "\t" + value
		}
	case "replace":
		var ok bool
		if line, ok = clean(r.PostFormValue("text"), name == maps.FileAliases); !ok || strings.TrimSpace(line) == "" {
			s.showTable(w, r, c, http.StatusBadRequest, "Give the entry on one line (aliases may go on over lines that start with a space).")
			return
		}
	case "delete":
	default:
		s.showTable(w, r, c, http.StatusBadRequest, "Unknown action.")
		return
	}
	at, _ := strconv.Atoi(r.PostFormValue("line"))
	old := strings.ReplaceAll(r.PostFormValue("old"), "\r\n", "\n")
	err := tableedit.Update(s.cfg.MapsDir, name, func(f *tableedit.File) error {
		if action == "add" {
			f.Append(line)
			return nil
		}
		e, err := f.Find(at, old)
		if err != nil {
			return err
		}
		f.Replace(e, 0, line) // "" for delete
		return nil
	})
	var pe *maps.ParseError
	switch {
	case errors.As(err, &pe):
		s.showTable(w, r, c, http.StatusBadRequest, "Not saved: "+pe.Error())
		return
	case errors.Is(err, tableedit.ErrChanged):
		s.showTable(w, r, c, http.StatusConflict, "The file changed meanwhile; nothing was saved. Look again.")
		return
	case err != nil:
		s.log.Warn("webmail admin: table not written", "table", name, "err", err)
		s.showTable(w, r, c, http.StatusInternalServerError, "Not saved: "+err.Error())
		return
	}
	s.log.Info("webmail admin: table changed", "admin", c.sess.account, "table", name, "action", action)
	http.Redirect(w, r, "/admin/tables/"+name+"?ok=saved", http.StatusSeeOther)
}

// queueRow is a queue entry on the queue page.
type queueRow struct {
	store.QueueEntry
	Pending int
}

func (s *Server) adminQueue(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	q, err := s.cfg.Store.ListQueue(r.Context())
	if err != nil {
		s.fail(w, r, c, http.StatusInternalServerError, "The queue could not be read now.")
		return
	}
	rows := make([]queueRow, len(q))
	for i, e := range q {
		rows[i].QueueEntry = e
		for _, rc := range e.Recipients {
			if rc.Status == store.RcptPending {
				rows[i].Pending++
			}
		}
	}
	slices.SortFunc(rows, func(a, b queueRow) int { return a.Created.Compare(b.Created) })
	s.render(w, r, c, http.StatusOK, "admin_queue", map[string]any{
		"Title": "Queue", "Section": "queue", "Entries": rows, "Notice": notice(r),
	})
}

// adminQueuePost: flush (id, or every entry when none: `posthorn queue
// flush`) and delete (id: `posthorn queue delete`). The queue runner looks
// for due entries every two seconds.
func (s *Server) adminQueuePost(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	ctx := r.Context()
	id := strings.TrimSpace(r.PostFormValue("id"))
	var err error
	ok := ""
	switch r.PostFormValue("action") {
	case "flush":
		err, ok = s.cfg.Store.RescheduleQueue(ctx, id, time.Now()), "flushed"
	case "delete":
		if id == "" {
			s.fail(w, r, c, http.StatusBadRequest, "Which entry?")
			return
		}
		err, ok = s.cfg.Store.DeleteQueueEntry(ctx, id), "deleted"
	default:
		s.fail(w, r, c, http.StatusBadRequest, "Unknown action.")
		return
	}
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, c, http.StatusNotFound, "No such queue entry.")
		return
	}
	if err != nil {
		s.log.Warn("webmail admin: queue change failed", "id", id, "err", err)
		s.fail(w, r, c, http.StatusInternalServerError, "The change could not be made now.")
		return
	}
	s.log.Info("webmail admin: queue changed", "admin", c.sess.account, "action", r.PostFormValue("action"), "id", id)
	http.Redirect(w, r, "/admin/queue?ok="+ok, http.StatusSeeOther)
}

// endAccount ends the sessions of an account, but keep.
func (ss *sessions) endAccount(name, keep string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, x := range ss.m {
		if x.account == name && id != keep {
			delete(ss.m, id)
		}
	}
}
