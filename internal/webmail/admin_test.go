package webmail

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

// adminEnv is a webmail with MapsDir set, whose tables are read again on
// every use (as the watcher would have them, without its delay), accounts
// pp (admin), bob and eve.
type adminEnv struct {
	*env
	maps   string
	state  string
	router *route.Resolver
	tables func() *maps.Tables
}

const virtStart = "# virtual addresses\ninfo@example.org pp\n\n# bob's\nbob-news@example.org\tbob\n@example.net\tpp\n"

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, a := range []string{"pp", "bob", "eve"} {
		hash, scram, err := auth.NewCredentials("secret-" + a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateAccount(context.Background(), a, hash); err != nil {
			t.Fatal(err)
		}
		st.SetPassword(context.Background(), a, hash, scram)
	}
	if err := st.SetAdmin(context.Background(), "pp", true); err != nil {
		t.Fatal(err)
	}
	mapsDir := filepath.Join(dir, "maps")
	os.MkdirAll(mapsDir, 0o755)
	for _, f := range maps.Files {
		os.WriteFile(filepath.Join(mapsDir, f), nil, 0o644)
	}
	os.WriteFile(filepath.Join(mapsDir, maps.FileLocalHostNames), []byte("# ours\nexample.org\n"), 0o644)
	os.WriteFile(filepath.Join(mapsDir, maps.FileVirtusertable), []byte(virtStart), 0o644)
	os.WriteFile(filepath.Join(mapsDir, maps.FileAliases), []byte("# the usual\npostmaster: pp\n"), 0o644)
	tables := func() *maps.Tables {
		tb, err := maps.Load(mapsDir)
		if err != nil {
			t.Errorf("tables: %v", err)
		}
		return tb
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	router := route.New(route.Config{Hostname: "mx.example.org", Tables: tables, Accounts: accountsOf{st}})
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o700)
	srv, err := New(Config{
		Hostname: "mx.example.org", Store: st, Auth: auth.New(st, auth.Options{Logger: log}), Router: router, Tables: tables,
		Deliverer: &deliver.Deliverer{Store: st, Log: log}, MaxMessageBytes: 4 << 20, Log: log,
		MapsDir: mapsDir, StateDir: state,
		Status: func() Status {
			return Status{Listeners: []StatusListener{{"smtp", "127.0.0.1:25"}},
				Certificates: []StatusCertificate{{Names: []string{"mx.example.org"}, Issuer: "Test CA", NotAfter: time.Now().Add(10 * 24 * time.Hour)}},
				Rejects:      []StatusReject{{Time: time.Now(), What: "recipient rejected", Client: "192.0.2.9", Detail: "reason=<b>User unknown</b>"}}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		hs.CloseClientConnections()
		hs.Close()
	})
	return &adminEnv{env: &env{t: t, st: st, srv: srv, http: hs}, maps: mapsDir, state: state, router: router, tables: tables}
}

func (e *adminEnv) file(name string) string {
	b, err := os.ReadFile(filepath.Join(e.maps, name))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *adminEnv) login(user string) *client {
	c := e.client(e.t)
	c.login(user, "secret-"+user)
	c.get("/addresses") // the token
	return c
}

var madeRE = regexp.MustCompile(`made=([^&"]+)`)

// makeAddress posts the form and returns the address made.
func (c *client) makeAddress(form url.Values) string {
	c.t.Helper()
	form.Set("csrf", c.csrf)
	resp, body := c.post("/addresses", form)
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("make address %v: %d\n%s", form, resp.StatusCode, body)
	}
	m := madeRE.FindStringSubmatch(resp.Header.Get("Location"))
	if m == nil {
		c.t.Fatalf("no address in %q", resp.Header.Get("Location"))
	}
	a, _ := url.QueryUnescape(m[1])
	return a
}

func (e *adminEnv) resolve(address string) (route.Result, error) {
	a, err := addr.ParsePath(address, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.router.Resolve(context.Background(), a)
}

// Make, block, unblock and delete addresses; each step is a line of
// virtusertable, the rest of the file as it was.
func TestDisposableLifecycle(t *testing.T) {
	e := newAdminEnv(t)
	c := e.login("bob")

	shop := c.makeAddress(url.Values{"name": {"Shop X"}, "domain": {"example.org"}})
	if !regexp.MustCompile(`^shop-x-[a-z2-9]{4}@example\.org$`).MatchString(shop) {
		t.Fatalf("made %q", shop)
	}
	random := c.makeAddress(url.Values{})
	if !regexp.MustCompile(`^[a-z2-9]{8}@example\.org$`).MatchString(random) {
		t.Fatalf("made %q", random)
	}
	exact := c.makeAddress(url.Values{"name": {"newsletter.2024"}, "exact": {"1"}})
	if exact != "newsletter.2024@example.org" {
		t.Fatalf("made %q", exact)
	}
	want := virtStart + shop + "\tbob\n" + random + "\tbob\n" + exact + "\tbob\n"
	if got := e.file(maps.FileVirtusertable); got != want {
		t.Fatalf("virtusertable:\n%s\nwant\n%s", got, want)
	}
	res, err := e.resolve(shop)
	if err != nil || len(res.Targets) != 1 || res.Targets[0].Account != "bob" {
		t.Fatalf("%s resolves to %+v %v", shop, res, err)
	}
	_, page := c.get("/addresses")
	for _, a := range []string{shop, random, exact, "bob-news@example.org"} {
		if !strings.Contains(page, `data-address="`+a+`"`) {
			t.Errorf("page lacks %s", a)
		}
	}
	if strings.Contains(page, "info@example.org") || strings.Contains(page, "@example.net") {
		t.Error("page shows addresses that are not bob's")
	}
	if _, page := c.get("/addresses?made=" + url.QueryEscape(shop)); !strings.Contains(page, "Made "+shop) {
		t.Error("no notice for the address made")
	}
	if _, page := c.get("/addresses?made=Call+us+now"); strings.Contains(page, "Call us now") || strings.Contains(page, `id="notice"`) {
		t.Error("a link puts its own words on the page")
	}

	// Refused names: taken, reserved, an account's, an alias's, bad, another domain.
	for _, tc := range []struct {
		form url.Values
		code int
	}{
		{url.Values{"name": {"newsletter.2024"}, "exact": {"1"}}, http.StatusConflict},
		{url.Values{"name": {"info"}, "exact": {"1"}}, http.StatusConflict},
		{url.Values{"name": {"postmaster"}, "exact": {"1"}}, http.StatusConflict},
		{url.Values{"name": {"eve"}, "exact": {"1"}}, http.StatusConflict},
		{url.Values{"name": {"abuse"}, "exact": {"1"}}, http.StatusConflict},
		{url.Values{"name": {"-"}, "exact": {"1"}}, http.StatusBadRequest},
		{url.Values{"name": {"x"}, "domain": {"example.net"}}, http.StatusBadRequest},
		{url.Values{"name": {"x"}, "domain": {"elsewhere.example"}}, http.StatusBadRequest},
	} {
		tc.form.Set("csrf", c.csrf)
		if resp, _ := c.post("/addresses", tc.form); resp.StatusCode != tc.code {
			t.Errorf("%v: %d, want %d", tc.form, resp.StatusCode, tc.code)
		}
	}
	if got := e.file(maps.FileVirtusertable); got != want {
		t.Fatalf("a refused address changed the file:\n%s", got)
	}

	// Block: SMTP then refuses with 550 5.1.1 and the table's text.
	if resp, _ := c.post("/addresses/block", url.Values{"csrf": {c.csrf}, "address": {shop}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("block: %d", resp.StatusCode)
	}
	blocked := strings.Replace(want, shop+"\tbob\n", "# blocked by bob\n"+shop+"\terror:nouser "+blockedText+"\n", 1)
	if got := e.file(maps.FileVirtusertable); got != blocked {
		t.Fatalf("after block:\n%s\nwant\n%s", got, blocked)
	}
	_, err = e.resolve(shop)
	var rej *route.Rejection
	if !errors.As(err, &rej) || rej.Code != 550 || rej.Enhanced != "5.1.1" || rej.Text != blockedText {
		t.Fatalf("blocked address resolves: %v", err)
	}
	_, page = c.get("/addresses")
	if !regexp.MustCompile(`(?s)data-address="` + regexp.QuoteMeta(shop) + `" class="blocked".*?Unblock`).MatchString(page) {
		t.Error("the page does not show the address blocked")
	}
	// Unblock restores the line; block again, then delete removes line and mark.
	c.post("/addresses/unblock", url.Values{"csrf": {c.csrf}, "address": {shop}})
	if got := e.file(maps.FileVirtusertable); got != want {
		t.Fatalf("after unblock:\n%s", got)
	}
	c.post("/addresses/block", url.Values{"csrf": {c.csrf}, "address": {shop}})
	if resp, _ := c.post("/addresses/delete", url.Values{"csrf": {c.csrf}, "address": {shop}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if got, w := e.file(maps.FileVirtusertable), strings.Replace(want, shop+"\tbob\n", "", 1); got != w {
		t.Fatalf("after delete:\n%s\nwant\n%s", got, w)
	}
	if _, err := e.resolve(shop); !errors.As(err, &rej) || rej.Code != 550 {
		t.Fatalf("deleted address: %v", err)
	}
}

// Another account can neither see nor change one's addresses; blocked ones
// stay the owner's by their mark.
func TestDisposableOtherAccount(t *testing.T) {
	e := newAdminEnv(t)
	bob := e.login("bob")
	shop := bob.makeAddress(url.Values{"name": {"shop"}})
	gone := bob.makeAddress(url.Values{"name": {"gone"}})
	bob.post("/addresses/block", url.Values{"csrf": {bob.csrf}, "address": {gone}})
	before := e.file(maps.FileVirtusertable)

	eve := e.login("eve")
	_, page := eve.get("/addresses")
	if strings.Contains(page, shop) || strings.Contains(page, gone) || strings.Contains(page, "bob-news") {
		t.Error("eve sees bob's addresses")
	}
	for _, action := range []string{"block", "unblock", "delete"} {
		for _, a := range []string{shop, gone, "bob-news@example.org", "info@example.org", "@example.net", "nobody@example.org", ""} {
			if resp, _ := eve.post("/addresses/"+action, url.Values{"csrf": {eve.csrf}, "address": {a}}); resp.StatusCode != http.StatusNotFound {
				t.Errorf("eve %s %q: %d, want 404", action, a, resp.StatusCode)
			}
		}
	}
	if resp, _ := eve.post("/addresses/rename", url.Values{"csrf": {eve.csrf}, "address": {shop}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown action: %d", resp.StatusCode)
	}
	if got := e.file(maps.FileVirtusertable); got != before {
		t.Fatalf("eve changed the file:\n%s", got)
	}
	// bob still manages both.
	_, page = bob.get("/addresses")
	if !strings.Contains(page, `data-address="`+gone+`" class="blocked"`) || !strings.Contains(page, `data-address="`+shop+`"`) {
		t.Error("bob lost his addresses")
	}
}

// Deliveries to virtusertable addresses are counted with the sender's
// domain, shown on the page, kept across a restart; failed and catch-all
// deliveries are not counted.
func TestDisposableCounts(t *testing.T) {
	e := newAdminEnv(t)
	bob := e.login("bob")
	shop := bob.makeAddress(url.Values{"name": {"shop"}})
	d := e.srv.CountDeliveries(e.srv.cfg.Deliverer)
	send := func(to, from, header string) error {
		t.Helper()
		a, _ := addr.ParsePath(to, true)
		res, err := e.router.Resolve(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		env := &deliver.Envelope{ID: "q1", Recipients: []deliver.Recipient{{Address: a, Targets: res.Targets}}}
		if from == "" {
			env.Null = true
		} else {
			env.From, _ = addr.ParsePath(from, true)
		}
		raw := strings.ReplaceAll(header+"Subject: hi\n\nhello\n", "\n", "\r\n")
		_, err = d.Deliver(context.Background(), env, strings.NewReader(raw))
		return err
	}
	if err := send(shop, "bounces@mailer.example", "From: Shop <news@shop.example>\n"); err != nil {
		t.Fatal(err)
	}
	if err := send(shop, "bounces@mailer.example", "From: Spam <x@spammer.example>\n"); err != nil {
		t.Fatal(err)
	}
	if err := send(shop, "bounces@mailer.example", "From: Shop <news@SHOP.example>\n"); err != nil {
		t.Fatal(err)
	}
	if err := send(shop, "bounces@mailer.example", ""); err != nil {
		t.Fatal(err)
	}
	if err := send(shop, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := send("anything@example.net", "a@b.example", "From: a@b.example\n"); err != nil { // catch-all: not counted
		t.Fatal(err)
	}
	u := e.srv.usage.get(shop)
	if u.Count != 5 || time.Since(u.Last) > time.Minute {
		t.Fatalf("use %+v", u)
	}
	if got := strings.Join(u.Senders, ","); got != "(bounce),mailer.example,shop.example,spammer.example" {
		t.Fatalf("senders %q", got)
	}
	if n := len(e.srv.usage.m); n != 1 {
		t.Errorf("%d addresses counted, want 1", n)
	}
	_, page := bob.get("/addresses")
	if !regexp.MustCompile(`(?s)data-address="` + regexp.QuoteMeta(shop) + `">.*?<td class="count">5</td>.*?just now.*?\(bounce\), mailer.example, shop.example`).MatchString(page) {
		t.Errorf("page does not show the counts:\n%s", page)
	}
	// Over quota: the delivery fails and is not counted.
	e.st.SetQuota(context.Background(), "bob", 1)
	if err := send(shop, "x@y.example", "From: x@y.example\n"); err == nil {
		t.Error("delivery over quota worked")
	}
	if u := e.srv.usage.get(shop); u.Count != 5 {
		t.Errorf("a failed delivery was counted: %+v", u)
	}
	// Saved, and read again by a new server.
	if err := e.srv.usage.save(); err != nil {
		t.Fatal(err)
	}
	again := loadUsage(e.state, slog.Default())
	if u := again.get(shop); u.Count != 5 || len(u.Senders) != 4 {
		t.Errorf("after reload: %+v", u)
	}
	// Deleting the address forgets its counts.
	bob.post("/addresses/delete", url.Values{"csrf": {bob.csrf}, "address": {shop}})
	if u := e.srv.usage.get(shop); u.Count != 0 {
		t.Errorf("counts kept after delete: %+v", u)
	}
}

// A non-admin gets 403 on every admin route; nothing changes.
func TestAdminForbidden(t *testing.T) {
	e := newAdminEnv(t)
	c := e.login("bob")
	n := 0
	for _, rt := range e.srv.routes() {
		if rt.access != admin {
			continue
		}
		n++
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.ReplaceAll(path, "{table}", "aliases")
		var resp *http.Response
		if method == "GET" {
			resp, _ = c.get(path)
		} else {
			resp, _ = c.post(path, url.Values{"csrf": {c.csrf}, "action": {"add"}, "name": {"mallory"}, "password": {"x"},
				"key": {"evil"}, "value": {"bob"}})
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s as bob: %d, want 403", rt.pattern, resp.StatusCode)
		}
	}
	if n < 7 {
		t.Errorf("only %d admin routes", n)
	}
	if _, err := e.st.GetAccount(context.Background(), "mallory"); !errors.Is(err, store.ErrNotFound) {
		t.Error("bob added an account")
	}
	if strings.Contains(e.file(maps.FileAliases), "evil") {
		t.Error("bob changed aliases")
	}
	// The admin link shows only to admins.
	if _, page := c.get("/addresses"); strings.Contains(page, `href="/admin"`) {
		t.Error("bob sees the admin link")
	}
	if _, page := e.login("pp").get("/addresses"); !strings.Contains(page, `href="/admin"`) {
		t.Error("pp does not see the admin link")
	}
	// Taking the mark away works at once.
	pp := e.login("pp")
	e.st.SetAdmin(context.Background(), "pp", false)
	if resp, _ := pp.get("/admin"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after losing the mark: %d", resp.StatusCode)
	}
}

// Every new POST needs the session's token, for an admin too.
func TestAdminCSRF(t *testing.T) {
	e := newAdminEnv(t)
	pp := e.login("pp")
	bob := e.login("bob")
	before := e.file(maps.FileVirtusertable) + e.file(maps.FileAliases)
	for _, path := range []string{"/addresses", "/addresses/delete", "/admin/accounts", "/admin/tables/aliases", "/admin/queue"} {
		for _, tok := range []string{"", bob.csrf, pp.csrf + "x"} {
			form := url.Values{"action": {"add"}, "name": {"mallory"}, "password": {"x"}, "key": {"evil"}, "value": {"pp"},
				"address": {"info@example.org"}}
			if tok != "" {
				form.Set("csrf", tok)
			}
			if resp, _ := pp.post(path, form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with token %q: %d, want 403", path, tok, resp.StatusCode)
			}
		}
	}
	if after := e.file(maps.FileVirtusertable) + e.file(maps.FileAliases); after != before {
		t.Errorf("tables changed:\n%s", after)
	}
	if _, err := e.st.GetAccount(context.Background(), "mallory"); !errors.Is(err, store.ErrNotFound) {
		t.Error("an account was added")
	}
}

// Accounts: add (then log in as it), reset password, quota, admin mark,
// delete; refusals with their reasons.
func TestAdminAccounts(t *testing.T) {
	e := newAdminEnv(t)
	pp := e.login("pp")
	post := func(form url.Values) (int, string) {
		form.Set("csrf", pp.csrf)
		resp, body := pp.post("/admin/accounts", form)
		return resp.StatusCode, body
	}
	if code, body := post(url.Values{"action": {"add"}, "name": {"Carol"}, "password": {"first pw"}}); code != http.StatusSeeOther {
		t.Fatalf("add: %d %s", code, body)
	}
	carol := e.client(t)
	carol.login("carol", "first pw")
	if _, page := pp.get("/admin/accounts"); !strings.Contains(page, `data-account="carol"`) {
		t.Error("carol not listed")
	}
	if code, _ := post(url.Values{"action": {"password"}, "name": {"carol"}, "password": {"second pw"}}); code != http.StatusSeeOther {
		t.Fatalf("password: %d", code)
	}
	if resp, _ := carol.get("/addresses"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("carol's session outlived the password reset: %d", resp.StatusCode)
	}
	carol.login("carol", "second pw")
	if _, err := e.srv.cfg.Auth.CheckPassword(context.Background(), auth.Client{TLS: true, Service: "web"}, "carol", "second pw"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if code, _ := post(url.Values{"action": {"quota"}, "name": {"carol"}, "quota": {"2MiB"}}); code != http.StatusSeeOther {
		t.Fatalf("quota: %d", code)
	}
	if a, _ := e.st.GetAccount(context.Background(), "carol"); a.QuotaBytes != 2<<20 {
		t.Errorf("quota %d", a.QuotaBytes)
	}
	post(url.Values{"action": {"quota"}, "name": {"carol"}, "quota": {"none"}})
	if a, _ := e.st.GetAccount(context.Background(), "carol"); a.QuotaBytes != 0 {
		t.Errorf("quota after none: %d", a.QuotaBytes)
	}
	post(url.Values{"action": {"admin"}, "name": {"carol"}, "admin": {"1"}})
	if a, _ := e.st.GetAccount(context.Background(), "carol"); !a.Admin {
		t.Error("carol not admin")
	}
	for _, tc := range []struct {
		form url.Values
		code int
		text string
	}{
		{url.Values{"action": {"add"}, "name": {"carol"}, "password": {"x"}}, http.StatusConflict, "exists already"},
		{url.Values{"action": {"add"}, "name": {"bad name!"}, "password": {"x"}}, http.StatusBadRequest, "not a valid account name"},
		{url.Values{"action": {"add"}, "name": {"dave"}, "password": {""}}, http.StatusBadRequest, "cannot be used"},
		{url.Values{"action": {"password"}, "name": {"nobody"}, "password": {"x"}}, http.StatusNotFound, "No account"},
		{url.Values{"action": {"quota"}, "name": {"carol"}, "quota": {"lots"}}, http.StatusBadRequest, "Quota:"},
		{url.Values{"action": {"delete"}, "name": {"pp"}}, http.StatusBadRequest, "your own account"},
		{url.Values{"action": {"admin"}, "name": {"pp"}}, http.StatusBadRequest, "your own admin mark"},
		{url.Values{"action": {"explode"}, "name": {"pp"}}, http.StatusBadRequest, "Unknown action"},
	} {
		code, body := post(tc.form)
		if code != tc.code || !strings.Contains(body, tc.text) {
			t.Errorf("%v: %d, want %d with %q", tc.form, code, tc.code, tc.text)
		}
	}
	if code, _ := post(url.Values{"action": {"delete"}, "name": {"carol"}}); code != http.StatusSeeOther {
		t.Fatalf("delete: %d", code)
	}
	if _, err := e.st.GetAccount(context.Background(), "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("carol still there: %v", err)
	}
	if resp, _ := carol.get("/addresses"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a deleted account's session goes on: %d", resp.StatusCode)
	}
	if resp, _ := pp.get("/admin/accounts"); resp.StatusCode != http.StatusOK {
		t.Errorf("the admin was logged out: %d", resp.StatusCode)
	}
}

var entryRE = regexp.MustCompile(`name="line" value="(\d+)"><input type="hidden" name="old" value="([^"]*)">`)

// Tables: add, refuse with the parser's message, replace, delete; stale
// edits refused; comments kept.
func TestAdminTables(t *testing.T) {
	e := newAdminEnv(t)
	pp := e.login("pp")
	post := func(table string, form url.Values) (int, string) {
		form.Set("csrf", pp.csrf)
		resp, body := pp.post("/admin/tables/"+table, form)
		return resp.StatusCode, body
	}
	if code, body := post("aliases", url.Values{"action": {"add"}, "key": {"staff"}, "value": {"pp, bob"}}); code != http.StatusSeeOther {
		t.Fatalf("add alias: %d\n%s", code, body)
	}
	if got := e.file(maps.FileAliases); got != "# the usual\npostmaster: pp\nstaff: pp, bob\n" {
		t.Fatalf("aliases:\n%s", got)
	}
	if code, _ := post("access", url.Values{"action": {"add"}, "key": {"Connect:192.0.2.9"}, "value": {"ERROR:5.7.1:550 go away"}}); code != http.StatusSeeOther {
		t.Fatalf("add access: %d", code)
	}
	if r, ok := e.tables().Access.LookupConnectAddr(netip.MustParseAddr("192.0.2.9")); !ok || r.Code != 550 || r.Text != "go away" {
		t.Errorf("access rule: %+v %v", r, ok)
	}
	if code, _ := post("local-host-names", url.Values{"action": {"add"}, "key": {"example.com"}}); code != http.StatusSeeOther {
		t.Fatalf("add domain: %d", code)
	}
	if !e.tables().LocalHostNames.Has("example.com") {
		t.Error("example.com not local")
	}
	// Refused: the parser's message, nothing written.
	for _, tc := range []struct {
		table string
		form  url.Values
		text  string
	}{
		{"access", url.Values{"action": {"add"}, "key": {"Conect:10.0.0.1"}, "value": {"REJECT"}}, "access:2: unknown tag"},
		{"access", url.Values{"action": {"add"}, "key": {"From:x.example"}, "value": {""}}, "has no value"},
		{"virtusertable", url.Values{"action": {"add"}, "key": {"nodomain"}, "value": {"pp"}}, "virtusertable:7: &#34;nodomain&#34; has no @domain"},
		{"local-host-names", url.Values{"action": {"add"}, "key": {"bad_domain!"}}, "local-host-names:4:"},
		{"aliases", url.Values{"action": {"add"}, "key": {"a\nb"}, "value": {"pp"}}, "one line"},
		{"virtusertable", url.Values{"action": {"add"}, "key": {"a b@example.org"}, "value": {"pp"}}, "no spaces"},
	} {
		before := e.file(tc.table)
		code, body := post(tc.table, tc.form)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.text) {
			t.Errorf("%s %v: %d, want 400 with %q", tc.table, tc.form, code, tc.text)
		}
		if e.file(tc.table) != before {
			t.Errorf("%s changed although refused", tc.table)
		}
	}
	// Replace and delete go by line and text as shown.
	_, page := pp.get("/admin/tables/virtusertable")
	m := entryRE.FindAllStringSubmatch(page, -1) // each entry twice: its replace and delete forms
	if len(m) != 6 || m[2][1] != "5" || m[2][2] != "bob-news@example.org\tbob" {
		t.Fatalf("entries on the page: %q", m)
	}
	if code, _ := post("virtusertable", url.Values{"action": {"replace"}, "line": {"5"}, "old": {"bob-news@example.org\tbob"},
		"text": {"bob-news@example.org\tbob@example.org"}}); code != http.StatusSeeOther {
		t.Fatalf("replace: %d", code)
	}
	if code, body := post("virtusertable", url.Values{"action": {"delete"}, "line": {"5"}, "old": {"bob-news@example.org\tbob"}}); code != http.StatusConflict || !strings.Contains(body, "changed meanwhile") {
		t.Errorf("stale delete: %d", code)
	}
	if code, _ := post("virtusertable", url.Values{"action": {"replace"}, "line": {"2"}, "old": {"info@example.org pp"},
		"text": {"info@example.org pp\nextra@example.org pp"}}); code != http.StatusBadRequest {
		t.Errorf("two lines for one entry: %d", code)
	}
	if code, _ := post("virtusertable", url.Values{"action": {"delete"}, "line": {"2"}, "old": {"info@example.org pp"}}); code != http.StatusSeeOther {
		t.Fatalf("delete: %d", code)
	}
	if got, want := e.file(maps.FileVirtusertable), "# virtual addresses\n\n# bob's\nbob-news@example.org\tbob@example.org\n@example.net\tpp\n"; got != want {
		t.Fatalf("virtusertable:\n%s\nwant\n%s", got, want)
	}
	// Aliases may go on over lines.
	_, page = pp.get("/admin/tables/aliases")
	if code, _ := post("aliases", url.Values{"action": {"replace"}, "line": {"3"}, "old": {"staff: pp, bob"}, "text": {"staff: pp,\r\n  bob, eve"}}); code != http.StatusSeeOther {
		t.Fatalf("replace alias: %d", code)
	}
	if got, _ := e.tables().Aliases.Lookup("staff"); strings.Join(got, " ") != "pp bob eve" {
		t.Errorf("staff: %v", got)
	}
	if resp, _ := pp.get("/admin/tables/passwd"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown table: %d", resp.StatusCode)
	}
	if code, _ := post("../aliases", url.Values{"action": {"add"}, "key": {"x"}, "value": {"pp"}}); code == http.StatusSeeOther {
		t.Error("a path outside the tables was taken")
	}
}

// Queue: list, retry now, delete; status page.
func TestAdminQueueAndStatus(t *testing.T) {
	e := newAdminEnv(t)
	pp := e.login("pp")
	ctx := context.Background()
	raw := "From: pp@example.org\r\nSubject: out\r\n\r\nhi\r\n"
	res, err := e.st.Deliver(ctx, &store.Delivery{Body: strings.NewReader(raw), InternalDate: time.Now(), From: "pp@example.org",
		Remote: []store.QueueRecipient{{Address: "far@remote.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.QueueID
	later := time.Now().Add(time.Hour)
	e.st.UpdateQueueEntry(ctx, id, store.QueueUpdate{NextAttempt: later, Recipients: []store.QueueRecipientState{{
		QueueRecipient: store.QueueRecipient{Address: "far@remote.example"}, Status: store.RcptPending, Attempts: 2, LastError: "451 try later"}}})
	_, page := pp.get("/admin/queue")
	if !strings.Contains(page, `data-id="`+id+`"`) || !strings.Contains(page, "far@remote.example") || !strings.Contains(page, "451 try later") {
		t.Fatalf("queue page:\n%s", page)
	}
	if resp, _ := pp.post("/admin/queue", url.Values{"csrf": {pp.csrf}, "action": {"flush"}, "id": {id}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("flush: %d", resp.StatusCode)
	}
	if q, _ := e.st.GetQueueEntry(ctx, id); !q.NextAttempt.Before(time.Now().Add(time.Minute)) {
		t.Errorf("next attempt %v after flush", q.NextAttempt)
	}
	_, page = pp.get("/admin")
	for _, want := range []string{"127.0.0.1:25", "mx.example.org", `class="warn"`, "1 messages, 1 recipients waiting", "example.org",
		"recipient rejected", "192.0.2.9", "reason=&lt;b&gt;User unknown&lt;/b&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if resp, _ := pp.post("/admin/queue", url.Values{"csrf": {pp.csrf}, "action": {"delete"}, "id": {id}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := e.st.GetQueueEntry(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("entry still there: %v", err)
	}
	if resp, _ := pp.post("/admin/queue", url.Values{"csrf": {pp.csrf}, "action": {"delete"}, "id": {id}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("delete again: %d", resp.StatusCode)
	}
}
