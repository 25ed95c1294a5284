package webmail

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
	"github.com/posthorn/posthorn/internal/store"
)

const plainMail = `From: Alice Example <alice@remote.example>
To: pp@example.org
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice
Date: Mon, 2 Mar 2026 10:00:00 +0000
Message-ID: <orig-1@remote.example>
References: <root@remote.example>

Hello <b>pp</b>, see you & bye.
`

const htmlMail = `From: html@remote.example
To: pp@example.org
Subject: html
MIME-Version: 1.0
Content-Type: multipart/related; boundary=rel

--rel
Content-Type: text/html; charset=utf-8

<p onclick="window.pwned=1">Hi</p><script>window.pwned=1</script>
<img src="cid:logo@x"><img src="https://tracker.example/pixel.gif">
<a href="javascript:alert(1)">js</a><form action="https://evil.example"><input name=a></form>
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--rel--
`

func TestReadPlainAndList(t *testing.T) {
	e := newEnv(t, envOptions{})
	uid := e.deliver(t, "pp", "", plainMail)
	c := e.client(t)
	c.login("pp", "secret-pp")
	inbox := e.mailbox(t, "pp", store.Inbox)
	_, list := c.get("/mail/" + itoa(inbox.ID))
	for _, want := range []string{"Alice Example", "Grüße from Alice", `class="count">1<`, `class="msg unread`} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	resp, page := c.get(fmt.Sprintf("/msg/%d/%d", inbox.ID, uid))
	if resp.StatusCode != 200 {
		t.Fatalf("read: %d", resp.StatusCode)
	}
	// The text is escaped, not markup.
	if !strings.Contains(page, "Hello &lt;b&gt;pp&lt;/b&gt;, see you &amp; bye.") {
		t.Errorf("plain text not shown escaped:\n%s", page)
	}
	info, _ := e.st.GetMessage(context.Background(), inbox.ID, uid)
	if !info.HasFlag(store.FlagSeen) {
		t.Error("reading did not set \\Seen")
	}
	// The unread count went down.
	_, list = c.get("/mail/" + itoa(inbox.ID))
	if strings.Contains(list, `class="count"`) {
		t.Error("INBOX still counts an unread message")
	}
}

func TestReadHTML(t *testing.T) {
	e := newEnv(t, envOptions{})
	uid := e.deliver(t, "pp", "", htmlMail)
	c := e.client(t)
	c.login("pp", "secret-pp")
	inbox := e.mailbox(t, "pp", store.Inbox)
	base := fmt.Sprintf("/msg/%d/%d", inbox.ID, uid)
	_, page := c.get(base)
	if !strings.Contains(page, `<iframe class="body" id="body" src="`+base+`/body"`) || !strings.Contains(page, `sandbox="allow-popups allow-popups-to-escape-sandbox"`) {
		t.Fatalf("no sandboxed frame:\n%s", page)
	}
	if !strings.Contains(page, "Remote images are blocked") || !strings.Contains(page, "report.pdf") {
		t.Error("no remote-images notice or attachment listed")
	}
	resp, frame := c.get(base + "/body")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "sandbox") || strings.Contains(csp, "script-src") || strings.Contains(csp, "https:") {
		t.Errorf("frame CSP %q", csp)
	}
	for _, bad := range []string{"<script", "onclick", "javascript:", "<form", "tracker.example", "window.pwned"} {
		if strings.Contains(frame, bad) {
			t.Errorf("sanitised frame holds %q:\n%s", bad, frame)
		}
	}
	if !strings.Contains(frame, `src="cid/logo@x"`) || !strings.Contains(frame, blockedImage) {
		t.Errorf("images not rewritten:\n%s", frame)
	}
	// Allowed: the remote image is there, and the CSP lets it load.
	resp, frame = c.get(base + "/body?images=1")
	if !strings.Contains(frame, "https://tracker.example/pixel.gif") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "https:") {
		t.Errorf("images=1 did not allow the remote image:\n%s", frame)
	}
	// The cid: image, relative to the frame's URL.
	resp, img := c.get(base + "/cid/logo@x")
	png, _ := base64.StdEncoding.DecodeString("iVBORw0KGgo=")
	if resp.StatusCode != 200 || img != string(png) || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("cid image: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), img)
	}
	// The attachment, decoded, with its name and nosniff.
	resp, pdf := c.get(base + "/part/3")
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	if resp.StatusCode != 200 || pdf != "%PDF-1.4\n" || params["filename"] != "report.pdf" ||
		resp.Header.Get("Content-Type") != "application/pdf" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("attachment: %d %q %v %q", resp.StatusCode, pdf, resp.Header, params)
	}
	if resp, _ := c.get(base + "/part/9"); resp.StatusCode != 404 {
		t.Errorf("missing part: %d", resp.StatusCode)
	}
}

// Another account's mailbox and message ids answer 404, whatever the route.
func TestOtherAccountNotFound(t *testing.T) {
	e := newEnv(t, envOptions{})
	uid := e.deliver(t, "bob", "", htmlMail)
	bobInbox := e.mailbox(t, "bob", store.Inbox)
	c := e.client(t)
	c.login("pp", "secret-pp")
	base := fmt.Sprintf("/msg/%d/%d", bobInbox.ID, uid)
	for _, path := range []string{
		fmt.Sprintf("/mail/%d", bobInbox.ID), base, base + "/body", base + "/part/3", base + "/cid/logo@x", base + "/raw",
		fmt.Sprintf("/compose?mode=reply&msg=%d/%d", bobInbox.ID, uid),
		fmt.Sprintf("/compose?mode=forward&msg=%d/%d", bobInbox.ID, uid),
		fmt.Sprintf("/compose?draft=%d/%d", bobInbox.ID, uid),
	} {
		if resp, body := c.get(path); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		} else if strings.Contains(body, "html@remote.example") {
			t.Errorf("GET %s shows bob's message", path)
		}
	}
	for _, path := range []string{fmt.Sprintf("/mail/%d/actions", bobInbox.ID), base + "/actions"} {
		resp, _ := c.post(path, url.Values{"csrf": {c.csrf}, "action": {"delete"}, "uid": {fmt.Sprint(uid)}})
		if resp.StatusCode != 404 {
			t.Errorf("POST %s: %d, want 404", path, resp.StatusCode)
		}
	}
	// Moving one's own message into bob's mailbox is refused too.
	own := e.deliver(t, "pp", "", plainMail)
	ppInbox := e.mailbox(t, "pp", store.Inbox)
	resp, _ := c.post(fmt.Sprintf("/mail/%d/actions", ppInbox.ID), url.Values{"csrf": {c.csrf}, "action": {"move"},
		"dest": {itoa(bobInbox.ID)}, "uid": {fmt.Sprint(own)}})
	if resp.StatusCode != 404 {
		t.Errorf("move into bob's mailbox: %d", resp.StatusCode)
	}
	// Forwarding bob's message as an attachment is refused.
	resp, _ = c.postMultipart("/compose", url.Values{"csrf": {c.csrf}, "action": {"send"}, "from": {"pp@example.org"},
		"to": {"pp@example.org"}, "forward": {fmt.Sprintf("%d/%d", bobInbox.ID, uid)}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("forward of bob's message: %d", resp.StatusCode)
	}
	if msgs := e.messages(t, "bob", store.Inbox); len(msgs) != 1 {
		t.Errorf("bob's inbox has %d messages", len(msgs))
	}
}

// Every POST route refuses a request without the session's token, and one
// with another session's token.
func TestCSRFEveryPost(t *testing.T) {
	e := newEnv(t, envOptions{})
	uid := e.deliver(t, "pp", "", plainMail)
	inbox := e.mailbox(t, "pp", store.Inbox)
	c := e.client(t)
	c.login("pp", "secret-pp")
	other := e.client(t)
	other.login("bob", "secret-bob")
	paths := map[string]string{
		"POST /logout":                 "/logout",
		"POST /mail/{mb}/actions":      fmt.Sprintf("/mail/%d/actions", inbox.ID),
		"POST /msg/{mb}/{uid}/actions": fmt.Sprintf("/msg/%d/%d/actions", inbox.ID, uid),
		"POST /compose":                "/compose",
		// Part 3.
		"POST /compose/autosave": "/compose/autosave",
		"POST /images/{action}":  "/images/allow",
		// Part 2 (admin_test.go checks these as an admin too).
		"POST /addresses":            "/addresses",
		"POST /addresses/{action}":   "/addresses/delete",
		"POST /admin/accounts":       "/admin/accounts",
		"POST /admin/tables/{table}": "/admin/tables/aliases",
		"POST /admin/queue":          "/admin/queue",
	}
	n := 0
	for _, rt := range e.srv.routes() {
		if !strings.HasPrefix(rt.pattern, "POST ") || rt.pattern == "POST /login" {
			continue
		}
		path, ok := paths[rt.pattern]
		if !ok {
			t.Errorf("no test path for %s", rt.pattern)
			continue
		}
		n++
		for _, tok := range []string{"", other.csrf, c.csrf + "x"} {
			form := url.Values{"action": {"delete"}, "uid": {fmt.Sprint(uid)}, "to": {"bob@example.org"}, "from": {"pp@example.org"}}
			if tok != "" {
				form.Set("csrf", tok)
			}
			resp, _ := c.post(path, form)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with token %q: %d, want 403", path, tok, resp.StatusCode)
			}
			resp, _ = c.postMultipart(path, form, nil)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s multipart with token %q: %d, want 403", path, tok, resp.StatusCode)
			}
		}
	}
	if n < 4 {
		t.Errorf("only %d POST routes checked", n)
	}
	// Nothing happened: the message is there, bob got nothing, still logged in.
	if _, err := e.st.GetMessage(context.Background(), inbox.ID, uid); err != nil {
		t.Errorf("the message is gone: %v", err)
	}
	if msgs := e.messages(t, "bob", store.Inbox); len(msgs) != 0 {
		t.Errorf("bob got %d messages", len(msgs))
	}
	if resp, _ := c.get(fmt.Sprintf("/mail/%d", inbox.ID)); resp.StatusCode != 200 {
		t.Errorf("logged out by a forged POST: %d", resp.StatusCode)
	}
}

func parseMail(t *testing.T, raw string) (*gomail.Reader, gomail.Header) {
	t.Helper()
	r, err := gomail.CreateReader(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	return r, r.Header
}

func TestSendWithAttachmentAndReply(t *testing.T) {
	e := newEnv(t, envOptions{})
	orig := e.deliver(t, "pp", "", plainMail)
	c := e.client(t)
	c.login("pp", "secret-pp")
	resp, body := c.postMultipart("/compose", url.Values{
		"csrf": {c.csrf}, "action": {"send"}, "from": {"Peter Pähn <pp@example.org>"}, "to": {"Bob <bob@example.org>"},
		"bcc": {"info@example.org"}, "subject": {"Überweisung — Q1"}, "text": {"Hello Bob,\r\nhere it is. " + strings.Repeat("long ", 30) + "\r\n"},
	}, map[string]string{"zahlen ü.csv": "a,b\n1,2\n"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d\n%s", resp.StatusCode, body)
	}
	got := e.messages(t, "bob", store.Inbox)
	if len(got) != 1 {
		t.Fatalf("bob has %d messages", len(got))
	}
	r, h := parseMail(t, got[0])
	subj, _ := h.Subject()
	from, _ := h.AddressList("From")
	if subj != "Überweisung — Q1" || len(from) != 1 || from[0].Name != "Peter Pähn" || from[0].Address != "pp@example.org" {
		t.Errorf("subject %q from %v", subj, from)
	}
	if h.Get("Bcc") != "" || strings.Contains(got[0], "info@example.org") {
		t.Error("Bcc shown to the recipient")
	}
	if h.Get("Message-Id") == "" || h.Get("Date") == "" || !strings.Contains(got[0], "Received: from [127.0.0.1]") {
		t.Errorf("missing Date/Message-ID/Received:\n%s", got[0])
	}
	if d, err := h.Date(); err != nil || time.Since(d) > time.Minute {
		t.Errorf("Date %v %v", d, err)
	}
	var text, attName, attData string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p.Body)
		switch ph := p.Header.(type) {
		case *gomail.InlineHeader:
			text = string(b)
		case *gomail.AttachmentHeader:
			attName, _ = ph.Filename()
			attData = string(b)
		}
	}
	if !strings.Contains(text, "here it is. long long") || attName != "zahlen ü.csv" || attData != "a,b\n1,2\n" {
		t.Errorf("text %q attachment %q %q", text, attName, attData)
	}
	// Bcc got it (info@ is pp's, so pp's inbox), and Sent keeps a copy with Bcc.
	if n := len(e.messages(t, "pp", store.Inbox)); n != 2 {
		t.Errorf("pp's inbox (the Bcc) has %d messages", n)
	}
	sent := e.messages(t, "pp", "Sent")
	if len(sent) != 1 || !strings.Contains(sent[0], "Bcc: info@example.org") || strings.Contains(sent[0], "Received:") {
		t.Errorf("Sent copy: %q", sent)
	}

	// Reply: the form is prepared, and what is sent has the threading fields.
	inbox := e.mailbox(t, "pp", store.Inbox)
	_, form := c.get(fmt.Sprintf("/compose?mode=reply&msg=%d/%d", inbox.ID, orig))
	for _, want := range []string{`value="Re: Grüße from Alice"`, `value="&#34;Alice Example&#34; &lt;alice@remote.example&gt;"`,
		`value="&lt;orig-1@remote.example&gt;"`, `value="&lt;root@remote.example&gt; &lt;orig-1@remote.example&gt;"`, "&gt; Hello &lt;b&gt;pp"} {
		if !strings.Contains(form, want) {
			t.Errorf("reply form lacks %q", want)
		}
	}
	resp, body = c.postMultipart("/compose", url.Values{"csrf": {c.csrf}, "action": {"send"}, "from": {"pp@example.org"},
		"to": {"bob@example.org"}, "subject": {"Re: Grüße from Alice"}, "text": {"ok"},
		"in_reply_to": {"<orig-1@remote.example>"}, "references": {"<root@remote.example> <orig-1@remote.example>"},
		"replied": {fmt.Sprintf("%d/%d", inbox.ID, orig)}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("reply: %d\n%s", resp.StatusCode, body)
	}
	got = e.messages(t, "bob", store.Inbox)
	_, h = parseMail(t, got[len(got)-1])
	if h.Get("In-Reply-To") != "<orig-1@remote.example>" || h.Get("References") != "<root@remote.example> <orig-1@remote.example>" {
		t.Errorf("threading: %q %q", h.Get("In-Reply-To"), h.Get("References"))
	}
	info, _ := e.st.GetMessage(context.Background(), inbox.ID, orig)
	if !info.HasFlag(store.FlagAnswered) {
		t.Error("the original is not \\Answered")
	}
}

// The From: address must be the account's, as on the submission port.
func TestSendNotOwnedSender(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(t)
	c.login("pp", "secret-pp")
	for _, from := range []string{"bob@example.org", "pp@elsewhere.example", "postmaster@example.org"} {
		resp, body := c.postMultipart("/compose", url.Values{"csrf": {c.csrf}, "action": {"send"}, "from": {from},
			"to": {"bob@example.org"}, "subject": {"x"}, "text": {"x"}}, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "is not one of your addresses") {
			t.Errorf("from %s: %d", from, resp.StatusCode)
		}
	}
	// An unknown local recipient is refused with the table's reason.
	resp, body := c.postMultipart("/compose", url.Values{"csrf": {c.csrf}, "action": {"send"}, "from": {"info@example.org"},
		"to": {"nobody@example.org"}, "subject": {"x"}, "text": {"x"}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "user unknown") {
		t.Errorf("unknown recipient: %d", resp.StatusCode)
	}
	if n := len(e.messages(t, "bob", store.Inbox)); n != 0 {
		t.Errorf("bob got %d", n)
	}
}

func TestDraftsAndActions(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(t)
	c.login("pp", "secret-pp")
	resp, body := c.postMultipart("/compose", url.Values{"csrf": {c.csrf}, "action": {"draft"}, "from": {"pp@example.org"},
		"to": {"bob@example.org"}, "bcc": {"info@example.org"}, "subject": {"half done"}, "text": {"to be continued"}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Draft saved") {
		t.Fatalf("draft: %d\n%s", resp.StatusCode, body)
	}
	drafts := e.mailbox(t, "pp", "Drafts")
	infos, _ := e.st.ListMessages(context.Background(), drafts.ID, 0, false)
	if len(infos) != 1 || !infos[0].HasFlag(store.FlagDraft) {
		t.Fatalf("drafts: %+v", infos)
	}
	// Saving again replaces it.
	ref := fmt.Sprintf("%d/%d", drafts.ID, infos[0].UID)
	if !strings.Contains(body, `name="draft" value="`+ref+`"`) {
		t.Fatalf("the form does not carry the draft %s", ref)
	}
	_, form := c.get("/compose?draft=" + ref)
	if !strings.Contains(form, "to be continued") || !strings.Contains(form, `value="info@example.org"`) {
		t.Errorf("draft form:\n%s", form)
	}
	c.postMultipart("/compose", url.Values{"csrf": {c.csrf}, "action": {"send"}, "from": {"pp@example.org"},
		"to": {"bob@example.org"}, "subject": {"done"}, "text": {"finished"}, "draft": {ref}}, nil)
	if infos, _ = e.st.ListMessages(context.Background(), drafts.ID, 0, false); len(infos) != 0 {
		t.Errorf("the sent draft is still in Drafts")
	}

	// Many at once: flag, read, archive, delete to Trash, delete in Trash.
	var uids []string
	for i := 0; i < 3; i++ {
		uids = append(uids, fmt.Sprint(e.deliver(t, "pp", "", plainMail)))
	}
	inbox := e.mailbox(t, "pp", store.Inbox)
	act := func(mb *store.Mailbox, action string, uids ...string) {
		t.Helper()
		resp, _ := c.post(fmt.Sprintf("/mail/%d/actions", mb.ID), url.Values{"csrf": {c.csrf}, "action": {action}, "uid": uids})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d", action, resp.StatusCode)
		}
	}
	act(inbox, "flag", uids[0], uids[1])
	act(inbox, "read", uids...)
	list, _ := e.st.ListMessages(context.Background(), inbox.ID, 0, false)
	flagged := 0
	for _, m := range list {
		if !m.HasFlag(store.FlagSeen) {
			t.Errorf("uid %d not read", m.UID)
		}
		if m.HasFlag(store.FlagFlagged) {
			flagged++
		}
	}
	if flagged != 2 {
		t.Errorf("%d flagged, want 2", flagged)
	}
	act(inbox, "archive", uids[0])
	act(inbox, "delete", uids[1], uids[2])
	if n := len(e.messages(t, "pp", store.Inbox)); n != 0 {
		t.Errorf("inbox keeps %d", n)
	}
	if n := len(e.messages(t, "pp", "Archive")); n != 1 {
		t.Errorf("archive has %d", n)
	}
	trash := e.mailbox(t, "pp", "Trash")
	tl, _ := e.st.ListMessages(context.Background(), trash.ID, 0, false)
	if len(tl) != 2 {
		t.Fatalf("trash has %d", len(tl))
	}
	act(trash, "delete", fmt.Sprint(tl[0].UID))
	if n := len(e.messages(t, "pp", "Trash")); n != 1 {
		t.Errorf("trash has %d after deleting there", n)
	}
}

func TestListPagingSortSearch(t *testing.T) {
	e := newEnv(t, envOptions{})
	for i := 0; i < 120; i++ {
		body := strings.Repeat("x", i*10)
		if i == 77 {
			body += " walrus"
		}
		e.deliver(t, "pp", "", fmt.Sprintf("From: Sender %03d <s%d@remote.example>\nTo: pp@example.org\nSubject: number %d\n\n%s\n", 119-i, i, i, body))
	}
	c := e.client(t)
	c.login("pp", "secret-pp")
	inbox := e.mailbox(t, "pp", store.Inbox)
	base := fmt.Sprintf("/mail/%d", inbox.ID)
	subjects := func(page string) []string {
		var out []string
		for _, l := range strings.Split(page, "\n") {
			if i := strings.Index(l, ">number "); i >= 0 {
				out = append(out, l[i+1:i+1+strings.Index(l[i+1:], "<")])
			}
		}
		return out
	}
	_, p1 := c.get(base)
	_, p3 := c.get(base + "?page=3")
	s1, s3 := subjects(p1), subjects(p3)
	if len(s1) != pageSize || s1[0] != "number 119" || len(s3) != 20 || s3[19] != "number 0" || !strings.Contains(p1, "1–50 of 120") {
		t.Errorf("date order: page 1 %v..., page 3 %v", s1[:3], s3)
	}
	_, ps := c.get(base + "?sort=size")
	if s := subjects(ps); s[0] != "number 119" || s[1] != "number 118" {
		t.Errorf("size order: %v", s[:3])
	}
	_, pf := c.get(base + "?sort=from")
	if s := subjects(pf); s[0] != "number 119" || s[1] != "number 118" {
		t.Errorf("from order (Sender 000 first): %v", s[:3])
	}
	_, pq := c.get(base + "?q=walrus")
	if s := subjects(pq); !slices.Equal(s, []string{"number 77"}) {
		t.Errorf("text search: %v", s)
	}
	_, pq = c.get(base + "?q=" + url.QueryEscape("from:s10@ subject:number"))
	if s := subjects(pq); !slices.Equal(s, []string{"number 10"}) {
		t.Errorf("from: search: %v", s)
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(t)
	c.login("pp", "secret-pp")
	req, _ := http.NewRequest("GET", e.http.URL+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n') // retry:
	br.ReadString('\n')
	inbox := e.mailbox(t, "pp", store.Inbox)
	e.deliver(t, "bob", "", plainMail) // not pp's: no event
	e.deliver(t, "pp", "", plainMail)
	done := make(chan string, 1)
	go func() {
		l1, _ := br.ReadString('\n')
		l2, _ := br.ReadString('\n')
		done <- l1 + l2
	}()
	select {
	case got := <-done:
		if got != "event: change\n"+fmt.Sprintf(`data: {"mailbox":%d,"kind":"new"}`, inbox.ID)+"\n" {
			t.Errorf("event %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	// Not logged in: no stream.
	resp2, err := http.Get(e.http.URL + "/events")
	if err == nil {
		if resp2.StatusCode != http.StatusSeeOther && resp2.StatusCode != http.StatusUnauthorized && resp2.Request.URL.Path != "/login" {
			t.Errorf("events without login: %d", resp2.StatusCode)
		}
		resp2.Body.Close()
	}
}
