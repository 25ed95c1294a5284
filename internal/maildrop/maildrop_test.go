package maildrop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// withUmask runs f with the process umask set to mask (tests here are not
// parallel: the umask is the process's).
func withUmask(mask int, f func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

func TestPrepare(t *testing.T) {
	base := t.TempDir()
	// A fresh directory gets 01733 whatever the umask.
	fresh := filepath.Join(base, "fresh")
	withUmask(0o077, func() {
		if err := Prepare(fresh); err != nil {
			t.Fatal(err)
		}
	})
	// An existing one with another mode is set right.
	existing := filepath.Join(base, "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(existing); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{fresh, existing} {
		st, err := os.Lstat(dir)
		if err != nil {
			t.Fatal(err)
		}
		// The mode bits as the kernel has them: 01733.
		if got := st.Sys().(*syscall.Stat_t).Mode & 0o7777; got != 0o1733 {
			t.Errorf("%s: mode %o, want 1733", dir, got)
		}
	}
	// A file, or a symbolic link to a directory, in its place is refused.
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o644)
	link := filepath.Join(base, "link")
	os.Symlink(existing, link)
	for _, p := range []string{file, link} {
		if err := Prepare(p); err == nil {
			t.Errorf("Prepare(%s) accepted a non-directory", p)
		}
	}
	if err := Prepare(filepath.Join(base, "no", "parent")); err == nil {
		t.Error("Prepare without a parent directory succeeded")
	}
}

func TestDirs(t *testing.T) {
	if got := Dir("/var/lib/posthorn"); got != "/var/lib/posthorn/maildrop" {
		t.Errorf("Dir = %q", got)
	}
	for _, d := range []string{"/var/lib/posthorn/maildrop", "/var/lib/posthorn/maildrop/"} {
		if got := FailedDir(d); got != "/var/lib/posthorn/maildrop-failed" {
			t.Errorf("FailedDir(%q) = %q", d, got)
		}
	}
}

func newDropDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "maildrop")
	if err := Prepare(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// listDir returns the names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// myName is the login name of the uid the tests run as, "" if it has none.
func myName() string {
	u, err := user.LookupId(strconv.Itoa(os.Getuid()))
	if err != nil {
		return ""
	}
	return u.Username
}

func TestWriteThenPickup(t *testing.T) {
	big := bytes.Repeat([]byte("a line of a long message, with CRLF\r\n"), 20000) // ~740 KiB: past every buffer
	tests := []struct {
		name string
		env  Envelope
		msg  []byte
	}{
		{"plain", Envelope{From: "pp@mx.example.org", Recipients: []string{"a@example.org"}, User: "pp"},
			[]byte("Subject: hi\r\n\r\nhello\r\n")},
		{"null sender, several recipients", Envelope{Null: true, Recipients: []string{"a@example.org", "b@example.net", `"x y"@example.com`}},
			[]byte("Subject: bounce\r\n\r\n")},
		{"empty message", Envelope{From: "root@mx.example.org", Recipients: []string{"root@mx.example.org"}}, nil},
		{"big message", Envelope{From: "pp@mx.example.org", Recipients: []string{"a@example.org"}, User: "pp"}, big},
		// Bytes that look like an envelope inside the message stay message.
		{"envelope-like body", Envelope{From: "pp@mx.example.org", Recipients: []string{"a@example.org"}},
			[]byte("posthorn-maildrop 1\nuid 0\nfrom <root@x.org>\n\n")},
		// The uid given is not what is recorded: the writer's is.
		{"claimed uid", Envelope{From: "pp@mx.example.org", Recipients: []string{"a@example.org"}, UID: 4242}, []byte("x\r\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDropDir(t)
			var id string
			withUmask(0o077, func() {
				var err error
				id, err = Write(dir, &tc.env, bytes.NewReader(tc.msg))
				if err != nil {
					t.Fatal(err)
				}
			})
			if names := listDir(t, dir); len(names) != 1 || names[0] != id {
				t.Fatalf("drop directory holds %v, want just %s", names, id)
			}
			if len(id) != 30 || strings.Trim(id, "0123456789abcdef") != "" {
				t.Errorf("ID %q is not 30 hex digits", id)
			}
			st, err := os.Stat(filepath.Join(dir, id))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o644 {
				t.Errorf("file mode %v, want 0644 despite the umask", st.Mode().Perm())
			}
			rec := &recorder{}
			(&Pickup{Dir: dir, Handle: rec.handle, Log: quiet}).scan(context.Background())
			got := rec.taken()
			if len(got) != 1 {
				t.Fatalf("Handle called %d times", len(got))
			}
			want := tc.env
			want.UID = os.Getuid()
			// The name comes from the file's owner: ours.
			want.User = myName()
			if !reflect.DeepEqual(*got[0].env, want) {
				t.Errorf("envelope %+v, want %+v", *got[0].env, want)
			}
			if !bytes.Equal(got[0].msg, tc.msg) {
				t.Errorf("message of %d bytes came back as %d bytes", len(tc.msg), len(got[0].msg))
			}
			if got[0].id != id {
				t.Errorf("Handle got ID %q, Write said %q", got[0].id, id)
			}
			if names := listDir(t, dir); len(names) != 0 {
				t.Errorf("after a successful Handle the directory holds %v", names)
			}
		})
	}
}

func TestWriteRefuses(t *testing.T) {
	ok := []string{"a@example.org"}
	tests := []struct {
		name string
		env  *Envelope
	}{
		{"no envelope", nil},
		{"no recipients", &Envelope{From: "pp@example.org"}},
		{"unqualified recipient", &Envelope{From: "pp@example.org", Recipients: []string{"root"}}},
		{"newline in recipient", &Envelope{From: "pp@example.org", Recipients: []string{"a@example.org\nrcpt <b@example.org>"}}},
		{"bad recipient", &Envelope{From: "pp@example.org", Recipients: []string{"a b@example.org"}}},
		{"empty sender without Null", &Envelope{Recipients: ok}},
		{"null sender with an address", &Envelope{Null: true, From: "pp@example.org", Recipients: ok}},
		{"bad sender", &Envelope{From: "pp@", Recipients: ok}},
		{"newline in user", &Envelope{From: "pp@example.org", Recipients: ok, User: "pp\nuid 0"}},
		{"too many recipients", &Envelope{From: "pp@example.org", Recipients: manyRecipients(MaxEnvelope / 20)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDropDir(t)
			if id, err := Write(dir, tc.env, strings.NewReader("x\r\n")); err == nil {
				t.Errorf("Write accepted it as %s", id)
			}
			if names := listDir(t, dir); len(names) != 0 {
				t.Errorf("a refused Write left %v", names)
			}
		})
	}
}

func manyRecipients(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "recipient" + strconv.Itoa(i) + "@example.org"
	}
	return out
}

func TestWriteReaderErrorLeavesNothing(t *testing.T) {
	dir := newDropDir(t)
	boom := errors.New("stdin broke")
	r := io.MultiReader(strings.NewReader(strings.Repeat("x", 100<<10)), iotest.ErrReader(boom))
	_, err := Write(dir, &Envelope{From: "pp@example.org", Recipients: []string{"a@example.org"}}, r)
	if !errors.Is(err, boom) {
		t.Errorf("Write returned %v, want it to wrap the reader's error", err)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("a failed Write left %v", names)
	}
	// A directory that is not there: an error, not a panic.
	if _, err := Write(filepath.Join(dir, "none"), &Envelope{From: "pp@example.org", Recipients: []string{"a@example.org"}}, strings.NewReader("")); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

func TestIDsSortByTimeAndDiffer(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := newID(t0)
		if seen[id] {
			t.Fatalf("ID %s twice", id)
		}
		seen[id] = true
	}
	if a, b := newID(t0), newID(t0.Add(time.Second)); a[:10] >= b[:10] {
		t.Errorf("IDs do not sort by time: %s then %s", a, b)
	}
	// The time part is the Unix time in hex.
	if got := newID(t0)[:10]; got != "006553f100" {
		t.Errorf("time part %s, want 006553f100 (1700000000)", got)
	}
}

func TestReadEnvelope(t *testing.T) {
	long := "rcpt <" + strings.Repeat("a", 60) + "@" + strings.Repeat("b.", 90) + "org>\n"
	tests := []struct {
		name string
		in   string
		want *Envelope // nil: an error
		rest string    // what stays for the message
	}{
		{"minimal", "posthorn-maildrop 1\nuid 7\nfrom <a@b.org>\nrcpt <c@d.org>\n\nmsg",
			&Envelope{UID: 7, From: "a@b.org", Recipients: []string{"c@d.org"}}, "msg"},
		{"all keys", "posthorn-maildrop 1\nuid 0\nuser root\nfrom <>\nrcpt <c@d.org>\nrcpt <e@f.org>\n\n\r\n",
			&Envelope{UID: 0, User: "root", Null: true, Recipients: []string{"c@d.org", "e@f.org"}}, "\r\n"},
		{"keys in another order", "posthorn-maildrop 1\nrcpt <c@d.org>\nfrom <a@b.org>\nuid 3\n\n",
			&Envelope{UID: 3, From: "a@b.org", Recipients: []string{"c@d.org"}}, ""},
		{"empty", "", nil, ""},
		{"other magic", "From a@b.org\n\n", nil, ""},
		{"other version", "posthorn-maildrop 2\nuid 7\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"cut short", "posthorn-maildrop 1\nuid 7\nfrom <a@b.org>\nrcpt <c@d.org>\n", nil, ""},
		{"cut mid-line", "posthorn-maildrop 1\nuid 7\nfrom <a@b.o", nil, ""},
		{"no uid", "posthorn-maildrop 1\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"two uids", "posthorn-maildrop 1\nuid 1\nuid 0\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"negative uid", "posthorn-maildrop 1\nuid -1\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"uid with a sign", "posthorn-maildrop 1\nuid +1\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"huge uid", "posthorn-maildrop 1\nuid 99999999999999999999\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"no sender", "posthorn-maildrop 1\nuid 1\nrcpt <c@d.org>\n\n", nil, ""},
		{"two senders", "posthorn-maildrop 1\nuid 1\nfrom <>\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"no recipients", "posthorn-maildrop 1\nuid 1\nfrom <a@b.org>\n\n", nil, ""},
		{"empty recipient", "posthorn-maildrop 1\nuid 1\nfrom <a@b.org>\nrcpt <>\n\n", nil, ""},
		{"unbracketed", "posthorn-maildrop 1\nuid 1\nfrom a@b.org\nrcpt <c@d.org>\n\n", nil, ""},
		{"unqualified recipient", "posthorn-maildrop 1\nuid 1\nfrom <a@b.org>\nrcpt <root>\n\n", nil, ""},
		{"unknown key", "posthorn-maildrop 1\nuid 1\nfrom <a@b.org>\nrcpt <c@d.org>\nnotify never\n\n", nil, ""},
		{"key without value", "posthorn-maildrop 1\nuid\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"control character", "posthorn-maildrop 1\nuid 1\nuser a\rb\nfrom <a@b.org>\nrcpt <c@d.org>\n\n", nil, ""},
		{"CRLF lines", "posthorn-maildrop 1\r\nuid 1\r\nfrom <a@b.org>\r\nrcpt <c@d.org>\r\n\r\n", nil, ""},
		{"over the size limit", "posthorn-maildrop 1\nuid 1\nfrom <a@b.org>\n" + strings.Repeat(long, MaxEnvelope/len(long)+1) + "\n", nil, ""},
		{"one endless line", "posthorn-maildrop 1\nuser " + strings.Repeat("x", MaxEnvelope+10), nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tc.in))
			env, err := readEnvelope(r)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("accepted as %+v", env)
				}
				if !errors.Is(err, errFormat) {
					t.Errorf("error %v is not errFormat", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(env, tc.want) {
				t.Errorf("got %+v, want %+v", env, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tc.rest {
				t.Errorf("message %q, want %q", rest, tc.rest)
			}
		})
	}
}

// FuzzReadEnvelope: any bytes are read without a panic, and whatever is
// accepted is written back by marshalEnvelope into bytes that read the same.
func FuzzReadEnvelope(f *testing.F) {
	f.Add([]byte("posthorn-maildrop 1\nuid 7\nuser pp\nfrom <a@b.org>\nrcpt <c@d.org>\n\nmsg"))
	f.Add([]byte("posthorn-maildrop 1\nuid 0\nfrom <>\nrcpt <\"q x\"@[192.0.2.1]>\n\n"))
	f.Add([]byte("posthorn-maildrop 1\nuid 1\nfrom <@a,@b:c@d.org>\nrcpt <c@d.org>\n"))
	f.Add([]byte("posthorn-maildrop 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := readEnvelope(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		b, err := marshalEnvelope(env, env.UID)
		if err != nil {
			t.Fatalf("read %+v but cannot write it: %v", env, err)
		}
		again, err := readEnvelope(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("cannot read back %q: %v", b, err)
		}
		if !reflect.DeepEqual(env, again) {
			t.Fatalf("%+v came back as %+v", env, again)
		}
	})
}
