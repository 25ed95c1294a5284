// Package storetest is a conformance suite for store.Store implementations:
// the SQLite store runs it today, the PostgreSQL one will run it later.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// Run runs every test against stores made by open.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Accounts", testAccounts},
		{"Credentials", testCredentials},
		{"Mailboxes", testMailboxes},
		{"RenameInbox", testRenameInbox},
		{"Deliver", testDeliver},
		{"DeliverQueue", testDeliverQueue},
		{"Quota", testQuota},
		{"Append", testAppend},
		{"ImportBatch", testImportBatch},
		{"Flags", testFlags},
		{"ExpungeAndVanished", testExpunge},
		{"CopyMove", testCopyMove},
		{"UIDValidityNew", testUIDValidity},
		{"Notify", testNotify},
		{"DeleteAccount", testDeleteAccount},
		{"IDsNotReused", testIDsNotReused},
		{"Concurrent", testConcurrent},
		{"CheckHealthy", testCheckHealthy},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

// Msg makes a small message.
func Msg(subject string) *bytes.Reader {
	return bytes.NewReader([]byte("From: a@example.org\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"))
}

func mustAccount(t *testing.T, s store.Store, name string) *store.Account {
	t.Helper()
	a, err := s.CreateAccount(ctx, name, "hash-"+name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustMailbox(t *testing.T, s store.Store, acct int64, name string) *store.Mailbox {
	t.Helper()
	m, err := s.GetMailbox(ctx, acct, name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func read(t *testing.T, s store.Store, mb int64, uid uint32) string {
	t.Helper()
	r, err := s.OpenMessage(ctx, mb, uid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != r.Size() {
		t.Errorf("Size() %d, read %d bytes", r.Size(), len(b))
	}
	return string(b)
}

func uids(ms []store.MessageInfo) []uint32 {
	var out []uint32
	for _, m := range ms {
		out = append(out, m.UID)
	}
	return out
}

func deliver(t *testing.T, s store.Store, subject string, targets ...string) *store.DeliveryResult {
	t.Helper()
	d := &store.Delivery{Body: Msg(subject), Meta: []byte("meta:" + subject)}
	for _, a := range targets {
		d.Local = append(d.Local, store.LocalTarget{Account: a})
	}
	res, err := s.Deliver(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func testAccounts(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	if a.ID == 0 || a.Name != "pp" {
		t.Errorf("account %+v", a)
	}
	if _, err := s.CreateAccount(ctx, "pp", "x"); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	for _, bad := range []string{"", "PP", "a b", "../x", strings.Repeat("a", 65), "-x", "pp\x00"} {
		if _, err := s.CreateAccount(ctx, bad, "x"); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("CreateAccount(%q): %v", bad, err)
		}
	}
	got, err := s.GetAccount(ctx, "pp")
	if err != nil || got.PasswordHash != "hash-pp" || got.ID != a.ID {
		t.Errorf("GetAccount: %+v %v", got, err)
	}
	if _, err := s.GetAccount(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing account: %v", err)
	}
	mbs, err := s.ListMailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	special := map[string]string{}
	for _, m := range mbs {
		special[m.Name] = m.SpecialUse
		if m.UIDNext != 1 || m.UIDValidity == 0 || !m.Subscribed {
			t.Errorf("new mailbox %+v", m)
		}
	}
	want := map[string]string{"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Junk": `\Junk`, "Trash": `\Trash`, "Archive": `\Archive`}
	if !reflect.DeepEqual(special, want) {
		t.Errorf("default mailboxes %v", special)
	}
	if err := s.SetPassword(ctx, "pp", "new", "scram-new"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetQuota(ctx, "pp", 1000); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAdmin(ctx, "pp", true); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetAccount(ctx, "pp")
	if got.PasswordHash != "new" || got.SCRAMSHA256 != "scram-new" || got.QuotaBytes != 1000 || !got.Admin {
		t.Errorf("after updates: %+v", got)
	}
	if err := s.SetPassword(ctx, "nobody", "x", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetPassword(nobody): %v", err)
	}
	mustAccount(t, s, "bob")
	list, _ := s.ListAccounts(ctx)
	if len(list) != 2 || list[0].Name != "bob" || list[1].Name != "pp" {
		t.Errorf("ListAccounts: %+v", list)
	}
}

// testCredentials checks the password hash and the SCRAM credential: new
// accounts have none, both change together, and UpgradePassword changes them
// only while the hash it was given is still the account's.
func testCredentials(t *testing.T, s store.Store) {
	mustAccount(t, s, "pp")
	mustAccount(t, s, "bob")
	get := func(name string) *store.Account {
		t.Helper()
		a, err := s.GetAccount(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := get("pp"); a.SCRAMSHA256 != "" {
		t.Errorf("new account has SCRAM credential %q", a.SCRAMSHA256)
	}
	if err := s.SetPassword(ctx, "pp", "h1", "s1"); err != nil {
		t.Fatal(err)
	}
	// Clearing the credential with a new password: the old one must not survive.
	if err := s.SetPassword(ctx, "pp", "h2", ""); err != nil {
		t.Fatal(err)
	}
	if a := get("pp"); a.PasswordHash != "h2" || a.SCRAMSHA256 != "" {
		t.Errorf("after SetPassword(h2, \"\"): %q %q", a.PasswordHash, a.SCRAMSHA256)
	}
	for _, tc := range []struct {
		name, old, hash, scram string
		want                   error
		wantHash, wantSCRAM    string
	}{
		{"stale old hash", "h1", "h3", "s3", store.ErrModified, "h2", ""},
		{"current old hash", "h2", "h3", "s3", nil, "h3", "s3"},
		{"same again is stale", "h2", "h4", "s4", store.ErrModified, "h3", "s3"},
	} {
		err := s.UpgradePassword(ctx, "pp", tc.old, tc.hash, tc.scram)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: UpgradePassword = %v, want %v", tc.name, err, tc.want)
		}
		if a := get("pp"); a.PasswordHash != tc.wantHash || a.SCRAMSHA256 != tc.wantSCRAM {
			t.Errorf("%s: account has %q %q, want %q %q", tc.name, a.PasswordHash, a.SCRAMSHA256, tc.wantHash, tc.wantSCRAM)
		}
	}
	if err := s.UpgradePassword(ctx, "nobody", "x", "y", "z"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpgradePassword(nobody) = %v", err)
	}
	// The other account was never touched.
	if b := get("bob"); b.PasswordHash != "hash-bob" || b.SCRAMSHA256 != "" {
		t.Errorf("bob changed: %q %q", b.PasswordHash, b.SCRAMSHA256)
	}
	list, err := s.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if a.Name == "pp" && a.SCRAMSHA256 != "s3" {
			t.Errorf("ListAccounts: pp's credential %q", a.SCRAMSHA256)
		}
	}
}

func testMailboxes(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	if _, err := s.CreateMailbox(ctx, a.ID, "Work/2026/Q4", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Work", ""); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "inbox", ""); !errors.Is(err, store.ErrExists) {
		t.Errorf("inbox in lower case is INBOX: %v", err)
	}
	if m, err := s.GetMailbox(ctx, a.ID, "iNbOx"); err != nil || m.Name != "INBOX" {
		t.Errorf("GetMailbox(iNbOx): %v %v", m, err)
	}
	if m, err := s.CreateMailbox(ctx, a.ID, "inbox/child", ""); err != nil || m.Name != "INBOX/child" {
		t.Errorf("inbox/child: %v %v", m, err)
	}
	if m, err := s.CreateMailbox(ctx, a.ID, "Ünïcödé ✉", ""); err != nil || m.Name != "Ünïcödé ✉" {
		t.Errorf("UTF-8 name: %v %v", m, err)
	}
	for _, bad := range []string{"", "/", "a//b", "/a", "a/", "a\x00b", "a\rb", "\xff", strings.Repeat("x", 1001)} {
		if _, err := s.CreateMailbox(ctx, a.ID, bad, ""); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("CreateMailbox(%q): %v", bad, err)
		}
	}
	m := mustMailbox(t, s, a.ID, "Work")
	deliverTo(t, s, "pp", "Work")
	if err := s.RenameMailbox(ctx, a.ID, "Work", "Jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMailbox(ctx, a.ID, "Work/2026/Q4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("child not renamed: %v", err)
	}
	if c, err := s.GetMailbox(ctx, a.ID, "Jobs/2026/Q4"); err != nil || c == nil {
		t.Errorf("renamed child: %v", err)
	}
	j := mustMailbox(t, s, a.ID, "Jobs")
	if j.ID != m.ID || j.UIDValidity != m.UIDValidity || j.Messages != 1 {
		t.Errorf("renamed mailbox keeps its identity and messages: %+v vs %+v", j, m)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Jobs", "Sent"); !errors.Is(err, store.ErrExists) {
		t.Errorf("rename onto existing: %v", err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Nope", "X"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rename missing: %v", err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Jobs", "Jobs/Sub"); err == nil {
		t.Error("renamed a mailbox into its own child")
	}
	if err := s.SetSubscribed(ctx, a.ID, "Jobs", false); err != nil {
		t.Fatal(err)
	}
	if mustMailbox(t, s, a.ID, "Jobs").Subscribed {
		t.Error("still subscribed")
	}
	if err := s.DeleteMailbox(ctx, a.ID, "INBOX"); err == nil {
		t.Error("INBOX deleted")
	}
	if err := s.DeleteMailbox(ctx, a.ID, "Jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMailbox(ctx, a.ID, "Jobs"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted mailbox: %v", err)
	}
	if acct, _ := s.GetAccount(ctx, "pp"); acct.UsedBytes != 0 {
		t.Errorf("used bytes after deleting the mailbox with the only message: %d", acct.UsedBytes)
	}
	// Another account's mailboxes are out of reach by name.
	b := mustAccount(t, s, "bob")
	if _, err := s.GetMailbox(ctx, b.ID, "Jobs/2026/Q4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob sees pp's mailbox: %v", err)
	}
}

func deliverTo(t *testing.T, s store.Store, account, mailbox string) store.TargetResult {
	t.Helper()
	res, err := s.Deliver(ctx, &store.Delivery{Body: Msg("to " + mailbox), Local: []store.LocalTarget{{Account: account, Mailbox: mailbox}}})
	if err != nil || res.Local[0].Err != nil {
		t.Fatalf("deliver: %v %v", err, res)
	}
	return res.Local[0]
}

func testRenameInbox(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	deliver(t, s, "one", "pp")
	deliver(t, s, "two", "pp")
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	if err := s.RenameMailbox(ctx, a.ID, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	old := mustMailbox(t, s, a.ID, "Old")
	in2 := mustMailbox(t, s, a.ID, "INBOX")
	if old.Messages != 2 || in2.Messages != 0 || in2.ID != inbox.ID {
		t.Errorf("RENAME INBOX: Old %d messages, INBOX %d (id %d vs %d)", old.Messages, in2.Messages, in2.ID, inbox.ID)
	}
	msgs, _ := s.ListMessages(ctx, old.ID, 0, false)
	if len(msgs) != 2 || !strings.Contains(read(t, s, old.ID, msgs[0].UID), "Subject: one") {
		t.Errorf("moved messages: %+v", msgs)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Old", "INBOX"); err == nil {
		t.Error("renamed onto INBOX")
	}
}

func testDeliver(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	mustAccount(t, s, "bob")
	before := time.Now().Add(-time.Second)
	res := deliver(t, s, "hello", "pp", "bob", "nobody")
	if len(res.Local) != 3 || res.Local[0].Err != nil || res.Local[1].Err != nil || !errors.Is(res.Local[2].Err, store.ErrNotFound) {
		t.Fatalf("results %+v", res.Local)
	}
	if res.Local[0].UID != 1 || res.Local[0].UIDValidity == 0 {
		t.Errorf("first UID %+v", res.Local[0])
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	if inbox.Messages != 1 || inbox.Unseen != 1 || inbox.UIDNext != 2 || inbox.Size == 0 || inbox.HighestModSeq < 2 {
		t.Errorf("INBOX after delivery %+v", inbox)
	}
	msgs, err := s.ListMessages(ctx, inbox.ID, 0, true)
	if err != nil || len(msgs) != 1 {
		t.Fatal(msgs, err)
	}
	m := msgs[0]
	if string(m.Meta) != "meta:hello" || m.Size != int64(Msg("hello").Len()) || m.InternalDate.Before(before) || len(m.Flags) != 0 || m.ModSeq != inbox.HighestModSeq {
		t.Errorf("message %+v", m)
	}
	if got := read(t, s, inbox.ID, 1); !strings.HasSuffix(got, "body of hello\r\n") {
		t.Errorf("bytes %q", got)
	}
	noMeta, _ := s.ListMessages(ctx, inbox.ID, 0, false)
	if noMeta[0].Meta != nil {
		t.Error("meta read without withMeta")
	}
	// One delivery to two accounts shares the bytes.
	bob, _ := s.GetAccount(ctx, "bob")
	bobInbox := mustMailbox(t, s, bob.ID, "INBOX")
	bm, _ := s.ListMessages(ctx, bobInbox.ID, 0, false)
	if len(bm) != 1 || bm[0].BlobID != m.BlobID {
		t.Errorf("bytes not shared: %v vs %v", bm, m.BlobID)
	}
	// UIDs grow; GetMessage; OpenMessage of a missing UID.
	deliver(t, s, "second", "pp")
	msgs, _ = s.ListMessages(ctx, inbox.ID, 0, false)
	if !reflect.DeepEqual(uids(msgs), []uint32{1, 2}) {
		t.Errorf("UIDs %v", uids(msgs))
	}
	if g, err := s.GetMessage(ctx, inbox.ID, 2); err != nil || string(g.Meta) != "meta:second" {
		t.Errorf("GetMessage %+v %v", g, err)
	}
	if _, err := s.OpenMessage(ctx, inbox.ID, 99); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing message: %v", err)
	}
	// changedSince lists only newer messages.
	newer, _ := s.ListMessages(ctx, inbox.ID, msgs[0].ModSeq, false)
	if !reflect.DeepEqual(uids(newer), []uint32{2}) {
		t.Errorf("changedSince: %v", uids(newer))
	}
	// Into a named mailbox, with initial flags.
	r, err := s.Deliver(ctx, &store.Delivery{Body: Msg("junk"), Local: []store.LocalTarget{{Account: "pp", Mailbox: "Junk", Flags: []string{`\Seen`}}}})
	if err != nil || r.Local[0].Err != nil {
		t.Fatal(err, r)
	}
	junk := mustMailbox(t, s, a.ID, "Junk")
	if junk.Messages != 1 || junk.Unseen != 0 {
		t.Errorf("Junk %+v", junk)
	}
	// A big message goes through the same interface.
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	r, err = s.Deliver(ctx, &store.Delivery{Body: bytes.NewReader(big), Local: []store.LocalTarget{{Account: "pp"}}})
	if err != nil || r.Local[0].Err != nil {
		t.Fatal(err, r)
	}
	if got := read(t, s, inbox.ID, r.Local[0].UID); got != string(big) {
		t.Errorf("big message read back: %d bytes", len(got))
	}
}

func testDeliverQueue(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	res, err := s.Deliver(ctx, &store.Delivery{
		Body: Msg("out"), Local: []store.LocalTarget{{Account: "pp"}},
		From: "pp@example.org", Remote: []store.QueueRecipient{{Address: "x@remote.example", Notify: "FAILURE"}, {Address: "y@remote.example"}},
		EnvID: "env1", Ret: "HDRS", QueueID: "QID123",
	})
	if err != nil || res.QueueID != "QID123" {
		t.Fatal(res, err)
	}
	q, err := s.ListQueue(ctx)
	if err != nil || len(q) != 1 {
		t.Fatal(q, err)
	}
	e := q[0]
	if e.ID != "QID123" || e.From != "pp@example.org" || e.EnvID != "env1" || e.Ret != "HDRS" || len(e.Recipients) != 2 ||
		e.Recipients[0].Address != "x@remote.example" || e.Recipients[0].Status != store.RcptPending || e.Recipients[0].Notify != "FAILURE" {
		t.Errorf("queue entry %+v", e)
	}
	r, err := s.OpenQueueMessage(ctx, "QID123")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if !strings.Contains(string(b), "Subject: out") {
		t.Errorf("queued bytes %q", b)
	}
	next := time.Now().Add(time.Hour).Truncate(time.Second)
	// Due now: the entry; an hour later it is not due until then.
	if due, err := s.DueQueue(ctx, time.Now(), 10); err != nil || len(due) != 1 || due[0].ID != "QID123" || len(due[0].Recipients) != 2 {
		t.Fatalf("due before update: %+v %v", due, err)
	}
	err = s.UpdateQueueEntry(ctx, "QID123", store.QueueUpdate{Recipients: []store.QueueRecipientState{{QueueRecipient: store.QueueRecipient{Address: "x@remote.example"},
		Status: store.RcptFailed, Attempts: 1, LastError: "550 no", LastTry: time.Now()}}, NextAttempt: next, Warned: true})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := s.GetQueueEntry(ctx, "QID123")
	if err != nil || !e2.NextAttempt.Equal(next) || e2.Recipients[0].Status != store.RcptFailed || e2.Recipients[0].LastError != "550 no" ||
		e2.Recipients[1].Status != store.RcptPending || !e2.Warned || e2.Held {
		t.Errorf("after update %+v %v", e2, err)
	}
	// The mark stays once set.
	if err := s.UpdateQueueEntry(ctx, "QID123", store.QueueUpdate{NextAttempt: next}); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.GetQueueEntry(ctx, "QID123"); e == nil || !e.Warned {
		t.Errorf("delay-notice mark lost: %+v", e)
	}
	if due, err := s.DueQueue(ctx, time.Now(), 10); err != nil || len(due) != 0 {
		t.Errorf("due before its next attempt: %+v %v", due, err)
	}
	if due, _ := s.DueQueue(ctx, next, 10); len(due) != 1 {
		t.Errorf("not due at its next attempt: %+v", due)
	}
	// Held: never due, flush or not; released and flushed: due now.
	if err := s.HoldQueueEntry(ctx, "QID123", true); err != nil {
		t.Fatal(err)
	}
	if err := s.RescheduleQueue(ctx, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.DueQueue(ctx, next, 10); len(due) != 0 {
		t.Errorf("held entry is due: %+v", due)
	}
	if e, _ := s.GetQueueEntry(ctx, "QID123"); e == nil || !e.Held {
		t.Errorf("hold not recorded: %+v", e)
	}
	if err := s.HoldQueueEntry(ctx, "QID123", false); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.DueQueue(ctx, time.Now(), 10); len(due) != 1 {
		t.Errorf("released, flushed entry not due: %+v", due)
	}
	if err := s.RescheduleQueue(ctx, "QID123", next); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.DueQueue(ctx, time.Now(), 10); len(due) != 0 {
		t.Errorf("rescheduled entry still due: %+v", due)
	}
	for _, err := range []error{s.HoldQueueEntry(ctx, "nope", true), s.RescheduleQueue(ctx, "nope", next), s.UpdateQueueEntry(ctx, "nope", store.QueueUpdate{})} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown entry: %v", err)
		}
	}
	// Deleting the queue entry keeps the local copy readable.
	if err := s.DeleteQueueEntry(ctx, "QID123"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetQueueEntry(ctx, "QID123"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted entry: %v", err)
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	if got := read(t, s, inbox.ID, 1); !strings.Contains(got, "Subject: out") {
		t.Error("local copy lost with the queue entry")
	}
	// A queue-only delivery.
	res, err = s.Deliver(ctx, &store.Delivery{Body: Msg("relay"), Remote: []store.QueueRecipient{{Address: "z@remote.example"}}})
	if err != nil || res.QueueID == "" || len(res.Local) != 0 {
		t.Errorf("queue-only: %+v %v", res, err)
	}
}

func testQuota(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	size := int64(Msg("q").Len())
	if err := s.SetQuota(ctx, "pp", size*2); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, "q", "pp")
	deliver(t, s, "q", "pp")
	res := deliver(t, s, "q", "pp")
	if !errors.Is(res.Local[0].Err, store.ErrOverQuota) {
		t.Errorf("third message over quota: %+v", res.Local[0])
	}
	acct, _ := s.GetAccount(ctx, "pp")
	if acct.UsedBytes != size*2 {
		t.Errorf("used %d, want %d", acct.UsedBytes, size*2)
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	if _, err := s.Append(ctx, inbox.ID, Msg("q"), nil, nil, time.Time{}); !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("Append over quota: %v", err)
	}
	archive := mustMailbox(t, s, a.ID, "Archive")
	if _, _, err := s.Copy(ctx, inbox.ID, []uint32{1}, archive.ID); !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("Copy over quota: %v", err)
	}
	// Moving does not change usage: allowed.
	if _, _, err := s.Move(ctx, inbox.ID, []uint32{1}, archive.ID); err != nil {
		t.Errorf("Move at quota: %v", err)
	}
}

func testAppend(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	drafts := mustMailbox(t, s, a.ID, "Drafts")
	date := time.Date(2020, 2, 29, 13, 14, 15, 0, time.FixedZone("", -5*3600))
	info, err := s.Append(ctx, drafts.ID, Msg("draft"), []byte("m"), []string{`\Draft`, `\seen`, "$Forwarded", `\Recent`}, date)
	if err != nil {
		t.Fatal(err)
	}
	if info.UID != 1 || info.ModSeq == 0 {
		t.Errorf("append info %+v", info)
	}
	got, err := s.GetMessage(ctx, drafts.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !got.InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", got.InternalDate, date)
	}
	if _, off := got.InternalDate.Zone(); off != -5*3600 {
		t.Errorf("internal date zone offset %d", off)
	}
	if !reflect.DeepEqual(got.Flags, []string{`\Seen`, `\Draft`, "$Forwarded"}) {
		t.Errorf("flags %q", got.Flags) // \Recent is not stored
	}
	if _, err := s.Append(ctx, 999999, Msg("x"), nil, nil, time.Time{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("append to a missing mailbox: %v", err)
	}
}

func testImportBatch(t *testing.T, s store.Store) {
	im, ok := s.(store.Importer)
	if !ok {
		t.Skip("the store has no AppendBatch")
	}
	a := mustAccount(t, s, "pp")
	inbox := mustMailbox(t, s, a.ID, store.Inbox)
	d1 := time.Date(2009, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	batch := []store.ImportMessage{
		{Body: Msg("one"), Flags: []string{store.FlagSeen}, InternalDate: d1, POP3UIDL: "0a1b2c3d4e5f6071"},
		{Body: Msg("two"), POP3UIDL: "1111222233334444"},
		{Body: Msg("three"), Flags: []string{store.FlagAnswered, "$Label1"}},
	}
	infos, err := im.AppendBatch(ctx, inbox.ID, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 || infos[0].UID >= infos[1].UID || infos[1].UID >= infos[2].UID {
		t.Fatalf("UIDs not in the order given: %+v", infos)
	}
	list, err := s.ListMessages(ctx, inbox.ID, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("%d messages listed", len(list))
	}
	for i, want := range []string{"0a1b2c3d4e5f6071", "1111222233334444", ""} {
		if list[i].POP3UIDL != want {
			t.Errorf("message %d POP3UIDL %q, want %q", i+1, list[i].POP3UIDL, want)
		}
		if got := read(t, s, inbox.ID, list[i].UID); !strings.Contains(got, []string{"one", "two", "three"}[i]) {
			t.Errorf("message %d bytes %q", i+1, got)
		}
	}
	if !list[0].InternalDate.Equal(d1) || !list[0].HasFlag(store.FlagSeen) || list[1].HasFlag(store.FlagSeen) ||
		!list[2].HasFlag(store.FlagAnswered) || !list[2].HasFlag("$Label1") {
		t.Errorf("dates or flags not kept: %+v", list)
	}
	if m, err := s.GetMessage(ctx, inbox.ID, list[1].UID); err != nil || m.POP3UIDL != "1111222233334444" {
		t.Errorf("GetMessage POP3UIDL %v %v", m, err)
	}
	mb, _ := s.GetMailbox(ctx, a.ID, store.Inbox)
	if mb.Messages != 3 || mb.Unseen != 2 {
		t.Errorf("counters after a batch: %d messages, %d unseen", mb.Messages, mb.Unseen)
	}
	// Over quota: nothing of the batch is stored.
	if err := s.SetQuota(ctx, "pp", mb.Size+int64(Msg("x").Len())); err != nil {
		t.Fatal(err)
	}
	_, err = im.AppendBatch(ctx, inbox.ID, []store.ImportMessage{{Body: Msg("x")}, {Body: Msg("y")}})
	if !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("batch over quota: %v", err)
	}
	if l, _ := s.ListMessages(ctx, inbox.ID, 0, false); len(l) != 3 {
		t.Errorf("a refused batch left %d messages", len(l))
	}
	if _, err := im.AppendBatch(ctx, 999999, []store.ImportMessage{{Body: Msg("z")}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("batch to a missing mailbox: %v", err)
	}
	// A delivered message has no POP3UIDL.
	if err := s.SetQuota(ctx, "pp", 0); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, "later", "pp")
	l, _ := s.ListMessages(ctx, inbox.ID, 0, false)
	if len(l) != 4 || l[3].POP3UIDL != "" {
		t.Errorf("delivered message has POP3UIDL %q", l[len(l)-1].POP3UIDL)
	}
}

func testFlags(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	for i := 0; i < 3; i++ {
		deliver(t, s, fmt.Sprint(i), "pp")
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	changed, modified, err := s.StoreFlags(ctx, inbox.ID, []uint32{1, 2, 99}, store.FlagsAdd, []string{`\Seen`, "Work"}, 0)
	if err != nil || len(modified) != 0 || !reflect.DeepEqual(uids(changed), []uint32{1, 2}) {
		t.Fatalf("add: %v %v %v", changed, modified, err)
	}
	if !reflect.DeepEqual(changed[0].Flags, []string{`\Seen`, "Work"}) {
		t.Errorf("flags %q", changed[0].Flags)
	}
	ms := changed[0].ModSeq
	if changed[1].ModSeq != ms {
		t.Error("one STORE, one MODSEQ")
	}
	mb := mustMailbox(t, s, a.ID, "INBOX")
	if mb.Unseen != 1 || mb.HighestModSeq != ms {
		t.Errorf("counters %+v", mb)
	}
	// Adding what is there changes nothing and takes no MODSEQ.
	changed, _, _ = s.StoreFlags(ctx, inbox.ID, []uint32{1}, store.FlagsAdd, []string{`\SEEN`, "work"}, 0)
	if len(changed) != 0 || mustMailbox(t, s, a.ID, "INBOX").HighestModSeq != ms {
		t.Errorf("no-op STORE changed %v", changed)
	}
	// UNCHANGEDSINCE: message 1 changed after ms-1, so it is refused (RFC 7162 3.1.3).
	changed, modified, _ = s.StoreFlags(ctx, inbox.ID, []uint32{1, 3}, store.FlagsSet, []string{`\Flagged`}, ms-1)
	if !reflect.DeepEqual(modified, []uint32{1}) || !reflect.DeepEqual(uids(changed), []uint32{3}) {
		t.Errorf("unchangedsince: changed %v modified %v", uids(changed), modified)
	}
	changed, _, _ = s.StoreFlags(ctx, inbox.ID, []uint32{1}, store.FlagsRemove, []string{"WORK"}, 0)
	if len(changed) != 1 || !reflect.DeepEqual(changed[0].Flags, []string{`\Seen`}) {
		t.Errorf("remove: %+v", changed)
	}
	changed, _, _ = s.StoreFlags(ctx, inbox.ID, []uint32{2}, store.FlagsSet, nil, 0)
	if len(changed) != 1 || len(changed[0].Flags) != 0 {
		t.Errorf("set empty: %+v", changed)
	}
	if mb := mustMailbox(t, s, a.ID, "INBOX"); mb.Unseen != 2 {
		t.Errorf("unseen after clearing %d", mb.Unseen)
	}
	since, _ := s.ListMessages(ctx, inbox.ID, ms, false)
	if !reflect.DeepEqual(uids(since), []uint32{1, 2, 3}) {
		t.Errorf("changed since %d: %v", ms, uids(since))
	}
}

func testExpunge(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	for i := 0; i < 4; i++ {
		deliver(t, s, fmt.Sprint(i), "pp")
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	before := inbox.HighestModSeq
	s.StoreFlags(ctx, inbox.ID, []uint32{2, 3}, store.FlagsAdd, []string{`\Deleted`}, 0)
	if mb := mustMailbox(t, s, a.ID, "INBOX"); mb.Deleted != 2 {
		t.Errorf("deleted counter %d", mb.Deleted)
	}
	gone, err := s.Expunge(ctx, inbox.ID, nil)
	if err != nil || !reflect.DeepEqual(gone, []uint32{2, 3}) {
		t.Fatalf("expunge: %v %v", gone, err)
	}
	gone, _ = s.Expunge(ctx, inbox.ID, []uint32{4, 77})
	if !reflect.DeepEqual(gone, []uint32{4}) {
		t.Errorf("expunge uids: %v", gone)
	}
	mb := mustMailbox(t, s, a.ID, "INBOX")
	if mb.Messages != 1 || mb.Deleted != 0 || mb.UIDNext != 5 {
		t.Errorf("after expunge %+v", mb)
	}
	v, _ := s.Vanished(ctx, inbox.ID, before)
	if !reflect.DeepEqual(v, []uint32{2, 3, 4}) {
		t.Errorf("vanished since %d: %v", before, v)
	}
	v, _ = s.Vanished(ctx, inbox.ID, mb.HighestModSeq)
	if len(v) != 0 {
		t.Errorf("vanished since now: %v", v)
	}
	// New messages never reuse an expunged UID.
	r := deliver(t, s, "after", "pp")
	if r.Local[0].UID != 5 {
		t.Errorf("UID after expunge %d", r.Local[0].UID)
	}
	acct, _ := s.GetAccount(ctx, "pp")
	if acct.UsedBytes != int64(Msg("0").Len()+Msg("after").Len()) {
		t.Errorf("used bytes %d", acct.UsedBytes)
	}
}

func testCopyMove(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	for i := 0; i < 3; i++ {
		deliver(t, s, fmt.Sprint(i), "pp")
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	s.StoreFlags(ctx, inbox.ID, []uint32{2}, store.FlagsAdd, []string{`\Flagged`}, 0)
	archive := mustMailbox(t, s, a.ID, "Archive")
	deliverTo(t, s, "pp", "Archive") // archive UID 1 taken
	src, dst, err := s.Copy(ctx, inbox.ID, []uint32{3, 2, 42}, archive.ID)
	if err != nil || !reflect.DeepEqual(src, []uint32{2, 3}) || !reflect.DeepEqual(dst, []uint32{2, 3}) {
		t.Fatalf("copy: %v %v %v", src, dst, err)
	}
	am, _ := s.ListMessages(ctx, archive.ID, 0, false)
	if len(am) != 3 || !reflect.DeepEqual(am[1].Flags, []string{`\Flagged`}) || am[1].SaveDate.IsZero() {
		t.Errorf("copied %+v", am)
	}
	if mustMailbox(t, s, a.ID, "INBOX").Messages != 3 {
		t.Error("copy removed the source")
	}
	trash := mustMailbox(t, s, a.ID, "Trash")
	src, dst, err = s.Move(ctx, inbox.ID, []uint32{1, 2}, trash.ID)
	if err != nil || !reflect.DeepEqual(src, []uint32{1, 2}) || !reflect.DeepEqual(dst, []uint32{1, 2}) {
		t.Fatalf("move: %v %v %v", src, dst, err)
	}
	if got := mustMailbox(t, s, a.ID, "INBOX"); got.Messages != 1 {
		t.Errorf("inbox after move %+v", got)
	}
	v, _ := s.Vanished(ctx, inbox.ID, 0)
	if !reflect.DeepEqual(v, []uint32{1, 2}) {
		t.Errorf("move leaves VANISHED records: %v", v)
	}
	if got := read(t, s, trash.ID, 2); !strings.Contains(got, "Subject: 1") {
		t.Errorf("moved bytes %q", got)
	}
	// Never across accounts.
	b := mustAccount(t, s, "bob")
	bobInbox := mustMailbox(t, s, b.ID, "INBOX")
	if _, _, err := s.Copy(ctx, inbox.ID, []uint32{3}, bobInbox.ID); err == nil {
		t.Error("copied into another account's mailbox")
	}
	if _, _, err := s.Move(ctx, inbox.ID, []uint32{3}, bobInbox.ID); err == nil {
		t.Error("moved into another account's mailbox")
	}
	if mustMailbox(t, s, b.ID, "INBOX").Messages != 0 {
		t.Error("bob got pp's message")
	}
}

func testUIDValidity(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	m1, err := s.CreateMailbox(ctx, a.ID, "Tmp", "")
	if err != nil {
		t.Fatal(err)
	}
	s.DeleteMailbox(ctx, a.ID, "Tmp")
	m2, err := s.CreateMailbox(ctx, a.ID, "Tmp", "")
	if err != nil {
		t.Fatal(err)
	}
	if m2.UIDValidity == m1.UIDValidity {
		t.Errorf("re-created mailbox has the same UIDVALIDITY %d", m1.UIDValidity)
	}
}

func testNotify(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	mustAccount(t, s, "bob")
	ch, cancel := s.Subscribe(a.ID)
	defer cancel()
	deliver(t, s, "n", "bob") // not pp's
	deliver(t, s, "n", "pp")
	select {
	case c := <-ch:
		if c.Kind != store.ChangeNew || c.AccountID != a.ID || !reflect.DeepEqual(c.UIDs, []uint32{1}) {
			t.Errorf("change %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change published")
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	s.StoreFlags(ctx, inbox.ID, []uint32{1}, store.FlagsAdd, []string{`\Seen`}, 0)
	if c := <-ch; c.Kind != store.ChangeFlags {
		t.Errorf("flags change %+v", c)
	}
	s.Expunge(ctx, inbox.ID, []uint32{1})
	if c := <-ch; c.Kind != store.ChangeExpunge || !reflect.DeepEqual(c.UIDs, []uint32{1}) {
		t.Errorf("expunge change %+v", c)
	}
	cancel()
	deliver(t, s, "n", "pp")
	select {
	case c, ok := <-ch:
		if ok {
			t.Errorf("change after cancel: %+v", c)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func testDeleteAccount(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	mustAccount(t, s, "bob")
	deliver(t, s, "shared", "pp", "bob")
	big := bytes.Repeat([]byte("x"), 300000)
	s.Deliver(ctx, &store.Delivery{Body: bytes.NewReader(big), Local: []store.LocalTarget{{Account: "pp"}}})
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	if err := s.DeleteAccount(ctx, "pp"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccount(ctx, "pp"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("account still there: %v", err)
	}
	if mbs, _ := s.ListMailboxes(ctx, a.ID); len(mbs) != 0 {
		t.Errorf("mailboxes left: %v", mbs)
	}
	if _, err := s.OpenMessage(ctx, inbox.ID, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("message left: %v", err)
	}
	// bob's copy of the shared message is intact.
	b, _ := s.GetAccount(ctx, "bob")
	if got := read(t, s, mustMailbox(t, s, b.ID, "INBOX").ID, 1); !strings.Contains(got, "Subject: shared") {
		t.Errorf("bob's copy %q", got)
	}
	if err := s.DeleteAccount(ctx, "pp"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("check after delete: %v %v", p, err)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	a := mustAccount(t, s, "pp")
	mustAccount(t, s, "bob")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				_, err := s.Deliver(ctx, &store.Delivery{Body: Msg(fmt.Sprintf("%d-%d", g, i)), Local: []store.LocalTarget{{Account: "pp"}, {Account: "bob"}}})
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	inbox := mustMailbox(t, s, a.ID, "INBOX")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			if _, _, err := s.StoreFlags(ctx, inbox.ID, []uint32{uint32(i%10 + 1)}, store.FlagsAdd, []string{`\Seen`}, 0); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	msgs, _ := s.ListMessages(ctx, inbox.ID, 0, false)
	if len(msgs) != 200 {
		t.Errorf("%d messages, want 200", len(msgs))
	}
	u := uids(msgs)
	if !sort.SliceIsSorted(u, func(i, j int) bool { return u[i] < u[j] }) || u[0] != 1 || u[len(u)-1] != 200 {
		t.Errorf("UIDs not 1..200")
	}
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("check: %v %v", p, err)
	}
}

func testCheckHealthy(t *testing.T, s store.Store) {
	mustAccount(t, s, "pp")
	deliver(t, s, "a", "pp")
	s.Deliver(ctx, &store.Delivery{Body: bytes.NewReader(bytes.Repeat([]byte("y"), 200000)), Local: []store.LocalTarget{{Account: "pp"}}})
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("healthy store: %v %v", p, err)
	}
}

// The id of a deleted mailbox or account is never given again: a session
// that still holds it (an IMAP client with the mailbox selected, a webmail
// login) must not reach whatever is created next.
func testIDsNotReused(t *testing.T, s store.Store) {
	bob := mustAccount(t, s, "bob")
	foo, err := s.CreateMailbox(ctx, bob.ID, "Foo", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, bob.ID, "Foo"); err != nil {
		t.Fatal(err)
	}
	bar, err := s.CreateMailbox(ctx, bob.ID, "Bar", "")
	if err != nil {
		t.Fatal(err)
	}
	if bar.ID == foo.ID {
		t.Errorf("the new mailbox got the deleted one's id %d", foo.ID)
	}
	if err := s.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	carol := mustAccount(t, s, "carol")
	if carol.ID == bob.ID {
		t.Errorf("the new account got the deleted one's id %d", bob.ID)
	}
	mbs, err := s.ListMailboxes(ctx, carol.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mbs {
		if mb.ID == foo.ID || mb.ID == bar.ID {
			t.Errorf("carol's %s got a deleted mailbox's id %d", mb.Name, mb.ID)
		}
	}
	if _, err := s.GetMailboxByID(ctx, bar.ID); err == nil {
		t.Errorf("a deleted account's mailbox %d is still there", bar.ID)
	}
}
