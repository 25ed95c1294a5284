package main

// posthorn export mbox|maildir USER DIR: an account's mail out again, so
// that nobody is locked in.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/posthorn/posthorn/internal/mailimport"
)

func runExport(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 || (pos[0] != "mbox" && pos[0] != "maildir") {
		return usageErr("usage: posthorn export mbox|maildir USER DIR")
	}
	_, st, err := openStore(*cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	user, dir := strings.ToLower(pos[1]), pos[2]
	var res mailimport.Result
	if pos[0] == "mbox" {
		res, err = mailimport.ExportMbox(context.Background(), st, user, dir)
	} else {
		res, err = mailimport.ExportMaildir(context.Background(), st, user, dir)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d messages (%s) of %s written to %s (%s)\n", res.Messages, humanBytes(res.Bytes), user, dir, pos[0])
	return nil
}
