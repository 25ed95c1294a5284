package imapd

// Tests of the server through go-imap v2's client (imapclient), an
// independent implementation of RFC 9051: what the client parses is what
// a real mail client would see. Expected values come from the messages
// the tests build and from the RFCs, never from the server's code.

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/xdg-go/scram"

	"github.com/posthorn/posthorn/internal/testkit"
)

// clBinaryData is every byte value, so that BINARY must decode exactly.
var clBinaryData = func() []byte {
	b := make([]byte, 300)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

// clWrap76 base64-encodes b in lines of 76 characters (RFC 2045 section
// 6.8), each ended by CRLF.
func clWrap76(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}

// The parts of clNestedMessage, kept apart so that the tests can say what
// each section must be (RFC 9051 section 6.4.5: the CRLF before a
// boundary belongs to the boundary, RFC 2046 section 5.1.1).
const (
	clNestedHeader = "From: Carol <carol@example.org>\r\n" +
		"To: Dave <dave@example.net>, Erin <erin@example.net>\r\n" +
		"Cc: Frank <frank@example.com>\r\n" +
		"Subject: Nested parts\r\n" +
		"Date: Sat, 21 Nov 2026 09:30:00 +0100\r\n" +
		"Message-ID: <nested@example.org>\r\n" +
		"In-Reply-To: <1@example.org>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
		"\r\n"
	clPart1MIME  = "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
	clPart11Body = "Plain text part, with a word: zanzibar."
	clPart12Body = "<p>HTML part.</p>"
	clPart2Head  = "From: Grace <grace@example.com>\r\n" +
		"Subject: Forwarded one\r\n" +
		"Date: Fri, 20 Nov 2026 08:00:00 +0000\r\n" +
		"\r\n"
	clPart2Body = "Inner body line."
	clPart3MIME = "Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
		"\r\n"
)

var clNestedMessage = clNestedHeader +
	"This is the preamble.\r\n" +
	"--outer\r\n" +
	clPart1MIME +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	clPart11Body + "\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	clPart12Body + "\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	clPart2Head + clPart2Body + "\r\n" +
	"--outer\r\n" +
	clPart3MIME +
	clWrap76(clBinaryData) +
	"--outer--\r\n"

// clBase64Message is a single-part message whose body is base64: BINARY[1]
// is the decoded bytes (RFC 3516 section 4.2).
var clBase64Message = "From: a@example.org\r\n" +
	"Subject: binary\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" + clWrap76(clBinaryData)

// clMsgText makes a small message with a subject, a date and a body.
func clMsgText(from, subject, date, body string, extra ...string) string {
	h := "From: " + from + "\r\nTo: bob@example.net\r\nSubject: " + subject + "\r\nDate: " + date + "\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\n" + body + "\r\n"
}

// clDialMode says how dialClient connects.
type clDialMode int

const (
	clDialPlain    clDialMode = iota // port 143 in clear (loopback may LOGIN)
	clDialStartTLS                   // port 143 then STARTTLS
	clDialTLS                        // implicit TLS (port 993)
)

// dialClient connects imapclient to the server, without logging in.
func (ts *testServer) dialClient(t *testing.T, mode clDialMode, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	o := &imapclient.Options{
		TLSConfig:             &tls.Config{RootCAs: ts.roots, ServerName: "localhost"},
		UnilateralDataHandler: h,
		Dialer:                nil,
	}
	var c *imapclient.Client
	var err error
	switch mode {
	case clDialPlain:
		c, err = imapclient.DialInsecure(ts.addr, o)
	case clDialStartTLS:
		c, err = imapclient.DialStartTLS(ts.addr, o)
	case clDialTLS:
		c, err = imapclient.DialTLS(ts.tlsAdr, o)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	return c
}

// clientLogin dials with implicit TLS and logs in as account.
func (ts *testServer) clientLogin(t *testing.T, account string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c := ts.dialClient(t, clDialTLS, h)
	if err := c.Login(account, "pw-"+account).Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	return c
}

// clScramClient is a sasl.Client for SCRAM-SHA-256 (RFC 7677) over
// xdg-go/scram, which go-sasl lacks.
type clScramClient struct {
	conv *scram.ClientConversation
}

func clNewSCRAMClient(user, pass string) (*clScramClient, error) {
	cl, err := scram.SHA256.NewClient(user, pass, "")
	if err != nil {
		return nil, err
	}
	return &clScramClient{conv: cl.NewConversation()}, nil
}

func (s *clScramClient) Start() (string, []byte, error) {
	first, err := s.conv.Step("")
	return "SCRAM-SHA-256", []byte(first), err
}

func (s *clScramClient) Next(challenge []byte) ([]byte, error) {
	resp, err := s.conv.Step(string(challenge))
	return []byte(resp), err
}

func TestClientTransports(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "tt")
	for _, tc := range []struct {
		name     string
		mode     clDialMode
		startTLS bool // STARTTLS advertised before login
	}{
		{"plain", clDialPlain, true},
		{"starttls", clDialStartTLS, false},
		{"implicit-tls", clDialTLS, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dialClient(t, tc.mode, nil)
			caps, err := c.Capability().Wait()
			if err != nil {
				t.Fatal(err)
			}
			if caps.Has(imap.CapStartTLS) != tc.startTLS {
				t.Errorf("STARTTLS advertised = %v, want %v (caps %v)", caps.Has(imap.CapStartTLS), tc.startTLS, caps)
			}
			if !caps.Has(imap.CapIMAP4rev2) || !caps.Has(imap.CapIMAP4rev1) {
				t.Errorf("caps %v lack IMAP4rev1/IMAP4rev2", caps)
			}
			if !caps.Has(imap.CapSASLIR) || !caps.Has(imap.AuthCap("PLAIN")) {
				t.Errorf("caps %v lack SASL-IR or AUTH=PLAIN", caps)
			}
			if err := c.Login("tt", "pw-tt").Wait(); err != nil {
				t.Fatal(err)
			}
			if err := c.Noop().Wait(); err != nil {
				t.Fatal(err)
			}
			if c.State() != imap.ConnStateAuthenticated {
				t.Errorf("state %v after LOGIN", c.State())
			}
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestClientAuthMechanisms(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "au")
	t.Run("login-wrong-then-right", func(t *testing.T) {
		c := ts.dialClient(t, clDialTLS, nil)
		err := c.Login("au", "wrong").Wait()
		var ierr *imap.Error
		if !errors.As(err, &ierr) || ierr.Type != imap.StatusResponseTypeNo || ierr.Code != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("wrong password: %v, want NO [AUTHENTICATIONFAILED]", err)
		}
		if err := c.Login("au", "pw-au").Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("plain-sasl-ir", func(t *testing.T) {
		c := ts.dialClient(t, clDialTLS, nil)
		if err := c.Authenticate(sasl.NewPlainClient("", "au", "pw-au")); err != nil {
			t.Fatal(err)
		}
		if c.State() != imap.ConnStateAuthenticated {
			t.Fatalf("state %v", c.State())
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("plain-wrong", func(t *testing.T) {
		c := ts.dialClient(t, clDialTLS, nil)
		if err := c.Authenticate(sasl.NewPlainClient("", "au", "nope")); err == nil {
			t.Fatal("AUTHENTICATE PLAIN with a wrong password succeeded")
		}
	})
	t.Run("scram-sha-256", func(t *testing.T) {
		// The exchange is kept to be shown if it fails: it failed once
		// with "BAD invalid base64 in authentication response" and could
		// not be made to again.
		var trace testkit.SyncBuffer
		c, err := imapclient.DialTLS(ts.tlsAdr, &imapclient.Options{
			TLSConfig:   &tls.Config{RootCAs: ts.roots, ServerName: "localhost"},
			DebugWriter: &trace,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capability().Wait()
		if err != nil {
			t.Fatal(err)
		}
		if !caps.Has(imap.AuthCap("SCRAM-SHA-256")) {
			t.Fatalf("AUTH=SCRAM-SHA-256 not advertised: %v", caps)
		}
		sc, err := clNewSCRAMClient("au", "pw-au")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Authenticate(sc); err != nil {
			t.Fatalf("%v; exchange:\n%s", err, trace.String())
		}
		if !sc.conv.Valid() {
			t.Error("the server's final SCRAM message did not verify")
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("scram-wrong", func(t *testing.T) {
		c := ts.dialClient(t, clDialTLS, nil)
		sc, _ := clNewSCRAMClient("au", "bad password")
		if err := c.Authenticate(sc); err == nil {
			t.Fatal("SCRAM with a wrong password succeeded")
		}
	})
}

func TestClientCapabilities(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "cp")
	c := ts.clientLogin(t, "cp", nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	// Every extension issue 5 lists (LITERAL- is implied by LITERAL+,
	// RFC 7888 section 5).
	want := []string{"IMAP4rev1", "IMAP4rev2", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT",
		"ENABLE", "LITERAL+", "ID", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED",
		"LIST-STATUS", "CHILDREN", "ESEARCH", "SEARCHRES", "STATUS=SIZE", "CONDSTORE", "QRESYNC",
		"MULTIAPPEND", "BINARY", "UTF8=ACCEPT", "WITHIN", "SAVEDATE", "QUOTA",
		"COMPRESS=DEFLATE", "SORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"}
	for _, w := range want {
		if !caps.Has(imap.Cap(w)) {
			t.Errorf("capability %s missing from %v", w, caps)
		}
	}
	found := false
	for cp := range caps {
		if strings.HasPrefix(string(cp), "APPENDLIMIT=") {
			found = true
		}
	}
	if !found {
		t.Errorf("no APPENDLIMIT=n in %v", caps)
	}
	// Before login, commands of the authenticated state are refused.
	c2 := ts.dialClient(t, clDialTLS, nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err == nil {
		t.Error("SELECT before login succeeded")
	}
}

func TestClientEnableIDNamespace(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "en")
	c := ts.clientLogin(t, "en", nil)
	// imapclient enables only what it can parse; CONDSTORE and unknown
	// extensions are tested in dialogue_test.go.
	data, err := c.Enable(imap.CapUTF8Accept).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !data.Caps.Has(imap.CapUTF8Accept) {
		t.Errorf("ENABLED %v, want UTF8=ACCEPT", data.Caps)
	}
	// With UTF8=ACCEPT, mailbox names are UTF-8 (RFC 6855 section 3).
	if err := c.Create("Reçus/Été", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := clListAttrs(t, c, "", "Reçus/*", nil)["Reçus/Été"]; !ok {
		t.Error("UTF-8 mailbox name not listed as created")
	}
	id, err := c.ID(&imap.IDData{Name: "posthorn-test", Version: "1"}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if id == nil || id.Name == "" {
		t.Errorf("ID answer %+v has no name", id)
	}
	ns, err := c.Namespace().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Errorf("NAMESPACE personal %+v, want one with delimiter /", ns.Personal)
	}
}

// listNames returns the mailbox names of a LIST answer with their
// attributes.
func clListAttrs(t *testing.T, c *imapclient.Client, ref, pattern string, o *imap.ListOptions) map[string][]imap.MailboxAttr {
	t.Helper()
	l, err := c.List(ref, pattern, o).Collect()
	if err != nil {
		t.Fatalf("LIST %q %q: %v", ref, pattern, err)
	}
	m := map[string][]imap.MailboxAttr{}
	for _, d := range l {
		if d.Delim != '/' {
			t.Errorf("LIST %s: delimiter %q", d.Mailbox, d.Delim)
		}
		m[d.Mailbox] = d.Attrs
	}
	return m
}

func clSortedKeys[V any](m map[string]V) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	slices.Sort(k)
	return k
}

func TestClientListSpecialUse(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "li")
	c := ts.clientLogin(t, "li", nil)
	all := clListAttrs(t, c, "", "*", nil)
	// The default mailboxes and their RFC 6154 attributes.
	for name, attr := range map[string]imap.MailboxAttr{
		"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts, "Junk": imap.MailboxAttrJunk,
		"Trash": imap.MailboxAttrTrash, "Archive": imap.MailboxAttrArchive,
	} {
		if !slices.Contains(all[name], attr) {
			t.Errorf("LIST: %s has %v, want %s", name, all[name], attr)
		}
	}
	if _, ok := all["INBOX"]; !ok {
		t.Errorf("LIST * lacks INBOX: %v", clSortedKeys(all))
	}
	for _, name := range []string{"Work", "Work/2025", "Work/2025/Q1", "Workshop"} {
		if err := c.Create(name, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", name, err)
		}
	}
	// New mailboxes start subscribed here (the store's choice): start
	// from none subscribed but Work/2025.
	for name := range clListAttrs(t, c, "", "*", nil) {
		if err := c.Unsubscribe(name).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Subscribe("Work/2025").Wait(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref, pattern string
		want         []string
	}{
		{"", "Work", []string{"Work"}},
		{"", "Work%", []string{"Work", "Workshop"}},
		{"", "Work/%", []string{"Work/2025"}},
		{"", "Work/*", []string{"Work/2025", "Work/2025/Q1"}},
		{"Work/", "%", []string{"Work/2025"}},
		{"", "inbox", []string{"INBOX"}},
		{"", "Nothing*", nil},
	} {
		got := clSortedKeys(clListAttrs(t, c, tc.ref, tc.pattern, nil))
		if !slices.Equal(got, tc.want) {
			t.Errorf("LIST %q %q = %v, want %v", tc.ref, tc.pattern, got, tc.want)
		}
	}
	// CHILDREN (RFC 3348).
	m := clListAttrs(t, c, "", "Work*", &imap.ListOptions{ReturnChildren: true})
	if !slices.Contains(m["Work"], imap.MailboxAttrHasChildren) || !slices.Contains(m["Workshop"], imap.MailboxAttrHasNoChildren) {
		t.Errorf("CHILDREN: %v", m)
	}
	// LIST-EXTENDED selection options (RFC 5258).
	m = clListAttrs(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})
	if got := clSortedKeys(m); !slices.Contains(got, "Work/2025") || slices.Contains(got, "Work") || slices.Contains(got, "Workshop") {
		t.Errorf("LIST (SUBSCRIBED) = %v", got)
	}
	if !slices.Contains(m["Work/2025"], imap.MailboxAttrSubscribed) {
		t.Errorf("LIST (SUBSCRIBED): Work/2025 lacks \\Subscribed: %v", m["Work/2025"])
	}
	l, err := c.List("", "Work", &imap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].ChildInfo == nil || !l[0].ChildInfo.Subscribed {
		t.Errorf("LIST (SUBSCRIBED RECURSIVEMATCH) Work: %+v, want CHILDINFO (SUBSCRIBED)", l)
	}
	m = clListAttrs(t, c, "", "*", &imap.ListOptions{SelectSpecialUse: true})
	if got := clSortedKeys(m); !slices.Equal(got, []string{"Archive", "Drafts", "Junk", "Sent", "Trash"}) {
		t.Errorf("LIST (SPECIAL-USE) = %v", got)
	}
	m = clListAttrs(t, c, "", "Work%", &imap.ListOptions{ReturnSubscribed: true})
	if slices.Contains(m["Work"], imap.MailboxAttrSubscribed) {
		t.Errorf("RETURN (SUBSCRIBED): Work not subscribed but has %v", m["Work"])
	}
	// LIST-STATUS (RFC 5819).
	ts.deliver("li", "Work/2025", simpleMessage)
	ts.deliver("li", "Work/2025", simpleMessage, `\Seen`)
	l, err = c.List("", "Work/%", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Status == nil || l[0].Status.NumMessages == nil || *l[0].Status.NumMessages != 2 ||
		l[0].Status.NumUnseen == nil || *l[0].Status.NumUnseen != 1 || l[0].Status.UIDNext != 3 {
		t.Errorf("LIST RETURN (STATUS) = %+v", l)
	} else if l[0].Status.Mailbox != "Work/2025" {
		t.Errorf("LIST-STATUS names %q", l[0].Status.Mailbox)
	}
}

func TestClientMailboxLifecycle(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "mb")
	c := ts.clientLogin(t, "mb", nil)

	// CREATE with USE (RFC 6154 section 3).
	if err := c.Create("Old Stuff", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrArchive}}).Wait(); err != nil {
		t.Fatal(err)
	}
	if m := clListAttrs(t, c, "", "Old Stuff", nil); !slices.Contains(m["Old Stuff"], imap.MailboxAttrArchive) {
		t.Errorf("CREATE USE (\\Archive): LIST gives %v", m)
	}
	if err := c.Create("Bad Use", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{"\\Nonsense"}}).Wait(); err == nil {
		t.Error("CREATE with an unknown USE attribute succeeded")
	}
	if err := c.Create("Old Stuff", nil).Wait(); err == nil {
		t.Error("CREATE of an existing mailbox succeeded")
	}
	if err := c.Create("INBOX", nil).Wait(); err == nil {
		t.Error("CREATE INBOX succeeded")
	}

	// RENAME of a parent renames its children (RFC 9051 section 6.3.6).
	for _, n := range []string{"P", "P/C1", "P/C1/G", "P/C2"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	u := ts.deliver("mb", "P/C1/G", simpleMessage)
	if err := c.Rename("P", "Q", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := clSortedKeys(clListAttrs(t, c, "", "*", nil))
	for _, n := range []string{"Q", "Q/C1", "Q/C1/G", "Q/C2"} {
		if !slices.Contains(got, n) {
			t.Errorf("after RENAME P Q, %s missing: %v", n, got)
		}
	}
	for _, n := range got {
		if n == "P" || strings.HasPrefix(n, "P/") {
			t.Errorf("after RENAME P Q, %s still listed", n)
		}
	}
	if uids := ts.uids("mb", "Q/C1/G"); !slices.Equal(uids, []uint32{u}) {
		t.Errorf("Q/C1/G holds %v, want [%d]", uids, u)
	}
	if err := c.Rename("Nope", "Nope2", nil).Wait(); err == nil {
		t.Error("RENAME of a missing mailbox succeeded")
	}
	if err := c.Rename("Q/C2", "Q/C1", nil).Wait(); err == nil {
		t.Error("RENAME onto an existing mailbox succeeded")
	}

	// RENAME INBOX moves its messages to the new mailbox; INBOX stays,
	// empty (RFC 9051 section 6.3.6).
	ts.deliver("mb", "", simpleMessage)
	ts.deliver("mb", "", simpleMessage)
	if err := c.Rename("INBOX", "Old INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.uids("mb", "Old INBOX")); n != 2 {
		t.Errorf("Old INBOX has %d messages, want 2", n)
	}
	if n := len(ts.uids("mb", "INBOX")); n != 0 {
		t.Errorf("INBOX has %d messages after RENAME, want 0", n)
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 0 {
		t.Errorf("SELECT INBOX after RENAME: %+v %v", sd, err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}

	// DELETE (RFC 9051 section 6.3.5).
	if err := c.Delete("Old Stuff").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := clListAttrs(t, c, "", "*", nil)["Old Stuff"]; ok {
		t.Error("deleted mailbox still listed")
	}
	if err := c.Delete("Old Stuff").Wait(); err == nil {
		t.Error("DELETE of a missing mailbox succeeded")
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Error("DELETE INBOX succeeded")
	}

	// SUBSCRIBE / UNSUBSCRIBE with LIST (SUBSCRIBED).
	if err := c.Subscribe("Q/C2").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := clListAttrs(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})["Q/C2"]; !ok {
		t.Error("subscribed mailbox not in LIST (SUBSCRIBED)")
	}
	if err := c.Unsubscribe("Q/C2").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := clListAttrs(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})["Q/C2"]; ok {
		t.Error("unsubscribed mailbox still in LIST (SUBSCRIBED)")
	}
}

func TestClientStatus(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "st")
	ts.deliver("st", "", simpleMessage)
	ts.deliver("st", "", clNestedMessage, `\Seen`)
	ts.deliver("st", "", simpleMessage, `\Deleted`, `\Seen`)
	c := ts.clientLogin(t, "st", nil)
	sd, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true,
		NumUnseen: true, NumDeleted: true, Size: true, HighestModSeq: true, AppendLimit: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	size := int64(2*len(simpleMessage) + len(clNestedMessage))
	switch {
	case sd.NumMessages == nil || *sd.NumMessages != 3:
		t.Errorf("MESSAGES %v", sd.NumMessages)
	case sd.UIDNext != 4:
		t.Errorf("UIDNEXT %d", sd.UIDNext)
	case sd.UIDValidity == 0:
		t.Error("UIDVALIDITY 0")
	case sd.NumUnseen == nil || *sd.NumUnseen != 1:
		t.Errorf("UNSEEN %v", sd.NumUnseen)
	case sd.NumDeleted == nil || *sd.NumDeleted != 1:
		t.Errorf("DELETED %v", sd.NumDeleted)
	case sd.Size == nil || *sd.Size != size:
		t.Errorf("SIZE %v, want %d", sd.Size, size)
	case sd.HighestModSeq == 0:
		t.Error("HIGHESTMODSEQ 0")
	case sd.AppendLimit == nil || *sd.AppendLimit == 0:
		t.Errorf("APPENDLIMIT %v", sd.AppendLimit)
	}
	// HIGHESTMODSEQ grows with a change.
	before := sd.HighestModSeq
	ts.deliver("st", "", simpleMessage)
	sd, err = c.Status("INBOX", &imap.StatusOptions{HighestModSeq: true, NumMessages: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.HighestModSeq <= before || *sd.NumMessages != 4 {
		t.Errorf("after a delivery: HIGHESTMODSEQ %d (was %d), MESSAGES %d", sd.HighestModSeq, before, *sd.NumMessages)
	}
	if _, err := c.Status("Nope", &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
		t.Error("STATUS of a missing mailbox succeeded")
	}
}

func TestClientSelectExamine(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "se")
	ts.deliver("se", "", simpleMessage)
	ts.deliver("se", "", simpleMessage, "$Label1")
	c := ts.clientLogin(t, "se", nil)
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.NumMessages != 2 || sd.UIDNext != 3 || sd.UIDValidity == 0 {
		t.Errorf("SELECT: %+v", sd)
	}
	if !slices.Contains(sd.Flags, imap.Flag("$Label1")) || !slices.Contains(sd.Flags, imap.FlagSeen) {
		t.Errorf("FLAGS %v lack $Label1 or \\Seen", sd.Flags)
	}
	if !slices.Contains(sd.PermanentFlags, imap.FlagWildcard) {
		t.Errorf("PERMANENTFLAGS %v lack \\*", sd.PermanentFlags)
	}
	ed, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ed.NumMessages != 2 || len(ed.PermanentFlags) != 0 {
		t.Errorf("EXAMINE: %+v", ed)
	}
	// STORE in a read-only mailbox fails (RFC 9051 section 6.3.3).
	err = c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	if err == nil {
		t.Error("STORE after EXAMINE succeeded")
	}
	// A fetch of BODY[] after EXAMINE does not set \Seen.
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY[] after EXAMINE set flags: %+v", msgs)
	}
	if _, err := c.Select("No such", nil).Wait(); err == nil {
		t.Error("SELECT of a missing mailbox succeeded")
	}
	if c.State() != imap.ConnStateAuthenticated {
		t.Errorf("after a failed SELECT the state is %v, want authenticated (RFC 9051 section 6.3.2)", c.State())
	}
}

func TestClientFetchItems(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "fe")
	c := ts.clientLogin(t, "fe", nil)
	date := time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("", 2*3600))
	appendMsg := func(text string) imap.UID {
		cmd := c.Append("INBOX", int64(len(text)), &imap.AppendOptions{Time: date})
		cmd.Write([]byte(text))
		cmd.Close()
		ad, err := cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		return ad.UID
	}
	u1 := appendMsg(clNestedMessage)
	u2 := appendMsg(clBase64Message)
	// SELECT (CONDSTORE) turns CONDSTORE on (RFC 7162 section 3.1.8).
	if sd, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait(); err != nil || sd.HighestModSeq == 0 {
		t.Fatalf("SELECT (CONDSTORE): %+v %v", sd, err)
	}
	sec := func(spec imap.PartSpecifier, part ...int) *imap.FetchItemBodySection {
		return &imap.FetchItemBodySection{Specifier: spec, Part: part, Peek: true}
	}
	sections := map[string]struct {
		s    *imap.FetchItemBodySection
		want string
	}{
		"BODY[]":          {sec(""), clNestedMessage},
		"BODY[HEADER]":    {sec(imap.PartSpecifierHeader), clNestedHeader},
		"BODY[TEXT]":      {sec(imap.PartSpecifierText), strings.TrimPrefix(clNestedMessage, clNestedHeader)},
		"BODY[1.1]":       {sec("", 1, 1), clPart11Body},
		"BODY[1.2]":       {sec("", 1, 2), clPart12Body},
		"BODY[1.MIME]":    {sec(imap.PartSpecifierMIME, 1), clPart1MIME},
		"BODY[2]":         {sec("", 2), clPart2Head + clPart2Body},
		"BODY[2.HEADER]":  {sec(imap.PartSpecifierHeader, 2), clPart2Head},
		"BODY[2.TEXT]":    {sec(imap.PartSpecifierText, 2), clPart2Body},
		"BODY[3.MIME]":    {sec(imap.PartSpecifierMIME, 3), clPart3MIME},
		"BODY[3]":         {sec("", 3), strings.TrimSuffix(clWrap76(clBinaryData), "\r\n")},
		"BODY[]<0.10>":    {&imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: 10}}, clNestedMessage[:10]},
		"BODY[1.1]<6.4>":  {&imap.FetchItemBodySection{Part: []int{1, 1}, Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 4}}, clPart11Body[6:10]},
		"BODY[]<5000.10>": {&imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 5000, Size: 10}}, ""},
		"HEADER.FIELDS": {&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "FROM", "X-Absent"}, Peek: true},
			"From: Carol <carol@example.org>\r\nSubject: Nested parts\r\n\r\n"},
		"HEADER.FIELDS.NOT": {&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"To", "Cc", "Date", "Message-ID", "In-Reply-To", "MIME-Version", "Content-Type"}, Peek: true},
			"From: Carol <carol@example.org>\r\nSubject: Nested parts\r\n\r\n"},
		"2.HEADER.FIELDS": {&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Part: []int{2}, HeaderFields: []string{"Subject"}, Peek: true},
			"Subject: Forwarded one\r\n\r\n"},
	}
	opts := &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, InternalDate: true, RFC822Size: true, ModSeq: true,
		BodyStructure:     &imap.FetchItemBodyStructure{Extended: true},
		BinarySection:     []*imap.FetchItemBinarySection{{Part: []int{3}, Peek: true}},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{3}}, {Part: []int{1, 1}}},
	}
	for _, s := range sections {
		opts.BodySection = append(opts.BodySection, s.s)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(u1), opts).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.UID != u1 || m.SeqNum != 1 {
		t.Errorf("UID %d seq %d", m.UID, m.SeqNum)
	}
	if len(m.Flags) != 0 {
		t.Errorf("FLAGS %v after peeks", m.Flags)
	}
	if m.RFC822Size != int64(len(clNestedMessage)) {
		t.Errorf("RFC822.SIZE %d, want %d", m.RFC822Size, len(clNestedMessage))
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("INTERNALDATE %v, want %v", m.InternalDate, date)
	}
	if m.ModSeq == 0 {
		t.Error("MODSEQ 0")
	}
	for name, s := range sections {
		got := m.FindBodySection(s.s)
		if got == nil && s.want != "" {
			t.Errorf("%s: missing", name)
		} else if string(got) != s.want {
			t.Errorf("%s = %q, want %q", name, got, s.want)
		}
	}
	if got := m.FindBinarySection(&imap.FetchItemBinarySection{Part: []int{3}, Peek: true}); !bytes.Equal(got, clBinaryData) {
		t.Errorf("BINARY[3] = %d bytes, not the attachment's %d", len(got), len(clBinaryData))
	}
	if n, ok := m.FindBinarySectionSize([]int{3}); !ok || n != uint32(len(clBinaryData)) {
		t.Errorf("BINARY.SIZE[3] = %d %v, want %d", n, ok, len(clBinaryData))
	}
	if n, ok := m.FindBinarySectionSize([]int{1, 1}); !ok || n != uint32(len(clPart11Body)) {
		t.Errorf("BINARY.SIZE[1.1] = %d %v, want %d", n, ok, len(clPart11Body))
	}

	// ENVELOPE (RFC 9051 section 7.5.2).
	env := m.Envelope
	if env == nil {
		t.Fatal("no ENVELOPE")
	}
	if env.Subject != "Nested parts" || !env.Date.Equal(time.Date(2026, 11, 21, 8, 30, 0, 0, time.UTC)) {
		t.Errorf("ENVELOPE subject %q date %v", env.Subject, env.Date)
	}
	addrs := func(l []imap.Address) []string {
		var s []string
		for _, a := range l {
			s = append(s, a.Name+" <"+a.Addr()+">")
		}
		return s
	}
	for _, tc := range []struct {
		name string
		got  []imap.Address
		want []string
	}{
		{"from", env.From, []string{"Carol <carol@example.org>"}},
		{"sender", env.Sender, []string{"Carol <carol@example.org>"}}, // defaults to From
		{"reply-to", env.ReplyTo, []string{"Carol <carol@example.org>"}},
		{"to", env.To, []string{"Dave <dave@example.net>", "Erin <erin@example.net>"}},
		{"cc", env.Cc, []string{"Frank <frank@example.com>"}},
		{"bcc", env.Bcc, nil},
	} {
		if got := addrs(tc.got); !slices.Equal(got, tc.want) {
			t.Errorf("ENVELOPE %s = %v, want %v", tc.name, got, tc.want)
		}
	}
	if strings.Trim(env.MessageID, "<>") != "nested@example.org" || len(env.InReplyTo) != 1 || strings.Trim(env.InReplyTo[0], "<>") != "1@example.org" {
		t.Errorf("ENVELOPE message-id %q in-reply-to %q", env.MessageID, env.InReplyTo)
	}

	// BODYSTRUCTURE of multipart/mixed (multipart/alternative (text/plain,
	// text/html), message/rfc822, application/octet-stream).
	clCheckNestedStructure(t, m.BodyStructure)

	// The single-part base64 message: BINARY[1] decodes (RFC 3516).
	b1 := &imap.FetchItemBinarySection{Part: []int{1}, Peek: true}
	msgs, err = c.Fetch(imap.UIDSetNum(u2), &imap.FetchOptions{BinarySection: []*imap.FetchItemBinarySection{b1},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{1}}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := msgs[0].FindBinarySection(b1); !bytes.Equal(got, clBinaryData) {
		t.Errorf("BINARY[1] = %x, want %x", got, clBinaryData)
	}
	if n, _ := msgs[0].FindBinarySectionSize([]int{1}); n != uint32(len(clBinaryData)) {
		t.Errorf("BINARY.SIZE[1] = %d", n)
	}

	// A BODY[] without PEEK sets \Seen (RFC 9051 section 6.4.5).
	msgs, err = c.Fetch(imap.UIDSetNum(u2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(imap.UIDSetNum(u2), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY[TEXT] did not set \\Seen: %+v %v", msgs, err)
	}
}

func clCheckNestedStructure(t *testing.T, bs imap.BodyStructure) {
	t.Helper()
	mixed, ok := bs.(*imap.BodyStructureMultiPart)
	if !ok || mixed.MediaType() != "multipart/mixed" || len(mixed.Children) != 3 {
		t.Fatalf("BODYSTRUCTURE top %#v", bs)
	}
	if mixed.Extended == nil || !strings.EqualFold(mixed.Extended.Params["boundary"], "outer") {
		t.Errorf("multipart/mixed extension data %+v lacks boundary=outer", mixed.Extended)
	}
	alt, ok := mixed.Children[0].(*imap.BodyStructureMultiPart)
	if !ok || alt.MediaType() != "multipart/alternative" || len(alt.Children) != 2 {
		t.Fatalf("part 1: %#v", mixed.Children[0])
	}
	for i, want := range []struct {
		typ  string
		size int
	}{{"text/plain", len(clPart11Body)}, {"text/html", len(clPart12Body)}} {
		p, ok := alt.Children[i].(*imap.BodyStructureSinglePart)
		if !ok || p.MediaType() != want.typ || int(p.Size) != want.size || !strings.EqualFold(p.Params["charset"], "utf-8") {
			t.Errorf("part 1.%d: %#v, want %s of %d octets, charset utf-8", i+1, alt.Children[i], want.typ, want.size)
			continue
		}
		// A body of one line without its CRLF (that belongs to the
		// boundary): 0 or 1 lines, as servers count CRLFs or lines.
		if p.Text == nil || p.Text.NumLines > 1 {
			t.Errorf("part 1.%d: lines %+v, want 0 or 1", i+1, p.Text)
		}
	}
	rfc, ok := mixed.Children[1].(*imap.BodyStructureSinglePart)
	if !ok || rfc.MediaType() != "message/rfc822" || rfc.MessageRFC822 == nil {
		t.Fatalf("part 2: %#v", mixed.Children[1])
	}
	if int(rfc.Size) != len(clPart2Head+clPart2Body) {
		t.Errorf("part 2 size %d, want %d", rfc.Size, len(clPart2Head+clPart2Body))
	}
	if e := rfc.MessageRFC822.Envelope; e == nil || e.Subject != "Forwarded one" || len(e.From) != 1 || e.From[0].Addr() != "grace@example.com" {
		t.Errorf("part 2 envelope %+v", e)
	}
	if inner, ok := rfc.MessageRFC822.BodyStructure.(*imap.BodyStructureSinglePart); !ok || inner.MediaType() != "text/plain" || int(inner.Size) != len(clPart2Body) {
		t.Errorf("part 2 body %#v, want text/plain of %d", rfc.MessageRFC822.BodyStructure, len(clPart2Body))
	}
	if n := rfc.MessageRFC822.NumLines; n != 4 && n != 5 {
		// Four CRLFs, the last line unterminated.
		t.Errorf("part 2 lines %d, want 4 (or 5)", n)
	}
	att, ok := mixed.Children[2].(*imap.BodyStructureSinglePart)
	if !ok || att.MediaType() != "application/octet-stream" || !strings.EqualFold(att.Encoding, "base64") {
		t.Fatalf("part 3: %#v", mixed.Children[2])
	}
	if want := len(strings.TrimSuffix(clWrap76(clBinaryData), "\r\n")); int(att.Size) != want {
		t.Errorf("part 3 size %d, want %d", att.Size, want)
	}
	if att.Params["name"] != "data.bin" {
		t.Errorf("part 3 params %v", att.Params)
	}
	if d := att.Disposition(); d == nil || !strings.EqualFold(d.Value, "attachment") || d.Params["filename"] != "data.bin" {
		t.Errorf("part 3 disposition %+v", d)
	}
}

func TestClientStore(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "so")
	for i := 0; i < 3; i++ {
		ts.deliver("so", "", simpleMessage)
	}
	c := ts.clientLogin(t, "so", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	flagsOf := func() map[uint32][]imap.Flag {
		msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint32][]imap.Flag{}
		for _, m := range msgs {
			f := slices.Clone(m.Flags)
			slices.Sort(f)
			out[m.SeqNum] = f
		}
		return out
	}
	store := func(set imap.SeqSet, op imap.StoreFlagsOp, silent bool, flags ...imap.Flag) []*imapclient.FetchMessageBuffer {
		msgs, err := c.Store(set, &imap.StoreFlags{Op: op, Silent: silent, Flags: flags}, nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	msgs := store(imap.SeqSetNum(1, 2), imap.StoreFlagsAdd, false, imap.FlagFlagged, "$Work")
	if len(msgs) != 2 {
		t.Errorf("+FLAGS answered %d FETCH, want 2", len(msgs))
	}
	store(imap.SeqSetNum(2), imap.StoreFlagsDel, false, imap.FlagFlagged)
	store(imap.SeqSetNum(3), imap.StoreFlagsSet, false, imap.FlagSeen, imap.FlagAnswered)
	msgs = store(imap.SeqSetNum(3), imap.StoreFlagsAdd, true, imap.FlagDraft)
	if len(msgs) != 0 {
		t.Errorf("+FLAGS.SILENT answered %d FETCH", len(msgs))
	}
	want := map[uint32][]imap.Flag{
		1: {"$Work", imap.FlagFlagged},
		2: {"$Work"},
		3: {imap.FlagAnswered, imap.FlagDraft, imap.FlagSeen},
	}
	got := flagsOf()
	for n, w := range want {
		if !slices.Equal(got[n], w) {
			t.Errorf("message %d flags %v, want %v", n, got[n], w)
		}
	}
	// Keywords are case-insensitive: adding $work again changes nothing.
	store(imap.SeqSetNum(1), imap.StoreFlagsAdd, true, "$WORK")
	if f := flagsOf()[1]; len(f) != 2 {
		t.Errorf("flags after re-adding a keyword in other case: %v", f)
	}
	// \Recent cannot be stored (RFC 3501 section 2.3.2).
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{`\Recent`}}, nil).Close(); err == nil {
		t.Error("STORE \\Recent succeeded")
	}
}

func TestClientCopyMove(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "cm")
	var src []uint32
	for i := 0; i < 4; i++ {
		src = append(src, ts.deliver("cm", "", clMsgText("a@example.org", fmt.Sprint("m", i), "Fri, 20 Nov 2026 10:00:00 +0000", "body"), "$K"))
	}
	c := ts.clientLogin(t, "cm", nil)
	if err := c.Create("Dest", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	destValidity := ts.mailbox("cm", "Dest").UIDValidity
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Dest").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if cd.UIDValidity != destValidity || cd.SourceUIDs.String() != fmt.Sprintf("%d:%d", src[0], src[1]) {
		t.Errorf("COPYUID %d %v %v", cd.UIDValidity, cd.SourceUIDs, cd.DestUIDs)
	}
	dst := ts.uids("cm", "Dest")
	if len(dst) != 2 || cd.DestUIDs.String() != fmt.Sprintf("%d:%d", dst[0], dst[1]) {
		t.Errorf("COPYUID dest %v, store has %v", cd.DestUIDs, dst)
	}
	// Flags travel with the copy.
	if n := len(ts.uids("cm", "INBOX")); n != 4 {
		t.Errorf("INBOX has %d after COPY", n)
	}
	// UID MOVE (RFC 6851): the source loses the messages, the client gets
	// EXPUNGE and COPYUID.
	md, err := c.Move(imap.UIDSetNum(imap.UID(src[2]), imap.UID(src[3])), "Dest").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.UIDValidity != destValidity || md.SourceUIDs.String() != fmt.Sprintf("%d:%d", src[2], src[3]) {
		t.Errorf("MOVE COPYUID %+v", md)
	}
	if got := ts.uids("cm", "INBOX"); !slices.Equal(got, src[:2]) {
		t.Errorf("INBOX after MOVE %v, want %v", got, src[:2])
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Errorf("client counts %d messages after MOVE, want 2", n)
	}
	sd, err := c.Select("Dest", nil).Wait()
	if err != nil || sd.NumMessages != 4 {
		t.Fatalf("Dest: %+v %v", sd, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if !slices.Contains(m.Flags, imap.Flag("$K")) || m.Envelope.Subject != fmt.Sprint("m", i) {
			t.Errorf("Dest message %d: flags %v subject %q", i+1, m.Flags, m.Envelope.Subject)
		}
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Missing").Wait(); err == nil {
		t.Error("COPY to a missing mailbox succeeded")
	}
}

func TestClientAppend(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{appendLimit: 1 << 20}, "ap")
	c := ts.clientLogin(t, "ap", nil)
	date := time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("", -5*3600))
	text := clMsgText("x@example.org", "appended", "Thu, 29 Feb 2024 12:00:00 -0500", "appended body")
	cmd := c.Append("Drafts", int64(len(text)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, "$Pending"}, Time: date})
	cmd.Write([]byte(text))
	cmd.Close()
	ad, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	mb := ts.mailbox("ap", "Drafts")
	if ad.UIDValidity != mb.UIDValidity || ad.UID == 0 {
		t.Errorf("APPENDUID %d %d, mailbox validity %d", ad.UIDValidity, ad.UID, mb.UIDValidity)
	}
	if got := ts.uids("ap", "Drafts"); !slices.Equal(got, []uint32{uint32(ad.UID)}) {
		t.Errorf("Drafts holds %v", got)
	}
	if _, err := c.Select("Drafts", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(ad.UID), &imap.FetchOptions{Flags: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(msgs, err)
	}
	m := msgs[0]
	f := slices.Clone(m.Flags)
	slices.Sort(f)
	if !slices.Equal(f, []imap.Flag{"$Pending", imap.FlagDraft}) {
		t.Errorf("flags %v", f)
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("INTERNALDATE %v, want %v", m.InternalDate, date)
	}
	if got := m.FindBodySection(&imap.FetchItemBodySection{Peek: true}); string(got) != text {
		t.Errorf("BODY[] %q", got)
	}
	// An APPEND to the selected mailbox is seen as EXISTS.
	cmd = c.Append("Drafts", int64(len(text)), nil)
	cmd.Write([]byte(text))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Errorf("after APPEND to the selected mailbox: %d messages", n)
	}
	// To a missing mailbox: NO [TRYCREATE] (RFC 9051 section 6.3.12).
	cmd = c.Append("Missing", int64(len(text)), nil)
	cmd.Write([]byte(text))
	cmd.Close()
	_, err = cmd.Wait()
	var ierr *imap.Error
	if !errors.As(err, &ierr) || ierr.Code != imap.ResponseCodeTryCreate {
		t.Errorf("APPEND to a missing mailbox: %v, want NO [TRYCREATE]", err)
	}
}

func TestClientExpunge(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "ex")
	var u []uint32
	for i := 0; i < 6; i++ {
		u = append(u, ts.deliver("ex", "", simpleMessage))
	}
	c := ts.clientLogin(t, "ex", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2, 3, 5, 6), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// UID EXPUNGE (RFC 4315) removes only the \Deleted messages of its set.
	seqs, err := c.UIDExpunge(imap.UIDSetNum(imap.UID(u[0]), imap.UID(u[1]), imap.UID(u[2]))).Collect()
	if err != nil {
		t.Fatal(err)
	}
	// Messages 2 and 3 go: each EXPUNGE renumbers, so both are 2.
	if !slices.Equal(seqs, []uint32{2, 2}) {
		t.Errorf("UID EXPUNGE sent %v, want [2 2]", seqs)
	}
	if got := ts.uids("ex", "INBOX"); !slices.Equal(got, []uint32{u[0], u[3], u[4], u[5]}) {
		t.Errorf("after UID EXPUNGE %v", got)
	}
	seqs, err = c.Expunge().Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []uint32{3, 3}) {
		t.Errorf("EXPUNGE sent %v, want [3 3]", seqs)
	}
	if got := ts.uids("ex", "INBOX"); !slices.Equal(got, []uint32{u[0], u[3]}) {
		t.Errorf("after EXPUNGE %v", got)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Errorf("client counts %d", n)
	}
}

func TestClientSearchSortThread(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "sr")
	// 1: from alice, "Budget", 2026-01-10, flagged
	// 2: from bob, "Re: Budget", 2026-01-11, seen, replies to 1
	// 3: from carol, "Lunch", 2026-01-09, seen, large
	// 4: the nested message (zanzibar in a decoded text part)
	ts.deliver("sr", "", clMsgText("Alice <alice@example.org>", "Budget", "Sat, 10 Jan 2026 10:00:00 +0000", "numbers inside", "Message-ID: <b1@example.org>"), `\Flagged`)
	ts.deliver("sr", "", clMsgText("Bob <bob@example.org>", "Re: Budget", "Sun, 11 Jan 2026 10:00:00 +0000", "agreed", "Message-ID: <b2@example.org>", "In-Reply-To: <b1@example.org>", "References: <b1@example.org>"), `\Seen`)
	ts.deliver("sr", "", clMsgText("Carol <carol@example.org>", "Lunch", "Fri, 09 Jan 2026 10:00:00 +0000", strings.Repeat("long line of text\r\n", 200), "Message-ID: <l1@example.org>"), `\Seen`)
	ts.deliver("sr", "", clNestedMessage)
	c := ts.clientLogin(t, "sr", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	search := func(crit *imap.SearchCriteria) []uint32 {
		t.Helper()
		d, err := c.Search(crit, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return d.AllSeqNums()
	}
	for _, tc := range []struct {
		name string
		crit imap.SearchCriteria
		want []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2, 3, 4}},
		{"flagged", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{1}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{1, 4}},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "budget"}}}, []uint32{1, 2}},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "carol"}}}, []uint32{3, 4}},
		{"body-decoded", imap.SearchCriteria{Body: []string{"zanzibar"}}, []uint32{4}},
		{"text", imap.SearchCriteria{Text: []string{"agreed"}}, []uint32{2}},
		{"larger", imap.SearchCriteria{Larger: 3000}, []uint32{3}},
		{"sentsince", imap.SearchCriteria{SentSince: time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)}, []uint32{1, 2, 4}},
		{"sentbefore", imap.SearchCriteria{SentBefore: time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)}, []uint32{3}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}}}, []uint32{1, 4}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagFlagged}}, {Larger: 3000}}}}, []uint32{1, 3}},
		{"seqset+flag", imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(2, 3, 4)}, Flag: []imap.Flag{imap.FlagSeen}}, []uint32{2, 3}},
	} {
		if got := search(&tc.crit); !slices.Equal(got, tc.want) {
			t.Errorf("SEARCH %s = %v, want %v", tc.name, got, tc.want)
		}
	}
	// ESEARCH return options (RFC 4731).
	d, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagFlagged}}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if d.Min != 2 || d.Max != 4 || d.Count != 3 {
		t.Errorf("UID SEARCH RETURN (MIN MAX COUNT) = %+v, want 2 4 3", d)
	}
	// SORT (RFC 5256).
	nums, err := c.Sort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{},
		SortCriteria: []imapclient.SortCriterion{{Key: imapclient.SortKeyDate}}}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nums, []uint32{3, 1, 2, 4}) {
		t.Errorf("SORT (DATE) = %v, want [3 1 2 4]", nums)
	}
	nums, err = c.Sort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{},
		SortCriteria: []imapclient.SortCriterion{{Key: imapclient.SortKeySize, Reverse: true}}}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(nums) != 4 || nums[0] != 4 && nums[0] != 3 {
		t.Errorf("SORT (REVERSE SIZE) = %v", nums)
	}
	nums, err = c.Sort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{},
		SortCriteria: []imapclient.SortCriterion{{Key: imapclient.SortKeySubject}, {Key: imapclient.SortKeyArrival}}}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	// Base subjects (RFC 5256 section 2.1): Budget, Budget, Lunch, Nested parts.
	if !slices.Equal(nums, []uint32{1, 2, 3, 4}) {
		t.Errorf("SORT (SUBJECT ARRIVAL) = %v, want [1 2 3 4]", nums)
	}
	// THREAD (RFC 5256 section 3).
	for _, alg := range []imap.ThreadAlgorithm{imap.ThreadReferences, imap.ThreadOrderedSubject} {
		threads, err := c.Thread(&imapclient.ThreadOptions{Algorithm: alg, SearchCriteria: &imap.SearchCriteria{}}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		var budget *imapclient.ThreadData
		count := 0
		var walk func(td []imapclient.ThreadData)
		walk = func(td []imapclient.ThreadData) {
			for i := range td {
				count += len(td[i].Chain)
				if slices.Contains(td[i].Chain, 1) {
					budget = &td[i]
				}
				walk(td[i].SubThreads)
			}
		}
		walk(threads)
		if count != 4 || len(threads) != 3 {
			t.Errorf("THREAD %s: %d threads, %d messages: %+v", alg, len(threads), count, threads)
		}
		if budget == nil || !(slices.Equal(budget.Chain, []uint32{1, 2}) ||
			len(budget.SubThreads) == 1 && slices.Equal(budget.SubThreads[0].Chain, []uint32{2})) {
			t.Errorf("THREAD %s: message 2 is not under 1: %+v", alg, threads)
		}
	}
}

func TestClientIdle(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "id")
	ts.deliver("id", "", simpleMessage)
	var mu sync.Mutex
	exists := make(chan uint32, 4)
	h := &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
		if d.NumMessages != nil {
			mu.Lock()
			exists <- *d.NumMessages
			mu.Unlock()
		}
	}}
	c := ts.clientLogin(t, "id", h)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for len(exists) > 0 {
		<-exists
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the server is in IDLE
	start := time.Now()
	ts.deliver("id", "", simpleMessage)
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("EXISTS %d, want 2", n)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("EXISTS after %v, want within 1s", d)
		}
	case <-time.After(time.Second):
		t.Error("no EXISTS within 1 s of a delivery during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestClientUnselectClose(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "uc")
	u1 := ts.deliver("uc", "", simpleMessage, `\Deleted`)
	u2 := ts.deliver("uc", "", simpleMessage)
	expunges := 0
	var mu sync.Mutex
	h := &imapclient.UnilateralDataHandler{Expunge: func(uint32) { mu.Lock(); expunges++; mu.Unlock() }}
	c := ts.clientLogin(t, "uc", h)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// UNSELECT (RFC 3691) does not expunge.
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := ts.uids("uc", "INBOX"); !slices.Equal(got, []uint32{u1, u2}) {
		t.Errorf("after UNSELECT %v", got)
	}
	if c.State() != imap.ConnStateAuthenticated {
		t.Errorf("state %v after UNSELECT", c.State())
	}
	// EXAMINE then CLOSE: no expunge in a read-only mailbox.
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := ts.uids("uc", "INBOX"); !slices.Equal(got, []uint32{u1, u2}) {
		t.Errorf("after EXAMINE+CLOSE %v", got)
	}
	// CLOSE expunges silently (RFC 9051 section 6.4.1).
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := ts.uids("uc", "INBOX"); !slices.Equal(got, []uint32{u2}) {
		t.Errorf("after CLOSE %v", got)
	}
	mu.Lock()
	if expunges != 0 {
		t.Errorf("CLOSE sent %d EXPUNGE responses", expunges)
	}
	mu.Unlock()
	if err := c.Unselect().Wait(); err == nil {
		t.Error("UNSELECT without a selected mailbox succeeded")
	}
}

func TestClientQuota(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, serverOptions{}, "qu")
	if err := ts.st.SetQuota(ctx, "qu", 10<<20); err != nil {
		t.Fatal(err)
	}
	ts.deliver("qu", "", clNestedMessage)
	c := ts.clientLogin(t, "qu", nil)
	qs, err := c.GetQuotaRoot("INBOX").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 {
		t.Fatalf("GETQUOTAROOT: %+v", qs)
	}
	st, ok := qs[0].Resources[imap.QuotaResourceStorage]
	if !ok || st.Limit != 10<<10 || st.Usage != int64((len(clNestedMessage)+1023)/1024) {
		t.Errorf("STORAGE %+v, want usage %d limit %d (KiB)", st, (len(clNestedMessage)+1023)/1024, 10<<10)
	}
	if _, err := c.GetQuotaRoot("Missing").Wait(); err == nil {
		t.Error("GETQUOTAROOT of a missing mailbox succeeded")
	}
}
