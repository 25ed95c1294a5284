package pop3d

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/store"
)

// A message imported with the unique-id of the old POP3 server is listed
// with it (UIDL and UIDL n); messages without one, or with one RFC 1939 does
// not allow, get posthorn's own.
func TestUIDLImported(t *testing.T) {
	ts := newTestServer(t, serverOptions{}, "pp")
	mb := ts.mailbox("pp")
	im := ts.st.(store.Importer)
	body := func(s string) store.Body { return bytes.NewReader([]byte(msgText(s, "x\r\n"))) }
	if _, err := im.AppendBatch(ctx, mb.ID, []store.ImportMessage{
		{Body: body("1"), POP3UIDL: "4f3c2b1a8d7e6f50"},
		{Body: body("2")},
		{Body: body("3"), POP3UIDL: "has space"},
	}); err != nil {
		t.Fatal(err)
	}
	uids := ts.inbox("pp")
	own := func(i int) string {
		return strconv.FormatUint(uint64(mb.UIDValidity), 10) + "." + strconv.FormatUint(uint64(uids[i]), 10)
	}
	c := ts.dial(nil)
	c.login("pp", "pw-pp")
	if got := c.cmd("UIDL"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("UIDL: %q", got)
	}
	want := "1 4f3c2b1a8d7e6f50\r\n2 " + own(1) + "\r\n3 " + own(2) + "\r\n"
	if got := c.multi(); got != want {
		t.Errorf("UIDL listing %q, want %q", got, want)
	}
	if got := c.cmd("UIDL 1"); got != "+OK 1 4f3c2b1a8d7e6f50" {
		t.Errorf("UIDL 1: %q", got)
	}
	c.cmd("DELE 1")
	c.cmd("UIDL")
	if got := c.multi(); strings.Contains(got, "4f3c2b1a8d7e6f50") {
		t.Errorf("a deleted message still listed: %q", got)
	}
	c.cmd("QUIT")
}
