package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/autoconfig"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/dnsrecords"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/maps"
)

// defaultSelector names new keys by the month they were made in, so that
// the next rotation gets a new name by itself.
func defaultSelector() string { return "ph" + time.Now().UTC().Format("200601") }

// runDKIM is `posthorn dkim keygen DOMAIN [--selector S]`.
func runDKIM(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dkim", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	selector := fs.String("selector", "", "the selector of the new keys (default ph<YYYYMM>); <S>-ed25519 and <S>-rsa are made")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "keygen" {
		return usageErr("usage: posthorn dkim keygen DOMAIN [--selector S]")
	}
	domain := strings.ToLower(strings.TrimSuffix(pos[1], "."))
	cfg, err := config.Load(config.Path(*cfgPath))
	if err != nil {
		return err
	}
	if *selector == "" {
		*selector = defaultSelector()
	}
	recs, err := makeKeys(cfg, domain, *selector)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "made DKIM keys for %s in %s; they sign from now on (within a minute for a running server).\nPublish:\n",
		domain, filepath.Join(cfg.DKIM.KeysDir, domain))
	var rs []dnsrecords.Record
	for _, k := range recs {
		rs = append(rs, dnsrecords.Record{Name: k.Name + ".", Type: "TXT", Value: k.Value})
	}
	fmt.Fprint(stdout, dnsrecords.Zone(rs))
	fmt.Fprintln(stdout, "Keep the old selectors' records published for a few days: mail signed with them may still be on its way.")
	return nil
}

// makeKeys makes a domain's Ed25519 and RSA keys and returns their records.
// Started as root with run_as, the files go to that user, who signs with them.
func makeKeys(cfg *config.Config, domain, selector string) ([]mailauth.KeyRecord, error) {
	if domain == "" || strings.ContainsAny(domain, "/\\ ") {
		return nil, usageErr("dkim: %q is not a domain", domain)
	}
	if err := os.MkdirAll(cfg.DKIM.KeysDir, 0o700); err != nil {
		return nil, err
	}
	if err := mailauth.GenerateKeys(cfg.DKIM.KeysDir, domain, selector); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, usageErr("dkim: keys with selector %q exist for %s (choose another with --selector)", selector, domain)
		}
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if cfg.RunAs != "" && os.Geteuid() == 0 {
		if err := chownTree(filepath.Join(cfg.DKIM.KeysDir, domain), cfg.RunAs, cfg.DKIM.KeysDir); err != nil {
			return nil, err
		}
	}
	s, err := mailauth.LoadSigner(cfg.DKIM.KeysDir, domain)
	if err != nil {
		return nil, err
	}
	return s.Records()
}

// chownTree gives dir, what it holds and keysDir to user name.
func chownTree(dir, name, keysDir string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("run_as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(keysDir, uid, gid); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// runDNSRecords is `posthorn dns-records [DOMAIN] [--check]`.
func runDNSRecords(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dns-records", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	check := fs.Bool("check", false, "look the records up (through [dns] resolver) and say which are missing or wrong")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageErr("usage: posthorn dns-records [DOMAIN] [--check]")
	}
	cfg, err := config.Load(config.Path(*cfgPath))
	if err != nil {
		return err
	}
	t, err := maps.Load(cfg.MapsDir)
	if err != nil {
		return err
	}
	var domains []string
	if len(pos) == 1 {
		domains = []string{strings.ToLower(strings.TrimSuffix(pos[0], "."))}
	} else {
		domains = dedupe(append(t.LocalHostNames.Names(), t.Virtusertable.Domains()...))
		if len(domains) == 0 {
			domains = []string{cfg.Hostname}
		}
	}
	checker := &dnsrecords.Checker{Resolver: dnsutil.New(cfg.DNS.Resolver), SRV: srvLookup(cfg.DNS.Resolver)}
	bad := 0
	for i, dom := range domains {
		d := dnsrecords.Domain{
			Name:        dom,
			Hostname:    cfg.Hostname,
			Submission:  firstPort(cfg.SMTP.SubmissionListen, cfg.SMTP.SubmissionsListen),
			IMAPS:       firstPort(cfg.IMAP.TLSListen, nil),
			POP3S:       firstPort(cfg.POP3.TLSListen, nil),
			HostRecords: i == 0,
			Autoconfig:  len(cfg.Web.Listen)+len(cfg.Web.TLSListen) > 0,
		}
		if s, err := mailauth.LoadSigner(cfg.DKIM.KeysDir, dom); err == nil {
			if d.Keys, err = s.Records(); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stderr, "posthorn: %s has no DKIM keys (posthorn dkim keygen %s): its mail goes unsigned\n", dom, dom)
		}
		rs := dnsrecords.Records(d)
		fmt.Fprintf(stdout, "; %s\n", dom)
		if !*check {
			fmt.Fprint(stdout, dnsrecords.Zone(rs))
			fmt.Fprintf(stdout, "; and the address records of %s (A, AAAA) with a matching reverse name (PTR)\n\n", cfg.Hostname)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		fs := checker.Check(ctx, d, rs)
		cancel()
		for _, f := range fs {
			line := fmt.Sprintf("%-9s %-22s %s %s", f.Status, f.Record.What, f.Record.Name, f.Record.Type)
			if f.Detail != "" {
				line += ": " + f.Detail
			}
			fmt.Fprintln(stdout, line)
			if f.Status == dnsrecords.Missing || f.Status == dnsrecords.Wrong {
				fmt.Fprintf(stdout, "          publish: %s", dnsrecords.Zone([]dnsrecords.Record{f.Record}))
				bad++
			}
		}
		fmt.Fprintln(stdout)
	}
	if bad > 0 {
		return usageErr("dns-records: %d record%s missing or wrong", bad, plural(bad))
	}
	return nil
}

// firstPort is the port of the first listener of a or else b; 0 when none.
func firstPort(a, b config.Listeners) int {
	if p := autoconfig.FirstPort(a); p != 0 {
		return p
	}
	return autoconfig.FirstPort(b)
}

// srvLookup asks SRV records of the same server dnsutil.New asks.
func srvLookup(server string) func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	r := &net.Resolver{PreferGo: true}
	if server != "" {
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}
	}
	return r.LookupSRV
}
