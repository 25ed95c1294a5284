package webmail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

type accountsOf struct{ st store.Store }

func (a accountsOf) AccountExists(ctx context.Context, name string) (bool, error) {
	_, err := a.st.GetAccount(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// env is a webmail on a real socket with a SQLite store, accounts
// "pp" and "bob" (passwords "secret-<name>") at example.org.
type env struct {
	t    *testing.T
	st   store.Store
	srv  *Server
	http *httptest.Server
	logs *bytes.Buffer
}

type envOptions struct {
	tls       bool
	throttle  auth.ThrottleConfig
	hashCheap bool
}

func newEnv(t testing.TB, o envOptions, accounts ...string) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if len(accounts) == 0 {
		accounts = []string{"pp", "bob"}
	}
	for _, a := range accounts {
		hash, scram, err := auth.NewCredentials("secret-" + a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateAccount(context.Background(), a, hash); err != nil {
			t.Fatal(err)
		}
		if err := st.SetPassword(context.Background(), a, hash, scram); err != nil {
			t.Fatal(err)
		}
	}
	mapsDir := filepath.Join(dir, "maps")
	os.MkdirAll(mapsDir, 0o755)
	for _, f := range maps.Files {
		os.WriteFile(filepath.Join(mapsDir, f), nil, 0o644)
	}
	os.WriteFile(filepath.Join(mapsDir, maps.FileLocalHostNames), []byte("example.org\n"), 0o644)
	os.WriteFile(filepath.Join(mapsDir, maps.FileVirtusertable), []byte("info@example.org pp\n"), 0o644)
	tables, err := maps.Load(mapsDir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cur := func() *maps.Tables { return tables }
	router := route.New(route.Config{Hostname: "mx.example.org", Tables: cur, Accounts: accountsOf{st}})
	a := auth.New(st, auth.Options{Logger: log, Throttle: o.throttle})
	srv, err := New(Config{
		Hostname: "mx.example.org", Store: st, Auth: a, Router: router, Tables: cur,
		Deliverer: &deliver.Deliverer{Store: st, Log: log}, MaxMessageBytes: 4 << 20, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	var hs *httptest.Server
	if o.tls {
		hs = httptest.NewUnstartedServer(srv.Handler())
		hs.StartTLS()
	} else {
		hs = httptest.NewServer(srv.Handler())
	}
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		hs.CloseClientConnections()
		hs.Close()
	})
	tt, _ := t.(*testing.T)
	return &env{t: tt, st: st, srv: srv, http: hs, logs: logs}
}

// deliver puts a message into an account's mailbox ("" for INBOX).
func (e *env) deliver(t testing.TB, account, mailbox, raw string) uint32 {
	t.Helper()
	raw = strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")
	res, err := e.st.Deliver(context.Background(), &store.Delivery{
		Body: strings.NewReader(raw), Meta: msg.ParseBytes([]byte(raw)).Marshal(), InternalDate: time.Now(),
		Local: []store.LocalTarget{{Account: account, Mailbox: mailbox}},
	})
	if err != nil || res.Local[0].Err != nil {
		t.Fatalf("deliver: %v %v", err, res)
	}
	return res.Local[0].UID
}

func (e *env) mailbox(t testing.TB, account, name string) *store.Mailbox {
	t.Helper()
	a, err := e.st.GetAccount(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := e.st.GetMailbox(context.Background(), a.ID, name)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

// messages returns the raw messages of a mailbox, in UID order.
func (e *env) messages(t testing.TB, account, name string) []string {
	t.Helper()
	mb := e.mailbox(t, account, name)
	infos, err := e.st.ListMessages(context.Background(), mb.ID, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		r, err := e.st.OpenMessage(context.Background(), mb.ID, in.UID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		out = append(out, string(b))
	}
	return out
}

// client is a browser without JavaScript: a cookie jar, no redirects
// followed unless asked.
type client struct {
	t    testing.TB
	e    *env
	hc   *http.Client
	csrf string
}

func (e *env) client(t testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: e.http.Client().Transport, Jar: jar}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Timeout = 30 * time.Second
	return &client{t: t, e: e, hc: hc}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.hc.Get(c.e.http.URL + path)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfRE.FindStringSubmatch(string(b)); m != nil && !strings.HasPrefix(path, "/login") {
		c.csrf = m[1]
	}
	return resp, string(b)
}

func (c *client) post(path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.hc.PostForm(c.e.http.URL+path, form)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// postMultipart posts a form with files (name -> content).
func (c *client) postMultipart(path string, form url.Values, files map[string]string) (*http.Response, string) {
	c.t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, vs := range form {
		for _, v := range vs {
			w.WriteField(k, v)
		}
	}
	for name, content := range files {
		fw, _ := w.CreateFormFile("attachment", name)
		fw.Write([]byte(content))
	}
	w.Close()
	req, _ := http.NewRequest("POST", c.e.http.URL+path, &b)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// login logs in and fails the test unless it worked.
func (c *client) login(user, password string) {
	c.t.Helper()
	_, page := c.get("/login")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no token in the login page:\n%s", page)
	}
	resp, body := c.post("/login", url.Values{"csrf": {m[1]}, "user": {user}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("login %s: %d\n%s", user, resp.StatusCode, body)
	}
	c.get("/") // picks up the session's token
	resp, body = c.get("/mail/" + itoa(c.e.mailbox(c.t, user, store.Inbox).ID))
	if resp.StatusCode != 200 {
		c.t.Fatalf("inbox after login: %d\n%s", resp.StatusCode, body)
	}
}
