package webmail

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	gomail "github.com/emersion/go-message/mail"
	"github.com/posthorn/posthorn/internal/store"
)

// autosave posts the compose form as the page's script does: multipart,
// the token in X-CSRF-Token.
func (c *client) autosave(form url.Values, files map[string]string, token string) (int, autosaveReply) {
	c.t.Helper()
	resp, body := c.postMultipartHeader("/compose/autosave", form, files, map[string]string{"X-CSRF-Token": token})
	var rep autosaveReply
	if resp.StatusCode != http.StatusForbidden {
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			c.t.Fatalf("autosave answer %d %q: %v", resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode, rep
}

func (c *client) postMultipartHeader(path string, form url.Values, files map[string]string, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	req, ctype := multipartRequest(c.e.http.URL+path, form, files)
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestAutosaveReplacesDraft(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(t)
	c.login("pp", "secret-pp")
	drafts := e.mailbox(t, "pp", "Drafts")
	list := func() []store.MessageInfo {
		infos, err := e.st.ListMessages(context.Background(), drafts.ID, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		return infos
	}
	form := url.Values{"from": {"pp@example.org"}, "to": {"bob@example.org"}, "subject": {"plans"}, "text": {"first words"}}

	// Without the header's token (or with a wrong one) nothing is saved.
	for _, tok := range []string{"", c.csrf + "x"} {
		if code, _ := c.autosave(form, nil, tok); code != http.StatusForbidden {
			t.Errorf("autosave with token %q: %d", tok, code)
		}
	}
	if n := len(list()); n != 0 {
		t.Fatalf("%d drafts saved without a token", n)
	}

	code, rep := c.autosave(form, nil, c.csrf)
	if code != 200 || rep.Draft == "" {
		t.Fatalf("autosave: %d %+v", code, rep)
	}
	first := list()
	if len(first) != 1 || rep.Draft != fmt.Sprintf("%d/%d", drafts.ID, first[0].UID) {
		t.Fatalf("after the first save: %+v, answer %q", first, rep.Draft)
	}
	// Each later save names the previous draft: one draft, the newest text.
	prev := rep.Draft
	for i, text := range []string{"first words and more", "first words and more, done"} {
		form.Set("text", text)
		form.Set("draft", prev)
		code, rep = c.autosave(form, nil, c.csrf)
		if code != 200 || rep.Draft == prev {
			t.Fatalf("save %d: %d %+v", i, code, rep)
		}
		prev = rep.Draft
		msgs := e.messages(t, "pp", "Drafts")
		if len(msgs) != 1 || !strings.Contains(msgs[0], text) {
			t.Fatalf("save %d: %d drafts: %q", i, len(msgs), msgs)
		}
		if infos := list(); infos[0].UID <= first[0].UID || !infos[0].HasFlag(store.FlagDraft) {
			t.Errorf("save %d: not a new \\Draft copy: %+v", i, infos[0])
		}
	}
	// A bad From: is an error in the answer, and the draft stays.
	bad := url.Values{"from": {"not an address"}, "draft": {prev}, "text": {"x"}}
	if code, rep := c.autosave(bad, nil, c.csrf); code != http.StatusBadRequest || rep.Error == "" {
		t.Errorf("bad form: %d %+v", code, rep)
	}
	if n := len(list()); n != 1 {
		t.Errorf("%d drafts after a refused save", n)
	}
	// Another account's draft named in the form is not touched.
	other := e.client(t)
	other.login("bob", "secret-bob")
	if code, _ := other.autosave(url.Values{"from": {"bob@example.org"}, "text": {"mine"}, "draft": {prev}}, nil, other.csrf); code != 200 {
		t.Fatalf("bob's autosave: %d", code)
	}
	if n := len(list()); n != 1 {
		t.Errorf("bob's save removed pp's draft: %d left", n)
	}
}

func TestDraftKeepsAttachments(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(t)
	c.login("pp", "secret-pp")
	drafts := e.mailbox(t, "pp", "Drafts")
	form := url.Values{"from": {"pp@example.org"}, "to": {"bob@example.org"}, "subject": {"the files"}, "text": {"see attached"}}
	code, rep := c.autosave(form, map[string]string{"notes.txt": "first file\n", "plan.csv": "a,b\n1,2\n"}, c.csrf)
	if code != 200 || len(rep.Attachments) != 2 {
		t.Fatalf("autosave with files: %d %+v", code, rep)
	}
	// Reopening the draft lists its attachments, ticked.
	resp, page := c.get("/compose?draft=" + rep.Draft)
	if resp.StatusCode != 200 {
		t.Fatalf("reopen: %d", resp.StatusCode)
	}
	for _, a := range rep.Attachments {
		if !strings.Contains(page, fmt.Sprintf(`name="keep" value="%s" checked> %s`, a.Path, a.Name)) {
			t.Errorf("reopened draft does not keep %s (%s):\n%s", a.Name, a.Path, page)
		}
	}
	// The next save keeps one (the other unticked) and adds a new file.
	var keepPath string
	for _, a := range rep.Attachments {
		if a.Name == "notes.txt" {
			keepPath = a.Path
		}
	}
	form.Set("draft", rep.Draft)
	form["keep"] = []string{keepPath}
	resp, page = c.postMultipart("/compose", withAction(form, c.csrf, "draft"), map[string]string{"extra.txt": "added later\n"})
	if resp.StatusCode != 200 || !strings.Contains(page, "Draft saved") {
		t.Fatalf("save by hand: %d\n%s", resp.StatusCode, page)
	}
	msgs := e.messages(t, "pp", "Drafts")
	if len(msgs) != 1 {
		t.Fatalf("%d drafts", len(msgs))
	}
	infos, _ := e.st.ListMessages(context.Background(), drafts.ID, 0, false)
	ref := fmt.Sprintf("%d/%d", drafts.ID, infos[0].UID)
	names := attachmentNames(t, msgs[0])
	if fmt.Sprint(names) != fmt.Sprint(map[string]string{"notes.txt": "first file\n", "extra.txt": "added later\n"}) {
		t.Errorf("draft's attachments: %v", names)
	}
	// Sending it from the reopened form: bob gets both files.
	_, page = c.get("/compose?draft=" + ref)
	keeps := keepRE.FindAllStringSubmatch(page, -1)
	if len(keeps) != 2 {
		t.Fatalf("reopened draft keeps %d", len(keeps))
	}
	send := url.Values{"from": {"pp@example.org"}, "to": {"bob@example.org"}, "subject": {"the files"}, "text": {"see attached"}, "draft": {ref}}
	for _, k := range keeps {
		send.Add("keep", k[1])
	}
	if resp, body := c.postMultipart("/compose", withAction(send, c.csrf, "send"), nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d\n%s", resp.StatusCode, body)
	}
	got := e.messages(t, "bob", store.Inbox)
	if len(got) != 1 {
		t.Fatalf("bob has %d", len(got))
	}
	if names := attachmentNames(t, got[0]); fmt.Sprint(names) != fmt.Sprint(map[string]string{"notes.txt": "first file\n", "extra.txt": "added later\n"}) {
		t.Errorf("sent attachments: %v", names)
	}
	if n := len(e.messages(t, "pp", "Drafts")); n != 0 {
		t.Errorf("the sent draft stays (%d)", n)
	}
}

var keepRE = regexp.MustCompile(`name="keep" value="([^"]+)" checked`)

func multipartRequest(u string, form url.Values, files map[string]string) (*http.Request, string) {
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
	req, _ := http.NewRequest("POST", u, &b)
	return req, w.FormDataContentType()
}

func withAction(v url.Values, csrf, action string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	out.Set("csrf", csrf)
	out.Set("action", action)
	return out
}

// attachmentNames reads a message's attachments: file name -> content.
func attachmentNames(t *testing.T, raw string) map[string]string {
	t.Helper()
	r, _ := parseMail(t, raw)
	out := map[string]string{}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := p.Header.(*gomail.AttachmentHeader); ok {
			name, _ := h.Filename()
			b, _ := io.ReadAll(p.Body)
			out[name] = string(b)
		}
	}
	return out
}
