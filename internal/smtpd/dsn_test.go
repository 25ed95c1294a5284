package smtpd_test

import (
	"context"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/store"
)

// queuedID returns the queue ID from a "250 2.0.0 OK: queued as ID" reply.
func queuedID(t *testing.T, r reply) string {
	t.Helper()
	_, id, ok := strings.Cut(r.text(), "queued as ")
	if r.code != 250 || !ok || id == "" {
		t.Fatalf("end of data: %v, want 250 ... queued as ID", r)
	}
	return id
}

// queueEntry reads a queue entry back from the store.
func (h *harness) queueEntry(t testing.TB, id string) *store.QueueEntry {
	t.Helper()
	e, err := h.st.GetQueueEntry(context.Background(), id)
	if err != nil {
		t.Fatalf("queue entry %s: %v", id, err)
	}
	return e
}

// queueRecipient finds a recipient of a queue entry by address.
func queueRecipient(t *testing.T, e *store.QueueEntry, address string) store.QueueRecipientState {
	t.Helper()
	for _, r := range e.Recipients {
		if r.Address == address {
			return r
		}
	}
	t.Fatalf("queue entry %s has no recipient %s: %+v", e.ID, address, e.Recipients)
	return store.QueueRecipientState{}
}

// RFC 3461 sections 4.3 and 4.4: RET and ENVID on MAIL. Accepted values reach
// the deliverer's envelope and the queue entry of a forwarded recipient
// (fwd@example.org goes to someone@remote.example); refused ones get 501 5.5.4
// with a text naming the parameter, and no transaction starts.
func TestDSNMailParameters(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tc := range []struct {
		params    string
		code      int
		mention   string // the refusal's text names this
		envID     string
		ret       string
		wantNoDSN bool // accepted, with neither ENVID nor RET
	}{
		{params: "", code: 250, wantNoDSN: true},
		{params: "RET=FULL", code: 250, ret: "FULL"},
		{params: "RET=hdrs", code: 250, ret: "HDRS"},
		{params: "ret=Full", code: 250, ret: "FULL"},
		{params: "ENVID=QQ314159", code: 250, envID: "QQ314159"},
		{params: "ENVID=a+2Bb+3Dc+20d", code: 250, envID: "a+b=c d"},
		{params: "ENVID=+41+42+43", code: 250, envID: "ABC"}, // needlessly encoded is still xtext
		{params: "ENVID=" + strings.Repeat("x", 100), code: 250, envID: strings.Repeat("x", 100)},
		// The limit counts decoded characters: 300 octets on the wire are 100.
		{params: "ENVID=" + strings.Repeat("+2B", 100), code: 250, envID: strings.Repeat("+", 100)},
		{params: "RET=HDRS ENVID=<1@x> SIZE=100 BODY=8BITMIME", code: 250, ret: "HDRS", envID: "<1@x>"},
		{params: "RET=ALL", code: 501, mention: "RET"},
		{params: "RET=", code: 501, mention: "RET"},
		{params: "RET", code: 501, mention: "RET"},
		{params: "ENVID=", code: 501, mention: "ENVID"},
		{params: "ENVID=" + strings.Repeat("x", 101), code: 501, mention: "ENVID"},
		{params: "ENVID=" + strings.Repeat("+2B", 101), code: 501, mention: "ENVID"},
		{params: "ENVID=abc+2", code: 501, mention: "ENVID"},       // truncated hexchar
		{params: "ENVID=abc+", code: 501, mention: "ENVID"},        // "+" at the end
		{params: "ENVID=a+2bc", code: 501, mention: "ENVID"},       // hex must be upper-case
		{params: "ENVID=a+ZZc", code: 501, mention: "ENVID"},       // not hex
		{params: "ENVID=a+00b", code: 501, mention: "ENVID"},       // decodes to NUL
		{params: "ENVID=a+0Db", code: 501, mention: "ENVID"},       // decodes to CR
		{params: "ENVID=+C3+A9", code: 501, mention: "ENVID"},      // decodes to non-ASCII
		{params: "ENVID=caf\xc3\xa9", code: 501, mention: "ENVID"}, // raw non-ASCII is not xtext
		{params: "RET=FULL RET=HDRS", code: 501, mention: "RET"},
		{params: "RET=FULL ret=FULL", code: 501, mention: "RET"},
		{params: "ENVID=a ENVID=a", code: 501, mention: "ENVID"},
		{params: "SIZE=10 SIZE=10", code: 501, mention: "SIZE"},
	} {
		t.Run(tc.params, func(t *testing.T) {
			c := h.dial("127.0.0.2")
			c.t = t
			defer c.conn.Close()
			c.hello()
			r := c.cmd(strings.TrimSpace("MAIL FROM:<sender@remote.example> " + tc.params))
			if r.code != tc.code {
				t.Fatalf("got %v, want %d", r, tc.code)
			}
			if tc.code != 250 {
				if r.enhanced() != "5.5.4" || !strings.Contains(r.text(), tc.mention) {
					t.Errorf("got %v, want 501 5.5.4 naming %s", r, tc.mention)
				}
				c.expect("RCPT TO:<fwd@example.org>", 503, "5.5.1") // no transaction
				return
			}
			c.expect("RCPT TO:<fwd@example.org>", 250, "2.1.5")
			id := queuedID(t, c.sendData(simpleMessage))
			env := h.envelope(t, id)
			if env.EnvID != tc.envID || env.Ret != tc.ret {
				t.Errorf("envelope ENVID %q RET %q, want %q %q", env.EnvID, env.Ret, tc.envID, tc.ret)
			}
			e := h.queueEntry(t, id)
			if e.EnvID != tc.envID || e.Ret != tc.ret {
				t.Errorf("queue entry ENVID %q RET %q, want %q %q", e.EnvID, e.Ret, tc.envID, tc.ret)
			}
			if tc.wantNoDSN && (e.EnvID != "" || e.Ret != "") {
				t.Errorf("DSN values made up: %+v", e)
			}
		})
	}
}

// RFC 3461 sections 4.1 and 4.2, RFC 6533 section 3: NOTIFY and ORCPT on RCPT.
func TestDSNRcptParameters(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tc := range []struct {
		name    string
		mail    string // MAIL parameters
		params  string // RCPT parameters
		code    int
		mention string
		orcpt   string
		notify  string
	}{
		{name: "none", code: 250},
		{name: "never", params: "NOTIFY=NEVER", code: 250, notify: "NEVER"},
		{name: "never lower-case", params: "NOTIFY=never", code: 250, notify: "NEVER"},
		{name: "list", params: "NOTIFY=success,Failure", code: 250, notify: "SUCCESS,FAILURE"},
		{name: "list order kept", params: "NOTIFY=DELAY,FAILURE,SUCCESS", code: 250, notify: "DELAY,FAILURE,SUCCESS"},
		{name: "repeat dropped", params: "NOTIFY=FAILURE,DELAY,FAILURE", code: 250, notify: "FAILURE,DELAY"},
		{name: "never combined", params: "NOTIFY=NEVER,SUCCESS", code: 501, mention: "NEVER"},
		{name: "never twice", params: "NOTIFY=NEVER,NEVER", code: 501, mention: "NEVER"},
		{name: "unknown value", params: "NOTIFY=SOMETIMES", code: 501, mention: "NOTIFY"},
		{name: "empty", params: "NOTIFY=", code: 501, mention: "NOTIFY"},
		{name: "no value", params: "NOTIFY", code: 501, mention: "NOTIFY"},
		{name: "empty element", params: "NOTIFY=SUCCESS,,DELAY", code: 501, mention: "NOTIFY"},
		{name: "trailing comma", params: "NOTIFY=SUCCESS,", code: 501, mention: "NOTIFY"},
		{name: "notify twice", params: "NOTIFY=FAILURE NOTIFY=DELAY", code: 501, mention: "NOTIFY"},

		{name: "orcpt", params: "ORCPT=rfc822;someone@remote.example", code: 250, orcpt: "rfc822;someone@remote.example"},
		{name: "orcpt type case", params: "ORCPT=RFC822;Fwd@Example.ORG", code: 250, orcpt: "rfc822;Fwd@Example.ORG"},
		{name: "orcpt decoded", params: "ORCPT=rfc822;fwd+2Btag@example.org", code: 250, orcpt: "rfc822;fwd+tag@example.org"},
		{name: "orcpt quoted space", params: `ORCPT=rfc822;"a+20b"@example.org`, code: 250, orcpt: `rfc822;"a b"@example.org`},
		{name: "orcpt postmaster", params: "ORCPT=rfc822;postmaster", code: 250, orcpt: "rfc822;postmaster"},
		{name: "orcpt with notify", params: "NOTIFY=FAILURE ORCPT=rfc822;fwd@example.org", code: 250,
			orcpt: "rfc822;fwd@example.org", notify: "FAILURE"},
		{name: "orcpt no type", params: "ORCPT=fwd@example.org", code: 501, mention: "ORCPT"},
		{name: "orcpt empty type", params: "ORCPT=;fwd@example.org", code: 501, mention: "ORCPT"},
		{name: "orcpt empty address", params: "ORCPT=rfc822;", code: 501, mention: "ORCPT"},
		{name: "orcpt unknown type", params: "ORCPT=x400;c=us", code: 501, mention: "ORCPT"},
		{name: "orcpt not an address", params: "ORCPT=rfc822;fwd@@example.org", code: 501, mention: "ORCPT"},
		{name: "orcpt unqualified", params: "ORCPT=rfc822;fwd", code: 501, mention: "ORCPT"},
		{name: "orcpt source route", params: "ORCPT=rfc822;@a.example:fwd@example.org", code: 501, mention: "ORCPT"},
		{name: "orcpt bad xtext", params: "ORCPT=rfc822;fwd+2@example.org", code: 501, mention: "ORCPT"},
		{name: "orcpt lower-case hex", params: "ORCPT=rfc822;fwd+2btag@example.org", code: 501, mention: "ORCPT"},
		{name: "orcpt control", params: "ORCPT=rfc822;fwd+0A@example.org", code: 501, mention: "ORCPT"},
		{name: "orcpt non-ASCII rfc822", params: "ORCPT=rfc822;j+C3+B6rg@example.org", code: 501, mention: "ORCPT"},
		// RFC 3461 section 4.2: the whole parameter up to 500 characters. These
		// encode valid addresses; the first is exactly 500 long, the second 503.
		{name: "orcpt 500", params: "ORCPT=rfc822;" + strings.Repeat("+61", 60) + "@" + strings.Repeat("+61", 50) + "." + strings.Repeat("+62", 49) + ".example",
			code: 250, orcpt: "rfc822;" + strings.Repeat("a", 60) + "@" + strings.Repeat("a", 50) + "." + strings.Repeat("b", 49) + ".example"},
		{name: "orcpt too long", params: "ORCPT=rfc822;" + strings.Repeat("+61", 60) + "@" + strings.Repeat("+61", 50) + "." + strings.Repeat("+62", 50) + ".example",
			code: 501, mention: "ORCPT"},
		{name: "orcpt twice", params: "ORCPT=rfc822;a@example.org ORCPT=rfc822;a@example.org", code: 501, mention: "ORCPT"},

		// RFC 6533: the 7-bit form in any transaction, raw UTF-8 too since we
		// advertise SMTPUTF8.
		{name: "utf-8 xtext", params: `ORCPT=utf-8;j\x{F6}rg@b\x{FC}cher.example`, code: 250, orcpt: "utf-8;jörg@bücher.example"},
		{name: "utf-8 unitext", mail: "SMTPUTF8", params: "ORCPT=UTF-8;jörg@bücher.example", code: 250, orcpt: "utf-8;jörg@bücher.example"},
		{name: "utf-8 unitext, plain MAIL", params: "ORCPT=utf-8;jörg@bücher.example", code: 250, orcpt: "utf-8;jörg@bücher.example"},
		{name: "utf-8 specials", params: `ORCPT=utf-8;a\x{2B}b\x{3D}c@example.org`, code: 250, orcpt: "utf-8;a+b=c@example.org"},
		{name: "utf-8 astral", mail: "SMTPUTF8", params: `ORCPT=utf-8;\x{1F4EF}@example.org`, code: 250, orcpt: "utf-8;\U0001F4EF@example.org"},
		{name: "utf-8 leading zeros", params: `ORCPT=utf-8;j\x{00F6}rg@example.org`, code: 501, mention: "ORCPT"},
		{name: "utf-8 needless escape", params: `ORCPT=utf-8;\x{61}@example.org`, code: 501, mention: "ORCPT"},
		{name: "utf-8 surrogate", params: `ORCPT=utf-8;\x{D800}@example.org`, code: 501, mention: "ORCPT"},
		{name: "utf-8 beyond unicode", params: `ORCPT=utf-8;\x{110000}@example.org`, code: 501, mention: "ORCPT"},
		{name: "utf-8 unterminated", params: `ORCPT=utf-8;j\x{F6rg@example.org`, code: 501, mention: "ORCPT"},
		{name: "utf-8 bare backslash", params: `ORCPT=utf-8;j\rg@example.org`, code: 501, mention: "ORCPT"},
		{name: "utf-8 plus", params: "ORCPT=utf-8;j+C3+B6rg@example.org", code: 501, mention: "ORCPT"},
		{name: "utf-8 invalid UTF-8", mail: "SMTPUTF8", params: "ORCPT=utf-8;j\xf6rg@example.org", code: 501, mention: "ORCPT"},
		{name: "utf-8 not an address", params: `ORCPT=utf-8;j\x{F6}rg`, code: 501, mention: "ORCPT"},

		{name: "unknown parameter", params: "FOO=BAR", code: 555},
		{name: "unknown with notify", params: "NOTIFY=NEVER FOO=BAR", code: 555},
		{name: "first bad one named", params: "NOTIFY=SOMETIMES FOO=BAR", code: 501, mention: "NOTIFY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial("127.0.0.2")
			c.t = t
			defer c.conn.Close()
			c.hello()
			c.expect(strings.TrimSpace("MAIL FROM:<sender@remote.example> "+tc.mail), 250, "")
			r := c.cmd(strings.TrimSpace("RCPT TO:<fwd@example.org> " + tc.params))
			if r.code != tc.code || r.enhanced() != "5.5.4" && r.code != 250 {
				t.Fatalf("got %v, want %d", r, tc.code)
			}
			if tc.code != 250 {
				if !strings.Contains(r.text(), tc.mention) {
					t.Errorf("%v does not name %s", r, tc.mention)
				}
				c.expect("DATA", 554, "5.5.1") // the recipient was not taken
				return
			}
			id := queuedID(t, c.sendData(simpleMessage))
			env := h.envelope(t, id)
			if len(env.Recipients) != 1 || env.Recipients[0].ORCPT != tc.orcpt || env.Recipients[0].Notify != tc.notify {
				t.Errorf("envelope recipients %+v, want ORCPT %q NOTIFY %q", env.Recipients, tc.orcpt, tc.notify)
			}
			qr := queueRecipient(t, h.queueEntry(t, id), "someone@remote.example")
			// fwd@ is an alias: without an ORCPT from the client, the queue
			// names the address it was sent to (RFC 3461 section 4.2 allows it).
			wantORCPT := tc.orcpt
			if wantORCPT == "" {
				wantORCPT = "rfc822;fwd@example.org"
			}
			if qr.ORCPT != wantORCPT || qr.Notify != tc.notify {
				t.Errorf("queue recipient ORCPT %q NOTIFY %q, want %q %q", qr.ORCPT, qr.Notify, wantORCPT, tc.notify)
			}
		})
	}
}

// Each recipient keeps its own values; one without gets none made up; a local
// recipient's values reach the envelope though nothing is queued for it.
func TestDSNPerRecipient(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("") // 127.0.0.1 may relay
	c.hello()
	c.expect("MAIL FROM:<sender@example.org> RET=HDRS ENVID=batch+2B7", 250, "")
	c.expect("RCPT TO:<a@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;list-a@example.org", 250, "")
	c.expect("RCPT TO:<b@remote.example>", 250, "")
	c.expect("RCPT TO:<c@remote.example> NOTIFY=NEVER", 250, "")
	c.expect("RCPT TO:<pp@example.org> NOTIFY=DELAY ORCPT=rfc822;pp@example.org", 250, "")
	id := queuedID(t, c.sendData(simpleMessage))

	e := h.queueEntry(t, id)
	if e.EnvID != "batch+7" || e.Ret != "HDRS" || len(e.Recipients) != 3 {
		t.Fatalf("queue entry %+v", e)
	}
	for _, want := range []struct{ addr, orcpt, notify string }{
		{"a@remote.example", "rfc822;list-a@example.org", "SUCCESS,FAILURE"},
		{"b@remote.example", "", ""},
		{"c@remote.example", "", "NEVER"},
	} {
		qr := queueRecipient(t, e, want.addr)
		if qr.ORCPT != want.orcpt || qr.Notify != want.notify {
			t.Errorf("%s: ORCPT %q NOTIFY %q, want %q %q", want.addr, qr.ORCPT, qr.Notify, want.orcpt, want.notify)
		}
	}
	env := h.envelope(t, id)
	if len(env.Recipients) != 4 {
		t.Fatalf("envelope recipients %+v", env.Recipients)
	}
	if r := env.Recipients[3]; r.Address.String() != "pp@example.org" || r.ORCPT != "rfc822;pp@example.org" || r.Notify != "DELAY" {
		t.Errorf("local recipient in the envelope: %+v", r)
	}
	if len(h.messages("pp")) != 1 {
		t.Error("the local copy is missing")
	}
	// The next transaction on the connection starts without them.
	c.expect("MAIL FROM:<sender@example.org>", 250, "")
	c.expect("RCPT TO:<a@remote.example>", 250, "")
	id = queuedID(t, c.sendData(simpleMessage))
	if e := h.queueEntry(t, id); e.EnvID != "" || e.Ret != "" || e.Recipients[0].ORCPT != "" || e.Recipients[0].Notify != "" {
		t.Errorf("values carried into the next transaction: %+v", e)
	}
}

// Parameters belong to ESMTP: after HELO they are not recognised (RFC 5321
// section 4.1.1.11), DSN's included.
func TestDSNNeedsEHLO(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial("")
	c.read()
	c.expect("HELO client.example", 250, "")
	c.expect("MAIL FROM:<a@remote.example> RET=FULL", 555, "5.5.4")
	c.expect("MAIL FROM:<a@remote.example> ENVID=x", 555, "5.5.4")
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org> NOTIFY=NEVER", 555, "5.5.4")
	c.expect("RCPT TO:<pp@example.org> ORCPT=rfc822;pp@example.org", 555, "5.5.4")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	// And a HELO after an EHLO takes the right away again.
	c.expect("EHLO client.example", 250, "")
	c.expect("MAIL FROM:<a@remote.example> RET=FULL", 250, "")
	c.expect("HELO client.example", 250, "")
	c.expect("MAIL FROM:<a@remote.example> RET=FULL", 555, "5.5.4")
}

// go-smtp, the client the project relays with, sends the DSN options it is
// given; they arrive as sent. With SMTPUTF8 advertised it writes a utf-8
// ORCPT raw (utf-8-addr-unitext) whether or not the transaction is SMTPUTF8.
func TestDSNFromGoSMTPClient(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tc := range []struct {
		name string
		mail gosmtp.MailOptions
	}{
		{"plain", gosmtp.MailOptions{Return: gosmtp.DSNReturnHeaders, EnvelopeID: "QQ+314=159 x"}},
		{"SMTPUTF8", gosmtp.MailOptions{UTF8: true, Return: gosmtp.DSNReturnFull, EnvelopeID: "utf8-run"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := gosmtp.Dial(h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if ok, _ := c.Extension("DSN"); !ok {
				t.Fatal("go-smtp does not see DSN in our EHLO")
			}
			if err := c.Mail("sender@example.org", &tc.mail); err != nil {
				t.Fatal(err)
			}
			rcpts := []struct {
				to   string
				opts gosmtp.RcptOptions
			}{
				{"a@remote.example", gosmtp.RcptOptions{
					Notify:                []gosmtp.DSNNotify{gosmtp.DSNNotifyFailure, gosmtp.DSNNotifyDelayed},
					OriginalRecipientType: gosmtp.DSNAddressTypeRFC822, OriginalRecipient: "Some+One=x@Example.ORG"}},
				{"b@remote.example", gosmtp.RcptOptions{
					Notify:                []gosmtp.DSNNotify{gosmtp.DSNNotifyNever},
					OriginalRecipientType: gosmtp.DSNAddressTypeUTF8, OriginalRecipient: "jörg+tag@bücher.example"}},
				{"c@remote.example", gosmtp.RcptOptions{}},
			}
			for _, r := range rcpts {
				if err := c.Rcpt(r.to, &r.opts); err != nil {
					t.Fatalf("RCPT %s: %v", r.to, err)
				}
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(simpleMessage)); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			c.Quit()

			queue, err := h.st.ListQueue(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var e *store.QueueEntry
			for _, q := range queue {
				if q.EnvID == tc.mail.EnvelopeID {
					e = &q
				}
			}
			if e == nil {
				t.Fatalf("no queue entry with ENVID %q: %+v", tc.mail.EnvelopeID, queue)
			}
			if e.Ret != string(tc.mail.Return) {
				t.Errorf("RET %q, want %q", e.Ret, tc.mail.Return)
			}
			for _, want := range []struct{ addr, orcpt, notify string }{
				{"a@remote.example", "rfc822;Some+One=x@Example.ORG", "FAILURE,DELAY"},
				{"b@remote.example", "utf-8;jörg+tag@bücher.example", "NEVER"},
				{"c@remote.example", "", ""},
			} {
				qr := queueRecipient(t, e, want.addr)
				if qr.ORCPT != want.orcpt || qr.Notify != want.notify {
					t.Errorf("%s: ORCPT %q NOTIFY %q, want %q %q", want.addr, qr.ORCPT, qr.Notify, want.orcpt, want.notify)
				}
			}
			env := h.envelope(t, e.ID)
			if env.EnvID != tc.mail.EnvelopeID || env.Ret != string(tc.mail.Return) {
				t.Errorf("envelope ENVID %q RET %q", env.EnvID, env.Ret)
			}
		})
	}
}
