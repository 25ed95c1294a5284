package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

// user add and user passwd store the password's hash and its SCRAM-SHA-256
// credential together; the old password stops working on every mechanism.
func TestUserPasswordCredentials(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "posthorn.toml")
	if err := os.WriteFile(cfg, []byte("hostname = \"mx.example.org\"\ndata_dir = \"data\"\nmaps_dir = \".\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	user := func(stdin string, args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := runUser(append(args, "--password-stdin", "--config", cfg), strings.NewReader(stdin), &out, &errOut); err != nil {
			t.Fatalf("user %v: %v %s", args, err, errOut.String())
		}
	}
	type creds struct{ hash, scram string }
	read := func() creds {
		t.Helper()
		st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		a, err := st.GetAccount(context.Background(), "pp")
		if err != nil {
			t.Fatal(err)
		}
		return creds{a.PasswordHash, a.SCRAMSHA256}
	}
	login := func(password string) error {
		st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		a := auth.New(st, auth.Options{Logger: slog.New(slog.DiscardHandler)})
		_, err = a.CheckPassword(context.Background(), auth.Client{Addr: netip.MustParseAddr("127.0.0.1")}, "pp", password)
		return err
	}

	user("first secret\n", "add", "pp")
	c1 := read()
	if !strings.HasPrefix(c1.hash, "$argon2id$") || !strings.HasPrefix(c1.scram, "SCRAM-SHA-256$16384:") {
		t.Fatalf("after user add: %.12q %.24q", c1.hash, c1.scram)
	}
	if err := login("first secret"); err != nil {
		t.Fatal(err)
	}
	user("second secret\n", "passwd", "pp")
	c2 := read()
	if c2.hash == c1.hash || c2.scram == c1.scram || !strings.HasPrefix(c2.scram, "SCRAM-SHA-256$") {
		t.Errorf("user passwd did not replace both: %v", c2 == c1)
	}
	if err := login("first secret"); !errors.Is(err, auth.ErrMismatch) {
		t.Errorf("old password after passwd: %v", err)
	}
	if err := login("second secret"); err != nil {
		t.Errorf("new password: %v", err)
	}
	// An empty password is refused with the usual message.
	err := runUser([]string{"passwd", "pp", "--password-stdin", "--config", cfg}, strings.NewReader("\n"), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot be used") {
		t.Errorf("empty password: %v", err)
	}
}

// user quota sets the account's quota (and "none" removes it); a bad size
// is refused with the forms that work.
func TestUserQuota(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "posthorn.toml")
	if err := os.WriteFile(cfg, []byte("hostname = \"mx.example.org\"\ndata_dir = \"data\"\nmaps_dir = \".\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runUser(append(args, "--password-stdin", "--config", cfg), strings.NewReader("secret\n"), &out, io.Discard)
		return out.String(), err
	}
	quota := func() int64 {
		t.Helper()
		st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		a, err := st.GetAccount(context.Background(), "pp")
		if err != nil {
			t.Fatal(err)
		}
		return a.QuotaBytes
	}
	if _, err := run("add", "pp"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("quota", "pp", "2MiB"); err != nil {
		t.Fatal(err)
	}
	if got := quota(); got != 2<<20 {
		t.Errorf("quota %d, want %d", got, 2<<20)
	}
	if _, err := run("quota", "pp", "none"); err != nil {
		t.Fatal(err)
	}
	if got := quota(); got != 0 {
		t.Errorf("quota %d after none", got)
	}
	if _, err := run("quota", "pp", "lots"); err == nil || !strings.Contains(err.Error(), "size") {
		t.Errorf("bad size: %v", err)
	}
	if _, err := run("quota", "nobody", "1MB"); err == nil || !strings.Contains(err.Error(), "no account") {
		t.Errorf("unknown account: %v", err)
	}
}
