package main

// posthorn import sendmail|mbox|maildir: moving in from a Sendmail + popa3d
// system (the guide's router) or from mail files (internal/mailimport).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/mailimport"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/store"
	"github.com/posthorn/posthorn/internal/store/sqlite"
)

func runImport(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	dry := fs.Bool("dry-run", false, "print what would be done and change nothing")
	etc := fs.String("etc", "/etc/mail", "the Sendmail directory (import sendmail)")
	spool := fs.String("spool", "/var/mail", "the mbox spools (import sendmail)")
	passwd := fs.String("passwd", "/etc/passwd", "the users (import sendmail)")
	shadow := fs.String("shadow", "", "their password hashes, e.g. /etc/shadow (import sendmail)")
	mc := fs.String("mc", "", "the .mc file (default: HOSTNAME.mc, sendmail.mc, or the only one)")
	mailbox := fs.String("mailbox", store.Inbox, "the mailbox to import into (import mbox)")
	mboxo := fs.Bool("mboxo", false, `">From " is the only quoting (mboxo), not mboxrd`)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("usage: posthorn import sendmail [--etc DIR] [--spool DIR] [--passwd F --shadow F] | import mbox USER FILE | import maildir USER DIR")
	}
	q := mailimport.MboxRD
	if *mboxo {
		q = mailimport.MboxO
	}
	ctx := context.Background()
	out := &progressOut{w: stdout, tty: isTerminal(stdout)}
	switch pos[0] {
	case "mbox", "maildir":
		if len(pos) != 3 {
			return usageErr("usage: posthorn import %s USER %s", pos[0], map[string]string{"mbox": "FILE", "maildir": "DIR"}[pos[0]])
		}
		user, path := strings.ToLower(pos[1]), pos[2]
		st, err := openImportStore(*cfgPath, *dry)
		if err != nil {
			return err
		}
		if st != nil {
			defer st.Close()
		}
		var res mailimport.Result
		if pos[0] == "mbox" {
			res, err = importMboxFile(ctx, out, st, user, *mailbox, path, q, *dry)
		} else {
			res, err = mailimport.ImportMaildir(ctx, st, user, path, *dry, func(mb string, n int) { out.count(user+" "+mb, n) })
			out.done()
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s%d messages (%s) imported, %d already there\n", dryPrefix(*dry), res.Messages, humanBytes(res.Bytes), res.Duplicates)
		return nil
	case "sendmail":
		if len(pos) != 1 {
			return usageErr("usage: posthorn import sendmail [flags]")
		}
		return importSendmail(ctx, out, sendmailImport{cfg: config.Path(*cfgPath), etc: *etc, spool: *spool, passwd: *passwd,
			shadow: *shadow, mc: *mc, dry: *dry, quoting: q})
	}
	return usageErr("import: unknown source %q (sendmail, mbox, maildir)", pos[0])
}

func dryPrefix(dry bool) string {
	if dry {
		return "dry run: "
	}
	return ""
}

// openImportStore opens the store of the config; a dry run with no store yet
// gets nil (everything counts as new).
func openImportStore(cfgPath string, dry bool) (store.Store, error) {
	cfg, err := config.Load(config.Path(cfgPath))
	if err != nil {
		return nil, err
	}
	if dry && !exists(filepath.Join(cfg.DataDir, "posthorn.db")) {
		return nil, nil
	}
	if dry {
		return sqlite.Open(cfg.DataDir, sqlite.Options{})
	}
	_, st, err := openStore(cfgPath)
	return st, err
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func importMboxFile(ctx context.Context, out *progressOut, st store.Store, user, mailbox, path string, q mailimport.Quoting, dry bool) (mailimport.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return mailimport.Result{}, err
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	in := &mailimport.Into{Store: st, Account: user, Mailbox: mailbox, DryRun: dry}
	label := user + " " + mailbox
	res, err := mailimport.ImportMbox(ctx, in, mailimport.NewMboxReader(f, q, nil), func(n int64) { out.bytes(label, n, size) })
	out.done()
	if err != nil {
		return res, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}

// progressOut draws a progress bar per mailbox on a terminal, and plain
// lines (start, every quarter, end) otherwise.
type progressOut struct {
	w       io.Writer
	tty     bool
	label   string
	last    time.Time
	quarter int64
	drawn   bool
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progressOut) bytes(label string, n, total int64) {
	if label != p.label {
		p.done()
		p.label, p.quarter = label, 0
		if !p.tty {
			fmt.Fprintf(p.w, "%s: importing %s\n", label, humanBytes(total))
		}
	}
	if total <= 0 {
		total = 1
	}
	if p.tty {
		if time.Since(p.last) < 100*time.Millisecond && n < total {
			return
		}
		p.last = time.Now()
		const width = 30
		fill := int(n * width / total)
		if fill > width {
			fill = width
		}
		fmt.Fprintf(p.w, "\r%-24s [%s%s] %3d%% %s", label, strings.Repeat("#", fill), strings.Repeat(" ", width-fill), n*100/total, humanBytes(n))
		p.drawn = true
		return
	}
	if q := n * 4 / total; q > p.quarter && q < 4 {
		p.quarter = q
		fmt.Fprintf(p.w, "%s: %d%%\n", label, q*25)
	}
}

func (p *progressOut) count(label string, n int) {
	if label != p.label {
		p.done()
		p.label = label
		if !p.tty {
			fmt.Fprintf(p.w, "%s: importing\n", label)
		}
	}
	if p.tty && (time.Since(p.last) > 100*time.Millisecond) {
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r%-24s %d messages", label, n)
		p.drawn = true
	}
}

func (p *progressOut) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
	p.drawn, p.label = false, ""
}

type sendmailImport struct {
	cfg, etc, spool, passwd, shadow, mc string
	dry                                 bool
	quoting                             mailimport.Quoting
}

// importSendmail moves a Sendmail + popa3d system in: tables, .mc
// settings, accounts with their hashes, spools.
func importSendmail(ctx context.Context, out *progressOut, o sendmailImport) error {
	w := out.w
	pre := dryPrefix(o.dry)
	var probs []mailimport.Problem
	var notes []string

	// Tables, from the text sources.
	tables := map[string][]byte{}
	for _, name := range maps.Files {
		src := filepath.Join(o.etc, name)
		data, err := os.ReadFile(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		fixed, p, err := mailimport.CheckTable(name, src, data)
		if err != nil {
			return err
		}
		probs = append(probs, p...)
		tables[name] = fixed
	}
	parsed := &maps.Tables{}
	for name, data := range tables {
		if err := loadInto(parsed, name, data); err != nil {
			return err
		}
	}

	// The .mc file.
	host, _ := os.Hostname()
	mcPath := o.mc
	if mcPath == "" {
		p, err := mailimport.FindMC(o.etc, host)
		if err != nil {
			notes = append(notes, err.Error())
		}
		mcPath = p
	}
	var mc *mailimport.MC
	if mcPath != "" {
		var err error
		if mc, err = mailimport.ParseMC(mcPath); err != nil {
			return err
		}
		if mc.MailHub != "" {
			notes = append(notes, fmt.Sprintf("%s: MAIL_HUB %s not carried over: posthorn delivers local mail itself", mcPath, mc.MailHub))
		}
		if mc.LocalRelay != "" {
			notes = append(notes, fmt.Sprintf("%s: LOCAL_RELAY %s not carried over: posthorn delivers local mail itself", mcPath, mc.LocalRelay))
		}
		for _, d := range mc.Other {
			notes = append(notes, fmt.Sprintf("%s: DAEMON_OPTIONS(`%s') not carried over", mcPath, d))
		}
	}

	// Users and their spools.
	pf, err := os.Open(o.passwd)
	if err != nil {
		return err
	}
	defer pf.Close()
	var sf io.Reader
	if o.shadow != "" {
		f, err := os.Open(o.shadow)
		if err != nil {
			return err
		}
		defer f.Close()
		sf = f
	}
	users, err := mailimport.ParsePasswd(pf, sf)
	if err != nil {
		return err
	}
	var spools []string
	if ents, err := os.ReadDir(o.spool); err == nil {
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".lock") {
				spools = append(spools, e.Name())
			}
		}
	}
	accounts := mailimport.Recipients(parsed, spools, users)

	// The config: posthorn.toml is written (from the starter) when missing,
	// then SMART_HOST and the listen addresses are set in it.
	cfgText, err := os.ReadFile(o.cfg)
	newConfig := errors.Is(err, os.ErrNotExist)
	if err != nil && !newConfig {
		return err
	}
	cfgDir := filepath.Dir(o.cfg)
	if newConfig {
		domain := host
		if parsed.LocalHostNames != nil && len(parsed.LocalHostNames.Names()) > 0 {
			domain = parsed.LocalHostNames.Names()[0]
		}
		hostname := host
		if mc != nil && strings.Count(strings.TrimSuffix(filepath.Base(mc.File), ".mc"), ".") >= 1 {
			hostname = strings.TrimSuffix(filepath.Base(mc.File), ".mc") // FreeBSD: named after the host
		}
		cfgText = []byte(config.StarterFiles(config.Starter{Hostname: hostname, Domain: domain, Admin: "postmaster", DataDir: "data", MapsDir: "."})["posthorn.toml"])
	}
	if mc != nil {
		if mc.SmartHost != "" {
			cfgText = setTOML(cfgText, "smtp", "smart_host", fmt.Sprintf("%q", mc.SmartHost))
		}
		if len(mc.Listen) > 0 {
			cfgText = setTOML(cfgText, "smtp", "listen", quoteTOMLList(mc.Listen))
		}
		if len(mc.Submission) > 0 {
			cfgText = setTOML(cfgText, "smtp", "submission_listen", quoteTOMLList(mc.Submission))
		}
	}
	cfg, err := config.Parse(o.cfg, cfgText)
	if err != nil {
		return fmt.Errorf("the config with the .mc settings does not load: %w", err)
	}

	fmt.Fprintf(w, "%sconfig %s", pre, o.cfg)
	if mc != nil {
		fmt.Fprintf(w, " (from %s: smart_host %q, listen %v, submission %v)", mc.File, mc.SmartHost, mc.Listen, mc.Submission)
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "%stable %s -> %s\n", pre, filepath.Join(o.etc, n), filepath.Join(cfg.MapsDir, n))
	}
	if !o.dry {
		if err := os.MkdirAll(cfgDir, 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(o.cfg, cfgText, 0o644); err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.MapsDir, 0o755); err != nil {
			return err
		}
		for _, n := range names {
			if err := writeFileAtomic(filepath.Join(cfg.MapsDir, n), tables[n], 0o644); err != nil {
				return err
			}
		}
	}

	// Accounts, with the old hashes as they are.
	var st store.Store
	if !o.dry || exists(filepath.Join(cfg.DataDir, "posthorn.db")) {
		s, err := sqlite.Open(cfg.DataDir, sqlite.Options{})
		if err != nil {
			return fmt.Errorf("opening the store in %s: %w", cfg.DataDir, err)
		}
		defer s.Close()
		st = s
	}
	created := 0
	for _, name := range accounts {
		u := users[name]
		hash := u.Hash
		switch {
		case hash == "" || strings.HasPrefix(hash, "!") || strings.HasPrefix(hash, "*") || hash == "x":
			notes = append(notes, fmt.Sprintf("user %s: no usable password hash (locked or not in --shadow): set one with posthorn user passwd %s", name, name))
			hash = "!"
		case !auth.CanVerify(hash):
			notes = append(notes, fmt.Sprintf("user %s: this posthorn cannot verify the password hash (%s): build with -tags yescrypt, or set one with posthorn user passwd %s", name, hashKind(hash), name))
		}
		if st != nil {
			if _, err := st.GetAccount(ctx, name); err == nil {
				fmt.Fprintf(w, "account %s exists: kept\n", name)
				continue
			}
		}
		created++
		fmt.Fprintf(w, "%saccount %s (%s)\n", pre, name, hashKind(hash))
		if !o.dry {
			if _, err := st.CreateAccount(ctx, name, hash); err != nil {
				return fmt.Errorf("account %s: %w", name, err)
			}
		}
	}

	// Mail.
	var total mailimport.Result
	for _, name := range accounts {
		path := filepath.Join(o.spool, name)
		if !exists(path) {
			continue
		}
		var ist store.Store = st
		res, err := importMboxFile(ctx, out, ist, name, store.Inbox, path, o.quoting, o.dry || st == nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s%s: %d messages (%s), %d already there\n", pre, path, res.Messages, humanBytes(res.Bytes), res.Duplicates)
		total.Add(res)
	}

	for _, p := range probs {
		fmt.Fprintf(w, "not carried over: %s\n", p)
	}
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "%ssummary: %d accounts (%d new), %d messages (%s), %d already there, %d table lines not carried over\n",
		pre, len(accounts), created, total.Messages, humanBytes(total.Bytes), total.Duplicates, len(probs))
	return nil
}

func hashKind(h string) string {
	switch {
	case h == "!":
		return "no password"
	case strings.HasPrefix(h, "$6$"):
		return "SHA-512-crypt"
	case strings.HasPrefix(h, "$5$"):
		return "SHA-256-crypt"
	case strings.HasPrefix(h, "$1$"):
		return "MD5-crypt"
	case strings.HasPrefix(h, "$2"):
		return "bcrypt"
	case strings.HasPrefix(h, "$y$"):
		return "yescrypt"
	case strings.HasPrefix(h, "$argon2id$"):
		return "argon2id"
	}
	return "unknown format"
}

func loadInto(t *maps.Tables, name string, data []byte) error {
	r := strings.NewReader(string(data))
	var err error
	switch name {
	case maps.FileAccess:
		t.Access, err = maps.ParseAccess(name, r)
	case maps.FileAliases:
		t.Aliases, err = maps.ParseAliases(name, r)
	case maps.FileLocalHostNames:
		t.LocalHostNames, err = maps.ParseDomainList(name, r)
	case maps.FileRelayDomains:
		t.RelayDomains, err = maps.ParseDomainList(name, r)
	case maps.FileVirtusertable:
		t.Virtusertable, err = maps.ParseVirtusertable(name, r)
	case maps.FileMailertable:
		t.Mailertable, err = maps.ParseMailertable(name, r)
	}
	return err
}

func quoteTOMLList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// setTOML sets key = value in [table] of a TOML text: an uncommented line
// of the key there is replaced, else the line goes right after the table's
// header (a table added at the end when missing). Comments stay.
func setTOML(text []byte, table, key, value string) []byte {
	lines := strings.Split(string(text), "\n")
	header := regexp.MustCompile(`^\s*\[([^\[\]]+)\]\s*(#.*)?$`)
	keyLine := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(key) + `\s*=`)
	in, at := false, -1
	for i, l := range lines {
		if m := header.FindStringSubmatch(l); m != nil {
			in = strings.TrimSpace(m[1]) == table
			if in {
				at = i
			}
			continue
		}
		if in && keyLine.MatchString(l) {
			lines[i] = key + " = " + value
			return []byte(strings.Join(lines, "\n"))
		}
	}
	if at < 0 {
		return []byte(strings.TrimRight(string(text), "\n") + "\n\n[" + table + "]\n" + key + " = " + value + "\n")
	}
	lines = append(lines[:at+1], append([]string{key + " = " + value}, lines[at+1:]...)...)
	return []byte(strings.Join(lines, "\n"))
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".import-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
