package antispam

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
)

// EarlyTalk is what a client did while the server held back its greeting.
type EarlyTalk struct {
	Talked bool   // it sent something
	Data   []byte // what it sent (at most earlyMax bytes), which the caller may still read as the session's start
}

const earlyMax = 512

// EarlyTalker holds back the greeting for wait and reports whether the client
// spoke meanwhile: RFC 5321 section 4.3.1 has the client wait for the
// greeting, and spamware that does not wait (or that pipelines its whole
// dialogue blind) gives itself away. Call it right after accept, before
// writing anything, and only where the client should wait — not on an
// implicit-TLS port, where the client speaks first.
//
// A zero wait checks nothing. The connection's read deadline is cleared
// afterwards. An error means the client left or the connection failed; a
// client that spoke and then closed reports Talked with no error.
func EarlyTalker(c net.Conn, wait time.Duration) (EarlyTalk, error) {
	if wait <= 0 {
		return EarlyTalk{}, nil
	}
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return EarlyTalk{}, err
	}
	buf := make([]byte, earlyMax)
	n, err := c.Read(buf)
	if derr := c.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = derr
	}
	if n > 0 {
		return EarlyTalk{Talked: true, Data: buf[:n]}, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return EarlyTalk{}, nil
	}
	return EarlyTalk{}, err
}

// Decision refuses an early talker: 554 in place of the greeting (RFC 5321
// section 3.1), then the caller closes the connection.
func (e EarlyTalk) Decision(ip netip.Addr) policy.Decision {
	if !e.Talked {
		return accept("")
	}
	return refuse(554, "5.5.1", "Protocol error: talked before the greeting",
		"early talker "+ip.Unmap().String()+": sent "+clean(string(e.Data), 60)+" before the greeting")
}
