// Package queue is the outbound side of posthorn: queue IDs, the listing that
// `posthorn mailq` prints, and (with the outbound issue) the workers that deliver
// queued mail by MX or smart host, retry, and bounce. Queue entries themselves
// are kept by internal/store, in the same transaction as local deliveries.
package queue

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

var idEncoding = base32.NewEncoding("0123456789BCDFGHJKLMNPQRSTVWXYZa").WithPadding(base32.NoPadding)

// NewID returns a new queue ID: 16 characters, sortable by creation time (the
// first 5 bytes are the time in seconds), unique by 5 random bytes. It names a
// message in the SMTP reply, the log and mailq alike.
func NewID() string {
	var b [10]byte
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(time.Now().Unix()))
	copy(b[:5], t[3:])
	rand.Read(b[5:])
	return idEncoding.EncodeToString(b[:])
}
