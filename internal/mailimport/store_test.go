package mailimport

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

var ctx = context.Background()

func newStore(t testing.TB, accounts ...string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, a := range accounts {
		if _, err := st.CreateAccount(ctx, a, "x"); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// stored is a message as the store holds it, for comparisons.
type stored struct {
	mailbox, data, flags string
	date                 int64
	uidl                 string
}

func contents(t *testing.T, st store.Store, account string) []stored {
	t.Helper()
	var out []stored
	if err := eachMessage(ctx, st, account, func(store.Mailbox) error { return nil },
		func(mb store.Mailbox, m store.MessageInfo, data []byte) error {
			f := append([]string(nil), m.Flags...)
			sort.Strings(f)
			out = append(out, stored{mb.Name, string(data), strings.Join(f, " "), m.InternalDate.Unix(), m.POP3UIDL})
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	return out
}

func importSpool(t *testing.T, st store.Store, account, text string, dry bool) Result {
	t.Helper()
	in := &Into{Store: st, Account: account, DryRun: dry}
	res, err := ImportMbox(ctx, in, NewMboxReader(strings.NewReader(text), MboxRD, time.UTC), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestImportMboxIntoStore(t *testing.T) {
	st := newStore(t, "pp")
	if res := importSpool(t, st, "pp", spoolFixture, true); res.Messages != 4 {
		t.Errorf("dry run counted %+v", res)
	}
	if got := contents(t, st, "pp"); len(got) != 0 {
		t.Fatalf("dry run stored %d messages", len(got))
	}
	res := importSpool(t, st, "pp", spoolFixture, false)
	if res.Messages != 4 || res.Duplicates != 0 {
		t.Errorf("first import %+v", res)
	}
	got := contents(t, st, "pp")
	want := readAll(t, spoolFixture, MboxRD)
	if len(got) != len(want) {
		t.Fatalf("%d stored, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].mailbox != store.Inbox || got[i].data != string(want[i].Data) || got[i].uidl != want[i].UIDL || got[i].date != want[i].Date.Unix() {
			t.Errorf("message %d stored as %+v", i, got[i])
		}
	}
	if got[0].flags != `\Answered \Flagged \Seen` || got[1].flags != "" {
		t.Errorf("read state: %q, %q", got[0].flags, got[1].flags)
	}
	// A second run adds nothing.
	if res := importSpool(t, st, "pp", spoolFixture, false); res.Messages != 0 || res.Duplicates != 4 {
		t.Errorf("second import %+v", res)
	}
	if n := len(contents(t, st, "pp")); n != 4 {
		t.Errorf("%d messages after a second run", n)
	}
}

// Export then import gives the same messages: bytes, flags, dates, in every
// mailbox, through mbox files and through Maildir.
func TestExportImportRoundTrip(t *testing.T) {
	st := newStore(t, "pp", "viambox", "viamaildir")
	importSpool(t, st, "pp", spoolFixture, false)
	in := &Into{Store: st, Account: "pp", Mailbox: "Lists/Go"}
	if _, err := ImportMbox(ctx, in, NewMboxReader(strings.NewReader(
		"From x Mon Jan  2 15:04:05 2006\nSubject: in a folder\nStatus: RO\nX-Keywords: $Label1 work\n\nhi\n"), MboxRD, time.UTC), nil); err != nil {
		t.Fatal(err)
	}
	orig := contents(t, st, "pp")
	for i := range orig {
		orig[i].uidl = "" // a POP3 id belongs to the old spool, not to the export
	}

	mdir := t.TempDir()
	if res, err := ExportMbox(ctx, st, "pp", mdir); err != nil || res.Messages != len(orig) {
		t.Fatalf("export mbox: %+v %v", res, err)
	}
	mbs, _ := st.ListMailboxes(ctx, mustID(t, st, "pp"))
	for _, mb := range mbs {
		f, err := os.Open(MboxPath(mdir, mb.Name))
		if err != nil {
			t.Fatal(err)
		}
		in := &Into{Store: st, Account: "viambox", Mailbox: mb.Name}
		_, err = ImportMbox(ctx, in, NewMboxReader(f, MboxRD, nil), nil)
		f.Close()
		if err != nil && err != io.EOF {
			t.Fatalf("%s: %v", mb.Name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(mdir, "Lists.sbd", "Go")); err != nil {
		t.Errorf("nested mailbox file: %v", err)
	}
	compare(t, "mbox", orig, contents(t, st, "viambox"))

	ddir := t.TempDir()
	if _, err := ExportMaildir(ctx, st, "pp", ddir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ddir, ".Lists.Go", "cur")); err != nil {
		t.Errorf("Maildir++ subfolder: %v", err)
	}
	if _, err := ImportMaildir(ctx, st, "viamaildir", ddir, false, nil); err != nil {
		t.Fatal(err)
	}
	got := contents(t, st, "viamaildir")
	// Maildir has no place for keywords other than $Forwarded.
	for i := range orig {
		orig[i].flags = strings.TrimSpace(strings.NewReplacer("$Label1", "", "work", "").Replace(orig[i].flags))
	}
	compare(t, "maildir", orig, got)
	// And a second Maildir import adds nothing.
	if res, err := ImportMaildir(ctx, st, "viamaildir", ddir, false, nil); err != nil || res.Messages != 0 {
		t.Errorf("second Maildir import: %+v %v", res, err)
	}
}

func mustID(t *testing.T, st store.Store, name string) int64 {
	a, err := st.GetAccount(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func compare(t *testing.T, via string, want, got []stored) {
	t.Helper()
	key := func(s []stored) {
		sort.SliceStable(s, func(i, j int) bool { return s[i].mailbox < s[j].mailbox })
	}
	key(want)
	key(got)
	if len(got) != len(want) {
		t.Fatalf("via %s: %d messages, want %d", via, len(got), len(want))
	}
	for i := range want {
		g := got[i]
		g.uidl = ""
		if g != want[i] {
			t.Errorf("via %s, message %d:\n got %+v\nwant %+v", via, i, short(g), short(want[i]))
		}
	}
}

func short(s stored) stored {
	if len(s.data) > 200 {
		s.data = s.data[:200] + "..."
	}
	return s
}

func TestMaildirFlagsAndFolders(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cur", "new", "tmp", ".Work.Old/cur", ".Work.Old/new", "Nested/cur"} {
		os.MkdirAll(filepath.Join(root, d), 0o700)
	}
	os.WriteFile(filepath.Join(root, "cur", "1.a.host:2,FRS"), []byte("Subject: a\n\nx\n"), 0o600)
	os.WriteFile(filepath.Join(root, "new", "2.b.host"), []byte("Subject: b\n\ny\n"), 0o600)
	os.WriteFile(filepath.Join(root, ".Work.Old", "cur", "3.c.host:2,DPT"), []byte("Subject: c\n\nz\n"), 0o600)
	folders, err := MaildirFolders(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range folders {
		names = append(names, f.Mailbox)
	}
	if strings.Join(names, ",") != "INBOX,Nested,Work/Old" {
		t.Errorf("folders %q", names)
	}
	st := newStore(t, "pp")
	if _, err := ImportMaildir(ctx, st, "pp", root, false, nil); err != nil {
		t.Fatal(err)
	}
	got := contents(t, st, "pp")
	flags := map[string]string{}
	for _, m := range got {
		flags[m.data] = m.mailbox + ":" + m.flags
	}
	for data, want := range map[string]string{
		"Subject: a\r\n\r\nx\r\n": `INBOX:\Answered \Flagged \Seen`,
		"Subject: b\r\n\r\ny\r\n": "INBOX:",
		"Subject: c\r\n\r\nz\r\n": `Work/Old:$Forwarded \Deleted \Draft`,
	} {
		if flags[data] != want {
			t.Errorf("%q: %q, want %q", data, flags[data], want)
		}
	}
}
