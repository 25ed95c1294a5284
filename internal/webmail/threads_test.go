package webmail

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/store"
)

// convRowRE finds the conversation rows of a list page: the newest UID and
// the count shown.
var convRowRE = regexp.MustCompile(`data-conv="(\d+)">[\s\S]*?<span class="convcount"[^>]*>(\d+)</span>`)

// childUIDs returns the UIDs of the child rows of conversation conv.
func childUIDs(page, conv string) []string {
	re := regexp.MustCompile(`<tr class="msg child[^"]*" data-uid="(\d+)" data-parent="` + conv + `"`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

func TestConversations(t *testing.T) {
	e := newEnv(t, envOptions{})
	mail := func(id, subject, refs, inReplyTo string) uint32 {
		h := "From: Ann <ann@remote.example>\nTo: pp@example.org\nSubject: " + subject + "\nMessage-ID: <" + id + "@x>\n"
		if refs != "" {
			h += "References: " + refs + "\n"
		}
		if inReplyTo != "" {
			h += "In-Reply-To: " + inReplyTo + "\n"
		}
		return e.deliver(t, "pp", "", h+"\nbody of "+id+"\n")
	}
	// A reply chain a <- b <- c (c names both in References, folded).
	a := mail("a", "Plans", "", "")
	lone := mail("lone", "Something else", "", "")
	b := mail("b", "Re: Plans", "<a@x>", "<a@x>")
	c := mail("c", "Re: Re: Plans", "<a@x>\n <b@x>", "<b@x>")
	// A broken chain: the first message never arrived here; both replies
	// name it (one in References, one in In-Reply-To only), with different
	// subjects, so that only the references join them.
	d := mail("d", "Budget", "<missing@x>", "")
	f := mail("f", "Budget, corrected", "", "<missing@x>")
	// Same subject without references: RFC 5256 step 5 joins it too.
	g := mail("g", "Re: Something else", "", "")

	cl := e.client(t)
	cl.login("pp", "secret-pp")
	inbox := e.mailbox(t, "pp", store.Inbox)
	_, page := cl.get(fmt.Sprintf("/mail/%d", inbox.ID))
	got := map[string]string{}
	var order []string
	for _, m := range convRowRE.FindAllStringSubmatch(page, -1) {
		got[m[1]] = m[2]
		order = append(order, m[1])
	}
	u := func(x uint32) string { return fmt.Sprint(x) }
	want := map[string]string{u(c): "3", u(f): "2", u(g): "2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("conversations %v, want %v\n%s", got, want, page)
	}
	// Newest first: g, then the budget pair (f), then the plans (c).
	if !slices.Equal(order, []string{u(g), u(f), u(c)}) {
		t.Errorf("order %v", order)
	}
	if kids := childUIDs(page, u(c)); !slices.Equal(kids, sorted(u(a), u(b), u(c))) {
		t.Errorf("chain's messages %v", kids)
	}
	if kids := childUIDs(page, u(f)); !slices.Equal(kids, sorted(u(d), u(f))) {
		t.Errorf("broken chain's messages %v", kids)
	}
	if kids := childUIDs(page, u(g)); !slices.Equal(kids, sorted(u(lone), u(g))) {
		t.Errorf("subject thread's messages %v", kids)
	}
	if !strings.Contains(page, "3 of 3") {
		t.Errorf("three conversations are not counted as such")
	}
	// Children are hidden until expanded (no script: ?open=).
	if !regexp.MustCompile(`data-parent="` + u(c) + `"[^>]*hidden`).MatchString(page) {
		t.Errorf("children shown folded")
	}
	_, opened := cl.get(fmt.Sprintf("/mail/%d?open=%d", inbox.ID, c))
	if regexp.MustCompile(`data-parent="` + u(c) + `"[^>]*hidden`).MatchString(opened) {
		t.Errorf("?open= does not expand")
	}

	// The plain list has every message.
	_, plain := cl.get(fmt.Sprintf("/mail/%d?view=plain", inbox.ID))
	if !strings.Contains(plain, "1–7 of 7") || strings.Contains(plain, "convcount") {
		t.Errorf("plain list is not a list of the 7 messages")
	}

	// The conversation page, from any of its messages: all three, in order,
	// and opening it marks them read.
	resp, conv := cl.get(fmt.Sprintf("/conv/%d/%d", inbox.ID, a))
	if resp.StatusCode != 200 {
		t.Fatalf("conversation: %d", resp.StatusCode)
	}
	ia, ib, ic := strings.Index(conv, "body of a"), strings.Index(conv, "body of b"), strings.Index(conv, "body of c")
	if ia < 0 || ib < ia || ic < ib || strings.Contains(conv, "body of lone") {
		t.Errorf("conversation page order a=%d b=%d c=%d", ia, ib, ic)
	}
	infos, _ := e.st.ListMessages(t.Context(), inbox.ID, 0, false)
	for _, in := range infos {
		in3 := in.UID == a || in.UID == b || in.UID == c
		if in.HasFlag(store.FlagSeen) != in3 {
			t.Errorf("uid %d seen=%v after opening the conversation", in.UID, in.HasFlag(store.FlagSeen))
		}
	}
	// The read page links its conversation.
	if _, rp := cl.get(fmt.Sprintf("/msg/%d/%d", inbox.ID, b)); !strings.Contains(rp, fmt.Sprintf(`href="/conv/%d/%d" id="conversation-link">Conversation (3)`, inbox.ID, b)) {
		t.Errorf("read page has no conversation link")
	}
	// A new reply joins the conversation (the cache is rebuilt).
	h := mail("h", "Re: Plans", "<a@x> <b@x> <c@x>", "<c@x>")
	_, page = cl.get(fmt.Sprintf("/mail/%d", inbox.ID))
	if kids := childUIDs(page, u(h)); !slices.Equal(kids, sorted(u(a), u(b), u(c), u(h))) {
		t.Errorf("after a reply: %v", kids)
	}
	// Selecting a conversation acts on all its messages.
	resp, _ = cl.post(fmt.Sprintf("/mail/%d/actions", inbox.ID), url.Values{"csrf": {cl.csrf}, "action": {"archive"}, "conv": {u(h)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("archive conversation: %d", resp.StatusCode)
	}
	if n := len(e.messages(t, "pp", "Archive")); n != 4 {
		t.Errorf("archived %d messages, want 4", n)
	}
	// Another account's conversation is not found.
	other := e.client(t)
	other.login("bob", "secret-bob")
	if resp, _ := other.get(fmt.Sprintf("/conv/%d/%d", inbox.ID, d)); resp.StatusCode != 404 {
		t.Errorf("bob reads pp's conversation: %d", resp.StatusCode)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }
