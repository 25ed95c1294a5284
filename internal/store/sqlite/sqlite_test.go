package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/storetest"
)

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) })
}

var ctx = context.Background()

func TestDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.CreateAccount(ctx, "pp", "h")
	big := bytes.Repeat([]byte("z"), 300000)
	for _, body := range [][]byte{[]byte("Subject: small\r\n\r\nx\r\n"), big} {
		if res, err := s.Deliver(ctx, &store.Delivery{Body: bytes.NewReader(body), Local: []store.LocalTarget{{Account: "pp"}}}); err != nil || res.Local[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	s.Close()
	s2 := open(t, dir)
	a, err := s2.GetAccount(ctx, "pp")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := s2.GetMailbox(ctx, a.ID, "INBOX")
	if mb.Messages != 2 {
		t.Fatalf("%d messages after reopen", mb.Messages)
	}
	r, _ := s2.OpenMessage(ctx, mb.ID, 2)
	if r.Size() != int64(len(big)) {
		t.Errorf("big message size %d", r.Size())
	}
	r.Close()
	// The big one is a file, the small one is not.
	files := 0
	filepath.Walk(filepath.Join(dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files++
		}
		return nil
	})
	if files != 1 {
		t.Errorf("%d blob files, want 1", files)
	}
}

func TestPreallocatedWAL(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{PreallocateWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "posthorn.db-wal"))
	if err != nil || st.Size() != restartAfter {
		t.Fatalf("write-ahead log after Open: %v, %v", st, err)
	}
	s.CreateAccount(ctx, "pp", "h")
	for i := 0; i < 50; i++ {
		if _, err := s.Deliver(ctx, &store.Delivery{Body: storetest.Msg(strconv.Itoa(i)), Local: []store.LocalTarget{{Account: "pp"}}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// The zeros after the frames are not read as data: everything is there.
	s = open(t, dir)
	a, _ := s.GetAccount(ctx, "pp")
	mb, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	if mb.Messages != 50 {
		t.Errorf("%d messages after reopen, want 50", mb.Messages)
	}
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("check: %v %v", p, err)
	}
}

func TestTwoInstancesOnOneDirectory(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir), open(t, dir)
	if _, err := a.CreateAccount(ctx, "pp", "h"); err != nil {
		t.Fatal(err)
	}
	// b sees a's account (like `posthorn user add` while the server runs).
	if _, err := b.GetAccount(ctx, "pp"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func(s *Store) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				if _, err := s.Deliver(ctx, &store.Delivery{Body: storetest.Msg(strconv.Itoa(i)), Local: []store.LocalTarget{{Account: "pp"}}}); err != nil {
					t.Error(err)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	acct, _ := a.GetAccount(ctx, "pp")
	mb, _ := a.GetMailbox(ctx, acct.ID, "INBOX")
	if mb.Messages != 60 || mb.UIDNext != 61 {
		t.Errorf("after two writers: %+v", mb)
	}
}

func TestCheckFindsCorruption(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.CreateAccount(ctx, "pp", "h")
	s.Deliver(ctx, &store.Delivery{Body: storetest.Msg("a"), Local: []store.LocalTarget{{Account: "pp"}}})
	s.Deliver(ctx, &store.Delivery{Body: bytes.NewReader(bytes.Repeat([]byte("q"), 200000)), Local: []store.LocalTarget{{Account: "pp"}}})
	if p, _ := s.Check(ctx); len(p) != 0 {
		t.Fatalf("healthy: %v", p)
	}
	// Corrupt the inline bytes, the file, and a counter, behind the store's back.
	if _, err := s.wdb.Exec("UPDATE blobs SET data = 'tampered' WHERE data IS NOT NULL"); err != nil {
		t.Fatal(err)
	}
	var file string
	s.wdb.QueryRow("SELECT file FROM blobs WHERE file IS NOT NULL").Scan(&file)
	os.WriteFile(filepath.Join(dir, "blobs", file[:2], file), []byte("short"), 0o600)
	s.wdb.Exec("UPDATE mailboxes SET unseen = 42 WHERE name = 'INBOX'")
	p, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(p, "\n")
	for _, want := range []string{"bytes, want", "counters do not match"} {
		if !strings.Contains(joined, want) {
			t.Errorf("check output lacks %q:\n%s", want, joined)
		}
	}
	if len(p) < 3 {
		t.Errorf("check found %d problems, want at least 3:\n%s", len(p), joined)
	}
}

func TestUnreferencedFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a, _ := s.CreateAccount(ctx, "pp", "h")
	s.Deliver(ctx, &store.Delivery{Body: bytes.NewReader(bytes.Repeat([]byte("q"), 200000)), Local: []store.LocalTarget{{Account: "pp"}}})
	mb, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	if _, err := s.Expunge(ctx, mb.ID, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	// The file goes once the expunge is durable, soon after Expunge returns.
	files := func() int {
		count := 0
		filepath.Walk(filepath.Join(dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && !strings.Contains(p, "/tmp/") {
				count++
			}
			return nil
		})
		return count
	}
	deadline := time.Now().Add(5 * time.Second)
	for files() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := files(); n != 0 {
		t.Errorf("%d blob files left after the expunge", n)
	}
	var n int
	s.rdb.QueryRow("SELECT count(*) FROM blobs").Scan(&n)
	if n != 0 {
		t.Errorf("%d blob rows left", n)
	}
}

// TestCrashKeepsAcknowledged runs a child process that delivers in a loop and
// prints the UID of each delivery once Deliver returned; the parent kills it
// with SIGKILL and checks that every printed one is there, and Check passes.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if dir := os.Getenv("POSTHORN_CRASH_CHILD_DIR"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.CreateAccount(ctx, "pp", "h")
	s.Close()
	acked := map[string]bool{}
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledged$")
		cmd.Env = append(os.Environ(), "POSTHORN_CRASH_CHILD_DIR="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		deadline := time.After(time.Duration(200+100*round) * time.Millisecond)
		lines := make(chan string)
		go func() {
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
	loop:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break loop
				}
				if strings.HasPrefix(l, "acked ") {
					acked[strings.TrimPrefix(l, "acked ")] = true
				}
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				deadline = nil
			}
		}
		cmd.Wait()
	}
	if len(acked) == 0 {
		t.Fatal("the child acknowledged nothing")
	}
	s = open(t, dir)
	a, _ := s.GetAccount(ctx, "pp")
	mb, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	msgs, _ := s.ListMessages(ctx, mb.ID, 0, true)
	have := map[string]int{}
	for _, m := range msgs {
		have[string(m.Meta)]++
	}
	for id := range acked {
		if have[id] != 1 {
			t.Errorf("acknowledged %s present %d times", id, have[id])
		}
	}
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("check after crashes: %v %v", p, err)
	}
	t.Logf("%d acknowledged deliveries survived 3 SIGKILLs", len(acked))
}

func crashChild(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	pid := os.Getpid()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("%d-%d-%d", pid, g, i)
				body := storetest.Msg(id)
				if i%10 == 0 {
					body = bytes.NewReader(bytes.Repeat([]byte(id), 20000)) // a file-backed one now and then
				}
				res, err := s.Deliver(context.Background(), &store.Delivery{Body: body, Meta: []byte(id), Local: []store.LocalTarget{{Account: "pp"}}})
				if err != nil || res.Local[0].Err != nil {
					continue
				}
				mu.Lock()
				fmt.Println("acked", id)
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
}

func BenchmarkDeliver(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 4096)
	for _, conc := range []int{1, 20} {
		b.Run(fmt.Sprintf("callers=%d", conc), func(b *testing.B) {
			s := open(b, b.TempDir())
			s.CreateAccount(ctx, "pp", "h")
			b.SetParallelism(conc)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Deliver(ctx, &store.Delivery{Body: bytes.NewReader(body), Meta: make([]byte, 300), Local: []store.LocalTarget{{Account: "pp"}}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func fill(b *testing.B, n int) (*Store, int64) {
	s := open(b, b.TempDir())
	a, _ := s.CreateAccount(ctx, "pp", "h")
	mb, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	body := bytes.Repeat([]byte("x"), 2000)
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/50; i++ {
				s.Append(ctx, mb.ID, bytes.NewReader(body), make([]byte, 300), nil, time.Time{})
			}
		}()
	}
	wg.Wait()
	return s, mb.ID
}

func BenchmarkListMessages50k(b *testing.B) {
	s, mb := fill(b, 50000)
	b.ResetTimer()
	for b.Loop() {
		ms, err := s.ListMessages(ctx, mb, 0, false)
		if err != nil || len(ms) != 50000 {
			b.Fatal(len(ms), err)
		}
	}
}

func BenchmarkStoreFlags50k(b *testing.B) {
	s, mb := fill(b, 50000)
	all := make([]uint32, 50000)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		op := store.FlagsAdd
		if i%2 == 1 {
			op = store.FlagsRemove
		}
		if _, _, err := s.StoreFlags(ctx, mb, all, op, []string{`\Seen`}, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// A fast request that fails in the middle of a group (here: a queue ID used
// twice, a constraint violation after the message rows were written) must
// undo only itself: the group runs again with savepoints.
func TestFailingRequestInAGroupUndoesOnlyItself(t *testing.T) {
	s := open(t, t.TempDir())
	a, _ := s.CreateAccount(ctx, "pp", "h")
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 12)
		dup := fmt.Sprintf("DUP%d", round)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				d := &store.Delivery{Body: storetest.Msg(strconv.Itoa(i)), Local: []store.LocalTarget{{Account: "pp"}}}
				if i < 2 {
					d.QueueID, d.Remote = dup, []store.QueueRecipient{{Address: "x@remote.example"}}
				}
				_, errs[i] = s.Deliver(ctx, d)
			}(i)
		}
		wg.Wait()
		failed := 0
		for i, err := range errs {
			if err != nil {
				if i >= 2 {
					t.Fatalf("round %d: an unrelated delivery failed: %v", round, err)
				}
				failed++
			}
		}
		if failed != 1 {
			t.Fatalf("round %d: %d of the two deliveries with one queue ID failed, want 1", round, failed)
		}
	}
	mb, _ := s.GetMailbox(ctx, a.ID, "INBOX")
	if mb.Messages != 20*11 {
		t.Errorf("%d messages, want %d: a failed delivery left rows behind or a good one was lost", mb.Messages, 20*11)
	}
	if p, err := s.Check(ctx); err != nil || len(p) != 0 {
		t.Errorf("check: %v %v", p, err)
	}
}

// Requests racing with Close are either served or refused with ErrClosed,
// never left waiting.
func TestCloseWhileWriting(t *testing.T) {
	for i := 0; i < 20; i++ {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.CreateAccount(ctx, "pp", "h")
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					_, err := s.Deliver(ctx, &store.Delivery{Body: storetest.Msg("x"), Local: []store.LocalTarget{{Account: "pp"}}})
					if err != nil {
						if !errors.Is(err, store.ErrClosed) {
							t.Error(err)
						}
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(i) * time.Millisecond)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		s.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("deliveries still waiting after Close")
		}
	}
}

// A database made by the first schema is brought up to date when opened, and
// keeps its queue.
func TestMigrateFromVersion1(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(context.Background(), &store.Delivery{Body: storetest.Msg("old"), From: "a@example.org",
		Remote: []store.QueueRecipient{{Address: "b@remote.example"}}, QueueID: "Q1"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "posthorn.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER TABLE queue DROP COLUMN held", "ALTER TABLE queue DROP COLUMN warned",
		"ALTER TABLE accounts DROP COLUMN scram_sha256", "ALTER TABLE messages DROP COLUMN pop3_uidl", "PRAGMA user_version = 1"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()

	s = open(t, dir)
	var v int
	if err := s.wdb.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("schema version %d %v, want %d", v, err, schemaVersion)
	}
	if err := s.HoldQueueEntry(context.Background(), "Q1", true); err != nil {
		t.Fatal(err)
	}
	e, err := s.GetQueueEntry(context.Background(), "Q1")
	if err != nil || !e.Held || e.From != "a@example.org" {
		t.Fatalf("entry after migration: %+v %v", e, err)
	}
}

// A database at version 2 (before SCRAM credentials) keeps its accounts and
// their password hashes; the accounts have no SCRAM credential until the
// password is set again.
func TestMigrateFromVersion2(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.CreateAccount(ctx, "pp", "old-hash"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "posthorn.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER TABLE accounts DROP COLUMN scram_sha256", "ALTER TABLE messages DROP COLUMN pop3_uidl", "PRAGMA user_version = 2"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()

	s = open(t, dir)
	a, err := s.GetAccount(ctx, "pp")
	if err != nil || a.PasswordHash != "old-hash" || a.SCRAMSHA256 != "" {
		t.Fatalf("account after migration: %+v %v", a, err)
	}
	if err := s.SetPassword(ctx, "pp", "new-hash", "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"); err != nil {
		t.Fatal(err)
	}
	if a, _ = s.GetAccount(ctx, "pp"); a.SCRAMSHA256 != "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5" {
		t.Errorf("credential not kept: %q", a.SCRAMSHA256)
	}
}

// The database files are private to their owner, whatever the umask.
func TestDatabaseFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.CreateAccount(context.Background(), "pp", "x"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"posthorn.db", "posthorn.db-wal", "posthorn.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v", name, fi.Mode().Perm())
		}
	}
}
