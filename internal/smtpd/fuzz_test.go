package smtpd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

type fuzzAccounts struct{}

func (fuzzAccounts) AccountExists(context.Context, string) (bool, error) { return true, nil }

// FuzzSession feeds arbitrary client bytes to a session: whatever comes, the
// server must answer and end without panicking or hanging.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<pp@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<pp@example.org>\r\nBDAT 5 LAST\r\nabcde",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<pp@example.org>\r\nDATA\r\nx\n.\r\nMAIL FROM:<c@d>\r\n",
		"HELO\r\nMAIL FROM:<\"a>b\"@c> SIZE=x\r\nRCPT TO:<@a,@b:c@d>\r\nBDAT x\r\n",
		"\x00\xff\r\n\r\n" + string(make([]byte, 5000)) + "\r\nRSET\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example> RET=HDRS ENVID=a+2Bb\r\nRCPT TO:<pp@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;pp+40example.org\r\nDATA\r\nx\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example> ENVID=+ RET=FULL RET=FULL\r\nRCPT TO:<pp@example.org> ORCPT=utf-8;\\x{D800} NOTIFY=NEVER,NEVER\r\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "local-host-names"), []byte("example.org\n"), 0o644)
	w, err := maps.NewWatcher(dir, time.Hour, nil)
	if err != nil {
		f.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	st.CreateAccount(context.Background(), "pp", "x")
	srv := &Server{
		Config:    Config{Hostname: "mx.example.org", MaxMessageBytes: 1 << 16, CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second, SpoolDir: dir},
		Tables:    w.Current,
		Router:    route.New(route.Config{Hostname: "mx.example.org", Tables: w.Current, Accounts: fuzzAccounts{}}),
		Deliverer: &deliver.Deliverer{Store: st},
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	srv.init()
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		c := newConn(srv, server, netip.MustParseAddr("192.0.2.7"))
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		go io.Copy(io.Discard, client)
		// A server that stops reading (QUIT, 421) leaves the rest unwritten.
		client.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		client.Write(input)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the session did not end after the client went away")
		}
	})
}
