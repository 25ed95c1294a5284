package smtpd

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/auth"
)

// maxAuthLine is the room RFC 4954 section 4 asks for: an AUTH command with
// its initial response, or a response line, of up to 12288 octets.
const maxAuthLine = 12288

// maxHeaderSenders bounds the From: and Sender: addresses checked for one
// message; more is refused (RFC 5322 allows several From: addresses, not
// thousands).
const maxHeaderSenders = 100

// Replies of AUTH (RFC 4954 section 6) and of submission (RFC 6409).
var (
	replyAuthRequired = Reply{530, "5.7.0", "Authentication required"}
	replyAuthOK       = Reply{235, "2.7.0", "Authentication successful"}
	replyAuthFailed   = Reply{535, "5.7.8", "Authentication credentials invalid"}
	replyAuthThrottle = Reply{454, "4.7.0", "Too many failed logins, try again later"}
	replyAuthTemp     = Reply{454, "4.7.0", "Temporary authentication failure"}
	replyEncryptFirst = Reply{538, "5.7.11", "Encryption required for requested authentication mechanism"}
	replyAuthTooLong  = Reply{500, "5.5.6", "Authentication Exchange line is too long"}
)

// authOffered reports whether AUTH is advertised and taken on this
// connection: over TLS, or where the plain-text rule lets a password pass in
// clear (127.0.0.1, ::1, or [auth] allow_plaintext). Elsewhere no mechanism is
// offered before STARTTLS, not even SCRAM-SHA-256, which would not give the
// password away: RFC 8314 section 3 wants submission over TLS, and a client
// told "AUTH" before STARTTLS is tempted to use it there.
func (c *conn) authOffered() bool {
	a := c.srv.Auth
	return a != nil && a.PlaintextAllowed(c.authClient())
}

func (c *conn) authClient() auth.Client {
	return auth.Client{Addr: c.ip, TLS: c.tls, Service: "smtp"}
}

// cmdAuth runs AUTH (RFC 4954 section 4): mechanism [initial-response], then
// "334 challenge" and one response line per step until 235 or an error.
func (c *conn) cmdAuth(arg string) {
	switch {
	case c.srv.Auth == nil:
		c.send(Reply{502, "5.5.1", "AUTH not available on this port"})
		return
	case !c.esmtp:
		c.send(replyBadSequence("Send EHLO first"))
		return
	case c.account != "":
		c.send(replyBadSequence("Already authenticated"))
		return
	case c.tx != nil:
		c.send(replyBadSequence("AUTH not allowed during a mail transaction"))
		return
	}
	fields := strings.Fields(arg)
	if len(fields) == 0 || len(fields) > 2 {
		c.send(replySyntax("Syntax: AUTH mechanism [initial-response]"))
		return
	}
	if !c.authOffered() {
		c.send(replyEncryptFirst)
		return
	}
	// The exchange, throttling delays included, must end in bounded time.
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.CommandTimeout)
	defer cancel()
	m, err := c.srv.Auth.Start(ctx, c.authClient(), fields[0])
	if err != nil {
		c.send(authReply(err))
		return
	}
	var resp []byte // nil: no initial response
	if len(fields) == 2 {
		if resp, err = auth.DecodeResponse(fields[1]); err != nil {
			c.send(authReply(err))
			return
		}
	}
	for {
		challenge, done, err := m.Next(resp)
		if err != nil {
			c.send(authReply(err))
			return
		}
		if done {
			break
		}
		c.send(Reply{334, "", base64.StdEncoding.EncodeToString(challenge)})
		line, err := c.readLineMax(maxAuthLine)
		switch {
		case errors.Is(err, errLineTooLong):
			c.send(replyAuthTooLong)
			return
		case err != nil:
			c.readFailed(err)
			c.quit = true
			return
		}
		if resp, err = auth.DecodeResponse(line); err != nil {
			c.send(authReply(err))
			return
		}
	}
	acct := m.Account()
	c.account = strings.ToLower(acct.Name)
	c.client.Authenticated = true // policy: an authenticated client may relay
	c.send(replyAuthOK)
}

// authReply maps auth's errors to the replies of RFC 4954 section 6.
func authReply(err error) Reply {
	switch {
	case errors.Is(err, auth.ErrMismatch):
		return replyAuthFailed
	case errors.Is(err, auth.ErrThrottled):
		return replyAuthThrottle
	case errors.Is(err, auth.ErrEncryptionRequired):
		return replyEncryptFirst
	case errors.Is(err, auth.ErrUnsupported):
		return Reply{504, "5.5.4", "Unrecognized authentication type"}
	case errors.Is(err, auth.ErrCanceled):
		return Reply{501, "5.0.0", "Authentication canceled"}
	case errors.Is(err, auth.ErrMalformed):
		return Reply{501, "5.5.2", "Malformed authentication response"}
	}
	return replyAuthTemp
}

// checkEnvelopeSender checks, for a logged-in user, that MAIL FROM names one
// of the account's addresses (route.Resolver.Owns). The null sender is
// refused: a user sends no bounces, and <> would escape the check.
func (c *conn) checkEnvelopeSender(tx *transaction) (Reply, bool) {
	if tx.null {
		return Reply{553, "5.7.1", "Null sender not allowed for authenticated users"}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := c.srv.Router.Owns(ctx, c.account, tx.from)
	switch {
	case err != nil:
		c.srv.Log.Warn("smtp sender ownership check failed", "client_ip", c.ip.String(), "user", c.account, "err", err)
		return replyForError(err), false
	case !ok:
		c.srv.Log.Info("smtp sender not owned", "client_ip", c.ip.String(), "user", c.account, "from", tx.from.String())
		return Reply{553, "5.7.1", "<" + sanitize(tx.from.String(), 200) + ">: Sender address not owned by the logged-in user"}, false
	}
	return Reply{}, true
}

// headerParser reads From: and Sender: strictly (RFC 5322 section 3.4): a
// field that does not parse is refused, so that what is checked is what a
// mail reader shows. Display names are not looked at, so an encoded word in
// a charset Go does not know is passed over rather than refused.
var headerParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// checkHeaderSenders checks, for a logged-in user, that every address of
// every From: and Sender: field is the account's. id is nil when the session
// is not authenticated.
func (c *conn) checkHeaderSenders(tx *transaction, id *identityFields) (Reply, bool) {
	if id == nil {
		return Reply{}, true
	}
	refuse := func(text string) (Reply, bool) {
		c.srv.Log.Info("smtp header sender refused", "client_ip", c.ip.String(), "queue_id", tx.id, "user", c.account, "reason", text)
		return Reply{553, "5.7.1", text}, false
	}
	if id.overflow {
		return refuse("From: or Sender: header too long to check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	checked := map[string]bool{}
	for _, f := range []struct {
		name   string
		values []string
	}{{"From:", id.from}, {"Sender:", id.sender}} {
		for _, v := range f.values {
			// Unfold (RFC 5322 section 2.2.3): the CRLFs before WSP go. Bytes
			// that are not UTF-8 (a Latin-1 display name from an old
			// program) become '?': an address with them is nobody's anyway.
			v = strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
			v = strings.ToValidUTF8(v, "?")
			list, err := headerParser.ParseList(v)
			if err != nil || len(list) == 0 {
				return refuse(f.name + " header is not a readable address list")
			}
			for _, ma := range list {
				a, err := addr.ParsePath(ma.Address, true)
				if err != nil {
					return refuse(f.name + " header address is not valid")
				}
				key := strings.ToLower(a.String())
				if checked[key] {
					continue
				}
				if len(checked) >= maxHeaderSenders {
					return refuse("Too many addresses in From: and Sender:")
				}
				checked[key] = true
				ok, err := c.srv.Router.Owns(ctx, c.account, a)
				if err != nil {
					c.srv.Log.Warn("smtp sender ownership check failed", "client_ip", c.ip.String(), "user", c.account, "err", err)
					return replyForError(err), false
				}
				if !ok {
					return refuse("<" + sanitize(a.String(), 200) + ">: " + f.name + " address not owned by the logged-in user")
				}
			}
		}
	}
	return Reply{}, true
}

// headerFix makes the fields a submission server adds to a message that lacks
// them (RFC 6409 section 8.2 Date:, 8.3 Message-ID:, and From: the
// authenticated envelope sender, which checkEnvelopeSender has checked).
func (c *conn) headerFix(tx *transaction) *headerFix {
	var r [8]byte
	rand.Read(r[:])
	return &headerFix{
		date:      "Date: " + time.Now().Format(time.RFC1123Z) + "\r\n",
		messageID: "Message-ID: <" + tx.id + "." + hex.EncodeToString(r[:]) + "@" + c.srv.Hostname + ">\r\n",
		from:      "From: <" + tx.from.String() + ">\r\n",
	}
}
