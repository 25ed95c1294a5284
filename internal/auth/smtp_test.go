package auth

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"
)

// A Mechanism is a go-sasl sasl.Server: go-smtp's server drives it over a
// real socket on 127.0.0.1, against go-smtp's client with go-sasl's PLAIN
// and LOGIN and xdg-go/scram's SCRAM-SHA-256.
var _ sasl.Server = Mechanism(nil)

type smtpBackend struct{ a *Authenticator }

func (b smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String())
	if err != nil {
		return nil, err
	}
	return &smtpSession{a: b.a, c: Client{Addr: ap.Addr(), Service: "smtp"}}, nil
}

type smtpSession struct {
	a *Authenticator
	c Client
}

func (s *smtpSession) AuthMechanisms() []string { return s.a.Mechanisms(s.c) }

// Auth maps the errors to SMTP replies (RFC 4954 section 6) as smtpd would.
func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	m, err := s.a.Start(ctx, s.c, mech)
	if err != nil {
		return nil, smtpErr(err)
	}
	return serverFunc(func(resp []byte) ([]byte, bool, error) {
		ch, done, err := m.Next(resp)
		return ch, done, smtpErr(err)
	}), nil
}

type serverFunc func([]byte) ([]byte, bool, error)

func (f serverFunc) Next(r []byte) ([]byte, bool, error) { return f(r) }

func smtpErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMismatch):
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	case errors.Is(err, ErrEncryptionRequired):
		return &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required"}
	}
	return err
}

func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *smtpSession) Data(io.Reader) error                 { return nil }
func (s *smtpSession) Reset()                               {}
func (s *smtpSession) Logout() error                        { return nil }

// scramSASL adapts an xdg-go/scram conversation to go-sasl's client.
type scramSASL struct{ conv *scram.ClientConversation }

func (c scramSASL) Start() (string, []byte, error) {
	first, err := c.conv.Step("")
	return SCRAMSHA256, []byte(first), err
}

func (c scramSASL) Next(ch []byte) ([]byte, error) {
	r, err := c.conv.Step(string(ch))
	return []byte(r), err // "" after server-final: an empty line, as RFC 4954 wants
}

func TestOverSMTP(t *testing.T) {
	a := newTestAuth(t, noLock)
	srv := smtp.NewServer(smtpBackend{a.Authenticator})
	srv.AllowInsecureAuth = true // the plain-text rule is auth's, and 127.0.0.1 passes it
	srv.Domain = "localhost"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	scramClient := func(user, pw string) sasl.Client {
		c, err := scram.SHA256.NewClient(user, pw, "")
		if err != nil {
			t.Fatal(err)
		}
		return scramSASL{c.NewConversation()}
	}
	for _, tc := range []struct {
		name     string
		client   sasl.Client
		wantCode int // 0: success
	}{
		{"PLAIN", sasl.NewPlainClient("", "pp", ppPassword), 0},
		{"LOGIN", sasl.NewLoginClient("bob", bobPassword), 0},
		{"SCRAM-SHA-256", scramClient("pp", ppPassword), 0},
		{"PLAIN, another account's password", sasl.NewPlainClient("", "pp", bobPassword), 535},
		{"LOGIN, wrong password", sasl.NewLoginClient("pp", "wrong"), 535},
		{"SCRAM-SHA-256, another account's password", scramClient("bob", ppPassword), 535},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := smtp.Dial(l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("client.example"); err != nil {
				t.Fatal(err)
			}
			if ok, mechs := c.Extension("AUTH"); !ok || mechs != "SCRAM-SHA-256 PLAIN LOGIN" {
				t.Errorf("AUTH %q", mechs)
			}
			err = c.Auth(tc.client)
			var se *smtp.SMTPError
			switch {
			case tc.wantCode == 0 && err != nil:
				t.Errorf("login failed: %v", err)
			case tc.wantCode != 0 && (!errors.As(err, &se) || se.Code != tc.wantCode):
				t.Errorf("err = %v, want code %d", err, tc.wantCode)
			}
		})
	}
}
