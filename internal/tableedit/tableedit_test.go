package tableedit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
)

const virtText = `# Virtual addresses of example.org
# (kept by hand and by the webmail)

info@example.org	pp
  # an indented comment
sales@example.org   bob
@example.net	error:nouser No such user here
`

func write(t *testing.T, dir, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func inode(t *testing.T, p string) uint64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// Edits keep every other line as it was, in its place; the file is replaced
// (a new inode), with the old mode, and no temporary file stays behind.
func TestUpdateKeepsCommentsAndOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(f *File) error
		want   string
	}{
		{"append", func(f *File) error { f.Append("shop-x7k2@example.org\tpp"); return nil },
			virtText + "shop-x7k2@example.org\tpp\n"},
		{"remove", func(f *File) error {
			e, ok := f.FindKey("SALES@example.org")
			if !ok {
				return errors.New("sales not found")
			}
			f.Remove(e)
			return nil
		}, strings.Replace(virtText, "sales@example.org   bob\n", "", 1)},
		{"replace", func(f *File) error {
			e, err := f.Find(4, "info@example.org\tpp")
			if err != nil {
				return err
			}
			f.Replace(e, 0, "info@example.org\terror:nouser Gone")
			return nil
		}, strings.Replace(virtText, "info@example.org\tpp", "info@example.org\terror:nouser Gone", 1)},
		{"replace with the comment above", func(f *File) error {
			e, err := f.Find(6, "sales@example.org   bob")
			if err != nil {
				return err
			}
			f.Replace(e, 1, "sales@example.org   pp")
			return nil
		}, strings.Replace(virtText, "  # an indented comment\nsales@example.org   bob", "sales@example.org   pp", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := write(t, dir, maps.FileVirtusertable, virtText, 0o640)
			before := inode(t, p)
			if err := Update(dir, maps.FileVirtusertable, tc.change); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if string(got) != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
			st, _ := os.Stat(p)
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640", st.Mode().Perm())
			}
			if inode(t, p) == before {
				t.Error("the file was written in place, not replaced")
			}
			names, _ := filepath.Glob(filepath.Join(dir, "*"))
			hidden, _ := filepath.Glob(filepath.Join(dir, ".*"))
			if len(names) != 1 || len(hidden) != 0 {
				t.Errorf("files left in the directory: %v %v", names, hidden)
			}
		})
	}
}

// A change the parser refuses is not written, and the error is the
// parser's, with the line.
func TestUpdateRefusesInvalid(t *testing.T) {
	for _, tc := range []struct{ table, text, line, want string }{
		{maps.FileVirtusertable, virtText, "no-domain pp", "virtusertable:8:"},
		{maps.FileVirtusertable, virtText, "lonely@example.org", `has no value`},
		{maps.FileAccess, "# rules\nConnect:192.0.2.1 REJECT\n", "Conect:10.0.0.1 REJECT", "unknown tag"},
		{maps.FileAccess, "", "From:spam.example WHATEVER", "access:1:"},
		{maps.FileAliases, "root: pp\n", "broken line without colon", "aliases:2:"},
		{maps.FileLocalHostNames, "example.org\n", "not_a domain!", "local-host-names:2:"},
	} {
		dir := t.TempDir()
		p := write(t, dir, tc.table, tc.text, 0o644)
		err := Update(dir, tc.table, func(f *File) error { f.Append(tc.line); return nil })
		var pe *maps.ParseError
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s + %q: err %v, want a parse error with %q", tc.table, tc.line, err, tc.want)
		}
		got, _ := os.ReadFile(p)
		if string(got) != tc.text {
			t.Errorf("%s: the file changed although refused: %q", tc.table, got)
		}
	}
	if err := Update(t.TempDir(), "passwd", func(*File) error { return nil }); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("passwd: %v", err)
	}
}

// An error from the change writes nothing; a missing file is created.
func TestUpdateChangeErrorAndMissingFile(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, maps.FileAccess, "# x\n", 0o644)
	boom := errors.New("boom")
	if err := Update(dir, maps.FileAccess, func(f *File) error { f.Append("Connect:1.2.3.4 OK"); return boom }); err != boom {
		t.Fatalf("err %v", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "# x\n" {
		t.Fatalf("written despite the error: %q", got)
	}
	if err := Update(dir, maps.FileAliases, func(f *File) error { f.Append("webmaster: pp"); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, maps.FileAliases)); string(got) != "webmaster: pp\n" {
		t.Fatalf("new file: %q", got)
	}
}

// Find refuses an entry that is no longer at its line with its text.
func TestFindChanged(t *testing.T) {
	f := &File{Name: maps.FileVirtusertable, Lines: strings.Split(strings.TrimSuffix(virtText, "\n"), "\n")}
	if _, err := f.Find(4, "info@example.org\tpp"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line int
		text string
	}{{4, "info@example.org pp"}, {5, "info@example.org\tpp"}, {1, "# Virtual addresses of example.org"}, {99, "x"}} {
		if _, err := f.Find(tc.line, tc.text); !errors.Is(err, ErrChanged) {
			t.Errorf("Find(%d, %q): %v", tc.line, tc.text, err)
		}
	}
}

// Entries: aliases with continuation lines are one entry; class files
// take '#' anywhere; makemap tables split key and value.
func TestEntries(t *testing.T) {
	for _, tc := range []struct {
		table, text string
		want        []Entry
	}{
		{maps.FileAliases, "# c\nstaff: pp,\n  bob\nroot: pp\nlist: a, \\\nb\n", []Entry{
			{Line: 2, N: 2, Text: "staff: pp,\n  bob", Key: "staff", Value: "pp, bob"},
			{Line: 4, N: 1, Text: "root: pp", Key: "root", Value: "pp"},
			{Line: 5, N: 2, Text: "list: a, \\\nb", Key: "list", Value: "a, \\ b"},
		}},
		{maps.FileLocalHostNames, "# ours\nexample.org # main\n\n  example.net mail.example.net\n", []Entry{
			{Line: 2, N: 1, Text: "example.org # main", Key: "example.org"},
			{Line: 4, N: 1, Text: "  example.net mail.example.net", Key: "example.net mail.example.net"},
		}},
		{maps.FileAccess, "Connect:10 RELAY\n#x\nFrom:a@b\tERROR:550 no  thanks\n", []Entry{
			{Line: 1, N: 1, Text: "Connect:10 RELAY", Key: "Connect:10", Value: "RELAY"},
			{Line: 3, N: 1, Text: "From:a@b\tERROR:550 no  thanks", Key: "From:a@b", Value: "ERROR:550 no  thanks"},
		}},
	} {
		f := &File{Name: tc.table, Lines: splitLines([]byte(tc.text))}
		got := f.Entries()
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.table, got, tc.want)
		}
	}
}

// Concurrent edits of one file are all kept.
func TestUpdateConcurrent(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, maps.FileVirtusertable, virtText, 0o644)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Update(dir, maps.FileVirtusertable, func(f *File) error {
				f.Append(fmt.Sprintf("a%d@example.org pp", i))
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	f, err := Read(dir, maps.FileVirtusertable)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Entries()); n != 3+20 {
		t.Fatalf("%d entries, want 23", n)
	}
}

// The server's watcher loads an edit on its own, like a hand edit.
func TestWatcherReloadsEdit(t *testing.T) {
	dir := t.TempDir()
	for _, f := range maps.Files {
		write(t, dir, f, "", 0o644)
	}
	write(t, dir, maps.FileVirtusertable, virtText, 0o644)
	w, err := maps.NewWatcher(dir, 20*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	a, _ := addr.ParsePath("shop-x7k2@example.org", true)
	if _, _, ok := w.Current().Virtusertable.Lookup(a); ok {
		t.Fatal("found before the edit")
	}
	if err := Update(dir, maps.FileVirtusertable, func(f *File) error { f.Append("shop-x7k2@example.org\tpp"); return nil }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if rhs, _, ok := w.Current().Virtusertable.Lookup(a); ok {
			if rhs != "pp" {
				t.Fatalf("rhs %q", rhs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not load the edit")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
