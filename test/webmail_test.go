package test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/posthorn/posthorn/internal/dnsutil/dnstest"
)

// webInstance is a posthorn with the webmail on a free port, accounts pp
// and bob, and a headless Chromium driving it.
type webInstance struct {
	*instance
	web string // http://127.0.0.1:port
	ctx context.Context
}

func newWebInstance(t *testing.T) *webInstance {
	t.Helper()
	chromium := requireTool(t, "chromium")
	webAddr := freePort(t)
	dns := dnstest.Start(t)
	extra := fmt.Sprintf("resolver = %q\n\n[smtpc]\nport = 1\n\n[web]\nlisten = %q\n", dns.Addr, webAddr)
	in := newInstanceWith(t, instanceOptions{extra: extra}, "pp", "bob")
	in.start()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return &webInstance{instance: in, web: "http://" + webAddr, ctx: ctx}
}

// sendSMTP delivers a message over SMTP from 127.0.0.1, as any client would.
func (w *webInstance) sendSMTP(t *testing.T, from, to, raw string) {
	t.Helper()
	c, err := smtp.Dial(w.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	wc.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")))
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

func (w *webInstance) run(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(w.ctx, actions...); err != nil {
		loc, _ := chromedp.Run(w.ctx, chromedp.Location())
		t.Fatalf("browser (at %s): %v", loc, err)
	}
}

// value runs an action that returns something.
func value[T any](t *testing.T, w *webInstance, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(w.ctx, a)
	if err != nil {
		loc, _ := chromedp.Run(w.ctx, chromedp.Location())
		t.Fatalf("browser (at %s): %v", loc, err)
	}
	return v
}

func (w *webInstance) login(t *testing.T, user string) {
	t.Helper()
	w.run(t,
		chromedp.Navigate(w.web+"/login"),
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), user),
		chromedp.SendKeys(chromedp.ID("password"), "secret-"+user),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("msglist")),
	)
}

func (w *webInstance) logout(t *testing.T) {
	t.Helper()
	w.run(t, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("user")))
}

// openBySubject clicks the list's message with that subject and waits for
// the message page.
func (w *webInstance) openBySubject(t *testing.T, subject string) {
	t.Helper()
	sel := fmt.Sprintf(`//table[@id="msglist"]//td[@class="subject"]/a[normalize-space(text())=%q]`, subject)
	w.run(t, chromedp.WaitVisible(sel), chromedp.Click(sel),
		chromedp.WaitVisible(chromedp.ID("subject")))
}

// TestWebmailBrowser: log in, read a message that came over SMTP, reply,
// find the reply in the other account; send with an attachment and
// download it there; and new mail appears in the open list without a reload.
func TestWebmailBrowser(t *testing.T) {
	w := newWebInstance(t)
	w.sendSMTP(t, "bob@example.org", "pp@example.org",
		"From: Bob <bob@example.org>\nTo: pp@example.org\nSubject: Lunch on Friday?\nMessage-ID: <lunch-1@example.org>\n\nShall we meet at noon?\n")

	w.login(t, "pp")
	w.openBySubject(t, "Lunch on Friday?")
	body := value(t, w, chromedp.Text(chromedp.ID("body")))
	if !strings.Contains(body, "Shall we meet at noon?") {
		t.Fatalf("message body %q", body)
	}
	// Reply with the keyboard shortcut r.
	w.run(t, chromedp.KeyEvent("r"), chromedp.WaitVisible(chromedp.ID("text")))
	subject := value(t, w, chromedp.Value(chromedp.ID("subject")))
	to := value(t, w, chromedp.Value(chromedp.ID("to")))
	if subject != "Re: Lunch on Friday?" || !strings.Contains(to, "bob@example.org") {
		t.Fatalf("reply form: subject %q to %q", subject, to)
	}
	w.run(t, chromedp.SetValue(chromedp.ID("text"), "Noon is fine.\n\n> Shall we meet at noon?"),
		chromedp.Click(chromedp.ID("send")), chromedp.WaitVisible(chromedp.ID("msglist")))

	// Another message with an attachment.
	file := filepath.Join(t.TempDir(), "menu.txt")
	os.WriteFile(file, []byte("soup\nbread\n"), 0o644)
	w.run(t, chromedp.Navigate(w.web+"/compose"), chromedp.WaitVisible(chromedp.ID("to")),
		chromedp.SendKeys(chromedp.ID("to"), "bob@example.org"),
		chromedp.SendKeys(chromedp.ID("subject"), "The menu"),
		chromedp.SendKeys(chromedp.ID("text"), "Attached."),
		chromedp.SetUploadFiles(chromedp.ID("attachment"), []string{file}),
		chromedp.Click(chromedp.ID("send")), chromedp.WaitVisible(chromedp.ID("msglist")))
	w.logout(t)

	w.login(t, "bob")
	w.openBySubject(t, "Re: Lunch on Friday?")
	body = value(t, w, chromedp.Text(chromedp.ID("body")))
	if !strings.Contains(body, "Noon is fine.") {
		t.Fatalf("reply body %q", body)
	}
	w.run(t, chromedp.Navigate(w.web+"/"), chromedp.WaitVisible(chromedp.ID("msglist")))
	w.openBySubject(t, "The menu")
	got := value(t, w, chromedp.Evaluate[map[string]string](`(async () => {
		const a = document.querySelector("#attachments a");
		const r = await fetch(a.href);
		return {name: a.textContent, text: await r.text(), type: r.headers.get("Content-Type"),
			disp: r.headers.get("Content-Disposition")};
	})()`, chromedp.EvalAwaitPromise))
	if got["name"] != "menu.txt" || got["text"] != "soup\nbread\n" || !strings.HasPrefix(got["type"], "text/plain") ||
		!strings.Contains(got["disp"], "attachment") {
		t.Fatalf("attachment: %v", got)
	}

	// Live update: the list shows a new message without a reload.
	w.run(t, chromedp.Navigate(w.web+"/"), chromedp.WaitVisible(chromedp.ID("msglist")),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	w.sendSMTP(t, "pp@example.org", "bob@example.org", "From: pp@example.org\nTo: bob@example.org\nSubject: Live one\n\nhi\n")
	w.run(t, chromedp.WaitVisible(`//td[@class="subject"]/a[normalize-space(text())="Live one"]`))
	stayed := value(t, w, chromedp.Evaluate[bool](`window.notReloaded === true`))
	if !stayed {
		t.Error("the page was reloaded rather than updated")
	}
}

// TestWebmailHostileHTML: HTML mails that try to run script or load
// remote URLs run none and load nothing, until the user allows the
// remote images of one message (which then load: the counter works).
func TestWebmailHostileHTML(t *testing.T) {
	w := newWebInstance(t)
	var mu sync.Mutex
	hits := map[string]int{}
	remote := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		rw.Header().Set("Content-Type", "image/gif")
		rw.Write([]byte("GIF89a"))
	}))
	defer remote.Close()
	R := remote.URL
	payloads := []string{
		`<script>window.pwned=1;parent.pwned=1;new Image().src="` + R + `/script"</script><p>script</p>`,
		`<img src=x onerror="parent.pwned=1;this.src='` + R + `/onerror'"><body onload="parent.pwned=1"><p onmouseover="parent.pwned=1">handlers</p>`,
		`<a id=js href="javascript:parent.pwned=1">js</a><iframe src="javascript:parent.pwned=1"></iframe><iframe src="` + R + `/iframe"></iframe><embed src="` + R + `/embed"><object data="` + R + `/object"></object>`,
		`<img src="data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIG9ubG9hZD0icGFyZW50LnB3bmVkPTEiLz4="><a href="data:text/html,<script>parent.pwned=1</script>">data</a>`,
		`<svg xmlns="http://www.w3.org/2000/svg"><script>parent.pwned=1</script><image href="` + R + `/svgimage"/><foreignObject><img src="` + R + `/svgfo"></foreignObject></svg>`,
		`<style>body{background:url(` + R + `/css)} @import url(` + R + `/import);</style><link rel=stylesheet href="` + R + `/link.css"><div style="background-image:url(` + R + `/inline-css);width:expression(parent.pwned=1)">css</div>`,
		`<form action="` + R + `/form" method=post><input name=a value=b><button id=go>go</button></form><meta http-equiv="refresh" content="0;url=` + R + `/meta"><base href="` + R + `/base/"><img src="relative.png">`,
		`<img src="` + R + `/broken1" <script>parent.pwned=1</script><scr<script>ipt>parent.pwned=1</script><!--<img src="--><img src=` + R + `/broken2 onerror=parent.pwned=1>` + "<p <img src=" + R + "/broken3>",
		`<p>Look:</p><img src="` + R + `/photo.gif" alt=photo><video poster="` + R + `/poster"></video><audio src="` + R + `/audio"></audio>`,
	}
	for i, p := range payloads {
		raw := fmt.Sprintf("From: hostile@remote.example\nTo: pp@example.org\nSubject: hostile %d\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<html><head><title>x</title></head><body>%s</body></html>\n", i, p)
		w.sendSMTP(t, "hostile@remote.example", "pp@example.org", raw)
	}
	w.login(t, "pp")
	for i := range payloads {
		w.run(t, chromedp.Navigate(w.web+"/"), chromedp.WaitVisible(chromedp.ID("msglist")))
		w.openBySubject(t, fmt.Sprintf("hostile %d", i))
		w.run(t, chromedp.WaitVisible(chromedp.ID("body")))
		frameURL := value(t, w, chromedp.AttributeValue(chromedp.ID("body"), "src")).Value
		// Give the frame time to load (and a payload time to act), then
		// open the frame's URL at the top level too: its own CSP sandbox
		// must stop scripts there as well.
		time.Sleep(300 * time.Millisecond)
		pwned := value(t, w, chromedp.Evaluate[string](`typeof window.pwned`))
		if pwned != "undefined" {
			t.Errorf("hostile %d: window.pwned is set on the page", i)
		}
		w.run(t, chromedp.Navigate(w.web+frameURL))
		time.Sleep(200 * time.Millisecond)
		pwned = value(t, w, chromedp.Evaluate[string](`typeof window.pwned`))
		if pwned != "undefined" {
			t.Errorf("hostile %d: script ran in the frame's document", i)
		}
	}
	mu.Lock()
	if len(hits) != 0 {
		t.Errorf("remote URLs were loaded: %v", hits)
	}
	mu.Unlock()

	// Allowing the images of the last message loads its image, only.
	w.run(t, chromedp.Navigate(w.web+"/"), chromedp.WaitVisible(chromedp.ID("msglist")))
	w.openBySubject(t, fmt.Sprintf("hostile %d", len(payloads)-1))
	w.run(t, chromedp.Click(chromedp.ID("show-images")), chromedp.WaitVisible(chromedp.ID("body")))
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := hits["/photo.gif"]
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits["/photo.gif"] == 0 {
		t.Errorf("the allowed remote image was not loaded: %v", hits)
	}
	for path := range hits {
		if path != "/photo.gif" {
			t.Errorf("after allowing images, %s was loaded too", path)
		}
	}
}

// trySMTP sends a message and returns the first refusal (nil when it was
// accepted).
func (w *webInstance) trySMTP(from, to, raw string) error {
	c, err := smtp.Dial(w.smtp)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	wc.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")))
	if err := wc.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// eventually retries f for up to 10 s: a table edit is in force once the
// server's watcher has loaded it (one to two polling intervals).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebmailDisposableBrowser: make a disposable address in one click,
// mail to it over SMTP arrives and is counted with the sender's domain;
// blocked, SMTP refuses it with 550 and the table's text.
func TestWebmailDisposableBrowser(t *testing.T) {
	w := newWebInstance(t)
	w.login(t, "pp")
	w.run(t, chromedp.Click(chromedp.ID("addresses-link")), chromedp.WaitVisible(chromedp.ID("newaddr")),
		chromedp.SendKeys(chromedp.ID("addr-name"), "shop"),
		chromedp.Click(chromedp.ID("addr-make")), chromedp.WaitVisible(chromedp.ID("notice")))
	address := value(t, w, chromedp.Evaluate[string](`document.querySelector("#addresses tr[data-address^='shop-']").dataset.address`))
	if !strings.HasPrefix(address, "shop-") || !strings.HasSuffix(address, "@example.org") {
		t.Fatalf("made %q", address)
	}
	if vt, _ := os.ReadFile(filepath.Join(w.dir, "virtusertable")); !strings.Contains(string(vt), address+"\tpp\n") {
		t.Fatalf("virtusertable:\n%s", vt)
	}

	// Mail to it arrives once the server has the new line.
	mail := "From: Shop <news@shop.example>\nTo: " + address + "\nSubject: Welcome to the shop\n\nThanks for registering.\n"
	eventually(t, "mail to the new address", func() error { return w.trySMTP("bounce@mailer.example", address, mail) })
	w.run(t, chromedp.Navigate(w.web+"/"), chromedp.WaitVisible(chromedp.ID("msglist")))
	w.openBySubject(t, "Welcome to the shop")

	// Its counter and the sender's domain.
	row := fmt.Sprintf(`#addresses tr[data-address=%q]`, address)
	w.run(t, chromedp.Navigate(w.web+"/addresses"), chromedp.WaitVisible(chromedp.ID("addresses")))
	got := value(t, w, chromedp.Evaluate[map[string]string](fmt.Sprintf(`(() => {
		const r = document.querySelector(%q);
		return {count: r.querySelector(".count").textContent, senders: r.querySelector(".senders").textContent,
			last: r.querySelector(".last").textContent};
	})()`, row)))
	if got["count"] != "1" || got["senders"] != "shop.example" || got["last"] != "just now" {
		t.Fatalf("counter: %v", got)
	}

	// Blocked: SMTP answers 550 with the table's text.
	w.run(t, chromedp.Click(row+` button.block`), chromedp.WaitVisible(row+`.blocked`))
	if vt, _ := os.ReadFile(filepath.Join(w.dir, "virtusertable")); !strings.Contains(string(vt), "# blocked by pp\n"+address+"\terror:nouser ") {
		t.Fatalf("virtusertable after block:\n%s", vt)
	}
	eventually(t, "refusal of the blocked address", func() error {
		err := w.trySMTP("bounce@mailer.example", address, mail)
		var te *textproto.Error
		if errors.As(err, &te) && te.Code == 550 && te.Msg == "5.1.1 This address does not take mail any more" {
			return nil
		}
		return fmt.Errorf("got %v", err)
	})
}

// TestWebmailAdminBrowser: an admin adds an account on the admin page,
// and it can log in.
func TestWebmailAdminBrowser(t *testing.T) {
	w := newWebInstance(t)
	w.runStdin("secret-boss\n", "user", "add", "boss", "--admin", "--password-stdin", "--config", w.cfg)
	w.login(t, "boss")
	w.run(t, chromedp.Click(chromedp.ID("admin-link")), chromedp.WaitVisible(chromedp.ID("status")),
		chromedp.Navigate(w.web+"/admin/accounts"), chromedp.WaitVisible(chromedp.ID("account-add")),
		chromedp.SendKeys(chromedp.ID("new-name"), "carol"),
		chromedp.SendKeys(chromedp.ID("new-password"), "secret-carol"),
		chromedp.Click(chromedp.ID("new-add")), chromedp.WaitVisible(chromedp.ID("notice")),
		chromedp.WaitVisible(`#accounts tr[data-account="carol"]`))
	w.logout(t)
	w.login(t, "carol")
	if who := value(t, w, chromedp.Evaluate[string](`document.querySelector(".who").textContent`)); who != "carol" {
		t.Fatalf("logged in as %q", who)
	}
	// carol is no admin: no link, and the pages answer 403.
	status := value(t, w, chromedp.Evaluate[int](`(async () => (await fetch("/admin/accounts")).status)()`, chromedp.EvalAwaitPromise))
	if status != 403 || value(t, w, chromedp.Evaluate[bool](`document.getElementById("admin-link") !== null`)) {
		t.Fatalf("carol on the admin pages: %d", status)
	}
}

// TestWebmailDraftsAndConversations: text typed in the compose page is in
// Drafts a few seconds later without pressing anything, as one draft; a
// reply that arrives over SMTP joins its conversation in the list, which
// expands in place and opens on a page with both messages.
func TestWebmailDraftsAndConversations(t *testing.T) {
	w := newWebInstance(t)
	w.login(t, "pp")
	w.run(t, chromedp.Navigate(w.web+"/compose"), chromedp.WaitVisible(chromedp.ID("to")),
		chromedp.SendKeys(chromedp.ID("to"), "bob@example.org"),
		chromedp.SendKeys(chromedp.ID("subject"), "Typed, not saved by hand"),
		chromedp.SendKeys(chromedp.ID("text"), "first words"))
	saved := func() string {
		return value(t, w, chromedp.Text(chromedp.ID("autosave-status")))
	}
	eventually(t, "the draft saved as you go", func() error {
		if s := saved(); !strings.HasPrefix(s, "Draft saved") {
			return fmt.Errorf("status %q", s)
		}
		return nil
	})
	first := value(t, w, chromedp.Value(chromedp.CSS(`input[name="draft"]`)))
	w.run(t, chromedp.SendKeys(chromedp.ID("text"), " and more"))
	eventually(t, "the second save", func() error {
		if d := value(t, w, chromedp.Value(chromedp.CSS(`input[name="draft"]`))); d == first {
			return fmt.Errorf("still draft %s", d)
		}
		return nil
	})
	// In Drafts: one message with the latest text.
	drafts := `//nav[@id="mailboxes"]//a[starts-with(normalize-space(.), "Drafts")]`
	w.run(t, chromedp.Navigate(w.web+"/"), chromedp.WaitVisible(drafts), chromedp.Click(drafts),
		chromedp.WaitVisible(`//td[@class="subject"]/a[normalize-space(text())="Typed, not saved by hand"]`))
	n := value(t, w, chromedp.Evaluate[int](`document.querySelectorAll("#msglist tr.msg").length`))
	if n != 1 {
		t.Errorf("Drafts lists %d messages, want 1", n)
	}
	w.openBySubject(t, "Typed, not saved by hand")
	if body := value(t, w, chromedp.Text(chromedp.ID("body"))); !strings.Contains(body, "first words and more") {
		t.Errorf("draft body %q", body)
	}

	// A message and the reply to it, over SMTP.
	w.sendSMTP(t, "bob@example.org", "pp@example.org",
		"From: Bob <bob@example.org>\nTo: pp@example.org\nSubject: Trip\nMessage-ID: <trip-1@example.org>\n\nWhere shall we go?\n")
	w.sendSMTP(t, "bob@example.org", "pp@example.org",
		"From: Bob <bob@example.org>\nTo: pp@example.org\nSubject: Re: Trip\nMessage-ID: <trip-2@example.org>\n"+
			"In-Reply-To: <trip-1@example.org>\nReferences: <trip-1@example.org>\n\nThe sea, I think.\n")
	conv := `//tr[contains(@class, "conv")]//td[@class="subject"]/a[normalize-space(text())="Trip"]`
	w.run(t, chromedp.Navigate(w.web+"/"), chromedp.WaitVisible(conv))
	count := value(t, w, chromedp.Evaluate[string](`document.querySelector("tr.conv .convcount").textContent`))
	if count != "2" {
		t.Errorf("conversation count %q", count)
	}
	// Expanded in place: both messages appear under it, without a reload.
	w.run(t, chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`),
		chromedp.Click(chromedp.CSS(`tr.conv a.expand`)),
		chromedp.WaitVisible(`//tr[contains(@class, "child")]//a[normalize-space(text())="Re: Trip"]`))
	if !value(t, w, chromedp.Evaluate[bool](`window.notReloaded === true`)) {
		t.Error("expanding reloaded the page")
	}
	// Its page: both, the question first.
	w.run(t, chromedp.Click(conv), chromedp.WaitVisible(chromedp.ID("conversation")))
	text := value(t, w, chromedp.Text(chromedp.ID("conversation")))
	q, a := strings.Index(text, "Where shall we go?"), strings.Index(text, "The sea, I think.")
	if q < 0 || a < q {
		t.Errorf("conversation page:\n%s", text)
	}
}
