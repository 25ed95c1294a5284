package smtpd

import (
	"bytes"
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
		var replies bytes.Buffer
		read := make(chan struct{})
		go func() {
			defer close(read)
			io.Copy(&replies, io.LimitReader(client, 1<<20))
		}()
		// A server that stops reading (QUIT, 421) leaves the rest unwritten.
		client.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		client.Write(input)
		// End a DATA in progress and leave, so that the last replies come.
		client.Write([]byte("\r\n.\r\nQUIT\r\n"))
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
		}
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the session did not end after the client went away")
		}
		<-read
		// Every complete reply line is well-formed (RFC 5321 section
		// 4.2): a code 2xx-5xx, a space or hyphen, at most 512 octets
		// with its CRLF, no CR or LF inside.
		out := replies.Bytes()
		for len(out) > 0 {
			i := bytes.Index(out, []byte("\r\n"))
			if i < 0 {
				break // cut off by the close
			}
			line := out[:i]
			out = out[i+2:]
			if len(line) < 3 || len(line)+2 > 512 || line[0] < '2' || line[0] > '5' ||
				line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
				len(line) > 3 && line[3] != ' ' && line[3] != '-' || bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("malformed reply line %q to input %q", line, input)
			}
		}
	})
}
