package auth

// Verification of crypt(3) hashes carried over from a Unix system's
// /etc/shadow by `posthorn import sendmail`: SHA-512-crypt ($6$, FreeBSD's
// default), SHA-256-crypt ($5$) and MD5-crypt ($1$) in pure Go; yescrypt
// ($y$, Debian's default) and the other formats of libxcrypt only through the
// system's crypt(3), in a build with the "yescrypt" tag (crypt_cgo.go). Such a
// hash is never made here: a successful login reports needsRehash and the
// caller stores an argon2id hash in its place.

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/GehirnInc/crypt"
	"github.com/GehirnInc/crypt/md5_crypt"
	"github.com/GehirnInc/crypt/sha256_crypt"
	"github.com/GehirnInc/crypt/sha512_crypt"
)

// ErrCannotVerify is returned by Verify for a hash in a format this build of
// posthorn cannot check (yescrypt without the "yescrypt" build tag).
var ErrCannotVerify = errors.New("auth: cannot verify this password hash format")

// maxCryptRounds bounds the rounds= of a SHA-crypt hash read from a file, so
// that a tampered hash cannot make one login take minutes (the default is
// 5,000; glibc's maximum is 999,999,999).
const maxCryptRounds = 100_000

// systemCrypt, when set (crypt_cgo.go), checks a hash through the system's
// crypt(3). It returns ErrMismatch or nil, or another error for a hash the
// library does not take.
var systemCrypt func(hash, password string) error

// IsCryptHash reports whether hash is a crypt(3) string of a format Verify
// knows of (whether or not this build can check it).
func IsCryptHash(hash string) bool {
	for _, p := range []string{"$1$", "$5$", "$6$", "$y$", "$gy$", "$7$"} {
		if strings.HasPrefix(hash, p) {
			return true
		}
	}
	return false
}

// CanVerify reports whether this build can check hash: argon2id, bcrypt and
// the crypt(3) formats above, yescrypt only with the system's crypt(3).
func CanVerify(hash string) bool {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"),
		strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"),
		strings.HasPrefix(hash, "$1$"), strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return true
	case IsCryptHash(hash):
		return systemCrypt != nil
	}
	return false
}

// verifyCrypt checks a crypt(3) hash. A match always asks for a rehash.
func verifyCrypt(hash, password string) (bool, error) {
	var c crypt.Crypter
	switch {
	case strings.HasPrefix(hash, "$6$"):
		c = sha512_crypt.New()
	case strings.HasPrefix(hash, "$5$"):
		c = sha256_crypt.New()
	case strings.HasPrefix(hash, "$1$"):
		c = md5_crypt.New()
	default:
		if systemCrypt == nil {
			return false, fmt.Errorf("%w (%s)", ErrCannotVerify, cryptID(hash))
		}
		if err := systemCrypt(hash, password); err != nil {
			return false, err
		}
		return true, nil
	}
	if err := checkCryptShape(hash); err != nil {
		return false, err
	}
	// The hash is made again from its settings (all but the checksum) and
	// compared here: the library's own Verify takes the checksum into the
	// salt when there is a rounds= field.
	settings := hash[:strings.LastIndexByte(hash, '$')]
	got, err := c.Generate([]byte(password), []byte(settings))
	if err != nil {
		return false, fmt.Errorf("auth: %s hash: %w", cryptID(hash), err)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(hash)) != 1 {
		return false, ErrMismatch
	}
	return true, nil
}

// checkCryptShape refuses what the library would quietly accept: a checksum
// missing or of the wrong length (a locked "$6$salt$" would otherwise be compared as it is), and
// rounds beyond maxCryptRounds.
func checkCryptShape(hash string) error {
	parts := strings.Split(hash, "$")                           // "", id, [rounds=N], salt, checksum
	want := map[string]int{"1": 22, "5": 43, "6": 86}[parts[1]] // checksum length
	if len(parts) < 4 || len(parts) > 5 || len(parts[len(parts)-1]) != want {
		return fmt.Errorf("auth: malformed %s hash", cryptID(hash))
	}
	if len(parts) == 5 {
		r, ok := strings.CutPrefix(parts[2], "rounds=")
		n, err := strconv.Atoi(r)
		if !ok || err != nil || n <= 0 {
			return fmt.Errorf("auth: malformed %s hash", cryptID(hash))
		}
		if n > maxCryptRounds {
			return fmt.Errorf("auth: %s hash with %d rounds, more than %d", cryptID(hash), n, maxCryptRounds)
		}
	}
	return nil
}

// cryptID names a crypt(3) format for messages, never showing the hash.
func cryptID(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$6$"):
		return "SHA-512-crypt"
	case strings.HasPrefix(hash, "$5$"):
		return "SHA-256-crypt"
	case strings.HasPrefix(hash, "$1$"):
		return "MD5-crypt"
	case strings.HasPrefix(hash, "$y$"):
		return "yescrypt"
	case strings.HasPrefix(hash, "$gy$"):
		return "gost-yescrypt"
	case strings.HasPrefix(hash, "$7$"):
		return "scrypt"
	}
	return "crypt"
}
