package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/srs"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

var ctx = context.Background()

func setup(t *testing.T) (*Deliverer, store.Store) {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, a := range []string{"pp", "bob"} {
		if _, err := st.CreateAccount(ctx, a, "x"); err != nil {
			t.Fatal(err)
		}
	}
	return &Deliverer{Store: st, AllowPrograms: true, AllowFiles: true}, st
}

func account(n string) route.Target { return route.Target{Kind: route.TargetAccount, Account: n} }

func remote(s string) route.Target {
	a, _ := addr.ParsePath(s, true)
	return route.Target{Kind: route.TargetRemote, Address: a}
}

func inbox(t *testing.T, st store.Store, name string) []store.MessageInfo {
	t.Helper()
	a, _ := st.GetAccount(ctx, name)
	mb, _ := st.GetMailbox(ctx, a.ID, store.Inbox)
	ms, err := st.ListMessages(ctx, mb.ID, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

const body = "Return-Path: <a@remote.example>\r\nFrom: a@remote.example\r\nSubject: test\r\n\r\nhello\r\n"

func TestDeliverDedupesAndParsesOnce(t *testing.T) {
	d, st := setup(t)
	from, _ := addr.ParsePath("a@remote.example", true)
	env := &Envelope{ID: "Q1", From: from, Recipients: []Recipient{
		{Targets: []route.Target{account("pp"), remote("x@remote.example")}},
		{Targets: []route.Target{account("pp"), account("bob"), remote("X@REMOTE.EXAMPLE")}},
	}}
	res, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != 2 || res.Queued != 1 || res.QueueID != "Q1" || len(res.Failures) != 0 {
		t.Errorf("result %+v", res)
	}
	ms := inbox(t, st, "pp")
	if len(ms) != 1 {
		t.Fatalf("pp has %d copies, want 1", len(ms))
	}
	// The structure was parsed and kept.
	m, err := msg.Unmarshal(ms[0].Meta)
	if err != nil || m.Envelope.Subject != "test" {
		t.Errorf("meta: %+v %v", m, err)
	}
	q, _ := st.ListQueue(ctx)
	if len(q) != 1 || len(q[0].Recipients) != 1 || q[0].From != "a@remote.example" {
		t.Errorf("queue %+v", q)
	}
}

func TestDeliverPartialFailures(t *testing.T) {
	d, st := setup(t)
	st.SetQuota(ctx, "bob", 10) // too small for anything
	env := &Envelope{ID: "Q2", Null: true, Recipients: []Recipient{{Targets: []route.Target{account("pp"), account("bob")}}}}
	res, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != 1 || len(res.Failures) != 1 || !errors.Is(res.Failures[0].Err, store.ErrOverQuota) {
		t.Errorf("result %+v", res)
	}
	// Nobody can take it: an error, and nothing stored.
	env = &Envelope{ID: "Q3", Recipients: []Recipient{{Targets: []route.Target{account("bob")}}}}
	if _, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body))); !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("all targets over quota: %v", err)
	}
}

func TestDeliverProgramsAndFiles(t *testing.T) {
	d, st := setup(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	mbox := filepath.Join(dir, "mbox")
	env := &Envelope{ID: "Q4", Null: true, Recipients: []Recipient{{Targets: []route.Target{
		{Kind: route.TargetProgram, Command: "cat > " + out + "; echo $SENDER >> " + out},
		{Kind: route.TargetFile, Path: mbox},
	}}}}
	if _, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body))); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !strings.HasPrefix(string(b), body) || !strings.HasSuffix(string(b), "MAILER-DAEMON\n") {
		t.Errorf("program output %q", b)
	}
	if b, _ := os.ReadFile(mbox); !strings.HasPrefix(string(b), "From MAILER-DAEMON ") {
		t.Errorf("mbox %q", b)
	}
	// Temporary failure of a program refuses the message (4xx), even with an
	// account among the targets, and stores nothing.
	env = &Envelope{ID: "Q5", Null: true, Recipients: []Recipient{{Targets: []route.Target{
		{Kind: route.TargetProgram, Command: "exit 75"}, account("pp"),
	}}}}
	_, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body)))
	var rej *route.Rejection
	if !errors.As(err, &rej) || rej.Code/100 != 4 {
		t.Errorf("EX_TEMPFAIL: %v", err)
	}
	if n := len(inbox(t, st, "pp")); n != 0 {
		t.Errorf("stored %d messages after a temporary failure", n)
	}
	// Programs off: refused permanently.
	d.AllowPrograms = false
	env = &Envelope{ID: "Q6", Null: true, Recipients: []Recipient{{Targets: []route.Target{{Kind: route.TargetProgram, Command: "true"}}}}}
	if _, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body))); !errors.As(err, &rej) || rej.Code != 550 {
		t.Errorf("programs off: %v", err)
	}
}

// RFC 3461 values reach the queue entry: ENVID and RET for the message, ORCPT
// and NOTIFY for each remote target of the recipient that gave them (an alias
// expanding to two remote addresses passes them to both).
func TestDeliverKeepsDSNParameters(t *testing.T) {
	d, st := setup(t)
	from, _ := addr.ParsePath("a@remote.example", true)
	env := &Envelope{ID: "Q7", From: from, EnvID: "env-7", Ret: "HDRS", Recipients: []Recipient{
		{Targets: []route.Target{remote("x@remote.example"), remote("y@remote.example")},
			ORCPT: "rfc822;list@example.org", Notify: "SUCCESS,FAILURE"},
		{Targets: []route.Target{remote("z@remote.example"), account("pp")}, Notify: "NEVER"},
		{Targets: []route.Target{remote("w@remote.example")}},
	}}
	if _, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body))); err != nil {
		t.Fatal(err)
	}
	e, err := st.GetQueueEntry(ctx, "Q7")
	if err != nil {
		t.Fatal(err)
	}
	if e.EnvID != "env-7" || e.Ret != "HDRS" {
		t.Errorf("queue entry ENVID %q RET %q", e.EnvID, e.Ret)
	}
	want := map[string][2]string{
		"x@remote.example": {"rfc822;list@example.org", "SUCCESS,FAILURE"},
		"y@remote.example": {"rfc822;list@example.org", "SUCCESS,FAILURE"},
		"z@remote.example": {"", "NEVER"},
		"w@remote.example": {"", ""},
	}
	if len(e.Recipients) != len(want) {
		t.Fatalf("queue recipients %+v", e.Recipients)
	}
	for _, r := range e.Recipients {
		if w, ok := want[r.Address]; !ok || r.ORCPT != w[0] || r.Notify != w[1] {
			t.Errorf("%s: ORCPT %q NOTIFY %q, want %q", r.Address, r.ORCPT, r.Notify, w)
		}
	}
}

// Forwarded mail from another domain leaves with an SRS sender and an ORCPT
// naming the address it was sent to; mail relayed as sent, or from one of our
// domains, keeps its sender.
func TestForwardedMailGetsSRSSender(t *testing.T) {
	d, st := setup(t)
	d.SRS = &srs.Rewriter{Secrets: [][]byte{[]byte("test secret")}, Domain: "mx.example.org"}
	d.IsLocalDomain = func(dom string) bool { return dom == "example.org" || dom == "mx.example.org" }
	alias, _ := addr.ParsePath("list@example.org", true)
	direct, _ := addr.ParsePath("x@remote.example", true)
	for i, tc := range []struct {
		from      string
		rcpt      addr.Address
		rewritten bool
		orcpt     string
	}{
		{"a@far.example", alias, true, "rfc822;list@example.org"},
		{"a@far.example", direct, false, ""},
		{"me@example.org", alias, false, "rfc822;list@example.org"},
	} {
		from, _ := addr.ParsePath(tc.from, true)
		id := fmt.Sprintf("S%d", i)
		env := &Envelope{ID: id, From: from, Recipients: []Recipient{{Address: tc.rcpt, Targets: []route.Target{remote("x@remote.example")}}}}
		if _, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body))); err != nil {
			t.Fatal(err)
		}
		e, err := st.GetQueueEntry(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tc.rewritten {
			if !strings.HasPrefix(e.From, "SRS0=") || !strings.HasSuffix(e.From, "@mx.example.org") {
				t.Errorf("%s via %s: sender %q, want an SRS address", tc.from, tc.rcpt, e.From)
			}
			if back, err := d.SRS.Reverse(e.From); err != nil || back != tc.from {
				t.Errorf("SRS address %q reverses to %q %v", e.From, back, err)
			}
		} else if e.From != tc.from {
			t.Errorf("%s via %s: sender %q, want it unchanged", tc.from, tc.rcpt, e.From)
		}
		if e.Recipients[0].ORCPT != tc.orcpt {
			t.Errorf("%s via %s: ORCPT %q, want %q", tc.from, tc.rcpt, e.Recipients[0].ORCPT, tc.orcpt)
		}
	}
}
