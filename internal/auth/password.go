package auth

// Password hashing: argon2id for new hashes, bcrypt still read.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters for new hashes: the OWASP recommendation (19 MiB, 2 passes,
// 1 lane) keeps a login around 30 ms and leaves memory for many at once.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
	// Bounds on parameters read from a stored hash, so that a tampered hash
	// cannot make a login take gigabytes or minutes.
	maxArgonMemoryKiB = 1 << 20
	maxArgonTime      = 20
)

// MaxPasswordLen bounds what is hashed; longer input is refused, not truncated.
const MaxPasswordLen = 1024

// ErrMismatch is returned by Verify when the password is wrong, and by a
// login for a wrong password, an unknown user, or an authorization identity
// other than the user: the client is told only "authentication failed".
var ErrMismatch = errors.New("auth: authentication failed")

// ErrBadPassword is returned by Hash for a password that cannot be used.
var ErrBadPassword = errors.New("auth: unusable password")

var b64 = base64.RawStdEncoding

// Hash returns a PHC string for password: $argon2id$v=19$m=...,t=...,p=...$salt$key.
func Hash(password string) (string, error) {
	if password == "" || len(password) > MaxPasswordLen {
		return "", ErrBadPassword
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemoryKiB, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify checks password against a stored hash (argon2id PHC string, bcrypt
// $2a$/$2b$/$2y$, or a crypt(3) hash from /etc/shadow: see crypt.go). It returns nil on a match, ErrMismatch on a wrong password, and
// another error for a hash it cannot read. needsRehash is true when the hash is
// not in the current format and parameters, so the caller may store a new one.
func Verify(hash, password string) (needsRehash bool, err error) {
	if len(password) > MaxPasswordLen {
		return false, ErrMismatch
	}
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, password)
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, ErrMismatch
		}
		if err != nil {
			return false, fmt.Errorf("auth: bcrypt hash: %w", err)
		}
		return true, nil
	case IsCryptHash(hash):
		// Carried over from /etc/shadow by posthorn import (crypt.go).
		return verifyCrypt(hash, password)
	}
	return false, errors.New("auth: unknown password hash format")
}

func verifyArgon2id(hash, password string) (bool, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	parts := strings.Split(hash, "$")
	if len(parts) != 6 {
		return false, errors.New("auth: malformed argon2id hash")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, fmt.Errorf("auth: argon2id version %q not supported", parts[2])
	}
	var m, t uint32
	var p uint8
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false, errors.New("auth: malformed argon2id parameters")
		}
		switch k {
		case "m":
			m = uint32(n)
		case "t":
			t = uint32(n)
		case "p":
			if n > 255 {
				return false, errors.New("auth: malformed argon2id parameters")
			}
			p = uint8(n)
		default:
			return false, errors.New("auth: malformed argon2id parameters")
		}
	}
	if m == 0 || t == 0 || p == 0 || m > maxArgonMemoryKiB || t > maxArgonTime {
		return false, errors.New("auth: argon2id parameters out of range")
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errors.New("auth: malformed argon2id salt")
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errors.New("auth: malformed argon2id key")
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return false, ErrMismatch
	}
	rehash := m != argonMemoryKiB || t != argonTime || p != argonThreads || len(want) != argonKeyLen
	return rehash, nil
}

// argonKey is the key derivation used by Hash and Verify, for tests.
func argonKey(password string, salt []byte, t, m uint32, p uint8) []byte {
	return argon2.IDKey([]byte(password), salt, t, m, p, argonKeyLen)
}
