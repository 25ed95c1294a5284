package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/storetest"
)

// A database at version 3 (before pop3_uidl) keeps its messages, which have
// no POP3UIDL; imported ones after the migration keep theirs.
func TestMigrateFromVersion3(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := s.CreateAccount(ctx, "pp", "h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, &store.Delivery{Body: storetest.Msg("old"), Local: []store.LocalTarget{{Account: "pp"}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "posthorn.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER TABLE messages DROP COLUMN pop3_uidl", "PRAGMA user_version = 3"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()

	s = open(t, dir)
	mb, err := s.GetMailbox(ctx, a.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendBatch(ctx, mb.ID, []store.ImportMessage{{Body: storetest.Msg("new"), POP3UIDL: "abcdef0123456789"}}); err != nil {
		t.Fatal(err)
	}
	l, err := s.ListMessages(ctx, mb.ID, 0, false)
	if err != nil || len(l) != 2 || l[0].POP3UIDL != "" || l[1].POP3UIDL != "abcdef0123456789" {
		t.Fatalf("after migration: %+v %v", l, err)
	}
	if probs, err := s.Check(ctx); err != nil || len(probs) > 0 {
		t.Errorf("check: %v %v", probs, err)
	}
}
