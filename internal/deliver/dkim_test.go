package deliver

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
)

// txtResolver answers TXT queries from a map; everything else is not found.
type txtResolver map[string][]string

var errNotFound = &net.DNSError{Err: "no such host", IsNotFound: true}

func (r txtResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := r[strings.TrimSuffix(strings.ToLower(name), ".")]; ok {
		return v, nil
	}
	return nil, errNotFound
}
func (txtResolver) LookupPTR(context.Context, netip.Addr) ([]string, error) { return nil, errNotFound }
func (txtResolver) LookupIP(context.Context, string) ([]netip.Addr, error)  { return nil, errNotFound }
func (txtResolver) LookupMX(context.Context, string) ([]*net.MX, error)     { return nil, errNotFound }

var _ dnsutil.Resolver = txtResolver{}

// The bytes of the one copy the queue holds.
func queuedBody(t *testing.T, st store.Store) []byte {
	t.Helper()
	es, err := st.ListQueue(ctx)
	if err != nil || len(es) != 1 {
		t.Fatalf("queue: %d entries, %v", len(es), err)
	}
	r, err := st.OpenQueueMessage(ctx, es[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Mail marked Sign, from a domain with keys, leaves with an Ed25519 and an
// RSA signature that verify against the published records; the Return-Path
// stays first. Without Sign, or from a domain without keys, nothing is added.
func TestDeliverSigns(t *testing.T) {
	keys := t.TempDir()
	if err := mailauth.GenerateKeys(keys, "example.org", "s1"); err != nil {
		t.Fatal(err)
	}
	signer, err := mailauth.LoadSigner(keys, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := signer.Records()
	if err != nil {
		t.Fatal(err)
	}
	dns := txtResolver{}
	for _, r := range recs {
		dns[r.Name] = []string{r.Value}
	}
	const msg = "Return-Path: <pp@example.org>\r\nReceived: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n" +
		"From: P P <pp@mail.example.org>\r\nTo: x@remote.example\r\nSubject: hi\r\n\r\nhello\r\n"
	for _, tc := range []struct {
		name   string
		sign   bool
		msg    string
		signed bool
	}{
		{"signed (organisational domain's keys)", true, msg, true},
		{"not asked", false, msg, false},
		{"domain without keys", true, strings.Replace(msg, "mail.example.org", "other.example", 1), false},
		{"two From fields", true, strings.Replace(msg, "To:", "From: b@example.org\r\nTo:", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, st := setup(t)
			d.DKIM = &KeyRing{Dir: keys}
			from, _ := addr.ParsePath("pp@example.org", true)
			env := &Envelope{ID: "Q1", From: from, Sign: tc.sign, Recipients: []Recipient{
				{Targets: []route.Target{remote("x@remote.example"), account("bob")}}}}
			if _, err := d.Deliver(ctx, env, bytes.NewReader([]byte(tc.msg))); err != nil {
				t.Fatal(err)
			}
			got := queuedBody(t, st)
			if !bytes.HasPrefix(got, []byte("Return-Path: <pp@example.org>\r\n")) {
				t.Errorf("Return-Path no longer first:\n%s", got)
			}
			n := bytes.Count(got, []byte("DKIM-Signature:"))
			if !tc.signed {
				if !bytes.Equal(got, []byte(tc.msg)) {
					t.Errorf("changed:\n%s", got)
				}
				return
			}
			if n != 2 {
				t.Fatalf("%d signatures, want 2:\n%s", n, got)
			}
			if !bytes.HasSuffix(got, []byte(msg[len("Return-Path: <pp@example.org>\r\n"):])) {
				t.Errorf("message changed beyond the added fields:\n%s", got)
			}
			sigs, err := mailauth.VerifyDKIM(ctx, dns, bytes.NewReader(got), 0)
			if err != nil || len(sigs) != 2 {
				t.Fatalf("verify: %v %v", sigs, err)
			}
			algs := map[string]bool{}
			for _, s := range sigs {
				if s.Result != mailauth.DKIMPass || s.Domain != "example.org" {
					t.Errorf("signature %v", s)
				}
				algs[s.Algorithm] = true
			}
			if !algs["ed25519-sha256"] || !algs["rsa-sha256"] {
				t.Errorf("algorithms %v, want ed25519-sha256 and rsa-sha256", algs)
			}
			// The local copy is the same bytes (one blob).
			if ms := inbox(t, st, "bob"); len(ms) != 1 || ms[0].Size != int64(len(got)) {
				t.Errorf("local copy: %+v", ms)
			}
		})
	}
}

// A quarantined message goes to Junk; an account whose Junk was deleted gets
// it in INBOX rather than not at all.
func TestDeliverQuarantine(t *testing.T) {
	d, st := setup(t)
	bob, _ := st.GetAccount(ctx, "bob")
	if err := st.DeleteMailbox(ctx, bob.ID, JunkMailbox); err != nil {
		t.Fatal(err)
	}
	from, _ := addr.ParsePath("a@remote.example", true)
	env := &Envelope{ID: "Q1", From: from, Quarantine: true, Recipients: []Recipient{
		{Targets: []route.Target{account("pp"), account("bob")}}}}
	res, err := d.Deliver(ctx, env, bytes.NewReader([]byte(body)))
	if err != nil || res.Delivered != 2 || len(res.Failures) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	count := func(acct, mbox string) int {
		a, _ := st.GetAccount(ctx, acct)
		mb, err := st.GetMailbox(ctx, a.ID, mbox)
		if err != nil {
			return -1
		}
		ms, _ := st.ListMessages(ctx, mb.ID, 0, false)
		return len(ms)
	}
	if count("pp", "Junk") != 1 || count("pp", store.Inbox) != 0 {
		t.Errorf("pp: Junk %d, INBOX %d; want 1, 0", count("pp", "Junk"), count("pp", store.Inbox))
	}
	if count("bob", store.Inbox) != 1 {
		t.Errorf("bob (no Junk): INBOX %d, want 1", count("bob", store.Inbox))
	}
}

// Insert reads the same as the concatenation, at every offset and length,
// and its Bytes matches when the body is in memory.
func TestInsert(t *testing.T) {
	base := []byte("Return-Path: <>\r\nSubject: x\r\n\r\nbody\r\n")
	ins := []byte("X-Added: 1\r\n")
	for _, at := range []int64{0, 17, int64(len(base))} {
		want := append(append(append([]byte{}, base[:at]...), ins...), base[at:]...)
		b := Insert(bytes.NewReader(base), at, ins)
		if b.Size() != int64(len(want)) {
			t.Fatalf("at %d: size %d, want %d", at, b.Size(), len(want))
		}
		for off := 0; off <= len(want); off++ {
			for n := 0; n <= len(want)-off+2; n++ {
				p := make([]byte, n)
				m, err := b.ReadAt(p, int64(off))
				wantN := min(n, len(want)-off)
				if m != wantN || !bytes.Equal(p[:m], want[off:off+wantN]) {
					t.Fatalf("at %d: ReadAt(%d, %d) = %d %q, want %q", at, n, off, m, p[:m], want[off:off+wantN])
				}
				if m < n && err == nil {
					t.Fatalf("at %d: short read at %d without an error", at, off)
				}
			}
		}
		if got := b.(interface{ Bytes() []byte }).Bytes(); got != nil {
			t.Errorf("Bytes of a body without Bytes: %q", got)
		}
		mem := Insert(memBody(base), at, ins)
		if got := mem.(interface{ Bytes() []byte }).Bytes(); !bytes.Equal(got, want) {
			t.Errorf("at %d: Bytes %q, want %q", at, got, want)
		}
	}
	if got := returnPathEnd(bytes.NewReader([]byte("Return-Path:\r\n <a@b>\r\nX: y\r\n\r\n"))); got != 22 {
		t.Errorf("returnPathEnd of a folded field: %d, want 22", got)
	}
	if got := returnPathEnd(bytes.NewReader([]byte("X: y\r\n\r\n"))); got != 0 {
		t.Errorf("returnPathEnd without the field: %d", got)
	}
}

type memBodyT struct{ *bytes.Reader }

func memBody(b []byte) memBodyT  { return memBodyT{bytes.NewReader(b)} }
func (m memBodyT) Bytes() []byte { b := make([]byte, m.Size()); m.ReadAt(b, 0); return b }
func (m memBodyT) Size() int64   { return m.Reader.Size() }
