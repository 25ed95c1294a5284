package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

// routerFixture writes a Sendmail directory like the guide's router, a
// passwd/shadow pair and spools; it returns the directories.
func routerFixture(t *testing.T) (etc, spool, passwd, shadow string) {
	t.Helper()
	root := t.TempDir()
	etc, spool = filepath.Join(root, "etc-mail"), filepath.Join(root, "mail")
	os.MkdirAll(etc, 0o755)
	os.MkdirAll(spool, 0o755)
	files := map[string]string{
		"access":           "localhost RELAY\n192.168.69 RELAY\nspam.example DISCARD\nbogus.example FROBNICATE\n",
		"aliases":          "# the guide's\nroot:   pp\nwebmaster:      root\nwww:            webmaster\nmailer-daemon: postmaster\npostmaster: root\nnobodyhere\n",
		"local-host-names": "router.example.net\n",
		"virtusertable":    "pp@router.example.net pp\nshop@router.example.net pp\nspam@router.example.net error:nouser No such user here\nmary@router.example.net mary\n",
		"router.example.net.mc": "divert(0)\nVERSIONID(`router')\nOSTYPE(freebsd6)\ndnl define(`SMART_HOST', `your.isp.mail.server')\n" +
			"define(`SMART_HOST', `[smtp.isp.example]')\ndefine(`MAIL_HUB', `hub.example.net')\n" +
			"DAEMON_OPTIONS(`Name=IPv4, Family=inet')\nDAEMON_OPTIONS(`Name=IPv6, Family=inet6, Modifiers=O')\nDAEMON_OPTIONS(`Port=587, Name=MSA, M=E')\nMAILER(local)\nMAILER(smtp)\n",
		"freebsd.mc": "dnl the template\n",
		"access.db":  "binary",
	}
	for n, s := range files {
		os.WriteFile(filepath.Join(etc, n), []byte(s), 0o644)
	}
	// Hashes of "pp-old" and "mary-old" by openssl passwd -6 and mkpasswd.
	passwd = filepath.Join(root, "passwd")
	shadow = filepath.Join(root, "shadow")
	os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\npp:x:1001:1001:PP:/home/pp:/bin/sh\nmary:x:1002:1002::/home/mary:/bin/sh\nbin:x:2:2::/:/usr/sbin/nologin\n"), 0o644)
	os.WriteFile(shadow, []byte("root:*:1::::::\n"+
		"pp:$6$routersalt$moiPI9xo9k3Ycp9DclhRIgqUSZNlccnFCKKd1omcLlxm0JLkwmuuniEh2NwnwB9DWDgBEZkWUbCRIl8he/.DJ0:19000:0:99999:7:::\n"+
		"mary:$y$j9T$5UsA5jUGAUHHgLF/ZsQjH/$jF1dZoljmUW7rsI5c7.6UjdnQtK.UDlz2CnqLatW4i4:19000:0:99999:7:::\n"), 0o600)
	os.WriteFile(filepath.Join(spool, "pp"), []byte(
		"From alice@example.org Tue Mar  4 05:06:07 2009\nReceived: from x by router.example.net; Tue, 4 Mar 2009 05:06:07 +0100\nMessage-ID: <1@example.org>\nSubject: read\nStatus: RO\n\nHello\n>From the quoted line\n\n"+
			"From bob@example.org Wed Mar  5 10:00:00 2009\nReceived: from y by router.example.net; Wed, 5 Mar 2009 10:00:00 +0000\nSubject: unread\n\nNew\n"), 0o600)
	os.WriteFile(filepath.Join(spool, "mary"), []byte("From c@example.org Thu Mar  6 00:00:01 2009\nSubject: hi mary\n\nx\n"), 0o600)
	return
}

func TestImportSendmail(t *testing.T) {
	if out, err := exec.Command("openssl", "passwd", "-6", "-salt", "routersalt", "pp-old").Output(); err == nil {
		if !strings.Contains(string(out), "moiPI9xo9k3Ycp9D") {
			t.Fatalf("the fixture's hash is not openssl's: %s", out)
		}
	}
	etc, spool, passwd, shadow := routerFixture(t)
	cfgPath := filepath.Join(t.TempDir(), "posthorn", "posthorn.toml")
	args := []string{"posthorn", "import", "sendmail", "--etc", etc, "--spool", spool, "--passwd", passwd, "--shadow", shadow, "--config", cfgPath}

	var out, errb bytes.Buffer
	if code := run(append(args, "--dry-run"), nil, &out, &errb); code != 0 {
		t.Fatalf("dry run: %d %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Dir(cfgPath)); err == nil {
		t.Fatal("the dry run wrote files")
	}
	if !strings.Contains(out.String(), "dry run: summary: 2 accounts (2 new), 3 messages") {
		t.Errorf("dry run output:\n%s", out.String())
	}

	out.Reset()
	if code := run(args, nil, &out, &errb); code != 0 {
		t.Fatalf("import: %d %s\n%s", code, errb.String(), out.String())
	}
	o := out.String()
	for _, want := range []string{
		"access:4: ", "aliases:7: ", // every line not carried over, with file and line
		"MAIL_HUB hub.example.net not carried over",
		"summary: 2 accounts (2 new), 3 messages",
		"2 table lines not carried over",
	} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP.SmartHost != "[smtp.isp.example]" || strings.Join(cfg.SMTP.Listen, " ") != "0.0.0.0:25 [::]:25" ||
		strings.Join(cfg.SMTP.SubmissionListen, " ") != "0.0.0.0:587" || cfg.Hostname != "router.example.net" {
		t.Errorf("config: smart_host %q listen %v submission %v hostname %q", cfg.SMTP.SmartHost, cfg.SMTP.Listen, cfg.SMTP.SubmissionListen, cfg.Hostname)
	}
	// Routing answers as Sendmail's tables did.
	tables, err := maps.Load(cfg.MapsDir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tables.Aliases.Lookup("www"); len(got) != 1 || got[0] != "webmaster" {
		t.Errorf("www -> %v", got)
	}
	if rhs, _, ok := tables.Virtusertable.Lookup(addr.Address{Local: "shop", Domain: "router.example.net"}); !ok || rhs != "pp" {
		t.Errorf("shop@ -> %q %v", rhs, ok)
	}
	if rhs, _, _ := tables.Virtusertable.Lookup(addr.Address{Local: "spam", Domain: "router.example.net"}); !strings.HasPrefix(rhs, "error:nouser") {
		t.Errorf("spam@ -> %q", rhs)
	}
	if !tables.LocalHostNames.Has("router.example.net") || tables.Access.Len() != 3 {
		t.Errorf("local-host-names or access not carried over (access has %d)", tables.Access.Len())
	}

	st, err := sqlite.Open(cfg.DataDir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pp, err := st.GetAccount(ctx, "pp")
	if err != nil {
		t.Fatal(err)
	}
	// The old password logs in, and is then stored as argon2id.
	a := auth.New(st, auth.Options{AllowPlaintext: true})
	if _, err := a.CheckPassword(ctx, auth.Client{Addr: netip.MustParseAddr("127.0.0.1"), Service: "pop3"}, "pp", "pp-old"); err != nil {
		t.Errorf("pp with the old password: %v", err)
	}
	if _, err := a.CheckPassword(ctx, auth.Client{Addr: netip.MustParseAddr("127.0.0.1"), Service: "pop3"}, "pp", "wrong"); err == nil {
		t.Error("pp with a wrong password logged in")
	}
	if got, _ := st.GetAccount(ctx, "pp"); !strings.HasPrefix(got.PasswordHash, "$argon2id$") {
		t.Errorf("hash after the login: %.12s", got.PasswordHash)
	}
	mary, _ := st.GetAccount(ctx, "mary")
	if mary == nil || !strings.HasPrefix(mary.PasswordHash, "$y$") {
		t.Errorf("mary's yescrypt hash not carried over: %+v", mary)
	}
	if !auth.CanVerify(mary.PasswordHash) && !strings.Contains(o, "user mary: this posthorn cannot verify") {
		t.Errorf("the unverifiable hash is not reported:\n%s", o)
	}
	inbox, _ := st.GetMailbox(ctx, pp.ID, store.Inbox)
	msgs, _ := st.ListMessages(ctx, inbox.ID, 0, false)
	if len(msgs) != 2 || !msgs[0].HasFlag(store.FlagSeen) || msgs[1].HasFlag(store.FlagSeen) || len(msgs[0].POP3UIDL) != 16 {
		t.Errorf("pp's INBOX: %+v", msgs)
	}
	st.Close()

	// A second run duplicates nothing.
	out.Reset()
	if code := run(args, nil, &out, &errb); code != 0 {
		t.Fatalf("second import: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "summary: 2 accounts (0 new), 0 messages (0 B), 3 already there") {
		t.Errorf("second run:\n%s", out.String())
	}

	// Export, then import into another account: the same messages.
	dir := t.TempDir()
	if code := run([]string{"posthorn", "export", "mbox", "pp", dir, "--config", cfgPath}, nil, &out, &errb); code != 0 {
		t.Fatalf("export: %s", errb.String())
	}
	st, _ = sqlite.Open(cfg.DataDir, sqlite.Options{})
	st.CreateAccount(ctx, "copy", "!")
	st.Close()
	if code := run([]string{"posthorn", "import", "mbox", "copy", filepath.Join(dir, "INBOX"), "--config", cfgPath}, nil, &out, &errb); code != 0 {
		t.Fatalf("import mbox: %s", errb.String())
	}
	st, _ = sqlite.Open(cfg.DataDir, sqlite.Options{})
	defer st.Close()
	cp, _ := st.GetAccount(ctx, "copy")
	cb, _ := st.GetMailbox(ctx, cp.ID, store.Inbox)
	copies, _ := st.ListMessages(ctx, cb.ID, 0, false)
	if len(copies) != len(msgs) {
		t.Fatalf("%d messages came back, want %d", len(copies), len(msgs))
	}
	for i := range msgs {
		a, b := readMsg(t, st, inbox.ID, msgs[i].UID), readMsg(t, st, cb.ID, copies[i].UID)
		if a != b || strings.Join(msgs[i].Flags, " ") != strings.Join(copies[i].Flags, " ") || !msgs[i].InternalDate.Equal(copies[i].InternalDate) {
			t.Errorf("message %d differs after export and import:\n%q %v\n%q %v", i, a, msgs[i].Flags, b, copies[i].Flags)
		}
	}
}

func readMsg(t *testing.T, st store.Store, mb int64, uid uint32) string {
	r, err := st.OpenMessage(context.Background(), mb, uid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b bytes.Buffer
	b.ReadFrom(r)
	return b.String()
}
