package smtpd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/store"
)

// Reply is one SMTP reply: a code, an enhanced status code (RFC 3463; RFC 2034
// requires one on every 2xx/4xx/5xx reply once ENHANCEDSTATUSCODES is
// advertised) and a text.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text) }

// Error makes a Reply usable as an error.
func (r Reply) Error() string { return r.String() }

// Replies used in more than one place. Codes follow RFC 5321 section 4.2 and the
// enhanced codes RFC 3463.
var (
	replyOK             = Reply{250, "2.0.0", "OK"}
	replyBadSequence    = func(text string) Reply { return Reply{503, "5.5.1", text} }
	replySyntax         = func(text string) Reply { return Reply{501, "5.5.4", text} }
	replyUnknownCommand = Reply{500, "5.5.2", "Command not recognized"}
	replyNotImplemented = Reply{502, "5.5.1", "Command not implemented"}
	replyLineTooLong    = Reply{500, "5.5.2", "Line too long"}
	replyTooManyErrors  = Reply{421, "4.7.0", "Too many errors, closing connection"}
	replyTimeout        = Reply{421, "4.4.2", "Timeout, closing connection"}
	replyTooBig         = Reply{552, "5.3.4", "Message size exceeds fixed maximum message size"}
	replyTooManyRcpts   = Reply{452, "4.5.3", "Too many recipients"}
	replyNoValidRcpts   = Reply{554, "5.5.1", "No valid recipients"}
	replyLocalError     = Reply{451, "4.3.0", "Local error in processing, try again later"}
	replyDiskFull       = Reply{452, "4.3.1", "Insufficient system storage, try again later"}
	replyOverQuota      = Reply{452, "4.2.2", "Mailbox full"}
	replyTooManyHops    = Reply{554, "5.4.6", "Too many hops: mail loop detected"}
	replyBareLF         = Reply{550, "5.6.0", "Message refused: bare LF or bare CR in message data (RFC 5321 section 2.3.8)"}
	replyBareLFClose    = Reply{521, "5.5.2", "Bare LF in message data ends the message ambiguously (RFC 5321 section 2.3.8); closing connection"}
	replyShutdown       = Reply{421, "4.3.2", "Server shutting down, try again later"}
)

// replyForError maps an error from routing, policy or delivery to the SMTP reply
// the client gets. It is the one place where errors become reply codes.
func replyForError(err error) Reply {
	var r Reply
	if errors.As(err, &r) {
		return r
	}
	var rej *route.Rejection
	if errors.As(err, &rej) {
		return Reply{rej.Code, rej.Enhanced, rej.Text}
	}
	switch {
	case errors.Is(err, store.ErrOverQuota):
		return replyOverQuota
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return replyDiskFull
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return Reply{451, "4.4.2", "Timeout in processing, try again later"}
	}
	return replyLocalError
}

// sanitize makes client-supplied text safe to put in a reply or a header:
// printable ASCII only, bounded length.
func sanitize(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}
