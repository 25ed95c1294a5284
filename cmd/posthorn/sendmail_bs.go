package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/maildrop"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/route"
	"github.com/posthorn/posthorn/internal/smtpd"
	"github.com/posthorn/posthorn/internal/store"
)

// sendmailSMTP is `sendmail -bs`: an SMTP session on standard input and
// output (what some programs, and mutt's smtp-less setups, speak to a local
// MTA). It is posthorn's own SMTP server with the client taken as 127.0.0.1,
// so local users may relay as with `sendmail RCPT`. Accepted messages go to
// the drop directory, as every local submission does; the server resolves
// and delivers them (a local name that does not exist comes back to the
// sender as a failure notice, since this process cannot read the accounts).
func sendmailSMTP(cfg *config.Config, u *user.User, stdin io.Reader, stdout, stderr io.Writer) error {
	tables, err := maps.Load(cfg.MapsDir)
	if err != nil {
		return &statusError{exConfig, err}
	}
	dir := maildrop.Dir(cfg.DataDir)
	if _, err := os.Stat(dir); err != nil {
		return &tempError{fmt.Errorf("cannot queue messages: no drop directory %s (the server makes it when it starts)", dir)}
	}
	tf := func() *maps.Tables { return tables }
	srv := &smtpd.Server{
		Config: smtpd.Config{
			Hostname:        cfg.Hostname,
			MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
			MaxRecipients:   cfg.SMTP.MaxRecipients,
			CommandTimeout:  cfg.SMTP.CommandTimeout.D(),
			DataTimeout:     cfg.SMTP.DataTimeout.D(),
			SpoolDir:        os.TempDir(),
		},
		Tables: tf,
		Router: route.New(route.Config{Hostname: cfg.Hostname, Tables: tf, Accounts: anyAccount{},
			AllowPrograms: cfg.Aliases.AllowPrograms, AllowFiles: cfg.Aliases.AllowFiles}),
		Deliverer: &dropDeliverer{dir: dir},
		Log:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	srv.ServeConn(&stdioConn{r: stdin, w: stdout})
	return nil
}

// anyAccount takes every local name as an account: the accounts are in the
// store, which local users cannot read; the server checks at pickup.
type anyAccount struct{}

func (anyAccount) AccountExists(context.Context, string) (bool, error) { return true, nil }

// dropDeliverer writes accepted messages to the drop directory, with the
// recipients as the client gave them (the server resolves them again).
type dropDeliverer struct{ dir string }

func (d *dropDeliverer) Deliver(ctx context.Context, env *deliver.Envelope, body store.Body) (*deliver.Result, error) {
	me := &maildrop.Envelope{Null: env.Null}
	if !env.Null {
		me.From = env.From.String()
	}
	for _, r := range env.Recipients {
		me.Recipients = append(me.Recipients, r.Address.String())
	}
	// The server writes its own Return-Path: at pickup.
	br := bufio.NewReader(io.NewSectionReader(body, 0, body.Size()))
	if first, err := br.Peek(len("Return-Path:")); err == nil && strings.EqualFold(string(first), "Return-Path:") {
		if _, err := br.ReadString('\n'); err != nil {
			return nil, err
		}
	}
	if _, err := maildrop.Write(d.dir, me, br); err != nil {
		return nil, fmt.Errorf("drop directory: %w", err)
	}
	return &deliver.Result{QueueID: env.ID, Queued: len(me.Recipients)}, nil
}

// stdioConn is standard input and output as a connection from 127.0.0.1.
type stdioConn struct {
	r io.Reader
	w io.Writer
}

func (c *stdioConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *stdioConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *stdioConn) Close() error                { return nil }
func (c *stdioConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *stdioConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *stdioConn) SetDeadline(time.Time) error { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error {
	return nil
}
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }
