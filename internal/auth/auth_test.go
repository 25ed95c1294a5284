package auth

import (
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

func TestPlain(t *testing.T) {
	a := newTestAuth(t, noLock)
	for _, tc := range []struct {
		name      string
		responses [][]byte
		wantUser  string // "" when the login must fail
		wantErr   error
		wantChall []string
	}{
		{"right password", [][]byte{plainMsg("", "pp", ppPassword)}, "pp", nil, nil},
		{"name in other case", [][]byte{plainMsg("", "PP", ppPassword)}, "pp", nil, nil},
		{"authzid is the user", [][]byte{plainMsg("pp", "pp", ppPassword)}, "pp", nil, nil},
		{"no initial response", [][]byte{nil, plainMsg("", "bob", bobPassword)}, "bob", nil, []string{""}},
		{"wrong password", [][]byte{plainMsg("", "pp", "correct horse battery stapler")}, "", ErrMismatch, nil},
		{"another account's password", [][]byte{plainMsg("", "pp", bobPassword)}, "", ErrMismatch, nil},
		{"unknown user", [][]byte{plainMsg("", "nobody", ppPassword)}, "", ErrMismatch, nil},
		{"authzid of another user", [][]byte{plainMsg("bob", "pp", ppPassword)}, "", ErrMismatch, nil},
		{"one NUL", [][]byte{[]byte("pp\x00" + ppPassword)}, "", ErrMalformed, nil},
		{"three NULs", [][]byte{[]byte("\x00pp\x00" + ppPassword + "\x00")}, "", ErrMalformed, nil},
		{"empty user", [][]byte{plainMsg("", "", ppPassword)}, "", ErrMalformed, nil},
		{"empty password", [][]byte{plainMsg("", "pp", "")}, "", ErrMalformed, nil},
		{"empty initial response", [][]byte{{}}, "", ErrMalformed, nil},
		{"user not UTF-8", [][]byte{plainMsg("", "p\xffp", ppPassword)}, "", ErrMalformed, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, acct, err := run(a.Authenticator, tlsClient, "plain", tc.responses...)
			checkOutcome(t, acct, err, tc.wantUser, tc.wantErr)
			if !reflect.DeepEqual(ch, tc.wantChall) {
				t.Errorf("challenges %q, want %q", ch, tc.wantChall)
			}
		})
	}
}

func checkOutcome(t *testing.T, acct *store.Account, err error, wantUser string, wantErr error) {
	t.Helper()
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Errorf("err = %v, want %v", err, wantErr)
		}
		if acct != nil {
			t.Errorf("failed login has account %q", acct.Name)
		}
		return
	}
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if acct == nil || acct.Name != wantUser {
		t.Errorf("account %+v, want %q", acct, wantUser)
	}
}

func TestLogin(t *testing.T) {
	a := newTestAuth(t, noLock)
	for _, tc := range []struct {
		name      string
		responses [][]byte
		wantUser  string
		wantErr   error
		wantChall []string
	}{
		{"asked for both", [][]byte{nil, []byte("pp"), []byte(ppPassword)}, "pp", nil, []string{"Username:", "Password:"}},
		{"user as initial response", [][]byte{[]byte("bob"), []byte(bobPassword)}, "bob", nil, []string{"Password:"}},
		{"wrong password", [][]byte{nil, []byte("pp"), []byte("nope")}, "", ErrMismatch, []string{"Username:", "Password:"}},
		{"another account's password", [][]byte{[]byte("bob"), []byte(ppPassword)}, "", ErrMismatch, []string{"Password:"}},
		{"empty user", [][]byte{nil, {}}, "", ErrMalformed, []string{"Username:"}},
		{"empty password", [][]byte{[]byte("pp"), {}}, "", ErrMalformed, []string{"Password:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, acct, err := run(a.Authenticator, tlsClient, "LOGIN", tc.responses...)
			checkOutcome(t, acct, err, tc.wantUser, tc.wantErr)
			if !reflect.DeepEqual(ch, tc.wantChall) {
				t.Errorf("challenges %q, want %q", ch, tc.wantChall)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	a := newTestAuth(t, noLock)
	for _, tc := range []struct {
		user, password string
		wantUser       string
		wantErr        error
	}{
		{"pp", ppPassword, "pp", nil},
		{"bob", bobPassword, "bob", nil},
		{"pp", bobPassword, "", ErrMismatch},
		{"bob", ppPassword, "", ErrMismatch},
		{"nobody", ppPassword, "", ErrMismatch},
		{"", ppPassword, "", ErrMalformed},
		{"pp", "", "", ErrMalformed},
	} {
		acct, err := a.CheckPassword(ctx, tlsClient, tc.user, tc.password)
		checkOutcome(t, acct, err, tc.wantUser, tc.wantErr)
	}
}

func TestExchangeOverAfterEnd(t *testing.T) {
	a := newTestAuth(t, noLock)
	for _, mech := range []string{Plain, Login, SCRAMSHA256} {
		m, err := a.Start(ctx, tlsClient, mech)
		if err != nil {
			t.Fatal(err)
		}
		// Drive it into an error, then call again.
		var last error
		for i := 0; i < 5 && last == nil; i++ {
			_, _, last = m.Next([]byte{})
		}
		if !errors.Is(last, ErrMalformed) {
			t.Errorf("%s: empty messages gave %v", mech, last)
		}
		if _, done, err := m.Next([]byte("x")); !done || !errors.Is(err, ErrMalformed) || m.Account() != nil {
			t.Errorf("%s: Next after the end = %v %v", mech, done, err)
		}
	}
}

func TestUnsupportedMechanism(t *testing.T) {
	a := newTestAuth(t, noLock)
	for _, m := range []string{"CRAM-MD5", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "", strings.Repeat("X", 1000)} {
		if _, err := a.Start(ctx, tlsClient, m); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Start(%.20q) = %v", m, err)
		}
	}
}

// The plain-text rule: password mechanisms only over TLS, from 127.0.0.1 or
// ::1, or when the config allows them; SCRAM everywhere.
func TestPlaintextRule(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		tls   bool
		allow bool
		want  bool
	}{
		{"127.0.0.1", false, false, true},
		{"::1", false, false, true},
		{"::ffff:127.0.0.1", false, false, true},
		{"127.0.0.2", false, false, false}, // the rest of 127/8 is an outside client
		{"192.0.2.7", false, false, false},
		{"2001:db8::1", false, false, false},
		{"192.0.2.7", true, false, true},
		{"2001:db8::1", true, false, true},
		{"192.0.2.7", false, true, true},
		{"127.0.0.2", false, true, true},
	} {
		a := newTestAuth(t, Options{AllowPlaintext: tc.allow})
		c := Client{Addr: netip.MustParseAddr(tc.addr), TLS: tc.tls, Service: "pop3"}
		name := tc.addr
		if tc.tls {
			name += " tls"
		}
		if tc.allow {
			name += " allow_plaintext"
		}
		if got := a.PlaintextAllowed(c); got != tc.want {
			t.Errorf("%s: PlaintextAllowed = %v", name, got)
		}
		wantMechs := []string{SCRAMSHA256}
		if tc.want {
			wantMechs = []string{SCRAMSHA256, Plain, Login}
		}
		if got := a.Mechanisms(c); !reflect.DeepEqual(got, wantMechs) {
			t.Errorf("%s: Mechanisms = %v, want %v", name, got, wantMechs)
		}
		for _, mech := range []string{Plain, Login} {
			_, err := a.Start(ctx, c, mech)
			if tc.want && err != nil || !tc.want && !errors.Is(err, ErrEncryptionRequired) {
				t.Errorf("%s: Start(%s) = %v", name, mech, err)
			}
		}
		_, err := a.CheckPassword(ctx, c, "pp", ppPassword)
		if tc.want && err != nil || !tc.want && !errors.Is(err, ErrEncryptionRequired) {
			t.Errorf("%s: CheckPassword = %v", name, err)
		}
		if _, err := a.Start(ctx, c, SCRAMSHA256); err != nil {
			t.Errorf("%s: SCRAM refused: %v", name, err)
		}
	}
}

// An unknown user's password is checked as long as a real one: both paths
// run the hash function once, on a hash of the same kind and cost.
func TestUnknownUserCostsAHashCheck(t *testing.T) {
	a := newTestAuth(t, noLock)
	var hashes []string
	a.verify = func(hash, password string) (bool, error) {
		hashes = append(hashes, hash)
		return Verify(hash, password)
	}
	params := func(h string) string { // "$argon2id$v=19$m=...,t=...,p=..."
		parts := strings.Split(h, "$")
		if len(parts) < 4 {
			return h
		}
		return strings.Join(parts[:4], "$")
	}
	real, _ := creds(t, ppPassword)
	for _, tc := range []struct{ name, user, password string }{
		{"wrong password", "pp", "wrong"},
		{"unknown user", "nobody", "wrong"},
		{"unknown user with a real password", "nobody", ppPassword},
		{"invalid name", "../x y", "wrong"},
	} {
		hashes = nil
		for _, login := range []func() error{
			func() error { _, err := a.CheckPassword(ctx, tlsClient, tc.user, tc.password); return err },
			func() error {
				_, _, err := run(a.Authenticator, tlsClient, Plain, plainMsg("", tc.user, tc.password))
				return err
			},
			func() error {
				_, _, err := run(a.Authenticator, tlsClient, Login, []byte(tc.user), []byte(tc.password))
				return err
			},
		} {
			if err := login(); !errors.Is(err, ErrMismatch) {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		if len(hashes) != 3 {
			t.Fatalf("%s: %d hash checks for 3 logins", tc.name, len(hashes))
		}
		for _, h := range hashes {
			if params(h) != params(real) {
				t.Errorf("%s: checked against %q, not a hash of the cost of %q", tc.name, params(h), params(real))
			}
		}
	}
}

// The log line fail2ban reads: ip first, whatever the user name holds, and
// never the password.
func TestFailureLogLine(t *testing.T) {
	a := newTestAuth(t, noLock)
	re := regexp.MustCompile(`msg="auth failed" ip=(\S+) `)
	for _, tc := range []struct {
		user, wantUser string
	}{
		{"pp", "user=pp "},
		{"nobody", "user=nobody "},
		{"x ip=203.0.113.9 y", `user="x ip=203.0.113.9 y"`},
		{"x\nmsg=\"auth failed\" ip=203.0.113.9 ", `user="x\nmsg=\"auth failed\" ip=203.0.113.9 "`},
	} {
		before := len(a.log.String())
		c := Client{Addr: netip.MustParseAddr("198.51.100.4"), TLS: true, Service: "imap"}
		if _, err := a.CheckPassword(ctx, c, tc.user, "hunter2-secret"); err == nil {
			t.Fatal("logged in")
		}
		line := a.log.String()[before:]
		if strings.Count(line, "\n") != 1 {
			t.Errorf("%q: not one line: %q", tc.user, line)
		}
		m := re.FindStringSubmatch(line)
		if m == nil || m[1] != "198.51.100.4" {
			t.Errorf("%q: fail2ban pattern finds %v in %q", tc.user, m, line)
		}
		if !strings.Contains(line, "service=imap mech=password") || !strings.Contains(line, tc.wantUser) {
			t.Errorf("%q: line %q lacks service, mech or %s", tc.user, line, tc.wantUser)
		}
		if strings.Contains(line, "hunter2") {
			t.Errorf("password logged: %q", line)
		}
	}
	// A success is logged without the password too.
	if _, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword); err != nil {
		t.Fatal(err)
	}
	if l := a.log.String(); !strings.Contains(l, `msg="auth ok" ip=192.0.2.7 service=smtp mech=password user=pp`) || strings.Contains(l, ppPassword) {
		t.Errorf("success line: %q", l)
	}
}

func TestDecodeResponse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []byte
		wantErr error
	}{
		{"=", []byte{}, nil},
		{"", []byte{}, nil},
		{"*", nil, ErrCanceled},
		{"AHBwAHB3", []byte("\x00pp\x00pw"), nil},
		{"not base64!", nil, ErrMalformed},
		{"AHBwAHB", nil, ErrMalformed},
	} {
		got, err := DecodeResponse(tc.in)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("DecodeResponse(%q) err = %v", tc.in, err)
			}
			continue
		}
		if err != nil || got == nil || string(got) != string(tc.want) {
			t.Errorf("DecodeResponse(%q) = %q (nil %v), %v", tc.in, got, got == nil, err)
		}
	}
}

// A store error is not a wrong password: it comes back as it is (temporary)
// and is not counted against the client.
func TestStoreErrorIsNotAMismatch(t *testing.T) {
	a := newTestAuth(t, noLock)
	broken := errors.New("disk on fire")
	a.accts.getErr = broken
	for i := 0; i < 20; i++ {
		_, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword)
		if !errors.Is(err, broken) || errors.Is(err, ErrMismatch) {
			t.Fatalf("err = %v", err)
		}
		_, _, err = run(a.Authenticator, tlsClient, SCRAMSHA256, []byte("n,,n=pp,r=abcdef"))
		if !errors.Is(err, broken) {
			t.Fatalf("SCRAM err = %v", err)
		}
	}
	a.accts.getErr = nil
	if _, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword); err != nil {
		t.Errorf("after the store came back: %v", err)
	}
	if s := a.clock.takeSleeps(); len(s) != 0 {
		t.Errorf("store errors were counted as failures: sleeps %v", s)
	}
}

// An old bcrypt hash that verifies is replaced with argon2id, and the
// account gets its SCRAM credential; both through the real store.
func TestRehashAndSCRAMOnLogin(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old, err := bcrypt.GenerateFromPassword([]byte(ppPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAccount(ctx, "pp", string(old)); err != nil {
		t.Fatal(err)
	}
	a := New(st, Options{Logger: slog.New(slog.DiscardHandler)})

	// No SCRAM credential yet: SCRAM fails as for an unknown user.
	if _, _, err := scramLogin(a, tlsClient, "pp", ppPassword, false); !errors.Is(err, ErrMismatch) {
		t.Fatalf("SCRAM before any PLAIN login: %v", err)
	}
	_, acct, err := run(a, tlsClient, Plain, plainMsg("", "pp", ppPassword))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := st.GetAccount(ctx, "pp")
	if !strings.HasPrefix(got.PasswordHash, "$argon2id$") || !strings.HasPrefix(got.SCRAMSHA256, "SCRAM-SHA-256$16384:") {
		t.Fatalf("after login: hash %.12q, scram %.20q", got.PasswordHash, got.SCRAMSHA256)
	}
	if acct.PasswordHash != got.PasswordHash || acct.SCRAMSHA256 != got.SCRAMSHA256 {
		t.Error("the account returned is not the one stored")
	}
	if _, err := Verify(got.PasswordHash, ppPassword); err != nil {
		t.Errorf("new hash does not verify: %v", err)
	}
	if _, err := Verify(got.PasswordHash, bobPassword); !errors.Is(err, ErrMismatch) {
		t.Errorf("new hash takes another password: %v", err)
	}
	// Now SCRAM works, with an independent client.
	if _, acct, err := scramLogin(a, tlsClient, "pp", ppPassword, false); err != nil || acct.Name != "pp" {
		t.Fatalf("SCRAM after PLAIN: %v", err)
	}
	// A further login changes nothing.
	if _, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword); err != nil {
		t.Fatal(err)
	}
	if again, _ := st.GetAccount(ctx, "pp"); again.PasswordHash != got.PasswordHash || again.SCRAMSHA256 != got.SCRAMSHA256 {
		t.Error("a login with a current hash rewrote it")
	}
}

// A rehash must not undo a password change made while the login ran.
func TestRehashKeepsAConcurrentPasswordChange(t *testing.T) {
	a := newTestAuth(t, noLock)
	old, _ := bcrypt.GenerateFromPassword([]byte(ppPassword), bcrypt.MinCost)
	a.accts.set("pp", string(old), "")
	newHash, newSCRAM := creds(t, bobPassword)
	a.accts.beforeUpgrade = func() {
		a.accts.mu.Lock()
		a.accts.accts["pp"].PasswordHash, a.accts.accts["pp"].SCRAMSHA256 = newHash, newSCRAM
		a.accts.mu.Unlock()
	}
	if _, err := a.CheckPassword(ctx, tlsClient, "pp", ppPassword); err != nil {
		t.Fatal(err) // the old password was right when checked
	}
	if got := a.accts.get("pp"); got.PasswordHash != newHash || got.SCRAMSHA256 != newSCRAM || a.accts.upgrades != 0 {
		t.Errorf("the password set meanwhile was overwritten")
	}
}

// A password SCRAM cannot use here still logs in with PLAIN; the account
// simply gets no SCRAM credential.
func TestPasswordWithoutSCRAM(t *testing.T) {
	a := newTestAuth(t, noLock)
	const pw = "пароль-секрет"
	h, s, err := NewCredentials(pw)
	if err != nil || s != "" || !strings.HasPrefix(h, "$argon2id$") {
		t.Fatalf("NewCredentials(%q) = %.12q, %q, %v", pw, h, s, err)
	}
	a.accts.set("ivan", h, s)
	if _, err := a.CheckPassword(ctx, tlsClient, "ivan", pw); err != nil {
		t.Fatal(err)
	}
	if got := a.accts.get("ivan"); got.SCRAMSHA256 != "" || a.accts.upgrades != 0 {
		t.Errorf("credential %q made for a password that cannot be prepared", got.SCRAMSHA256)
	}
}

// No more password checks run at once than the bound, however many logins
// arrive together (each argon2id check takes 19 MiB).
func TestBoundedVerify(t *testing.T) {
	hash, err := Hash("pw")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	inside, most, calls := 0, 0, 0
	bounded := boundedWith(2, func(h, p string) (bool, error) {
		mu.Lock()
		inside++
		calls++
		most = max(most, inside)
		mu.Unlock()
		defer func() { mu.Lock(); inside--; mu.Unlock() }()
		return Verify(h, p)
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := bounded(hash, "pw"); err != nil {
				t.Error(ok, err)
			}
		}()
	}
	wg.Wait()
	if calls != 8 || most > 2 || most == 0 {
		t.Errorf("%d checks, %d at once; want 8, at most 2", calls, most)
	}
}
