package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/server"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

func runInit(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	hostname := fs.String("hostname", "", "this server's fully qualified name (mx.example.org)")
	domain := fs.String("domain", "", "the mail domain (example.org)")
	dir := fs.String("dir", "/etc/posthorn", "where to write posthorn.toml and the tables")
	dataDir := fs.String("data-dir", "", "where the store goes (default /var/lib/posthorn, or DIR/data when --dir is given)")
	admin := fs.String("admin", "admin", "the account that receives root's and postmaster's mail")
	force := fs.Bool("force", false, "overwrite existing files")
	_ = configFlag(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("init: unexpected argument %q", pos[0])
	}
	if *hostname == "" || *domain == "" {
		return usageErr("init needs --hostname (like mx.example.org) and --domain (like example.org)")
	}
	if *dataDir == "" {
		*dataDir = "/var/lib/posthorn"
		if *dir != "/etc/posthorn" {
			*dataDir = "data"
		}
	}
	files := config.StarterFiles(config.Starter{
		Hostname: strings.ToLower(*hostname),
		Domain:   strings.ToLower(*domain),
		Admin:    strings.ToLower(*admin),
		DataDir:  *dataDir,
		MapsDir:  ".",
	})
	_, statErr := os.Stat(*dir)
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// The process umask (077, for the store) must not hide the tables
		// from the run_as user.
		if err := os.Chmod(*dir, 0o755); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	if !*force {
		for _, name := range names {
			if _, err := os.Stat(filepath.Join(*dir, name)); err == nil {
				return usageErr("init: %s exists (use --force to overwrite)", filepath.Join(*dir, name))
			}
		}
	}
	for _, name := range names {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".secret") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(*dir, name), []byte(files[name]), mode); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(*dir, name), mode); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*dir, name))
	}
	cfgPath := filepath.Join(*dir, "posthorn.toml")
	// The domain's DKIM keys, so that its mail is signed from the start.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if _, err := makeKeys(cfg, strings.ToLower(*domain), defaultSelector()); err != nil {
		var ue *userError
		if !errors.As(err, &ue) { // keys that exist (init --force) are kept
			return err
		}
	} else {
		fmt.Fprintf(stdout, "made DKIM keys for %s in %s\n", strings.ToLower(*domain), cfg.DKIM.KeysDir)
	}
	fmt.Fprintf(stdout, "\nNext:\n  posthorn user add %s --config %s\n  posthorn check --config %s\n  posthorn serve --config %s\n  posthorn dns-records --config %s   (the records to publish)\n",
		*admin, cfgPath, cfgPath, cfgPath, cfgPath)
	return nil
}

// openStore loads the config and opens its store, for the admin commands.
func openStore(cfgPath string) (*config.Config, store.Store, error) {
	cfg, err := config.Load(config.Path(cfgPath))
	if err != nil {
		return nil, nil, err
	}
	if err := server.DropPrivileges(cfg); err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(cfg.DataDir, sqlite.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the store in %s: %w", cfg.DataDir, err)
	}
	return cfg, st, nil
}

func runUser(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("user", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	pwStdin := fs.Bool("password-stdin", false, "read the password from one line of standard input")
	admin := fs.Bool("admin", false, "make the account an administrator (user add)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("user: add|passwd|del|quota|list")
	}
	verb, rest := pos[0], pos[1:]
	needName := verb == "add" || verb == "passwd" || verb == "del"
	switch {
	case verb == "quota" && len(rest) != 2:
		return usageErr(`usage: posthorn user quota NAME SIZE (like "2GiB", "500MB"; 0 or "none" for no limit)`)
	case verb != "quota" && (needName && len(rest) != 1 || !needName && len(rest) != 0):
		return usageErr("usage: posthorn user add|passwd|del NAME, posthorn user quota NAME SIZE, or posthorn user list")
	}
	if verb != "add" && verb != "passwd" && verb != "del" && verb != "list" && verb != "quota" {
		return usageErr("user: unknown action %q (add, passwd, del, quota, list)", verb)
	}
	var quota int64
	if verb == "quota" && !strings.EqualFold(rest[1], "none") {
		if quota, err = config.ParseSize(rest[1]); err != nil {
			return usageErr("user quota: %v", err)
		}
	}
	_, st, err := openStore(*cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	switch verb {
	case "add", "passwd":
		name := strings.ToLower(rest[0])
		if verb == "passwd" {
			if _, err := st.GetAccount(ctx, name); err != nil {
				return accountErr(name, err)
			}
		}
		pw, err := readPassword(stdin, stderr, *pwStdin)
		if err != nil {
			return err
		}
		hash, scram, err := auth.NewCredentials(pw)
		if errors.Is(err, auth.ErrBadPassword) {
			return usageErr("that password cannot be used (empty or longer than %d bytes)", auth.MaxPasswordLen)
		} else if err != nil {
			return err
		}
		if verb == "add" {
			if _, err := st.CreateAccount(ctx, name, hash); err != nil {
				return accountErr(name, err)
			}
			// The SCRAM-SHA-256 credential goes with the hash (store.Store.SetPassword).
			if err := st.SetPassword(ctx, name, hash, scram); err != nil {
				return accountErr(name, err)
			}
			if *admin {
				if err := st.SetAdmin(ctx, name, true); err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "account %s added\n", name)
		} else {
			if err := st.SetPassword(ctx, name, hash, scram); err != nil {
				return accountErr(name, err)
			}
			fmt.Fprintf(stdout, "password of %s changed\n", name)
		}
	case "quota":
		// Delivery refuses mail over it (452 4.2.2), IMAP APPEND and COPY
		// too ([OVERQUOTA]); GETQUOTA reports it (RFC 9208).
		name := strings.ToLower(rest[0])
		if err := st.SetQuota(ctx, name, quota); err != nil {
			return accountErr(name, err)
		}
		if quota == 0 {
			fmt.Fprintf(stdout, "account %s has no quota\n", name)
		} else {
			fmt.Fprintf(stdout, "quota of %s set to %s\n", name, humanBytes(quota))
		}
	case "del":
		name := strings.ToLower(rest[0])
		if err := st.DeleteAccount(ctx, name); err != nil {
			return accountErr(name, err)
		}
		fmt.Fprintf(stdout, "account %s deleted, with its mail\n", name)
	case "list":
		accts, err := st.ListAccounts(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADMIN\tUSED\tQUOTA")
		for _, a := range accts {
			quota := "none"
			if a.QuotaBytes > 0 {
				quota = humanBytes(a.QuotaBytes)
			}
			adm := ""
			if a.Admin {
				adm = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, adm, humanBytes(a.UsedBytes), quota)
		}
		tw.Flush()
	}
	return nil
}

func accountErr(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return usageErr("no account %q", name)
	case errors.Is(err, store.ErrExists):
		return usageErr("account %q exists already", name)
	case errors.Is(err, store.ErrInvalidName):
		return usageErr("%q is not a valid account name (lower-case letters, digits, . _ -)", name)
	}
	return err
}

// readPassword reads one line from stdin (--password-stdin; the newline is not
// part of the password), or asks twice on the terminal.
func readPassword(stdin io.Reader, stderr io.Writer, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", usageErr("--password-stdin: no password on standard input")
		}
		line = strings.TrimSuffix(line, "\n")
		line = strings.TrimSuffix(line, "\r")
		return line, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usageErr("no terminal to ask for the password: use --password-stdin")
	}
	fmt.Fprint(stderr, "Password: ")
	a, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Again: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", usageErr("the passwords differ")
	}
	return string(a), nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	data := fs.Bool("data", false, "also check the store: every message's bytes, UIDs and counters")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("check: unexpected argument %q", pos[0])
	}
	cfg, err := config.Load(config.Path(*cfgPath))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "config %s: ok\n", cfg.File)
	fmt.Fprintf(stdout, "  hostname   %s\n", cfg.Hostname)
	fmt.Fprintf(stdout, "  data_dir   %s\n", cfg.DataDir)
	fmt.Fprintf(stdout, "  maps_dir   %s\n", cfg.MapsDir)
	for _, ls := range []struct {
		kind  string
		addrs config.Listeners
	}{
		{"smtp", cfg.SMTP.Listen},
		{"submission", cfg.SMTP.SubmissionListen}, {"submissions", cfg.SMTP.SubmissionsListen},
		{"pop3", cfg.POP3.Listen}, {"pop3s", cfg.POP3.TLSListen},
		{"imap", cfg.IMAP.Listen}, {"imaps", cfg.IMAP.TLSListen},
		{"web", cfg.Web.Listen}, {"webs", cfg.Web.TLSListen},
	} {
		for _, l := range ls.addrs {
			fmt.Fprintf(stdout, "  %-10s %s\n", ls.kind, l)
		}
	}
	if cfg.TLS.CertFile != "" {
		fmt.Fprintf(stdout, "  tls        %s\n", cfg.TLS.CertFile)
	}
	if cfg.SMTP.SmartHost != "" {
		fmt.Fprintf(stdout, "  smart_host %s\n", cfg.SMTP.SmartHost)
	}
	t, err := maps.Load(cfg.MapsDir)
	if err != nil {
		return err
	}
	domains := append([]string{cfg.Hostname}, t.LocalHostNames.Names()...)
	domains = append(domains, t.Virtusertable.Domains()...)
	fmt.Fprintf(stdout, "tables in %s: ok\n", cfg.MapsDir)
	fmt.Fprintf(stdout, "  local domains     %s\n", strings.Join(dedupe(domains), " "))
	fmt.Fprintf(stdout, "  access            %d entries\n", t.Access.Len())
	fmt.Fprintf(stdout, "  aliases           %d aliases\n", t.Aliases.Len())
	fmt.Fprintf(stdout, "  virtusertable     %d entries\n", t.Virtusertable.Len())
	fmt.Fprintf(stdout, "  relay-domains     %d entries\n", t.RelayDomains.Len())
	fmt.Fprintf(stdout, "  mailertable       %d entries\n", t.Mailertable.Len())
	if *data {
		if err := server.DropPrivileges(cfg); err != nil {
			return err
		}
		st, err := sqlite.Open(cfg.DataDir, sqlite.Options{})
		if err != nil {
			return fmt.Errorf("opening the store in %s: %w", cfg.DataDir, err)
		}
		defer st.Close()
		problems, err := st.Check(context.Background())
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			for _, p := range problems {
				fmt.Fprintf(stdout, "  store: %s\n", p)
			}
			return usageErr("store in %s: %d problems", cfg.DataDir, len(problems))
		}
		fmt.Fprintf(stdout, "store in %s: ok\n", cfg.DataDir)
	}
	return nil
}

func dedupe(l []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range l {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func runNewaliases(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("newaliases", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(config.Path(*cfgPath))
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.MapsDir, "aliases")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	a, err := maps.ParseAliases(path, f)
	if err != nil {
		return err
	}
	n, longest, total := a.Stats()
	// Sendmail's words (sendmail -bi), so that scripts that read them still work.
	fmt.Fprintf(stdout, "%s: %d aliases, longest %d bytes, %d bytes total\n", path, n, longest, total)
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
