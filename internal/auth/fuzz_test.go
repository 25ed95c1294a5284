package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"
)

// FuzzMechanisms feeds hostile client messages to every mechanism: no
// panic, every exchange ends within its steps, an error always ends it, and
// no login succeeds without the right password.
func FuzzMechanisms(f *testing.F) {
	for _, seed := range [][]byte{
		plainMsg("", "pp", ppPassword),
		plainMsg("pp", "pp", "wrong"),
		[]byte("n,,n=pp,r=abc\x01c=biws,r=abc,p=AAAA"),
		[]byte("y,a=pp,n=pp,r=abc\x01c=eSws,r=abcxyz,p=" + "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
		[]byte("p=tls-unique,,n=pp,r=x"),
		[]byte("n,,n=p=2Cp,r=x,e=1\x01\x01"),
		[]byte("pp\x01" + ppPassword),
		[]byte("\x00\x00\x00"),
		{},
	} {
		f.Add(seed)
	}
	// One Authenticator for all runs: its credentials are costly to make.
	a := newTestAuth(f, noLock)
	// Nothing may grow with the number of runs.
	a.Authenticator.log = slog.New(slog.DiscardHandler)
	a.lim.cfg.Sleep = func(context.Context, time.Duration) error { return nil }
	a.lim.cfg.LockAfter = math.MaxInt
	a.verify = func(hash, password string) (bool, error) {
		// Only the account's real password can match; argon2 itself is
		// tested elsewhere and too slow to run per input.
		if hash == a.accts.get("pp").PasswordHash && password == ppPassword {
			return false, nil
		}
		return false, ErrMismatch
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The messages of one exchange are separated by \x01.
		msgs := bytes.Split(data, []byte{1})
		for _, mech := range []string{Plain, Login, SCRAMSHA256} {
			m, err := a.Start(ctx, tlsClient, mech)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i <= len(msgs); i++ {
				var resp []byte
				if i < len(msgs) {
					resp = msgs[i]
				}
				_, done, err := m.Next(resp)
				if err != nil {
					if !done {
						t.Fatalf("%s: error %v without done", mech, err)
					}
					if !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrMalformed) {
						t.Fatalf("%s: unexpected error %v", mech, err)
					}
					break
				}
				if done {
					acct := m.Account()
					if acct == nil {
						t.Fatalf("%s: done without an account", mech)
					}
					// Only PLAIN and LOGIN carry the real password in the
					// seeds; SCRAM cannot succeed without a proof from it.
					if mech == SCRAMSHA256 || !bytes.Contains(data, []byte(ppPassword)) || acct.Name != "pp" {
						t.Fatalf("%s: logged in as %q from %q", mech, acct.Name, data)
					}
					break
				}
				if i == len(msgs) {
					break // the client has nothing more to say
				}
			}
		}
	})
}

// FuzzParseSCRAM reads hostile stored credentials without panicking, and
// what it accepts prints back the same.
func FuzzParseSCRAM(f *testing.F) {
	_, s, _ := NewCredentials("pencil")
	f.Add(s)
	f.Add("SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5")
	f.Add("SCRAM-SHA-256$$:")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseSCRAM(s)
		if err != nil {
			return
		}
		if c.iter < scramMinIterations || c.iter > scramMaxIterations || len(c.storedKey) != 32 || len(c.serverKey) != 32 {
			t.Fatalf("accepted %q: %+v", s, c)
		}
		if _, err := parseSCRAM(c.String()); err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", s, c.String(), err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{"=", "*", "", "AHBwAHB3", "====", "YQ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeResponse(s)
		if err == nil && b == nil {
			t.Fatalf("%q: nil without error (would read as no initial response)", s)
		}
		if err != nil && !errors.Is(err, ErrCanceled) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("%q: %v", s, err)
		}
	})
}
