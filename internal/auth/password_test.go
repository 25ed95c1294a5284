package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestHashVerifyRoundTrip(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not an argon2id PHC string with the current parameters", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("hash contains the password")
	}
	if rehash, err := Verify(h, "correct horse"); err != nil || rehash {
		t.Errorf("Verify(right password) = %v, %v", rehash, err)
	}
	if _, err := Verify(h, "correct horsE"); !errors.Is(err, ErrMismatch) {
		t.Errorf("Verify(wrong password) = %v, want ErrMismatch", err)
	}
	h2, _ := Hash("correct horse")
	if h2 == h {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestHashRefusesUnusablePasswords(t *testing.T) {
	for _, pw := range []string{"", strings.Repeat("x", MaxPasswordLen+1)} {
		if _, err := Hash(pw); !errors.Is(err, ErrBadPassword) {
			t.Errorf("Hash(len %d) err = %v", len(pw), err)
		}
	}
}

// Vectors from OpenWall's crypt_blowfish test suite (wrapper.c).
func TestVerifyBcrypt(t *testing.T) {
	const h = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
	rehash, err := Verify(h, "U*U")
	if err != nil || !rehash {
		t.Errorf("Verify(bcrypt, right) = %v, %v; want nil and a rehash", rehash, err)
	}
	if _, err := Verify(h, "U*V"); !errors.Is(err, ErrMismatch) {
		t.Errorf("Verify(bcrypt, wrong) = %v", err)
	}
}

func TestVerifyRejectsBadHashes(t *testing.T) {
	good, _ := Hash("pw")
	parts := strings.Split(good, "$")
	for name, h := range map[string]string{
		"empty":         "",
		"unknown":       "$1$abc$def",
		"plain text":    "pw",
		"few fields":    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA",
		"bad version":   strings.Replace(good, "v=19", "v=16", 1),
		"huge memory":   strings.Replace(good, "m=19456", "m=99999999", 1),
		"huge time":     strings.Replace(good, "t=2", "t=1000", 1),
		"zero threads":  strings.Replace(good, "p=1", "p=0", 1),
		"bad salt":      "$argon2id$v=19$" + parts[3] + "$!!$" + parts[5],
		"short key":     "$argon2id$v=19$" + parts[3] + "$" + parts[4] + "$AAAA",
		"unknown param": strings.Replace(good, "p=1", "x=1", 1),
	} {
		// A hash that cannot be read is an error of its own, not a wrong password.
		if _, err := Verify(h, "pw"); err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("%s: Verify(%q) = %v, want a format error", name, h, err)
		}
	}
}

func TestOldParametersAskForRehash(t *testing.T) {
	// Same password hashed with other parameters still verifies, and asks to be
	// rehashed to the current ones.
	salt := []byte("0123456789abcdef")
	h := "$argon2id$v=19$m=8192,t=1,p=1$" + b64.EncodeToString(salt) + "$"
	key := argonKey("pw", salt, 1, 8192, 1)
	h += b64.EncodeToString(key)
	rehash, err := Verify(h, "pw")
	if err != nil || !rehash {
		t.Errorf("Verify(old params) = %v, %v", rehash, err)
	}
}

func BenchmarkVerify(b *testing.B) {
	h, _ := Hash("benchmark password")
	for b.Loop() {
		if _, err := Verify(h, "benchmark password"); err != nil {
			b.Fatal(err)
		}
	}
}
