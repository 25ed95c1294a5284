package imapd

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"sort"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/inflate"
	"github.com/posthorn/posthorn/internal/netserve"
	"github.com/posthorn/posthorn/internal/store"
)

func (c *session) cmdStartTLS(cmd *imapwire.Command) result {
	switch {
	case c.srv.TLSConfig == nil:
		return no("", "STARTTLS is not available")
	case c.tls:
		return badResult("Already using TLS")
	}
	if n := c.br.Buffered(); n > 0 {
		// Commands pipelined after STARTTLS came in clear before the
		// handshake: they are thrown away with the old reader, never run
		// inside TLS (RFC 9051 section 6.2.1; CVE-2011-0411).
		c.srv.Log.Warn("imap plaintext pipelined after STARTTLS dropped", "ip", netserve.IPString(c.ip), "bytes", n)
	}
	c.w.Status(cmd.Tag, "OK", "", "Begin TLS negotiation now")
	if err := c.flush(); err != nil {
		c.state, c.ended = stateLogout, "write failed"
		return result{}
	}
	tc := tls.Server(c.raw, c.srv.TLSConfig)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(c.srv.ctx); err != nil {
		c.srv.Log.Info("imap TLS handshake failed", "ip", netserve.IPString(c.ip), "err", err)
		c.state, c.ended = stateLogout, "TLS handshake failed"
		return result{}
	}
	tc.SetDeadline(time.Time{})
	c.tls = true
	c.setConn(c.deadlines(tc))
	return result{}
}

func (c *session) cmdLogin(ctx context.Context, a *imapwire.LoginCommand) result {
	if !c.srv.Auth.PlaintextAllowed(c.client()) {
		// LOGINDISABLED is advertised (RFC 9051 section 6.2.3).
		return no("PRIVACYREQUIRED", "LOGIN needs TLS first (STARTTLS)")
	}
	acct, err := c.srv.Auth.CheckPassword(c.srv.ctx, c.client(), a.Username, a.Password)
	if err != nil {
		return c.authFailed(err)
	}
	return c.loggedIn(ctx, acct)
}

// cmdAuthenticate runs a SASL exchange (RFC 9051 section 6.2.2) with
// SASL-IR (RFC 4959).
func (c *session) cmdAuthenticate(ctx context.Context, a *imapwire.AuthenticateCommand) result {
	m, err := c.srv.Auth.Start(c.srv.ctx, c.client(), a.Mechanism)
	if err != nil {
		return c.authFailed(err)
	}
	var resp []byte // nil: no initial response
	if a.HasInitial {
		if resp, err = base64.StdEncoding.Strict().DecodeString(a.Initial); err != nil {
			return badResult("Invalid base64 in the initial response")
		}
		if resp == nil {
			resp = []byte{}
		}
	}
	for {
		challenge, done, err := m.Next(resp)
		if err != nil {
			return c.authFailed(err)
		}
		if done {
			return c.loggedIn(ctx, m.Account())
		}
		c.w.Atom("+ ").Atom(base64.StdEncoding.EncodeToString(challenge)).CRLF()
		if err := c.flush(); err != nil {
			c.state, c.ended = stateLogout, "write failed"
			return result{}
		}
		data, cancelled, err := c.r.ReadAuthResponse()
		var perr *imapwire.Error
		switch {
		case errors.As(err, &perr):
			return badResult(perr.Msg)
		case err != nil:
			c.readFailed(err)
			c.state = stateLogout
			return result{}
		case cancelled:
			return badResult("Authentication canceled")
		}
		resp = data
		if resp == nil {
			resp = []byte{}
		}
	}
}

// authFailed answers a failed login with the RFC 5530 response codes.
func (c *session) authFailed(err error) result {
	switch {
	case errors.Is(err, auth.ErrMismatch):
		return no("AUTHENTICATIONFAILED", "Authentication failed")
	case errors.Is(err, auth.ErrEncryptionRequired):
		return no("PRIVACYREQUIRED", "Passwords are accepted only over TLS (STARTTLS)")
	case errors.Is(err, auth.ErrThrottled):
		return no("UNAVAILABLE", "Too many failed logins; try again later")
	case errors.Is(err, auth.ErrCanceled):
		return badResult("Authentication canceled")
	case errors.Is(err, auth.ErrMalformed):
		return badResult("Malformed authentication exchange")
	case errors.Is(err, auth.ErrUnsupported):
		return no("", "Unsupported authentication mechanism")
	}
	c.srv.Log.Error("imap login", "ip", netserve.IPString(c.ip), "err", err)
	return no("UNAVAILABLE", "Cannot check the login now; try again later")
}

// loggedIn enters the authenticated state.
func (c *session) loggedIn(ctx context.Context, acct *store.Account) result {
	if acct == nil {
		return no("AUTHENTICATIONFAILED", "Authentication failed")
	}
	c.acct = acct
	c.state = stateAuth
	c.dc.Timeout = c.srv.IdleTimeout
	c.newReader() // literals up to APPENDLIMIT from now on
	c.changes, c.unsubscribe = c.srv.Store.Subscribe(acct.ID)
	return okCode("CAPABILITY "+c.capabilities(), "Logged in")
}

// cmdEnable turns on extensions (RFC 5161); the untagged ENABLED lists
// those newly enabled.
func (c *session) cmdEnable(a *imapwire.EnableCommand) result {
	var enabled []string
	for _, capa := range a.Caps {
		switch capa {
		case "IMAP4REV2":
			if !c.rev2 {
				c.rev2, c.utf8 = true, true
				enabled = append(enabled, "IMAP4rev2")
			}
		case "UTF8=ACCEPT":
			if !c.utf8Accept {
				c.utf8Accept, c.utf8 = true, true
				enabled = append(enabled, "UTF8=ACCEPT")
			}
		case "CONDSTORE":
			if !c.condstore {
				c.condstore = true
				enabled = append(enabled, "CONDSTORE")
			}
		case "QRESYNC":
			// QRESYNC implies CONDSTORE (RFC 7162 section 3.2.3).
			if !c.qresync {
				c.qresync, c.condstore = true, true
				enabled = append(enabled, "QRESYNC")
			}
		}
	}
	c.w.UTF8 = c.utf8
	c.w.Untagged().Atom("ENABLED")
	for _, e := range enabled {
		c.w.SP().Atom(e)
	}
	c.w.CRLF()
	return ok("ENABLE completed")
}

// cmdID answers RFC 2971's ID with the server's name; the client's own
// fields are logged (they say which client this is).
func (c *session) cmdID(a *imapwire.IDCommand) result {
	if a.Params != nil {
		keys := make([]string, 0, len(a.Params))
		for k := range a.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attrs := []any{"ip", netserve.IPString(c.ip)}
		for _, k := range keys {
			if len(attrs) >= 2+2*8 {
				break
			}
			if v := a.Params[k]; v != nil {
				val := *v
				if len(val) > 64 {
					val = val[:64]
				}
				attrs = append(attrs, "id."+truncate(k, 32), val)
			}
		}
		c.srv.Log.Debug("imap client id", attrs...)
	}
	c.w.Untagged().Atom(`ID ("name" "posthorn" "vendor" "posthorn")`).CRLF()
	return ok("ID completed")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// cmdCompress starts DEFLATE compression both ways (RFC 4978).
func (c *session) cmdCompress(cmd *imapwire.Command) result {
	a := cmd.Args.(*imapwire.CompressCommand)
	switch {
	case a.Mechanism != "DEFLATE":
		return badResult("Unknown compression mechanism")
	case c.compressed:
		return no("COMPRESSIONACTIVE", "Compression is already on")
	}
	c.w.Status(cmd.Tag, "OK", "", "DEFLATE active")
	if err := c.flush(); err != nil {
		c.state, c.ended = stateLogout, "write failed"
		return result{}
	}
	under := c.conn
	// Raw DEFLATE (RFC 1951) both ways, as RFC 4978 section 3 says. The
	// reader is internal/inflate's: it hands over each block's data when
	// the block ends and reads no bit it does not need, which clients
	// that flush with zlib's Z_PARTIAL_FLUSH (mbsync, Thunderbird) need
	// (compress/flate would wait for more input, golang/go#31514). What
	// the client sent after COMPRESS is already compressed: the old
	// reader's buffer is carried over under the decompressor.
	var src io.Reader = under
	if n := c.br.Buffered(); n > 0 {
		buf, _ := c.br.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(buf)), under)
	}
	fw, _ := flate.NewWriter(under, flate.DefaultCompression)
	c.compressed = true
	c.setConn(struct {
		io.Reader
		io.Writer
	}{inflate.NewReader(bufio.NewReaderSize(src, 4096)), fw})
	c.flushers = []func() error{fw.Flush}
	return result{}
}
