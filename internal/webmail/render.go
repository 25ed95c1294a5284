package webmail

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// pages are the templates under templates/, each rendered inside
// layout.html.
var pages = []string{"login", "list", "read", "conv", "compose", "error", "disposable",
	"admin_status", "admin_accounts", "admin_tables", "admin_queue"}

var funcs = template.FuncMap{
	"size": humanSize,
	"date": func(t time.Time) string {
		now := time.Now()
		if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
			return t.Local().Format("15:04")
		}
		if t.Year() == now.Year() {
			return t.Local().Format("Jan 2")
		}
		return t.Local().Format("2006-01-02")
	},
	"fulldate":  func(t time.Time) string { return t.Local().Format("Mon, 2 Jan 2006 15:04") },
	"truncate":  truncateRunes,
	"pathEsc":   url.PathEscape,
	"queryEsc":  url.QueryEscape,
	"hasPrefix": strings.HasPrefix,
	"ago":       ago,
}

func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, p := range pages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("webmail: template %s: %w", p, err)
		}
		out[p] = t
	}
	return out, nil
}

// navMailbox is a mailbox in the side bar.
type navMailbox struct {
	ID         int64
	Name       string
	SpecialUse string
	Unseen     uint32
	Messages   uint32
	Current    bool
}

// specialOrder puts the default mailboxes first, in the order people look
// at them.
var specialOrder = map[string]int{"": 0, store.SpecialDrafts: 1, store.SpecialSent: 2, store.SpecialArchive: 3, store.SpecialJunk: 4, store.SpecialTrash: 5}

func (s *Server) navMailboxes(ctx context.Context, accountID, current int64) ([]navMailbox, error) {
	mbs, err := s.cfg.Store.ListMailboxes(ctx, accountID)
	if err != nil {
		return nil, err
	}
	out := make([]navMailbox, 0, len(mbs))
	for _, m := range mbs {
		out = append(out, navMailbox{ID: m.ID, Name: m.Name, SpecialUse: m.SpecialUse, Unseen: m.Unseen, Messages: m.Messages, Current: m.ID == current})
	}
	rank := func(m navMailbox) int {
		if strings.EqualFold(m.Name, store.Inbox) {
			return -1
		}
		if m.SpecialUse != "" {
			return specialOrder[m.SpecialUse]
		}
		return 10
	}
	slices.SortStableFunc(out, func(a, b navMailbox) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// render renders page name with data in the layout. data gets Account and
// CSRF (and the side bar's Mailboxes, when logged in and the handler did not
// set them).
func (s *Server) render(w http.ResponseWriter, r *http.Request, c *reqCtx, code int, name string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	if c != nil && c.sess != nil {
		data["Account"] = c.sess.account
		data["CSRF"] = c.sess.csrf
		data["IsAdmin"] = s.requireAdmin(r.Context(), c.sess)
		data["HasAddresses"] = s.cfg.MapsDir != ""
		if _, ok := data["Mailboxes"]; !ok {
			cur, _ := data["CurrentMailbox"].(int64)
			if nav, err := s.navMailboxes(r.Context(), c.sess.accountID, cur); err == nil {
				data["Mailboxes"] = nav
			}
		}
	}
	var b bytes.Buffer
	if err := s.tmpl[name].Execute(&b, data); err != nil {
		s.log.Error("webmail template", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// fail shows an error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, c *reqCtx, code int, text string) {
	s.render(w, r, c, code, "error", map[string]any{"Code": code, "Message": text})
}
