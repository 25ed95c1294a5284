//go:build cgo && yescrypt

package auth

// yescrypt and the other libxcrypt formats through the system's crypt(3):
// built only with -tags yescrypt (and cgo), since it needs libcrypt at run
// time and the headers (libcrypt-dev) at build time.

/*
#cgo LDFLAGS: -lcrypt
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

// check returns 1 for a match, 0 for a mismatch, -1 for a hash crypt_r
// cannot read (it returns NULL or a "*"-string then).
static int check(const char *hash, const char *pw) {
	struct crypt_data *d = calloc(1, sizeof(struct crypt_data));
	if (d == NULL) return -1;
	char *out = crypt_r(pw, hash, d);
	int r;
	if (out == NULL || out[0] == '*') r = -1;
	else r = strcmp(out, hash) == 0 ? 1 : 0;
	explicit_bzero(d, sizeof(struct crypt_data));
	free(d);
	return r;
}
*/
import "C"

import (
	"crypto/subtle"
	"errors"
	"unsafe"
)

func init() {
	systemCrypt = func(hash, password string) error {
		ch, cp := C.CString(hash), C.CString(password)
		defer C.free(unsafe.Pointer(ch))
		defer func() {
			// The password's copy is wiped before it is freed.
			b := unsafe.Slice((*byte)(unsafe.Pointer(cp)), len(password))
			subtle.XORBytes(b, b, b)
			C.free(unsafe.Pointer(cp))
		}()
		switch C.check(ch, cp) {
		case 1:
			return nil
		case 0:
			return ErrMismatch
		}
		return errors.New("auth: the system's crypt(3) cannot read this hash")
	}
}
