package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"

	"github.com/posthorn/posthorn/internal/store"
)

// RFC 7677 section 3: the SCRAM-SHA-256 exchange for user "user", password
// "pencil", with the client nonce, server nonce, salt and iteration count
// of the RFC. The server must send exactly the RFC's messages.
func TestRFC7677Vector(t *testing.T) {
	const (
		clientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
		serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
		clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		serverFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	)
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	cred, err := deriveSCRAM("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAuth(t, noLock)
	a.accts.set("user", "unused", cred.String())
	a.nonceHook = func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" }

	m, err := a.Start(ctx, tlsClient, "SCRAM-SHA-256")
	if err != nil {
		t.Fatal(err)
	}
	ch, done, err := m.Next([]byte(clientFirst))
	if err != nil || done || string(ch) != serverFirst {
		t.Fatalf("server-first = %q %v %v, want %q", ch, done, err, serverFirst)
	}
	ch, done, err = m.Next([]byte(clientFinal))
	if err != nil || done || string(ch) != serverFinal {
		t.Fatalf("server-final = %q %v %v, want %q", ch, done, err, serverFinal)
	}
	if m.Account() != nil {
		t.Error("logged in before the exchange finished")
	}
	if _, done, err = m.Next([]byte{}); err != nil || !done {
		t.Fatalf("end = %v %v", done, err)
	}
	if acct := m.Account(); acct == nil || acct.Name != "user" {
		t.Errorf("account %+v", acct)
	}

	// The same exchange with a wrong proof fails, and sends no server-final.
	m, _ = a.Start(ctx, tlsClient, "SCRAM-SHA-256")
	m.Next([]byte(clientFirst))
	bad := strings.Replace(clientFinal, "p=dHzb", "p=dHza", 1)
	if ch, done, err := m.Next([]byte(bad)); !errors.Is(err, ErrMismatch) || !done || ch != nil {
		t.Errorf("wrong proof: %q %v %v", ch, done, err)
	}
}

// The credential derivation agrees with an independent implementation.
func TestCredentialMatchesIndependentClient(t *testing.T) {
	for _, pw := range []string{"pencil", "correct horse", "Grüße ÀÿÞ", " spaces and ~!@#$%^&*() "} {
		salt := []byte("0123456789abcdef")
		mine, err := deriveSCRAM(pw, salt, 4096)
		if err != nil {
			t.Fatal(err)
		}
		c, err := scram.SHA256.NewClient("user", pw, "")
		if err != nil {
			t.Fatal(err)
		}
		theirs := c.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: 4096})
		if !hmac.Equal(mine.storedKey, theirs.StoredKey) || !hmac.Equal(mine.serverKey, theirs.ServerKey) {
			t.Errorf("%q: keys differ from xdg-go/scram's", pw)
		}
	}
}

func TestCredentialFormat(t *testing.T) {
	hash, s, err := NewCredentials("pencil")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$") {
		t.Errorf("hash %q", hash)
	}
	// RFC 5803: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>, base64.
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '$' || r == ':' })
	if len(parts) != 5 || parts[0] != "SCRAM-SHA-256" || parts[1] != "16384" {
		t.Fatalf("credential %q", s)
	}
	for i, wantLen := range map[int]int{2: 16, 3: 32, 4: 32} {
		b, err := base64.StdEncoding.DecodeString(parts[i])
		if err != nil || len(b) != wantLen {
			t.Errorf("part %d %q: %d bytes, %v", i, parts[i], len(b), err)
		}
	}
	c, err := parseSCRAM(s)
	if err != nil || c.String() != s {
		t.Errorf("round trip: %q %v", c.String(), err)
	}
	_, s2, _ := NewCredentials("pencil")
	if s2 == s {
		t.Error("two credentials of one password are equal: salt not random")
	}
	for _, bad := range []string{
		"", "SCRAM-SHA-1$4096:c2FsdA==$a2V5:a2V5",
		strings.Replace(s, "$16384:", "$1000:", 1),     // below RFC 7677's minimum
		strings.Replace(s, "$16384:", "$99999999:", 1), // would make clients spin
		strings.Replace(s, "$16384:", "$x:", 1),
		s[:len(s)-10],
		strings.Replace(s, ":", ";", 1),
	} {
		if _, err := parseSCRAM(bad); err == nil {
			t.Errorf("parseSCRAM(%q) accepted", bad)
		}
	}
}

// scramLogin logs in with xdg-go/scram's client: an independent
// implementation of RFC 5802. advertiseCB sends the "y" flag.
func scramLogin(a *Authenticator, c Client, user, password string, advertiseCB bool) (*scram.ClientConversation, *store.Account, error) {
	cl, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		return nil, nil, err
	}
	return scramLoginWith(a, c, cl, advertiseCB)
}

func scramLoginWith(a *Authenticator, c Client, cl *scram.Client, advertiseCB bool) (*scram.ClientConversation, *store.Account, error) {
	conv := cl.NewConversation()
	if advertiseCB {
		conv = cl.NewConversationAdvertisingChannelBinding()
	}
	m, err := a.Start(ctx, c, SCRAMSHA256)
	if err != nil {
		return conv, nil, err
	}
	first, err := conv.Step("")
	if err != nil {
		return conv, nil, err
	}
	resp := []byte(first)
	for {
		ch, done, err := m.Next(resp)
		if err != nil {
			return conv, nil, err
		}
		if done {
			return conv, m.Account(), nil
		}
		r, err := conv.Step(string(ch))
		if err != nil {
			return conv, nil, errors.New("client refused the server: " + err.Error())
		}
		resp = []byte(r)
	}
}

func TestSCRAMWithIndependentClient(t *testing.T) {
	a := newTestAuth(t, noLock)
	plainConn := Client{Addr: remote, Service: "smtp"} // SCRAM needs no TLS
	for _, tc := range []struct {
		name, user, password string
		cb                   bool
		wantUser             string
		wantErr              error
	}{
		{"right password", "pp", ppPassword, false, "pp", nil},
		{"client that could bind (y flag)", "bob", bobPassword, true, "bob", nil},
		{"wrong password", "pp", "wrong", false, "", ErrMismatch},
		{"another account's password", "pp", bobPassword, false, "", ErrMismatch},
		{"another account's password, other way", "bob", ppPassword, false, "", ErrMismatch},
		{"unknown user", "nobody", ppPassword, false, "", ErrMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conv, acct, err := scramLogin(a.Authenticator, plainConn, tc.user, tc.password, tc.cb)
			checkOutcome(t, acct, err, tc.wantUser, tc.wantErr)
			if tc.wantErr == nil && !conv.Valid() {
				t.Error("the client did not verify the server's signature")
			}
		})
	}
}

func TestSCRAMAuthzid(t *testing.T) {
	a := newTestAuth(t, noLock)
	for _, tc := range []struct {
		authzid string
		wantErr error
	}{
		{"pp", nil},
		{"PP", nil},
		{"bob", ErrMismatch},
	} {
		cl, err := scram.SHA256.NewClient("pp", ppPassword, tc.authzid)
		if err != nil {
			t.Fatal(err)
		}
		_, acct, err := scramLoginWith(a.Authenticator, tlsClient, cl, false)
		wantUser := ""
		if tc.wantErr == nil {
			wantUser = "pp"
		}
		checkOutcome(t, acct, err, wantUser, tc.wantErr)
	}
}

// Unknown users and users without a credential get a salt that looks real
// and stays the same, and cost the same proof check as a wrong password.
func TestSCRAMUnknownUserLooksReal(t *testing.T) {
	a := newTestAuth(t, noLock)
	h, _ := creds(t, "whatever")
	a.accts.set("old", h, "") // an account from before SCRAM credentials
	salt := func(user string) string {
		m, _ := a.Start(ctx, tlsClient, SCRAMSHA256)
		ch, _, err := m.Next([]byte("n,,n=" + user + ",r=clientnonce"))
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(string(ch), ",")
		if len(parts) != 3 || !strings.HasPrefix(parts[0], "r=clientnonce") || len(parts[0]) < 2+11+20 ||
			!strings.HasPrefix(parts[1], "s=") || parts[2] != "i=16384" {
			t.Fatalf("server-first %q", ch)
		}
		return parts[1]
	}
	if salt("nobody") != salt("nobody") || salt("old") != salt("old") {
		t.Error("a made-up salt changes between attempts")
	}
	if salt("nobody") == salt("nobody2") {
		t.Error("two unknown users share a salt")
	}
	if len(salt("nobody")) != len(salt("pp")) {
		t.Error("made-up salt has another length than a real one")
	}
	proofs := 0
	a.proofHook = func() { proofs++ }
	for _, user := range []string{"pp", "nobody", "old"} {
		proofs = 0
		if _, _, err := scramLogin(a.Authenticator, tlsClient, user, "wrong", false); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: %v", user, err)
		}
		if proofs != 1 {
			t.Errorf("%s: %d proof checks, want 1", user, proofs)
		}
	}
}

// scramFinal computes a client-final message for a server-first, from the
// RFC 5802 formulas: the tests use it to send what the library would not.
func scramFinal(t *testing.T, password, clientFirstBare, serverFirst, cbind string) string {
	t.Helper()
	var nonce, saltB64 string
	iter := 0
	for _, p := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(p, "r="):
			nonce = p[2:]
		case strings.HasPrefix(p, "s="):
			saltB64 = p[2:]
		case strings.HasPrefix(p, "i="):
			for _, d := range p[2:] {
				iter = iter*10 + int(d-'0')
			}
		}
	}
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	without := "c=" + base64.StdEncoding.EncodeToString([]byte(cbind)) + ",r=" + nonce
	sig := mac(stored[:], clientFirstBare+","+serverFirst+","+without)
	for i := range clientKey {
		clientKey[i] ^= sig[i]
	}
	return without + ",p=" + base64.StdEncoding.EncodeToString(clientKey)
}

func TestSCRAMMalformed(t *testing.T) {
	a := newTestAuth(t, noLock)
	for _, tc := range []struct {
		name, first string
	}{
		{"channel binding asked", "p=tls-unique,,n=pp,r=abc"},
		{"unknown flag", "x,,n=pp,r=abc"},
		{"no gs2 header", "n=pp,r=abc"},
		{"mandatory extension", "n,,m=ext,n=pp,r=abc"},
		{"no user", "n,,r=abc"},
		{"empty user", "n,,n=,r=abc"},
		{"bad escape", "n,,n=p=p,r=abc"},
		{"no nonce", "n,,n=pp"},
		{"empty nonce", "n,,n=pp,r="},
		{"nonce with space", "n,,n=pp,r=a b"},
		{"bad extension", "n,,n=pp,r=abc,zz"},
		{"authzid without a=", "n,pp,n=pp,r=abc"},
		{"too long", "n,,n=pp,r=" + strings.Repeat("a", 3000)},
		{"empty", ""},
	} {
		_, _, err := run(a.Authenticator, tlsClient, SCRAMSHA256, []byte(tc.first))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("client-first %s: %v", tc.name, err)
		}
	}

	// client-final problems, after a good client-first.
	const bare = "n=pp,r=clientnonce123"
	for _, tc := range []struct {
		name   string
		gs2    string // header sent in client-first
		final  func(good string) string
		wantOK bool
	}{
		{"good, n flag", "n,,", func(g string) string { return g }, true},
		{"good, y flag", "y,,", func(g string) string { return g }, true},
		{"y flag answered with n's binding", "y,,", func(g string) string { return strings.Replace(g, "c=eSws", "c=biws", 1) }, false},
		{"wrong nonce", "n,,", func(g string) string { return strings.Replace(g, ",r=clientnonce123", ",r=clientnonce124", 1) }, false},
		{"no proof", "n,,", func(g string) string { return g[:strings.Index(g, ",p=")] }, false},
		{"proof not base64", "n,,", func(g string) string { return g[:strings.Index(g, ",p=")] + ",p=!!!!" }, false},
		{"short proof", "n,,", func(g string) string { return g[:strings.Index(g, ",p=")] + ",p=AAAA" }, false},
		{"c missing", "n,,", func(g string) string { return strings.Replace(g, "c=biws,", "", 1) }, false},
		{"junk", "n,,", func(string) string { return "hello" }, false},
	} {
		m, err := a.Start(ctx, tlsClient, SCRAMSHA256)
		if err != nil {
			t.Fatal(err)
		}
		sf, _, err := m.Next([]byte(tc.gs2 + bare))
		if err != nil {
			t.Fatalf("%s: client-first: %v", tc.name, err)
		}
		good := scramFinal(t, ppPassword, bare, string(sf), tc.gs2)
		ch, done, err := m.Next([]byte(tc.final(good)))
		if tc.wantOK {
			if err != nil || done || !strings.HasPrefix(string(ch), "v=") {
				t.Errorf("%s: %q %v %v", tc.name, ch, done, err)
			}
			// Anything but an empty answer to server-final is an error.
			if _, done, err := m.Next([]byte("more")); !done || !errors.Is(err, ErrMalformed) || m.Account() != nil {
				t.Errorf("%s: data after server-final: %v %v", tc.name, done, err)
			}
			continue
		}
		if !errors.Is(err, ErrMalformed) || !done {
			t.Errorf("%s: %v %v", tc.name, done, err)
		}
	}
}

func TestDecodeSASLName(t *testing.T) {
	for in, want := range map[string]string{
		"user": "user", "a=2Cb": "a,b", "a=3Db": "a=b", "=2C=3D": ",=", "grüße": "grüße",
	} {
		if got, err := decodeSASLName(in); err != nil || got != want {
			t.Errorf("decodeSASLName(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a=", "a=2", "a=2D", "a=3d", "\xff"} {
		if _, err := decodeSASLName(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeSASLName(%q) = %v", bad, err)
		}
	}
}

// The characters scramPassword takes are exactly left alone by SASLprep (RFC
// 4013), checked against an independent implementation; and some it refuses
// are ones SASLprep changes or prohibits.
func TestSCRAMPasswordIsSASLprep(t *testing.T) {
	for r := rune(0); r < 0x3000; r++ {
		s := "a" + string(r) + "b"
		prepared, ok := scramPassword(s)
		if !ok {
			continue
		}
		want, err := stringprep.SASLprep.Prepare(s)
		if err != nil || want != prepared {
			t.Errorf("U+%04X: scramPassword gives %q, SASLprep %q %v", r, prepared, want, err)
		}
	}
	for _, s := range []string{"a\u00a0b", "\u00aa", "x\u2163", "a\u00adb", "\x07bell", "a\u0308"} {
		if _, ok := scramPassword(s); ok {
			t.Errorf("scramPassword(%q) taken", s)
		}
		if p, err := stringprep.SASLprep.Prepare(s); err == nil && p == s {
			t.Errorf("%q is left alone by SASLprep: the test is wrong", s)
		}
	}
}
