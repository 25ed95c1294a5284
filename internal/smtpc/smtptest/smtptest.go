// Package smtptest is a small SMTP server for tests of outbound delivery: the
// next hop, an MX or a smart host. It is built on go-smtp's server (not on
// posthorn's own, so that the two sides are written independently), listens on
// 127.0.0.x, can require STARTTLS and AUTH, answers recipients and messages as
// a test says, and records what it received.
package smtptest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/tlsutil"
)

// Options say how the server behaves.
type Options struct {
	Addr string // "127.0.0.1:0" when empty
	// TLS offers STARTTLS (or, with Implicit, speaks TLS from the start) with
	// a self-signed certificate for Hostname; the client trusts it through
	// Server.RootCAs.
	TLS      bool
	Implicit bool
	Hostname string // "mx.test" when empty
	// User and Password, when set, are required (AUTH PLAIN/LOGIN, after TLS
	// when TLS is on) before MAIL.
	User, Password string
	// Mechanisms offered for AUTH (default PLAIN and LOGIN).
	Mechanisms []string
	DSN        bool // advertise DSN
	// Rcpt decides the reply to each RCPT (nil: accept all). Return an
	// *smtp.SMTPError for a specific reply.
	Rcpt func(to string) error
	// Data decides the reply to each message after the final dot, counted
	// from 1 (nil: accept).
	Data func(n int) error
}

// Message is a received message.
type Message struct {
	From     string
	MailOpts smtp.MailOptions
	To       []string
	RcptOpts []smtp.RcptOptions
	Data     []byte
	TLS      bool
	AuthUser string
}

// Server is a running test server.
type Server struct {
	Addr    string
	RootCAs *x509.CertPool // trusts the server's certificate
	CertPEM []byte         // the certificate, for a config's ca_file

	opts Options
	srv  *smtp.Server
	ln   net.Listener

	mu       sync.Mutex
	msgs     []Message
	dataN    int
	sessions int
	notify   chan struct{}
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Listen starts a server.
func Listen(o Options) (*Server, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Hostname == "" {
		o.Hostname = "mx.test"
	}
	s := &Server{opts: o, notify: make(chan struct{}, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = o.Hostname
	srv.EnableDSN = o.DSN
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxRecipients = 1000
	srv.AllowInsecureAuth = !o.TLS
	if o.TLS {
		host, _, _ := net.SplitHostPort(o.Addr)
		certPEM, keyPEM, err := tlsutil.SelfSigned([]string{o.Hostname, host}, time.Now(), time.Hour)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.CertPEM = certPEM
		s.RootCAs = x509.NewCertPool()
		s.RootCAs.AppendCertsFromPEM(certPEM)
	}
	var ln net.Listener
	var err error
	if o.TLS && o.Implicit {
		ln, err = tls.Listen("tcp", o.Addr, srv.TLSConfig)
	} else {
		ln, err = net.Listen("tcp", o.Addr)
	}
	if err != nil {
		return nil, err
	}
	s.srv, s.ln, s.Addr = srv, ln, ln.Addr().String()
	go srv.Serve(ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Port is the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Messages returns what was received so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Sessions counts the connections that said hello.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Wait waits until n messages have arrived or d has passed, and returns them.
func (s *Server) Wait(n int, d time.Duration) []Message {
	deadline := time.After(d)
	for {
		if m := s.Messages(); len(m) >= n {
			return m
		}
		select {
		case <-s.notify:
		case <-deadline:
			return s.Messages()
		}
	}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	return &session{s: s, c: c}, nil
}

type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	msg  Message
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.User == "" {
		return nil
	}
	if ss.s.opts.Mechanisms != nil {
		return ss.s.opts.Mechanisms
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != ss.s.opts.User || pass != ss.s.opts.Password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
		}
		ss.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, errors.New("unsupported mechanism")
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.opts.User != "" && ss.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.msg = Message{From: from, AuthUser: ss.user}
	if opts != nil {
		ss.msg.MailOpts = *opts
	}
	_, ss.msg.TLS = ss.c.TLSConnectionState()
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if f := ss.s.opts.Rcpt; f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	ss.msg.To = append(ss.msg.To, to)
	var o smtp.RcptOptions
	if opts != nil {
		o = *opts
	}
	ss.msg.RcptOpts = append(ss.msg.RcptOpts, o)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.dataN++
	n := ss.s.dataN
	ss.s.mu.Unlock()
	if f := ss.s.opts.Data; f != nil {
		if err := f(n); err != nil {
			return err
		}
	}
	ss.msg.Data = b
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.msg)
	ss.s.mu.Unlock()
	select {
	case ss.s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (ss *session) Reset()        { ss.msg = Message{} }
func (ss *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): it asks for the user name, then the password.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if len(response) > 0 { // initial response: the user name
			l.user = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(response)
		l.step++
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, strings.TrimRight(string(response), "\x00"))
	}
}

// Temp is a 4xx reply for Rcpt and Data.
func Temp(text string) error {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: text}
}

// Perm is a 5xx reply for Rcpt and Data.
func Perm(code int, enhanced [3]int, text string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enhanced), Message: text}
}
