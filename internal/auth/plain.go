package auth

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/store"
)

// plainServer is PLAIN (RFC 4616): one message, [authzid] NUL authcid NUL
// passwd. posthorn logs no one in as someone else, so authzid must be empty
// or the user's own name (section 2: the server checks that the
// authentication identity may act as the authorization identity).
type plainServer struct {
	a     *Authenticator
	ctx   context.Context
	c     Client
	asked bool
	done  bool
	acct  *store.Account
}

// Next implements Mechanism.
func (p *plainServer) Next(response []byte) ([]byte, bool, error) {
	if p.done {
		return nil, true, fmt.Errorf("%w: the exchange is over", ErrMalformed)
	}
	if response == nil && !p.asked {
		// No initial response: an empty challenge asks for the message.
		p.asked = true
		return []byte{}, false, nil
	}
	p.done = true
	parts := bytes.Split(response, []byte{0})
	if len(parts) != 3 {
		return nil, true, p.a.malformed(p.c, Plain, "", "PLAIN needs authzid NUL authcid NUL password")
	}
	authzid, user, password := string(parts[0]), string(parts[1]), string(parts[2])
	if user == "" || password == "" || len(user) > maxNameLen || len(authzid) > maxNameLen ||
		!utf8.ValidString(user) || !utf8.ValidString(authzid) {
		return nil, true, p.a.malformed(p.c, Plain, user, "empty or invalid user name or password")
	}
	if authzid != "" && !strings.EqualFold(authzid, user) {
		return nil, true, p.a.refuse(p.c, Plain, user, "authzid differs")
	}
	acct, err := p.a.passwordLogin(p.ctx, p.c, Plain, user, password)
	if err != nil {
		return nil, true, err
	}
	p.acct = acct
	return nil, true, nil
}

// Account implements Mechanism.
func (p *plainServer) Account() *store.Account { return p.acct }

// loginServer is LOGIN (draft-murchison-sasl-login-00): the server asks
// "Username:" and "Password:", the client answers each. A client may send the
// user name as an initial response (section 2.1).
type loginServer struct {
	a    *Authenticator
	ctx  context.Context
	c    Client
	step int // 0: nothing yet, 1: asked for the user name, 2: asked for the password
	user string
	done bool
	acct *store.Account
}

// Next implements Mechanism.
func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	if l.done {
		return nil, true, fmt.Errorf("%w: the exchange is over", ErrMalformed)
	}
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		return l.takeUser(response)
	case 1:
		return l.takeUser(response)
	}
	l.done = true
	if len(response) == 0 {
		return nil, true, l.a.malformed(l.c, Login, l.user, "empty password")
	}
	acct, err := l.a.passwordLogin(l.ctx, l.c, Login, l.user, string(response))
	if err != nil {
		return nil, true, err
	}
	l.acct = acct
	return nil, true, nil
}

func (l *loginServer) takeUser(response []byte) ([]byte, bool, error) {
	user := string(response)
	if user == "" || len(user) > maxNameLen || !utf8.ValidString(user) || strings.ContainsRune(user, 0) {
		l.done = true
		return nil, true, l.a.malformed(l.c, Login, "", "empty or invalid user name")
	}
	l.user = user
	l.step = 2
	return []byte("Password:"), false, nil
}

// Account implements Mechanism.
func (l *loginServer) Account() *store.Account { return l.acct }
