package webmail

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/store"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestLogin(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(t)

	// Not logged in: pages send to /login, POSTs are refused.
	resp, _ := c.get("/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("/ before login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page := c.get("/login")
	tok := csrfRE.FindStringSubmatch(page)[1]

	// No token, a wrong token: 403, and the password is not even checked.
	for _, form := range []url.Values{
		{"user": {"pp"}, "password": {"secret-pp"}},
		{"user": {"pp"}, "password": {"secret-pp"}, "csrf": {"x" + tok}},
	} {
		resp, _ = c.post("/login", form)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("login with token %q: %d, want 403", form.Get("csrf"), resp.StatusCode)
		}
	}
	// A token without its cookie (another browser) is refused too.
	other := e.client(t)
	resp, _ = other.post("/login", url.Values{"user": {"pp"}, "password": {"secret-pp"}, "csrf": {tok}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login with another browser's token: %d, want 403", resp.StatusCode)
	}

	resp, body := c.post("/login", url.Values{"user": {"pp"}, "password": {"wrong"}, "csrf": {tok}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
		t.Fatalf("wrong password: %d\n%s", resp.StatusCode, body)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			t.Fatal("a session cookie after a wrong password")
		}
	}

	resp, _ = c.post("/login", url.Values{"user": {"pp"}, "password": {"secret-pp"}, "csrf": {tok}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, not Secure over HTTP", sc)
	}
	resp, _ = c.get("/")
	inbox := e.mailbox(t, "pp", store.Inbox)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/mail/"+itoa(inbox.ID) {
		t.Fatalf("/ after login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body = c.get("/mail/" + itoa(inbox.ID))
	if resp.StatusCode != 200 || !strings.Contains(body, "INBOX") {
		t.Fatalf("inbox: %d", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("page CSP %q", csp)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, "style=") {
		t.Error("the page has inline script or style")
	}

	// Log out: without the token refused, with it the session is gone.
	resp, _ = c.post("/logout", url.Values{})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without token: %d", resp.StatusCode)
	}
	resp, _ = c.post("/logout", url.Values{"csrf": {c.csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	resp, _ = c.get("/mail/" + itoa(inbox.ID))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}

func TestLoginSecureCookieOverTLS(t *testing.T) {
	e := newEnv(t, envOptions{tls: true})
	c := e.client(t)
	_, page := c.get("/login")
	tok := csrfRE.FindStringSubmatch(page)[1]
	resp, _ := c.post("/login", url.Values{"user": {"pp"}, "password": {"secret-pp"}, "csrf": {tok}})
	found := false
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			found = true
			if !ck.Secure || !ck.HttpOnly {
				t.Errorf("cookie over HTTPS: %+v", ck)
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie: %d", resp.StatusCode)
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, envOptions{throttle: auth.ThrottleConfig{LockAfter: 4,
		Sleep: func(context.Context, time.Duration) error { return nil }}})
	c := e.client(t)
	_, page := c.get("/login")
	tok := csrfRE.FindStringSubmatch(page)[1]
	// Failures lock the account after ten; the delays grow before that, so
	// the eleventh answer, whatever the password, is "try later".
	var last int
	for i := 0; i < 12; i++ {
		resp, _ := c.post("/login", url.Values{"user": {"bob"}, "password": {"nope"}, "csrf": {tok}})
		last = resp.StatusCode
		if last == http.StatusTooManyRequests {
			break
		}
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("after many failures: %d, want 429", last)
	}
}
