package webmail

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/tableedit"
)

// Disposable addresses (the guide's "unlimited temporary addresses for
// registrations") are virtusertable lines, the one source of truth:
//
//	shop-x7k2@example.org	pp
//
// delivers to the account pp. Blocking one rewrites its right-hand side to
// Sendmail's error form, so that SMTP refuses it at RCPT with 550 5.1.1 and
// the table's text (route.ParseErrorTarget), and marks whose it was with
// the comment line above it:
//
//	# blocked by pp
//	shop-x7k2@example.org	error:nouser This address does not take mail any more
//
// A user manages the lines whose key is a plain address at one of the local
// domains (local-host-names; the hostname when that is empty) and whose
// right-hand side is the account's name, or which are blocked with the
// account's mark. Every other line (catch-alls, +detail forms, lines that
// reach other accounts or places) is the admin's, on the admin pages.

// blockedText is the text SMTP answers a blocked address with.
const blockedText = "This address does not take mail any more"

// blockedMark is the comment that says whose a blocked address was.
const blockedMark = "# blocked by "

// reservedLocals are names a user may not take: those RFC 2142 and RFC 5321
// section 4.5.1 give to the people who run a domain.
var reservedLocals = map[string]bool{
	"postmaster": true, "abuse": true, "root": true, "mailer-daemon": true, "hostmaster": true,
	"webmaster": true, "noc": true, "security": true, "admin": true, "administrator": true,
	"info": true, "support": true, "www": true, "uucp": true, "ftp": true, "usenet": true,
	"news": true, "marketing": true, "sales": true,
}

// localRE is what a disposable address's local part may be: a dot-atom of
// lower-case letters, digits, '.', '-' and '_' (no '+': that is +detail).
var localRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$`)

// disposable is one of the account's addresses, for the page.
type disposable struct {
	Address string
	Blocked bool
	Use     addrUse
}

// userDomains are the domains a user makes addresses in.
func (s *Server) userDomains() []string {
	var out []string
	for _, d := range s.cfg.Tables().LocalHostNames.Names() {
		if !strings.HasPrefix(d, "[") {
			out = append(out, d)
		}
	}
	if len(out) == 0 && s.cfg.Hostname != "" {
		out = []string{strings.ToLower(s.cfg.Hostname)}
	}
	return out
}

// ownedBy reports whether entry e of virtusertable (lines in f) is the
// account's to manage, and whether it is blocked.
func (s *Server) ownedBy(f *tableedit.File, e tableedit.Entry, account string, domains map[string]bool) (owned, blocked bool) {
	key := strings.ToLower(e.Key)
	at := strings.LastIndexByte(key, '@')
	if at <= 0 || !localRE.MatchString(key[:at]) || !domains[strings.TrimSuffix(key[at+1:], ".")] {
		return false, false
	}
	if strings.EqualFold(e.Value, account) {
		return true, false
	}
	if len(e.Value) > 6 && strings.EqualFold(e.Value[:6], "error:") && e.Line >= 2 {
		mark := strings.TrimSpace(f.Lines[e.Line-2])
		if strings.HasPrefix(mark, blockedMark) && strings.EqualFold(strings.TrimSpace(mark[len(blockedMark):]), account) {
			return true, true
		}
	}
	return false, false
}

func (s *Server) domainSet() map[string]bool {
	m := map[string]bool{}
	for _, d := range s.userDomains() {
		m[d] = true
	}
	return m
}

// addresses lists the account's addresses, in the file's order.
func (s *Server) addresses(account string) ([]disposable, error) {
	f, err := tableedit.Read(s.cfg.MapsDir, maps.FileVirtusertable)
	if err != nil {
		return nil, err
	}
	domains := s.domainSet()
	var out []disposable
	for _, e := range f.Entries() {
		if owned, blocked := s.ownedBy(f, e, account, domains); owned {
			a := strings.ToLower(e.Key)
			out = append(out, disposable{Address: a, Blocked: blocked, Use: s.usage.get(a)})
		}
	}
	return out, nil
}

func (s *Server) addressesPage(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	s.showAddresses(w, r, c, http.StatusOK, "", "")
}

func (s *Server) showAddresses(w http.ResponseWriter, r *http.Request, c *reqCtx, code int, msg, errText string) {
	if s.cfg.MapsDir == "" {
		s.fail(w, r, c, http.StatusNotFound, "Disposable addresses are not set up on this server.")
		return
	}
	list, err := s.addresses(c.sess.account)
	if err != nil {
		s.log.Warn("webmail addresses", "err", err)
		s.fail(w, r, c, http.StatusInternalServerError, "The addresses could not be read now.")
		return
	}
	if made := strings.ToLower(r.URL.Query().Get("made")); msg == "" && made != "" {
		// Only an address of the list: a link cannot put words of its own here.
		for _, d := range list {
			if d.Address == made {
				msg = "Made " + made + ". It takes mail within a few seconds."
			}
		}
	}
	s.render(w, r, c, code, "disposable", map[string]any{
		"Title": "Addresses", "Addresses": list, "Domains": s.userDomains(),
		"Notice": msg, "Error": errText, "Name": r.PostFormValue("name"),
	})
}

// randomSuffix is n characters of [a-z0-9], without the look-alikes 0 o 1 l.
func randomSuffix(n int) string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// siteLabel makes a typed site name into a local part's beginning:
// "Shop X.com" -> "shop-x.com".
func siteLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-._")
}

// errInUse refuses a name that already means something here.
var errInUse = errors.New("in use")

// nameTaken reports whether local@domain already means something: a line
// of virtusertable, an account, an alias, a reserved name.
func (s *Server) nameTaken(ctx context.Context, f *tableedit.File, local, domain string) error {
	if reservedLocals[local] {
		return errInUse
	}
	if _, ok := f.FindKey(local + "@" + domain); ok {
		return errInUse
	}
	if _, ok := s.cfg.Tables().Aliases.Lookup(local); ok {
		return errInUse
	}
	_, err := s.cfg.Store.GetAccount(ctx, local)
	if err == nil {
		return errInUse
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// addressCreate makes a new address: the typed name with a random suffix
// ("shop-x7k2"), the name alone when "exact" is set, or a random name when
// none is typed; at one of the user's domains.
func (s *Server) addressCreate(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	if s.cfg.MapsDir == "" {
		s.fail(w, r, c, http.StatusNotFound, "Disposable addresses are not set up on this server.")
		return
	}
	domains := s.domainSet()
	domain := strings.ToLower(r.PostFormValue("domain"))
	if domain == "" && len(s.userDomains()) > 0 {
		domain = s.userDomains()[0]
	}
	if !domains[domain] {
		s.showAddresses(w, r, c, http.StatusBadRequest, "", "That domain is not one of this server's.")
		return
	}
	label := siteLabel(r.PostFormValue("name"))
	exact := r.PostFormValue("exact") != ""
	if exact && label == "" {
		s.showAddresses(w, r, c, http.StatusBadRequest, "", "Type the name the address should have.")
		return
	}
	if len(label) > 40 {
		label = strings.Trim(label[:40], "-._")
	}
	made := ""
	err := tableedit.Update(s.cfg.MapsDir, maps.FileVirtusertable, func(f *tableedit.File) error {
		for try := 0; try < 10; try++ {
			local := label
			switch {
			case exact:
			case label == "":
				local = randomSuffix(8)
			default:
				local = label + "-" + randomSuffix(4)
			}
			if !localRE.MatchString(local) || strings.Contains(local, "..") {
				return errBadName
			}
			err := s.nameTaken(r.Context(), f, local, domain)
			if errors.Is(err, errInUse) && !exact {
				continue
			}
			if err != nil {
				return err
			}
			made = local + "@" + domain
			f.Append(made + "\t" + c.sess.account)
			return nil
		}
		return errInUse
	})
	switch {
	case errors.Is(err, errBadName):
		s.showAddresses(w, r, c, http.StatusBadRequest, "", "A name has letters, digits, '.', '-' and '_', and starts and ends with a letter or digit.")
		return
	case errors.Is(err, errInUse):
		s.showAddresses(w, r, c, http.StatusConflict, "", "That address is taken; choose another name.")
		return
	case err != nil:
		s.log.Warn("webmail: address not made", "user", c.sess.account, "err", err)
		s.showAddresses(w, r, c, http.StatusInternalServerError, "", "The address could not be made: "+err.Error())
		return
	}
	s.log.Info("disposable address made", "user", c.sess.account, "address", made)
	http.Redirect(w, r, "/addresses?made="+made, http.StatusSeeOther)
}

var errBadName = errors.New("bad name")

// addressAction blocks, unblocks or deletes one of the account's addresses.
// An address that is not the account's answers 404, whoever else's it is.
func (s *Server) addressAction(w http.ResponseWriter, r *http.Request, c *reqCtx) {
	if s.cfg.MapsDir == "" {
		s.fail(w, r, c, http.StatusNotFound, "Disposable addresses are not set up on this server.")
		return
	}
	action := r.PathValue("action")
	if action != "block" && action != "unblock" && action != "delete" {
		s.fail(w, r, c, http.StatusNotFound, "No such action.")
		return
	}
	address := strings.ToLower(strings.TrimSpace(r.PostFormValue("address")))
	account := c.sess.account
	domains := s.domainSet()
	errNotYours := errors.New("not yours")
	err := tableedit.Update(s.cfg.MapsDir, maps.FileVirtusertable, func(f *tableedit.File) error {
		e, ok := f.FindKey(address)
		if !ok || address == "" {
			return errNotYours
		}
		owned, blocked := s.ownedBy(f, e, account, domains)
		if !owned {
			return errNotYours
		}
		above := 0
		if blocked {
			above = 1 // the mark goes with the line
		}
		switch action {
		case "block":
			if !blocked {
				f.Replace(e, 0, blockedMark+account+"\n"+address+"\terror:nouser "+blockedText)
			}
		case "unblock":
			if blocked {
				f.Replace(e, above, address+"\t"+account)
			}
		case "delete":
			f.Replace(e, above, "")
		}
		return nil
	})
	if errors.Is(err, errNotYours) {
		s.fail(w, r, c, http.StatusNotFound, "No such address of yours.")
		return
	}
	if err != nil {
		s.log.Warn("webmail: address not changed", "user", account, "action", action, "err", err)
		s.showAddresses(w, r, c, http.StatusInternalServerError, "", "The address could not be changed: "+err.Error())
		return
	}
	if action == "delete" {
		s.usage.forget(address)
	}
	s.log.Info("disposable address changed", "user", account, "address", address, "action", action)
	http.Redirect(w, r, "/addresses", http.StatusSeeOther)
}

// ago says how long ago t was, for the page.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return t.Local().Format("2006-01-02")
}
