// Command posthorn is a mail server in one binary: SMTP for your domains with
// the Sendmail tables, a durable store, and the tools to run it.
//
//	posthorn serve [--config FILE]       run every configured listener
//	posthorn serve --dev [DIR]           a ready demo in DIR (default ./posthorn-dev)
//	posthorn init --hostname H --domain D [--dir DIR]
//	posthorn check [--config FILE] [--data]
//	posthorn user add|passwd|del|list ...
//	posthorn newaliases | mailq
//	posthorn queue list|flush [ID...]|delete ID...|ALL|hold ID...|release ID...
//	posthorn sendmail [-t] [-i] [-f FROM] [RCPT...]   (also as "sendmail")
//	posthorn dkim keygen DOMAIN [--selector S]
//	posthorn dns-records [DOMAIN] [--check]
//	posthorn import sendmail|mbox|maildir ...   posthorn export mbox|maildir USER DIR
//
// Every subcommand takes --config FILE (default $POSTHORN_CONFIG, else
// /etc/posthorn/posthorn.toml); flags may come before or after other arguments.
// Exit status: 0 success, 1 a user error (one line on stderr), 75 the server is
// unreachable.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Exit codes (sysexits.h where one fits).
const (
	exitOK       = 0
	exitUser     = 1
	exitTempFail = 75 // EX_TEMPFAIL: the server is unreachable
)

// userError is an error to report in one line, exiting 1.
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &userError{fmt.Sprintf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the configured listeners (--dev [DIR]: a ready demo)", runServe},
		{"init", "write a starting config and tables: --hostname H --domain D [--dir DIR]", runInit},
		{"check", "validate the config and tables, print what was loaded (--data: check the store)", runCheck},
		{"user", "accounts: user add|passwd|del|list", runUser},
		{"newaliases", "check the aliases file and print its summary", runNewaliases},
		{"mailq", "list the outbound queue, as Sendmail's mailq", runMailq},
		{"queue", "the outbound queue: queue list|flush [ID]|delete ID|hold ID|release ID", runQueue},
		{"sendmail", "take a message on stdin, as sendmail(8): [-t] [-i] [-f FROM] [RCPT...]", runSendmail},
		{"dkim", "signing keys: dkim keygen DOMAIN [--selector S] (a new selector rotates)", runDKIM},
		{"dns-records", "the DNS records to publish: [DOMAIN] [--check: look them up]", runDNSRecords},
		{"import", "move in: import sendmail [--etc DIR --spool DIR --shadow F] | mbox USER FILE | maildir USER DIR [--dry-run]", runImport},
		{"export", "mail out again: export mbox|maildir USER DIR", runExport},
	}
}

func main() {
	// Files the server and the tools create (the database, its log, blobs)
	// are for posthorn alone: data_dir is traversable by local users (for
	// the maildrop), so nothing in it may be readable by them.
	syscall.Umask(0o077)
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := filepath.Base(argv[0])
	args := argv[1:]
	// Called as one of its subcommands through a link (mailq, newaliases,
	// sendmail), as Sendmail's binary is.
	if name != "posthorn" {
		for _, c := range commands() {
			if c.name == name && (name == "mailq" || name == "newaliases" || name == "sendmail") {
				return exitCode(c.run(args, stdin, stdout, stderr), stderr)
			}
		}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUser
		}
		return exitOK
	}
	// Flags may come before the command too: "posthorn --config F user list".
	i := commandIndex(args)
	if i < 0 {
		fmt.Fprintln(stderr, "posthorn: no command (see posthorn --help)")
		return exitUser
	}
	rest := append(append([]string{}, args[:i]...), args[i+1:]...)
	for _, c := range commands() {
		if c.name == args[i] {
			return exitCode(c.run(rest, stdin, stdout, stderr), stderr)
		}
	}
	fmt.Fprintf(stderr, "posthorn: unknown command %q (see posthorn --help)\n", args[i])
	return exitUser
}

// commandIndex finds the command among the arguments, skipping flags and the
// value of --config when it is a separate argument.
func commandIndex(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			return i
		}
		if a == "--config" || a == "-config" {
			i++
		}
	}
	return -1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: posthorn COMMAND [ARGS] [--config FILE]")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var se *statusError // sendmail's sysexits.h statuses
	if errors.As(err, &se) {
		fmt.Fprintf(stderr, "posthorn: %v\n", err)
		return se.code
	}
	var te *tempError
	if errors.As(err, &te) {
		fmt.Fprintf(stderr, "posthorn: %v\n", err)
		return exitTempFail
	}
	// One line: the first line of the error, with the others indented below it
	// only when there are several problems (config and table errors).
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintf(stderr, "posthorn: %s\n", msg)
	return exitUser
}

// tempError means the server could not be reached (exit 75).
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }
func (e *tempError) Unwrap() error { return e.err }

// parseFlags parses flags that may stand anywhere among the arguments
// ("user add pp --password-stdin --config F") and returns the other arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	// A "--" ends the flags: what follows is arguments as they are.
	var rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageErr("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, rest...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// configFlag adds --config to a flag set.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "config file (default $POSTHORN_CONFIG, else /etc/posthorn/posthorn.toml)")
}
