package maildrop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// quiet is the logger of pickups whose log a test does not read.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type taken struct {
	env *Envelope
	msg []byte
	id  string
}

// recorder is a Handle that keeps what it is given; ret, when set, chooses
// its answer for each ID.
type recorder struct {
	mu  sync.Mutex
	got []taken
	ret func(id string) error
	ch  chan taken
}

func (r *recorder) handle(ctx context.Context, env *Envelope, msg io.Reader, id string) error {
	b, err := io.ReadAll(msg)
	if err != nil {
		return err
	}
	tk := taken{env, b, id}
	r.mu.Lock()
	r.got = append(r.got, tk)
	ret := r.ret
	r.mu.Unlock()
	if r.ch != nil {
		r.ch <- tk
	}
	if ret != nil {
		return ret(id)
	}
	return nil
}

func (r *recorder) taken() []taken {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]taken(nil), r.got...)
}

func (r *recorder) ids() []string {
	var ids []string
	for _, tk := range r.taken() {
		ids = append(ids, tk.id)
	}
	return ids
}

func writeOne(t *testing.T, dir, rcpt, body string) string {
	t.Helper()
	id, err := Write(dir, &Envelope{From: "pp@example.org", Recipients: []string{rcpt}}, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func setAge(t *testing.T, path string, age time.Duration) {
	t.Helper()
	when := time.Now().Add(-age)
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

func TestPickupOrderAndOutcomes(t *testing.T) {
	dir := newDropDir(t)
	ok := writeOne(t, dir, "ok@example.org", "ok\r\n")
	later := writeOne(t, dir, "later@example.org", "later\r\n")
	never := writeOne(t, dir, "never@example.org", "never\r\n")
	// Oldest first, by modification time (not by name): later, never, ok.
	setAge(t, filepath.Join(dir, later), 3*time.Minute)
	setAge(t, filepath.Join(dir, never), 2*time.Minute)
	setAge(t, filepath.Join(dir, ok), time.Minute)
	rec := &recorder{ret: func(id string) error {
		switch id {
		case later:
			return errors.New("store busy")
		case never:
			return fmt.Errorf("no such domain: %w", ErrPermanent)
		}
		return nil
	}}
	var logged bytes.Buffer
	p := &Pickup{Dir: dir, Handle: rec.handle, Log: slog.New(slog.NewTextHandler(&logged, nil))}
	p.scan(context.Background())
	// Both failures are logged with the file's ID and the reason.
	for _, want := range []string{"id=" + later, `err="store busy"`, "id=" + never, "no such domain"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logged.String())
		}
	}
	if got, want := rec.ids(), []string{later, never, ok}; !reflect.DeepEqual(got, want) {
		t.Fatalf("taken in order %v, want %v", got, want)
	}
	// Taken: gone. Temporary failure: still there. Permanent: moved aside, intact.
	if names := listDir(t, dir); !reflect.DeepEqual(names, []string{later}) {
		t.Errorf("drop directory holds %v, want just %s", names, later)
	}
	failed := FailedDir(dir)
	if names := listDir(t, failed); !reflect.DeepEqual(names, []string{never}) {
		t.Errorf("failed directory holds %v, want just %s", names, never)
	}
	b, err := os.ReadFile(filepath.Join(failed, never))
	if err != nil || !strings.HasSuffix(string(b), "\n\nnever\r\n") || !strings.Contains(string(b), "rcpt <never@example.org>\n") {
		t.Errorf("moved file reads %q, %v", b, err)
	}
	// The next scan tries the temporary failure again, and only it.
	rec.ret = nil
	p.scan(context.Background())
	if got, want := rec.ids(), []string{later, never, ok, later}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the second scan taken %v, want %v", got, want)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("drop directory still holds %v", names)
	}
}

// TestWriterHelper is not a test: TestPickupAfterWriterCrash runs the test
// binary with MAILDROP_HELPER_DIR set to use it as a writer that gets killed.
func TestWriterHelper(t *testing.T) {
	dir := os.Getenv("MAILDROP_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	_, err := Write(dir, &Envelope{From: "pp@example.org", Recipients: []string{"a@example.org"}}, os.Stdin)
	if err != nil {
		t.Fatal(err)
	}
}

// TestPickupAfterWriterCrash kills a writer (a real process) in the middle of
// a message: what it leaves is never taken, and is cleared away once stale.
func TestPickupAfterWriterCrash(t *testing.T) {
	dir := newDropDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriterHelper$")
	cmd.Env = append(os.Environ(), "MAILDROP_HELPER_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// More than the writer buffers, so that part of it reaches the file.
	if _, err := stdin.Write([]byte(strings.Repeat("half of a message\r\n", 20000))); err != nil {
		t.Fatal(err)
	}
	var tmp string
	deadline := time.Now().Add(10 * time.Second)
	for tmp == "" {
		for _, n := range listDir(t, dir) {
			if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Size() > 0 {
				tmp = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer wrote nothing; directory: %v", listDir(t, dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !strings.HasPrefix(tmp, tmpPrefix) {
		t.Fatalf("a half-written file has the final name %s", tmp)
	}

	rec := &recorder{}
	p := &Pickup{Dir: dir, Handle: rec.handle, Log: quiet}
	p.scan(context.Background())
	if len(rec.taken()) != 0 {
		t.Fatalf("a half-written file was taken: %+v", rec.taken())
	}
	if names := listDir(t, dir); !reflect.DeepEqual(names, []string{tmp}) {
		t.Errorf("directory holds %v, want the fresh leftover %s kept", names, tmp)
	}
	// Once older than StaleTemp it is deleted, still without being taken.
	setAge(t, filepath.Join(dir, tmp), StaleTemp+time.Minute)
	p.scan(context.Background())
	if len(rec.taken()) != 0 || len(listDir(t, dir)) != 0 {
		t.Errorf("stale leftover: taken %d, directory %v", len(rec.taken()), listDir(t, dir))
	}
}

// A Write still under way (its reader blocked) is not seen by a scan.
func TestPickupIgnoresWriteInProgress(t *testing.T) {
	dir := newDropDir(t)
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		r := io.MultiReader(strings.NewReader(strings.Repeat("x", 200<<10)), blockedReader(release))
		_, err := Write(dir, &Envelope{From: "pp@example.org", Recipients: []string{"a@example.org"}}, r)
		done <- err
	}()
	for len(listDir(t, dir)) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	rec := &recorder{}
	(&Pickup{Dir: dir, Handle: rec.handle, Log: quiet}).scan(context.Background())
	if len(rec.taken()) != 0 {
		t.Errorf("a file being written was taken")
	}
	close(release)
	if err := <-done; err == nil {
		t.Error("Write succeeded although its reader failed")
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("the failed Write left %v", names)
	}
}

type blockedReader chan struct{}

func (b blockedReader) Read([]byte) (int, error) {
	<-b
	return 0, errors.New("reader gave up")
}

// A user can put anything in the drop directory. None of it may make the
// pickup follow a link, hang, read another file, or stop taking good files.
func TestPickupHostileFiles(t *testing.T) {
	dir := newDropDir(t)
	outside := t.TempDir()
	victim := writeOne(t, outside, "victim@example.org", "secret\r\n")
	os.Symlink(filepath.Join(outside, victim), filepath.Join(dir, "link"))
	if err := os.Link(filepath.Join(outside, victim), filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "subdir"), 0o755)
	os.WriteFile(filepath.Join(dir, "junk"), []byte("From someone\nSubject: not a drop file\n\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cut"), []byte("posthorn-maildrop 1\nuid 0\nfrom <a@b.org>\nrcpt <c@d."), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("posthorn-maildrop 1\nuid 0\nfrom <a@b.org>\nrcpt <c@d.org>\n\n"), 0o644)
	good := writeOne(t, dir, "good@example.org", "fine\r\n")

	rec := &recorder{}
	done := make(chan struct{})
	go func() {
		(&Pickup{Dir: dir, Handle: rec.handle, Log: quiet}).scan(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the scan hangs (on the FIFO?)")
	}
	if got := rec.ids(); !reflect.DeepEqual(got, []string{good}) {
		t.Errorf("taken %v, want only %s", got, good)
	}
	if names := listDir(t, dir); !reflect.DeepEqual(names, []string{".hidden"}) {
		t.Errorf("drop directory holds %v, want only .hidden", names)
	}
	failed := FailedDir(dir)
	if names := listDir(t, failed); !reflect.DeepEqual(names, []string{"cut", "fifo", "hardlink", "junk", "link", "subdir"}) {
		t.Errorf("moved aside: %v", names)
	}
	if st, err := os.Lstat(filepath.Join(failed, "link")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was not moved as a link: %v %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, victim)); err != nil || !strings.HasSuffix(string(b), "secret\r\n") {
		t.Errorf("the linked file changed: %q %v", b, err)
	}
}

// craft writes a drop file by hand, claiming uid and user, owned by owner
// (-1: whoever runs the test).
func craft(t *testing.T, dir, name string, uid int, userName string, owner int) {
	t.Helper()
	text := fmt.Sprintf("posthorn-maildrop 1\nuid %d\n", uid)
	if userName != "" {
		text += "user " + userName + "\n"
	}
	text += "from <someone@example.org>\nrcpt <a@example.org>\n\nbody\r\n"
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if owner >= 0 {
		if err := os.Chown(p, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
}

// The uid is the file's owner's; the name is the system's name for it.
func TestPickupTrustsOwnerNotFile(t *testing.T) {
	me := os.Getuid()
	type tcase struct {
		name      string
		claimUID  int
		claimUser string
		owner     int // -1: the test's uid
		wantUID   int
		wantUser  string
	}
	tests := []tcase{
		{"claims another uid and name", me + 4242, "mallory", -1, me, myName()},
		{"claims root", 0, "root", -1, me, myName()},
	}
	if me == 0 {
		var nobody *user.User
		if u, err := user.LookupId("65534"); err == nil {
			nobody = u
			tests = append(tests, tcase{"owned by nobody, claims root", 0, "root", 65534, 65534, nobody.Username})
		}
		ghost := 54321
		if _, err := user.LookupId(strconv.Itoa(ghost)); err != nil {
			tests = append(tests,
				// No name for the owner: the file's own is kept only when its uid is right.
				tcase{"uid without a name, true claim", ghost, "ghost", ghost, ghost, "ghost"},
				tcase{"uid without a name, false claim", 0, "root", ghost, ghost, ""})
		}
	} else {
		t.Log("not root: the cases with files of other owners are skipped")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDropDir(t)
			craft(t, dir, "f", tc.claimUID, tc.claimUser, tc.owner)
			rec := &recorder{}
			(&Pickup{Dir: dir, Handle: rec.handle, Log: quiet}).scan(context.Background())
			got := rec.taken()
			if len(got) != 1 {
				t.Fatalf("taken %d files", len(got))
			}
			if got[0].env.UID != tc.wantUID || got[0].env.User != tc.wantUser {
				t.Errorf("uid %d user %q, want uid %d user %q", got[0].env.UID, got[0].env.User, tc.wantUID, tc.wantUser)
			}
		})
	}
	// A real Write chowned afterwards, as another user's would be.
	if me == 0 {
		dir := newDropDir(t)
		id := writeOne(t, dir, "a@example.org", "x\r\n")
		os.Chown(filepath.Join(dir, id), 65534, 65534)
		rec := &recorder{}
		(&Pickup{Dir: dir, Handle: rec.handle, Log: quiet}).scan(context.Background())
		if got := rec.taken(); len(got) != 1 || got[0].env.UID != 65534 {
			t.Errorf("a file owned by 65534 gave %+v", got)
		}
	}
}

func TestRunAndKick(t *testing.T) {
	dir := newDropDir(t)
	rec := &recorder{ch: make(chan taken, 10)}
	p := &Pickup{Dir: dir, Interval: time.Hour, Handle: rec.handle, Log: quiet}
	p.Kick() // before Run: neither blocks nor panics
	p.Kick()
	first := writeOne(t, dir, "first@example.org", "1\r\n")
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { p.Run(ctx); close(stopped) }()
	stop := func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	defer cancel()
	wait := func(want string) {
		t.Helper()
		select {
		case tk := <-rec.ch:
			if tk.id != want {
				t.Errorf("took %s, want %s", tk.id, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not taken", want)
		}
	}
	wait(first) // Run scans at once
	// With an hour's interval, only Kick can make it scan again soon.
	second := writeOne(t, dir, "second@example.org", "2\r\n")
	p.Kick()
	wait(second)
	stop()
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("directory holds %v", names)
	}
}

// A file taken that cannot be removed is not taken again by the same pickup.
func TestPickupDoesNotRetakeWhatItCannotRemove(t *testing.T) {
	dir := newDropDir(t)
	id := writeOne(t, dir, "a@example.org", "x\r\n")
	path := filepath.Join(dir, id)
	calls := 0
	var logged bytes.Buffer
	p := &Pickup{Dir: dir, Log: slog.New(slog.NewTextHandler(&logged, nil)),
		Handle: func(ctx context.Context, env *Envelope, msg io.Reader, id string) error {
			calls++
			// Make the removal fail, even for root: a non-empty directory
			// now stands under the file's name.
			os.Remove(path)
			os.Mkdir(path, 0o755)
			os.WriteFile(filepath.Join(path, "x"), nil, 0o644)
			return nil
		}}
	p.scan(context.Background())
	p.scan(context.Background())
	if calls != 1 {
		t.Errorf("Handle called %d times", calls)
	}
	if !strings.Contains(logged.String(), "cannot be removed") || !strings.Contains(logged.String(), id) {
		t.Errorf("not logged:\n%s", logged.String())
	}
	if names := listDir(t, FailedDir(dir)); len(names) != 0 {
		t.Errorf("moved aside: %v", names)
	}
}
