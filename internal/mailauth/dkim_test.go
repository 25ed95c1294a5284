package mailauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// dkimZone serves dkim/dns-zone.json.
func dkimZone(t *testing.T, dir string) *memDNS {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "dkim", "dns-zone.json"))
	if err != nil {
		t.Fatal(err)
	}
	var zone map[string]any
	if err := json.Unmarshal(raw, &zone); err != nil {
		t.Fatal(err)
	}
	dns := newMemDNS()
	for name, v := range zone {
		if s, ok := v.(string); ok && !strings.HasPrefix(name, "_") {
			dns.TXT(name, s)
		}
	}
	return dns
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func results(sigs []DKIMSignature) []DKIMResult {
	var out []DKIMResult
	for _, s := range sigs {
		out = append(out, s.Result)
	}
	return out
}

// TestDKIMVectors verifies every signed message in dkim/ and expects what
// MANIFEST.md says.
func TestDKIMVectors(t *testing.T) {
	dir := conformanceDir(t)
	dns := dkimZone(t, dir)
	tests := []struct {
		file string
		max  int
		want []DKIMSignature // Domain, Selector, Algorithm and Result checked
		err  error
	}{
		{"go-msgauth/rfc6376-A2-signed.eml", 0, []DKIMSignature{{Domain: "example.com", Selector: "brisbane", Algorithm: "rsa-sha256", Result: DKIMPass}}, nil},
		{"go-msgauth/rawrsa-signed.eml", 0, []DKIMSignature{{Domain: "example.com", Selector: "newengland", Algorithm: "rsa-sha256", Result: DKIMPass}}, nil},
		{"go-msgauth/rfc8463-A3-signed.eml", 0, []DKIMSignature{
			{Domain: "football.example.com", Selector: "brisbane", Algorithm: "ed25519-sha256", Result: DKIMPass},
			{Domain: "football.example.com", Selector: "test", Algorithm: "rsa-sha256", Result: DKIMPass}}, nil},
		{"go-msgauth/sign-rsa-expected.eml", 0, []DKIMSignature{{Domain: "example.org", Selector: "brisbane", Algorithm: "rsa-sha256", Result: DKIMPass}}, nil},
		{"go-msgauth/sign-ed25519-expected.eml", 0, []DKIMSignature{{Domain: "football.example.com", Selector: "brisbane", Algorithm: "ed25519-sha256", Result: DKIMPass}}, nil},
		{"go-msgauth/too-many-signatures.eml", 0, []DKIMSignature{
			{Domain: "example.com", Selector: "brisbane", Algorithm: "rsa-sha256", Result: DKIMPass},
			{Domain: "example.com", Selector: "brisbane", Algorithm: "rsa-sha256", Result: DKIMPass},
			{Domain: "example.com", Selector: "brisbane", Algorithm: "rsa-sha256", Result: DKIMPass}}, nil},
		{"go-msgauth/too-many-signatures.eml", 2, []DKIMSignature{
			{Domain: "example.com", Selector: "brisbane", Algorithm: "rsa-sha256", Result: DKIMPass},
			{Domain: "example.com", Selector: "brisbane", Algorithm: "rsa-sha256", Result: DKIMPass}}, ErrTooManySignatures},
		{"go-msgauth/unsigned.eml", 0, nil, nil},
		{"dkimpy-data/rfc6376.signed.msg", 0, []DKIMSignature{
			{Domain: "football.example.com", Selector: "brisbane", Algorithm: "ed25519-sha256", Result: DKIMPass},
			{Domain: "football.example.com", Selector: "test", Algorithm: "rsa-sha256", Result: DKIMPass}}, nil},
		{"dkimpy-data/ed25519test2.msg", 0, []DKIMSignature{{Domain: "test.ex", Selector: "sed", Algorithm: "ed25519-sha256", Result: DKIMPass}}, nil},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			msg := readFile(t, filepath.Join(dir, "dkim", tc.file))
			sigs, err := VerifyDKIM(context.Background(), dns, bytes.NewReader(msg), tc.max)
			if !errors.Is(err, tc.err) || (err != nil && tc.err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if len(sigs) != len(tc.want) {
				t.Fatalf("%d results, want %d: %v", len(sigs), len(tc.want), sigs)
			}
			for i, w := range tc.want {
				g := sigs[i]
				if g.Domain != w.Domain || g.Selector != w.Selector || g.Algorithm != w.Algorithm || g.Result != w.Result {
					t.Errorf("signature %d: got %v, want %v", i, g, w)
				}
				if len(g.B) < 8 {
					t.Errorf("signature %d: header.b %q shorter than RFC 6008's 8 characters", i, g.B)
				}
			}
			// Any change to the body breaks every signature.
			if len(tc.want) > 0 {
				bad := append(bytes.Clone(msg), []byte("tampered\r\n")...)
				sigs, _ := VerifyDKIM(context.Background(), dns, bytes.NewReader(bad), tc.max)
				for i, s := range sigs {
					if s.Result != DKIMFail {
						t.Errorf("tampered body: signature %d: %v, want fail", i, s)
					}
				}
			}
		})
	}
}

// TestDKIMKeyRecords signs with the RFC 8463 RSA key (dkimpy's test.private)
// and serves each of dkimpy's key records for it.
func TestDKIMKeyRecords(t *testing.T) {
	dir := conformanceDir(t)
	data := filepath.Join(dir, "dkim", "dkimpy-data")
	key, err := readPrivateKey(filepath.Join(data, "test.private"))
	if err != nil {
		t.Fatal(err)
	}
	msg := readFile(t, filepath.Join(data, "test.message"))
	tests := []struct {
		record string
		want   DKIMResult
	}{
		{"test.txt", DKIMPass},
		{"test2.txt", DKIMPass}, // no k=: RSA is the default (RFC 6376 section 3.6.1)
		// "v=DKIM1:" is not the version tag: the record is unusable
		// (RFC 6376 section 3.6.1, v= must be first and exactly DKIM1).
		{"badversion.txt", DKIMPermError},
		// k=ed25519-sha256 is no key type; dkimpy reports a failed
		// verification, RFC 8601 section 2.7.1 calls an unusable key
		// record permerror.
		{"badk.txt", DKIMPermError},
		// A truncated RSA key does not parse: permerror, no pass.
		{"test_bad.txt", DKIMPermError},
	}
	for _, tc := range tests {
		t.Run(tc.record, func(t *testing.T) {
			s := &Signer{Domain: "example.com", Keys: []SigningKey{{Selector: "test", Algorithm: "rsa", Key: key}}}
			sig, err := s.Sign(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			dns := newMemDNS().TXT("test._domainkey.example.com", strings.TrimSpace(string(readFile(t, filepath.Join(data, tc.record)))))
			sigs, err := VerifyDKIM(context.Background(), dns, strings.NewReader(sig+string(msg)), 0)
			if err != nil || len(sigs) != 1 {
				t.Fatalf("%v %v", sigs, err)
			}
			if sigs[0].Result != tc.want {
				t.Errorf("got %v, want %s", sigs[0], tc.want)
			}
		})
	}
}

// TestDKIMSignVerifyInputs signs dkimpy's and go-msgauth's unsigned inputs
// with the vectors' keys and verifies them against dns-zone.json.
func TestDKIMSignVerifyInputs(t *testing.T) {
	dir := conformanceDir(t)
	dns := dkimZone(t, dir)
	data := filepath.Join(dir, "dkim", "dkimpy-data")
	rsaKey, err := readPrivateKey(filepath.Join(data, "test.private"))
	if err != nil {
		t.Fatal(err)
	}
	seed := func(path string) crypto.Signer {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(readFile(t, path))))
		if err != nil || len(b) != ed25519.SeedSize {
			t.Fatalf("%s: bad seed", path)
		}
		return ed25519.NewKeyFromSeed(b)
	}
	// RFC 8463 A.2's keys, published for football.example.com.
	rfc8463 := &Signer{Domain: "football.example.com", Keys: []SigningKey{
		{Selector: "brisbane", Algorithm: "ed25519", Key: seed(filepath.Join(data, "rfc8032_7_1.key"))},
		{Selector: "test", Algorithm: "rsa", Key: rsaKey},
	}}
	// dkimpy's ed25519test key, published as test._domainkey.example.net.
	exampleNet := &Signer{Domain: "example.net", Keys: []SigningKey{
		{Selector: "test", Algorithm: "ed25519", Key: seed(filepath.Join(data, "ed25519test.key"))},
	}}
	msgauthSeed := &Signer{Domain: "football.example.com", Keys: []SigningKey{
		{Selector: "brisbane", Algorithm: "ed25519", Key: seed(filepath.Join(dir, "dkim", "go-msgauth", "ed25519-seed.b64"))},
	}}
	for _, tc := range []struct {
		file   string
		signer *Signer
	}{
		{"dkimpy-data/test.message", rfc8463},
		{"dkimpy-data/rfc6376.msg", rfc8463},
		{"dkimpy-data/test_extra.message", rfc8463},
		{"dkimpy-data/ed25519test.msg", exampleNet},
		{"go-msgauth/sign-input.eml", msgauthSeed},
		{"go-msgauth/unsigned.eml", rfc8463},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			msg := readFile(t, filepath.Join(dir, "dkim", tc.file))
			sig, err := tc.signer.Sign(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			sigs, err := VerifyDKIM(context.Background(), dns, strings.NewReader(sig+string(msg)), 0)
			if err != nil || len(sigs) != len(tc.signer.Keys) {
				t.Fatalf("%v %v", sigs, err)
			}
			for i, s := range sigs {
				if s.Result != DKIMPass || s.Selector != tc.signer.Keys[i].Selector {
					t.Errorf("signature %d: %v", i, s)
				}
			}
		})
	}
	t.Run("test_nofrom", func(t *testing.T) {
		msg := readFile(t, filepath.Join(data, "test_nofrom.message"))
		if _, err := rfc8463.Sign(bytes.NewReader(msg)); !errors.Is(err, ErrNoFrom) {
			t.Fatalf("signing a message without From: %v, want ErrNoFrom", err)
		}
	})
}

// TestDKIMCanonicalization checks the RFC 6376 section 3.4 pairs of
// canonicalization-and-dns.json: a body signed as "original" carries
// bh = base64(sha256(canonical)), and for headers, the signature made over
// the original field still verifies when the field is replaced by its
// canonical form (and not when its text changes).
func TestDKIMCanonicalization(t *testing.T) {
	dir := conformanceDir(t)
	var cases struct {
		RelaxedBody []struct{ Original, Canonical string } `json:"relaxed_body"`
		SimpleBody  []struct {
			OriginalChunks []string `json:"original_chunks"`
			Canonical      string
		} `json:"simple_body"`
		RelaxedHeader []struct{ Original, Canonical string } `json:"relaxed_header"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "dkim", "go-msgauth", "canonicalization-and-dns.json")), &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases.RelaxedBody) != 10 || len(cases.SimpleBody) != 10 || len(cases.RelaxedHeader) != 4 {
		t.Fatalf("case counts %d/%d/%d, want 10/10/4", len(cases.RelaxedBody), len(cases.SimpleBody), len(cases.RelaxedHeader))
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	signer := func(c dkim.Canonicalization) *Signer {
		return &Signer{Domain: "example.org", Keys: []SigningKey{{Selector: "s", Algorithm: "ed25519", Key: priv}}, canon: [2]dkim.Canonicalization{c, c}}
	}
	const head = "From: a@example.org\r\nSubject: x\r\n\r\n"
	bodyHash := func(t *testing.T, s *Signer, body string) string {
		sig, err := s.Sign(strings.NewReader(head + body))
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range strings.Split(stripFWS(sig), ";") {
			if v, ok := strings.CutPrefix(tag, "bh="); ok {
				return v
			}
		}
		t.Fatalf("no bh= in %q", sig)
		return ""
	}
	want := func(canonical string) string {
		h := sha256.Sum256([]byte(canonical))
		return base64.StdEncoding.EncodeToString(h[:])
	}
	for i, c := range cases.RelaxedBody {
		if got := bodyHash(t, signer(dkim.CanonicalizationRelaxed), c.Original); got != want(c.Canonical) {
			t.Errorf("relaxed body %d %q: bh=%s, want sha256 of %q", i, c.Original, got, c.Canonical)
		}
	}
	for i, c := range cases.SimpleBody {
		body := strings.Join(c.OriginalChunks, "")
		if got := bodyHash(t, signer(dkim.CanonicalizationSimple), body); got != want(c.Canonical) {
			t.Errorf("simple body %d %q: bh=%s, want sha256 of %q", i, body, got, c.Canonical)
		}
	}
	dns := newMemDNS()
	rec, _ := DNSRecord(priv.Public())
	dns.TXT("s._domainkey.example.org", rec)
	for i, c := range cases.RelaxedHeader {
		sig, err := signer(dkim.CanonicalizationRelaxed).Sign(strings.NewReader("From: a@example.org\r\n" + c.Original + "\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			field string
			want  DKIMResult
		}{{c.Original, DKIMPass}, {c.Canonical, DKIMPass}, {strings.Replace(c.Canonical, "Na", "Ma", 1) + "", DKIMFail}} {
			if v.want == DKIMFail && v.field == c.Canonical {
				continue // the canonical form has no "Na" to change
			}
			msg := sig + "From: a@example.org\r\n" + v.field + "\r\nbody\r\n"
			sigs, err := VerifyDKIM(context.Background(), dns, strings.NewReader(msg), 0)
			if err != nil || len(sigs) != 1 || sigs[0].Result != v.want {
				t.Errorf("relaxed header %d with %q: %v %v, want %s", i, v.field, sigs, err, v.want)
			}
		}
	}
}

// TestSignRoundTrip generates keys, loads the newest, signs and verifies.
func TestSignRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := GenerateKeys(dir, "Example.ORG", "2024a"); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeys(dir, "example.org", "2024a"); err == nil {
		t.Fatal("GenerateKeys overwrote an existing selector")
	}
	// An older selector must not be chosen over the newer one.
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"2024a-ed25519.ed25519.pem", "2024a-rsa.rsa.pem"} {
		if err := os.Chtimes(filepath.Join(dir, "example.org", name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := GenerateKeys(dir, "example.org", "2025a"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"../x", "a/b", "", "a..b"} {
		if err := GenerateKeys(dir, "example.org", bad); err == nil {
			t.Errorf("selector %q accepted", bad)
		}
	}
	s, err := LoadSigner(dir, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Keys) != 2 || s.Keys[0].Algorithm != "ed25519" || s.Keys[1].Algorithm != "rsa" ||
		s.Keys[0].Selector != "2025a-ed25519" || s.Keys[1].Selector != "2025a-rsa" {
		t.Fatalf("keys: %+v", s.Keys)
	}
	if n := s.Keys[1].Key.Public().(interface{ Size() int }).Size() * 8; n != 2048 {
		t.Errorf("RSA key of %d bits", n)
	}
	recs, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	dns := newMemDNS()
	for i, r := range recs {
		if want := s.Keys[i].Selector + "._domainkey.example.org"; r.Name != want {
			t.Errorf("record name %q, want %q", r.Name, want)
		}
		dns.TXT(r.Name, r.Value)
	}
	if !strings.HasPrefix(recs[0].Value, "v=DKIM1; k=ed25519; p=") || !strings.HasPrefix(recs[1].Value, "v=DKIM1; k=rsa; p=") {
		t.Errorf("records %v", recs)
	}
	msg := "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: hi\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello  \r\nthere\r\n\r\n"
	sig, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"c=relaxed/relaxed", "h=From:From:To:Cc:Subject:Date:Message-ID"} {
		if !strings.Contains(stripFWS(sig), stripFWS(want)) {
			t.Errorf("signature lacks %q: %s", want, sig)
		}
	}
	verify := func(m string) []DKIMResult {
		sigs, err := VerifyDKIM(context.Background(), dns, strings.NewReader(m), 0)
		if err != nil {
			t.Fatal(err)
		}
		return results(sigs)
	}
	for _, tc := range []struct {
		name string
		msg  string
		want DKIMResult
	}{
		{"as signed", sig + msg, DKIMPass},
		// Relaxed canonicalization tolerates re-folding and white space.
		{"rewrapped", sig + strings.Replace(msg, "Subject: hi", "Subject:   hi", 1), DKIMPass},
		{"body changed", sig + strings.Replace(msg, "there", "where", 1), DKIMFail},
		{"subject changed", sig + strings.Replace(msg, "Subject: hi", "Subject: ho", 1), DKIMFail},
		// The oversigned From: a second From added above breaks both.
		{"From added", sig + "From: mallory@example.net\r\n" + msg, DKIMFail},
		{"Cc added", sig + "Cc: eve@example.net\r\n" + msg, DKIMFail},
	} {
		got := verify(tc.msg)
		if len(got) != 2 || got[0] != tc.want || got[1] != tc.want {
			t.Errorf("%s: %v, want both %s", tc.name, got, tc.want)
		}
	}
	// A missing key record: permerror, not fail; a DNS failure: temperror.
	dns2 := newMemDNS()
	dns2.name("2025a-ed25519._domainkey.example.org").servfail = true
	dns2.name("2025a-rsa._domainkey.example.org").servfail = true
	sigs, _ := VerifyDKIM(context.Background(), dns2, strings.NewReader(sig+msg), 0)
	if got := results(sigs); len(got) != 2 || got[0] != DKIMTempError {
		t.Errorf("servfail: %v", sigs)
	}
	sigs, _ = VerifyDKIM(context.Background(), newMemDNS(), strings.NewReader(sig+msg), 0)
	if got := results(sigs); len(got) != 2 || got[0] != DKIMPermError {
		t.Errorf("no key: %v", sigs)
	}
	if _, err := LoadSigner(dir, "example.net"); err == nil {
		t.Error("LoadSigner of a domain without keys succeeded")
	}
}
