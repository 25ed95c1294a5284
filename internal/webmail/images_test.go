package webmail

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/store"
)

func TestImagesPerSender(t *testing.T) {
	e := newEnv(t, envOptions{})
	dir := t.TempDir()
	e.srv.images = newImageSenders(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	html := func(from, img string) string {
		return "From: " + from + "\nTo: pp@example.org\nSubject: news\nMIME-Version: 1.0\nContent-Type: text/html\n\n<p>hi</p><img src=\"" + img + "\">\n"
	}
	news := e.deliver(t, "pp", "", html("News <News@Shop.example>", "https://img.shop.example/a.png"))
	other := e.deliver(t, "pp", "", html("spam@junk.example", "https://track.junk.example/p.gif"))
	inbox := e.mailbox(t, "pp", store.Inbox)
	c := e.client(t)
	c.login("pp", "secret-pp")
	read := func(cl *client, uid uint32) string {
		t.Helper()
		resp, page := cl.get(fmt.Sprintf("/msg/%d/%d", inbox.ID, uid))
		if resp.StatusCode != 200 {
			t.Fatalf("read %d: %d", uid, resp.StatusCode)
		}
		return page
	}
	frame := func(cl *client, uid uint32) (string, string) {
		t.Helper()
		resp, body := cl.get(fmt.Sprintf("/msg/%d/%d/body", inbox.ID, uid))
		return body, resp.Header.Get("Content-Security-Policy")
	}
	blocked := func(cl *client, uid uint32, img string) bool {
		t.Helper()
		body, csp := frame(cl, uid)
		has := strings.Contains(body, img)
		remoteCSP := strings.Contains(csp, "https:")
		if has != remoteCSP {
			t.Errorf("frame of %d: image there %v, CSP allows remote %v", uid, has, remoteCSP)
		}
		return !has
	}

	page := read(c, news)
	if !strings.Contains(page, `id="show-images"`) || !strings.Contains(page, "Always show images from news@shop.example") {
		t.Fatalf("no offer to show images:\n%s", page)
	}
	if !blocked(c, news, "img.shop.example") {
		t.Fatal("remote image shown before allowing")
	}
	back := fmt.Sprintf("/msg/%d/%d", inbox.ID, news)
	resp, _ := c.post("/images/allow", url.Values{"csrf": {c.csrf}, "sender": {"news@shop.example"}, "back": {back}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != back {
		t.Fatalf("allow: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	page = read(c, news)
	if !strings.Contains(page, `id="revoke-sender"`) || strings.Contains(page, `id="show-images"`) {
		t.Errorf("read page after allowing:\n%s", page)
	}
	if blocked(c, news, "img.shop.example") {
		t.Error("allowed sender's image still blocked")
	}
	// Only that sender, and only for pp.
	if !blocked(c, other, "track.junk.example") {
		t.Error("another sender's image shown")
	}
	bobUID := e.deliver(t, "bob", "", html("news@shop.example", "https://img.shop.example/b.png"))
	bob := e.client(t)
	bob.login("bob", "secret-bob")
	bobInbox := e.mailbox(t, "bob", store.Inbox)
	if _, body := bob.get(fmt.Sprintf("/msg/%d/%d/body", bobInbox.ID, bobUID)); strings.Contains(body, "img.shop.example") {
		t.Error("pp's choice shows images to bob")
	}
	// Remembered in pp's file, and read again after a restart.
	data, err := os.ReadFile(filepath.Join(dir, "images-pp.json"))
	if err != nil || string(data) != `["news@shop.example"]` {
		t.Errorf("file: %q %v", data, err)
	}
	if !newImageSenders(dir, e.srv.log).allowed("pp", "NEWS@shop.example") {
		t.Error("not remembered across a restart")
	}
	// Revoked from the same page: blocked again.
	resp, _ = c.post("/images/revoke", url.Values{"csrf": {c.csrf}, "sender": {"news@shop.example"}, "back": {back}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if !blocked(c, news, "img.shop.example") {
		t.Error("image shown after revoking")
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "images-pp.json")); string(data) != `[]` {
		t.Errorf("file after revoking: %q", data)
	}
	// Bad input: no sender, an unknown action, a foreign "back".
	for _, tc := range []struct {
		path   string
		form   url.Values
		status int
	}{
		{"/images/allow", url.Values{"sender": {""}}, 400},
		{"/images/allow", url.Values{"sender": {"a b@c"}}, 400},
		{"/images/forever", url.Values{"sender": {"x@y.example"}}, 404},
		{"/images/allow", url.Values{"sender": {"x@y.example"}, "back": {"//evil.example/"}}, 303},
	} {
		tc.form.Set("csrf", c.csrf)
		resp, _ := c.post(tc.path, tc.form)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %v: %d, want %d", tc.path, tc.form, resp.StatusCode, tc.status)
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode == 303 && loc != "/" {
			t.Errorf("redirected to %q", loc)
		}
	}
	// An odd account name stays inside the directory.
	if f := e.srv.images.file("../../etc/x"); filepath.Dir(f) != dir {
		t.Errorf("file for an odd name: %s", f)
	}
}
