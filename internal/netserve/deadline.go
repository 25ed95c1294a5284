package netserve

import (
	"net"
	"sync/atomic"
	"time"
)

// DeadlineConn sets the deadline before every read and write (the idle timeout bounds
// every wait for the client) and makes reads end at once after Stop.
//
// Reads end with a timeout error (os.ErrDeadlineExceeded) once Stopped holds
// true, so that a session waiting for its next command is woken at Shutdown
// and can say goodbye; writes go on (the goodbye must get out). A session
// that stacks connections (the socket, then TLS over it after STARTTLS) gives
// every DeadlineConn the same Stopped, so that one Store stops them all.
type DeadlineConn struct {
	net.Conn
	// Timeout bounds each read and each write; 0 leaves the deadlines
	// as they are.
	Timeout time.Duration
	// Stopped, once true, ends every read at once. nil: never.
	Stopped *atomic.Bool
}

func (d *DeadlineConn) stopped() bool { return d.Stopped != nil && d.Stopped.Load() }

func (d *DeadlineConn) Read(p []byte) (int, error) {
	if d.stopped() {
		d.Conn.SetReadDeadline(time.Now())
	} else if d.Timeout > 0 {
		d.Conn.SetReadDeadline(time.Now().Add(d.Timeout))
		// A Stop between the check above and this deadline had its
		// wake-up overwritten: look again.
		if d.stopped() {
			d.Conn.SetReadDeadline(time.Now())
		}
	}
	return d.Conn.Read(p)
}

func (d *DeadlineConn) Write(p []byte) (int, error) {
	if d.Timeout > 0 {
		d.Conn.SetWriteDeadline(time.Now().Add(d.Timeout))
	}
	return d.Conn.Write(p)
}

// Stop sets Stopped and ends a read in progress at once. Without Stopped only
// the read in progress ends. A session that lets a busy command finish sets
// Stopped alone instead (its next read ends at once) and calls Stop when idle.
func (d *DeadlineConn) Stop() {
	if d.Stopped != nil {
		d.Stopped.Store(true)
	}
	d.Conn.SetReadDeadline(time.Now())
}
