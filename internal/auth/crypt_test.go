package auth

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// Hashes of "old secret" made by openssl passwd (-6, -5, -1) and mkpasswd
// (Debian's whois package), not by the code under test.
var cryptVectors = []struct{ name, hash string }{
	{"sha512", "$6$saltsalt$cs5x.U.oRfkcexxH8LXRD9Uld7RvmiYFZ1YjE1dBtMQhWQ7SdWVSjiJAW20DRKdKd/czkF45bcLd5WA8oAx5w/"},
	{"sha512 rounds", "$6$rounds=10000$saltsaltsalt$ts6s.sxzExHoY8F7CD64nYOZysfEeKzwlwf2vpj7yWef/tN2jNfd6IDzvhQHEVEh2l2rUI2UhvLtaBCvhSSUR1"},
	{"sha256", "$5$saltsalt$4IIqVBqlr2G3Vr412EGbStqB6QsviVBQt.vIdguikp7"},
	{"md5", "$1$saltsalt$L.moN9PHx6sF9FzdxZRBa0"},
	{"bcrypt 2b", "$2b$05$nKuduGPCiWHiS/de38XVLedziYdmCypUxvXtUHcQGdHmro7PBVsH2"},
}

const yescryptVector = "$y$j9T$beh8eukPyzdl1NO2Ywmgv/$08DWPjgWTjqzo9oRZkVE.aVRzVS3EJuVenOsQwA.wt1"

func TestVerifyCryptHashes(t *testing.T) {
	for _, v := range cryptVectors {
		t.Run(v.name, func(t *testing.T) {
			rehash, err := Verify(v.hash, "old secret")
			if err != nil {
				t.Fatalf("right password: %v", err)
			}
			if !rehash {
				t.Error("a crypt hash must be replaced by argon2id after the login")
			}
			if _, err := Verify(v.hash, "old secreT"); !errors.Is(err, ErrMismatch) {
				t.Errorf("wrong password: %v, want ErrMismatch", err)
			}
			if _, err := Verify(v.hash, ""); !errors.Is(err, ErrMismatch) {
				t.Errorf("empty password: %v, want ErrMismatch", err)
			}
			if !CanVerify(v.hash) {
				t.Error("CanVerify false")
			}
		})
	}
}

func TestVerifyCryptMalformed(t *testing.T) {
	for _, h := range []string{
		"$6$saltsalt$",         // no checksum: a locked or truncated hash
		"$6$saltsalt",          // no checksum field
		"$6$rounds=x$salt$abc", // rounds not a number
		"$6$rounds=999999999$salt$cs5x.U.oRfkcexxH8LXRD9Uld7RvmiYFZ1YjE1dBtMQhWQ7SdWVSjiJAW20DRKdKd/czkF45bcLd5WA8oAx5w/", // too slow
		"$6$a$b$c$d",
		"$5$",
		"$1$",
	} {
		if _, err := Verify(h, "old secret"); err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%q) = %v, want a malformed-hash error", h, err)
		}
	}
	// A checksum of the right shape but wrong is a mismatch, not an error.
	bad := cryptVectors[0].hash[:len(cryptVectors[0].hash)-2] + "xx"
	if _, err := Verify(bad, "old secret"); !errors.Is(err, ErrMismatch) {
		t.Errorf("altered checksum: %v", err)
	}
}

func TestVerifyYescrypt(t *testing.T) {
	rehash, err := Verify(yescryptVector, "old secret")
	if systemCrypt == nil {
		// Without the build tag, a clear "cannot verify" naming the format.
		if !errors.Is(err, ErrCannotVerify) || !strings.Contains(err.Error(), "yescrypt") {
			t.Fatalf("yescrypt without crypt(3): %v, want ErrCannotVerify", err)
		}
		if CanVerify(yescryptVector) {
			t.Error("CanVerify(yescrypt) true without crypt(3)")
		}
		return
	}
	if err != nil || !rehash {
		t.Fatalf("yescrypt right password: %v, rehash %v", err, rehash)
	}
	if _, err := Verify(yescryptVector, "wrong"); !errors.Is(err, ErrMismatch) {
		t.Errorf("yescrypt wrong password: %v", err)
	}
	// A fresh hash from mkpasswd, when it is installed.
	if _, err := exec.LookPath("mkpasswd"); err == nil {
		out, err := exec.Command("mkpasswd", "-m", "yescrypt", "another one").Output()
		if err != nil {
			t.Fatal(err)
		}
		h := strings.TrimSpace(string(out))
		if _, err := Verify(h, "another one"); err != nil {
			t.Errorf("mkpasswd yescrypt: %v", err)
		}
	}
}

func TestIsCryptHash(t *testing.T) {
	for h, want := range map[string]bool{
		"$6$x$y": true, "$5$x$y": true, "$1$x$y": true, "$y$j9T$a$b": true,
		"$argon2id$v=19$": false, "$2b$05$x": false, "plain": false, "": false, "!": false, "*": false,
	} {
		if got := IsCryptHash(h); got != want {
			t.Errorf("IsCryptHash(%q) = %v", h, got)
		}
	}
}
