package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/server"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
	"github.com/posthorn/posthorn/internal/tlsutil"
)

// The --dev setup: a demo domain and account on unprivileged loopback ports.
const (
	devHostname = "mail.posthorn.test"
	devDomain   = "posthorn.test"
	devUser     = "demo"
	devSMTP     = "127.0.0.1:2525"
	// devSubmission is added to the demo's config when it names no
	// submission port (so also for a directory made before there was one).
	devSubmission = "127.0.0.1:2587"
	// The POP3 ports, added likewise when the config names none.
	devPOP3  = "127.0.0.1:2110"
	devPOP3S = "127.0.0.1:2995"
	// The IMAP ports, likewise.
	devIMAP  = "127.0.0.1:2143"
	devIMAPS = "127.0.0.1:2993"
	// The webmail, plain HTTP on loopback (a password may pass there).
	devWeb = "127.0.0.1:8080"
)

func runServe(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	dev := fs.Bool("dev", false, "run a ready demo in DIR (default ./posthorn-dev)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	var devPassword string
	path := config.Path(*cfgPath)
	if *dev {
		if len(pos) > 1 {
			return usageErr("serve --dev takes at most one directory")
		}
		dir := "posthorn-dev"
		if len(pos) == 1 {
			dir = pos[0]
		}
		path, devPassword, err = prepareDev(dir)
		if err != nil {
			return err
		}
	} else if len(pos) > 0 {
		return usageErr("serve: unexpected argument %q", pos[0])
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if *dev && len(cfg.SMTP.SubmissionListen) == 0 {
		cfg.SMTP.SubmissionListen = config.Listeners{devSubmission}
	}
	if *dev && len(cfg.POP3.Listen) == 0 && len(cfg.POP3.TLSListen) == 0 {
		cfg.POP3.Listen, cfg.POP3.TLSListen = config.Listeners{devPOP3}, config.Listeners{devPOP3S}
	}
	if *dev && len(cfg.IMAP.Listen) == 0 && len(cfg.IMAP.TLSListen) == 0 {
		cfg.IMAP.Listen, cfg.IMAP.TLSListen = config.Listeners{devIMAP}, config.Listeners{devIMAPS}
	}
	if *dev && len(cfg.Web.Listen) == 0 && len(cfg.Web.TLSListen) == 0 {
		cfg.Web.Listen = config.Listeners{devWeb}
	}
	log := newLogger(cfg.LogLevel, stderr)
	// $POSTHORN_CPUPROFILE: a CPU profile of the whole run, for `go tool
	// pprof` (how the figures in the README's Speed section were studied).
	if p := os.Getenv("POSTHORN_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()

	if *dev {
		printDev(stdout, cfg, srv, devPassword)
	} else {
		for _, l := range srv.Listeners() {
			log.Info("listening", "service", l.Kind, "addr", l.Addr.String())
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := srv.ReloadTables(); err != nil {
				log.Error("reloading tables", "err", err)
			} else {
				log.Info("tables reloaded")
			}
		}
	}()
	err = srv.Run(ctx, 30*time.Second)
	log.Info("stopped")
	return err
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// prepareDev makes (once) and returns the demo's config, and the demo account's
// password. The directory is reused on later runs, with the same password.
func prepareDev(dir string) (cfgPath, password string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	dir = abs
	cfgPath = filepath.Join(dir, "posthorn.toml")
	pwFile := filepath.Join(dir, "demo-password.txt")
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", "", err
		}
		files := config.StarterFiles(config.Starter{
			Hostname:   devHostname,
			Domain:     devDomain,
			Admin:      devUser,
			DataDir:    "data",
			MapsDir:    ".",
			SMTPListen: []string{devSMTP},
			CertFile:   "tls/cert.pem",
			KeyFile:    "tls/key.pem",
		})
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
				return "", "", err
			}
		}
		// The demo domain signs its mail, as `posthorn init` sets it up.
		if err := mailauth.GenerateKeys(filepath.Join(dir, "data", "dkim"), devDomain, defaultSelector()); err != nil {
			return "", "", fmt.Errorf("dev DKIM keys: %w", err)
		}
	} else if err != nil {
		return "", "", err
	}
	if err := tlsutil.EnsureSelfSigned(filepath.Join(dir, "tls/cert.pem"), filepath.Join(dir, "tls/key.pem"),
		[]string{devHostname, "localhost", "127.0.0.1"}); err != nil {
		return "", "", fmt.Errorf("dev certificate: %w", err)
	}

	// The demo account, made once; its password is kept next to the config so
	// that every run can print it.
	if b, err := os.ReadFile(pwFile); err == nil {
		password = strings.TrimSpace(string(b))
	} else {
		var raw [12]byte
		rand.Read(raw[:])
		password = base64.RawURLEncoding.EncodeToString(raw[:])
		if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
			return "", "", err
		}
	}
	st, err := sqlite.Open(filepath.Join(dir, "data"), sqlite.Options{})
	if err != nil {
		return "", "", err
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.GetAccount(ctx, devUser); errors.Is(err, store.ErrNotFound) {
		hash, scram, err := auth.NewCredentials(password)
		if err != nil {
			return "", "", err
		}
		if _, err := st.CreateAccount(ctx, devUser, hash); err != nil {
			return "", "", err
		}
		if err := st.SetPassword(ctx, devUser, hash, scram); err != nil {
			return "", "", err
		}
	} else if err != nil {
		return "", "", err
	}
	return cfgPath, password, nil
}

func printDev(w io.Writer, cfg *config.Config, srv *server.Server, password string) {
	dir := filepath.Dir(cfg.File)
	fmt.Fprintf(w, "posthorn is running for the demo domain %s, in %s\n", devDomain, dir)
	fmt.Fprintf(w, "  account:  %s   password: %s\n", devUser, password)
	fmt.Fprintf(w, "  mail to postmaster@, root@, abuse@%s goes to %s too (see %s)\n", devDomain, devUser, filepath.Join(dir, "aliases"))
	for _, l := range srv.Listeners() {
		switch l.Kind {
		case "smtp":
			fmt.Fprintf(w, "  SMTP:     %s (STARTTLS, self-signed certificate)\n", l.Addr)
			fmt.Fprintf(w, "            try: swaks --server %s --to %s@%s\n", l.Addr, devUser, devDomain)
		case "submission":
			fmt.Fprintf(w, "  Submit:   %s (submission: STARTTLS, then log in as %s)\n", l.Addr, devUser)
			fmt.Fprintf(w, "            try: swaks --server %s --tls --auth PLAIN --auth-user %s --auth-password %s --from %s@%s --to %s@%s\n",
				l.Addr, devUser, password, devUser, devDomain, devUser, devDomain)
		case "pop3":
			fmt.Fprintf(w, "  POP3:     %s (STLS, then log in as %s)\n", l.Addr, devUser)
			fmt.Fprintf(w, "            try: curl -k --ssl-reqd pop3://%s/1 -u %s:%s\n", l.Addr, devUser, password)
		case "pop3s":
			fmt.Fprintf(w, "  POP3S:    %s (implicit TLS)\n", l.Addr)
			fmt.Fprintf(w, "            try: curl -k pop3s://%s/ -u %s:%s\n", l.Addr, devUser, password)
		case "imap":
			fmt.Fprintf(w, "  IMAP:     %s (STARTTLS, then log in as %s)\n", l.Addr, devUser)
			fmt.Fprintf(w, "            try: curl -k --ssl-reqd 'imap://%s/INBOX;UID=1' -u %s:%s\n", l.Addr, devUser, password)
		case "imaps":
			fmt.Fprintf(w, "  IMAPS:    %s (implicit TLS)\n", l.Addr)
			fmt.Fprintf(w, "            try: curl -k imaps://%s/ -u %s:%s\n", l.Addr, devUser, password)
		case "web":
			fmt.Fprintf(w, "  Webmail:  http://%s/ (log in as %s)\n", l.Addr, devUser)
		case "webs":
			fmt.Fprintf(w, "  Webmail:  https://%s/ (self-signed certificate; log in as %s)\n", l.Addr, devUser)
		}
	}
	fmt.Fprintf(w, "  tables:   edit %s/{access,aliases,local-host-names,virtusertable}: they reload by themselves\n", dir)
	fmt.Fprintf(w, "Stop with Ctrl-C.\n")
}
