package imapd

// The RFC 3501 example exchanges (imap-codec's trace file, in
// $POSTHORN_CONFORMANCE_DIR/imap-traces) replayed against the server as
// sessions: each example group gets a server whose state makes the
// example meaningful (its mailboxes, enough messages, its user), and
// each client line's tagged status, response code and kinds of untagged
// responses must match the example's. Where the RFC's example server
// legitimately differs from ours (another hierarchy delimiter, a
// \Noselect name kept after its children went), the difference is
// written down with its reason.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/testkit"
)

type traceLine struct {
	Test, Dir, Line, Kind string
}

// traceGroup is what a trace group needs and where our answers may
// differ from the example's.
type traceGroup struct {
	user, pass string // LOGIN of the trace; "" means log in as "tr" first
	login      bool   // log in (as tr) before replaying
	selectMb   string // then SELECT this mailbox
	messages   int    // messages in INBOX and blurdybloop
	deleted    []int  // message numbers of INBOX with \Deleted
	skip       string // why the whole group is not replayed
	skipTags   map[string]string
	status     map[string]string // tag -> our expected status, with why
	noTypes    map[string]string // tag -> why untagged kinds are not compared
	noNames    map[string]string // tag -> why LIST names are not compared
	exact      map[string]bool   // tags whose untagged lines must be equal
	extra      []string          // mailboxes besides the usual ones
}

var traceGroups = map[string]traceGroup{
	"test_from_capability": {},
	"test_from_starttls":   {user: "joe", pass: "password"},
	"test_from_login":      {user: "smith", pass: "SESAME"}, // account names are lower-case; LOGIN SMITH finds it
	"test_from_noop": {login: true, selectMb: "INBOX", messages: 3,
		noTypes: map[string]string{"a047": "the example's updates come from other sessions"}},
	"test_from_logout":  {},
	"test_from_select":  {login: true, messages: 3},
	"test_from_examine": {login: true, messages: 3},
	"test_from_create":  {login: true},
	"test_from_delete": {login: true,
		skipTags: map[string]string{"A82": `the example's server uses "." as delimiter`, "A83": "idem", "A84": "idem", "A85": "idem", "A86": "idem"},
		status:   map[string]string{"A687": "NO because foo vanished with its last child here (nothing to delete); the example's server kept it \\Noselect"},
		noTypes:  map[string]string{"A686": "no mailbox is left to list"},
		noNames:  map[string]string{"A686": "foo went with its last child"}},
	"test_from_rename":      {login: true, messages: 2},
	"test_from_subscribe":   {login: true},
	"test_from_unsubscribe": {login: true},
	"test_from_list": {login: true,
		noNames: map[string]string{"A102": `the root of a non-rooted reference may be "" (RFC 3501 section 6.3.8)`,
			"A103": "idem"}},
	"test_from_lsub":   {skip: `the example's server uses "." as delimiter and a "#news." namespace`},
	"test_from_status": {login: true, messages: 3},
	"test_from_check":  {login: true, selectMb: "INBOX", messages: 1},
	"test_from_close":  {login: true, selectMb: "INBOX", messages: 1},
	"test_from_expunge": {login: true, selectMb: "INBOX", messages: 12, deleted: []int{3, 4, 7, 11},
		exact: map[string]bool{"A202": true}},
	"test_from_search": {login: true, selectMb: "INBOX", messages: 4},
	"test_from_fetch":  {login: true, selectMb: "INBOX", messages: 4},
	"test_from_store":  {login: true, selectMb: "INBOX", messages: 4},
	"test_from_copy":   {login: true, selectMb: "INBOX", messages: 4},
	"test_from_uid": {login: true, selectMb: "INBOX", messages: 4,
		noTypes: map[string]string{"A999": "the example's UIDs (4827313...) are not ours"}},
	"test_transcript_from_rfc":     {user: "mrc", pass: "secret", messages: 18},
	"test_transcript_from_rfc5161": {login: true},
	"test_response_status_ok": {user: "fred", pass: "blurdybloop",
		noTypes: map[string]string{"A001": "the example's [ALERT] is its own"}},
	"test_response_status_no": {login: true, selectMb: "INBOX", messages: 4, extra: []string{"owatagusiam"},
		status:  map[string]string{"A223": "BAD because 200 is past the last message: BAD, not NO (RFC 9051 section 9, seq-number)"},
		noTypes: map[string]string{"A222": "the example's disk-full warnings are its own", "A223": "idem"}},
	"test_response_status_bad": {login: true, selectMb: "INBOX", messages: 1,
		noTypes: map[string]string{"A443": "the example's disk-crash warnings are its own"}},
	"test_trace_sort":   {login: true, selectMb: "INBOX", messages: 5},
	"test_trace_thread": {login: true, selectMb: "INBOX", messages: 5},
}

func TestTraceReplay(t *testing.T) {
	dir := os.Getenv("POSTHORN_CONFORMANCE_DIR")
	if dir == "" {
		if os.Getenv("POSTHORN_REQUIRE_INTEROP") == "1" {
			t.Fatal("POSTHORN_CONFORMANCE_DIR is unset and POSTHORN_REQUIRE_INTEROP=1")
		}
		t.Skip("POSTHORN_CONFORMANCE_DIR unset: set it to ../shared/conformance to replay the RFC 3501 traces")
	}
	f, err := os.Open(filepath.Join(dir, "imap-traces", "imap-codec-rfc3501-traces.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	groups := map[string][]traceLine{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var tl traceLine
		if err := json.Unmarshal(sc.Bytes(), &tl); err != nil {
			t.Fatal(err)
		}
		if _, ok := groups[tl.Test]; !ok {
			order = append(order, tl.Test)
		}
		groups[tl.Test] = append(groups[tl.Test], tl)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	replayed := 0
	for _, name := range order {
		g, known := traceGroups[name]
		t.Run(name, func(t *testing.T) {
			client := false
			for _, l := range groups[name] {
				client = client || l.Dir == "C"
			}
			if !client {
				t.Skip("server responses only: imapwire's tests parse those")
			}
			if !known {
				t.Fatalf("trace group %s has no set-up here: add one", name)
			}
			if g.skip != "" {
				t.Skip(g.skip)
			}
			replayed += replayGroup(t, g, groups[name])
		})
	}
	if replayed < 40 {
		t.Errorf("only %d client lines replayed", replayed)
	}
}

// expectation is what the trace says one client line gets.
type expectation struct {
	status   string // OK, NO, BAD
	code     string // response code of the tagged line, "" if none
	untagged []string
}

var (
	traceTagged = regexp.MustCompile(`^(\S+) (OK|NO|BAD)( \[[^\]]*\])?`)
	traceList   = regexp.MustCompile(`^\* (?:LIST|LSUB) \([^)]*\) (?:"(.)"|NIL) (.*)$`)
	traceCode   = regexp.MustCompile(`^\* OK \[([A-Z-]+)`)
)

// untaggedKind is the kind of an untagged line: "FETCH" for "* 3 FETCH",
// "OK UIDVALIDITY" for "* OK [UIDVALIDITY 3]".
func untaggedKind(l string) string {
	f := strings.Fields(l)
	if len(f) < 2 {
		return ""
	}
	if m := traceCode.FindStringSubmatch(l); m != nil {
		return "OK " + m[1]
	}
	if len(f) > 2 && regexp.MustCompile(`^\d+$`).MatchString(f[1]) {
		return f[2]
	}
	return strings.ToUpper(f[1])
}

func replayGroup(t *testing.T, g traceGroup, lines []traceLine) int {
	ts := newTestServer(t, serverOptions{}, "tr")
	user, pass := g.user, g.pass
	if user != "" {
		h, sc := testkit.Credentials(t, pass)
		if _, err := ts.st.CreateAccount(ctx, user, h); err != nil {
			t.Fatal(err)
		}
		if err := ts.st.SetPassword(ctx, user, h, sc); err != nil {
			t.Fatal(err)
		}
	} else {
		user = "tr"
	}
	// The example's mailboxes. foo/bar is made without foo, as the
	// examples' \Noselect foo.
	a, err := ts.st.GetAccount(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range append(g.extra, "blurdybloop", "foo/bar", "MEETING", "#news.comp.mail.mime", "#news.comp.mail.misc", "~/Mail/meetings", "~/Mail/foo/x") {
		if _, err := ts.st.CreateMailbox(ctx, a.ID, mb, ""); err != nil {
			t.Fatalf("create %s: %v", mb, err)
		}
	}
	for i := 1; i <= g.messages; i++ {
		var flags []string
		for _, d := range g.deleted {
			if d == i {
				flags = append(flags, `\Deleted`)
			}
		}
		if i%2 == 0 {
			flags = append(flags, `\Seen`)
		}
		text := clMsgText("Terry Gray <gray@cac.washington.edu>", fmt.Sprint("message ", i), "Wed, 17 Jul 1996 02:23:25 -0700", "body")
		ts.deliver(user, "", text, flags...)
		ts.deliver(user, "blurdybloop", text)
	}
	c := ts.dial()
	if g.login {
		c.ok("LOGIN tr pw-tr")
	}
	if g.selectMb != "" {
		c.ok("SELECT " + g.selectMb)
	}
	// The expectation of each client line: the tagged response with its
	// tag before the next client line with the same tag, and the
	// untagged lines before it.
	n := 0
	for i, l := range lines {
		if l.Dir != "C" {
			continue
		}
		cmd := strings.TrimRight(l.Line, "\r\n")
		tag := strings.Fields(cmd)[0]
		var exp *expectation
		var untagged []string
		for _, s := range lines[i+1:] {
			line := strings.TrimRight(s.Line, "\r\n")
			if s.Dir == "C" {
				if strings.Fields(line)[0] == tag {
					break
				}
				continue
			}
			if m := traceTagged.FindStringSubmatch(line); m != nil && m[1] == tag {
				exp = &expectation{status: m[2], code: strings.Trim(m[3], " []"), untagged: untagged}
				break
			}
			if strings.HasPrefix(line, "* ") {
				untagged = append(untagged, line)
			}
		}
		if exp == nil {
			continue // no answer in the trace (a variant of the next line)
		}
		if why, ok := g.skipTags[tag]; ok {
			t.Logf("%s not replayed: %s", tag, why)
			continue
		}
		n++
		// The trace's user and password are those the group set up.
		got, status := c.cmdTagged(tag, cmd)
		want := exp.status
		if why, ok := g.status[tag]; ok {
			want = strings.Fields(why)[0]
			t.Logf("%s: %s", tag, why)
		}
		if !strings.HasPrefix(status, want) {
			t.Errorf("%q: got %q, want %s (example: %s [%s]) after %q", cmd, status, want, exp.status, exp.code, got)
			continue
		}
		if exp.code != "" && want == exp.status {
			code := strings.Fields(exp.code)[0]
			if !strings.HasPrefix(status, want+" ["+code) {
				t.Errorf("%q: got %q, want code [%s]", cmd, status, code)
			}
		}
		if g.exact[tag] && strings.Join(got, "\n") != strings.Join(exp.untagged, "\n") {
			t.Errorf("%q: untagged %q, want exactly %q", cmd, got, exp.untagged)
		}
		if _, ok := g.noTypes[tag]; !ok {
			kinds := map[string]bool{}
			for _, l := range got {
				kinds[untaggedKind(l)] = true
			}
			for _, e := range exp.untagged {
				k := untaggedKind(e)
				// RFC 9051 dropped RECENT; UNSEEN is sent only when a
				// message is unseen.
				if k == "RECENT" && kinds["EXISTS"] || k == "OK UNSEEN" {
					continue
				}
				if !kinds[k] {
					t.Errorf("%q: no %s response in %q (example: %q)", cmd, k, got, e)
				}
			}
		}
		if _, ok := g.noNames[tag]; !ok {
			names := map[string]bool{}
			for _, l := range got {
				if m := traceList.FindStringSubmatch(l); m != nil {
					names[strings.Trim(m[2], `"`)] = true
				}
			}
			for _, e := range exp.untagged {
				if m := traceList.FindStringSubmatch(e); m != nil && (m[1] == "/" || !strings.Contains(m[2], ".")) {
					if name := strings.Trim(m[2], `"`); !names[name] {
						t.Errorf("%q: %s not listed in %q", cmd, name, got)
					}
				}
			}
		}
		// STARTTLS: the rest of the session runs over TLS (RFC 9051
		// section 6.2.1).
		if strings.EqualFold(strings.Fields(cmd)[1], "STARTTLS") {
			tc := tls.Client(c.nc, &tls.Config{RootCAs: ts.roots, ServerName: "localhost"})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			c.r, c.w = bufio.NewReader(tc), tc
		}
		if strings.EqualFold(strings.Fields(cmd)[1], "LOGOUT") {
			break
		}
	}
	return n
}

// cmdTagged sends a command line with its own tag.
func (c *client) cmdTagged(tag, line string) ([]string, string) {
	c.t.Helper()
	c.send(line)
	return c.until(tag)
}
