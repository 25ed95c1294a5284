package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// runMailq prints the outbound queue as Sendmail's mailq does, so that what
// people (and scripts) read in it is where they expect it.
func runMailq(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mailq", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, st, err := openStore(*cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	entries, err := st.ListQueue(context.Background())
	if err != nil {
		return err
	}
	writeMailq(stdout, cfg.DataDir, entries)
	return nil
}

func writeMailq(w io.Writer, dir string, entries []store.QueueEntry) {
	if len(entries) == 0 {
		fmt.Fprintf(w, "%s is empty\n\t\tTotal requests: 0\n", dir)
		return
	}
	fmt.Fprintf(w, "\t\t%s (%d request%s)\n", dir, len(entries), plural(len(entries)))
	fmt.Fprintf(w, "%-16s %8s %-16s %s\n", "-----Q-ID-------", "--Size--", "-----Q-Time-----", "------------Sender/Recipient-----------")
	for _, e := range entries {
		from := "<" + e.From + ">"
		if e.From == "" {
			from = "<>"
		}
		fmt.Fprintf(w, "%-16s %8d %-16s %s\n", e.ID, e.Size, e.Created.Local().Format("Mon Jan _2 15:04"), from)
		if e.Held {
			fmt.Fprintf(w, "%17s(held: posthorn queue release %s)\n", "", e.ID)
		}
		if reason := lastError(e); reason != "" {
			fmt.Fprintf(w, "%17s(Deferred: %s)\n", "", oneLine(reason, 200))
		}
		for _, r := range e.Recipients {
			if r.Status == store.RcptPending {
				fmt.Fprintf(w, "\t\t\t\t\t <%s>\n", r.Address)
			}
		}
	}
	fmt.Fprintf(w, "\t\tTotal requests: %d\n", len(entries))
}

// lastError is the reason of the latest failure among the waiting recipients.
func lastError(e store.QueueEntry) string {
	var last time.Time
	reason := ""
	for _, r := range e.Recipients {
		if r.Status == store.RcptPending && r.LastError != "" && !r.LastTry.Before(last) {
			last, reason = r.LastTry, r.LastError
		}
	}
	return reason
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// runQueue is `posthorn queue list|flush|delete|hold|release`: the queue
// commands of Postfix's postqueue/postsuper, working on the store directly,
// so they work with the server running or not. The running server sees a
// flush or release within seconds (it looks for due entries every 2 s).
func runQueue(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("queue", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageErr("queue: want list, flush [ID...], delete ID...|ALL, hold ID..., or release ID...")
	}
	cmd, ids := rest[0], rest[1:]
	switch cmd {
	case "list", "flush":
	case "delete", "hold", "release":
		if len(ids) == 0 {
			return usageErr("queue %s: which entries? (IDs as mailq shows them%s)", cmd, map[bool]string{true: ", or ALL"}[cmd == "delete"])
		}
	default:
		return usageErr("queue: unknown command %q (list, flush, delete, hold, release)", cmd)
	}
	_, st, err := openStore(*cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	if cmd == "list" {
		entries, err := st.ListQueue(ctx)
		if err != nil {
			return err
		}
		writeQueueList(stdout, entries)
		return nil
	}
	if cmd == "delete" && len(ids) == 1 && ids[0] == "ALL" {
		entries, err := st.ListQueue(ctx)
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, e := range entries {
			ids = append(ids, e.ID)
		}
	}
	if cmd == "flush" && len(ids) == 0 {
		if err := st.RescheduleQueue(ctx, "", time.Now()); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "queue: every entry is due now")
		return nil
	}
	var errs []error
	done := 0
	for _, id := range ids {
		var err error
		switch cmd {
		case "flush":
			err = st.RescheduleQueue(ctx, id, time.Now())
		case "delete":
			err = st.DeleteQueueEntry(ctx, id)
		case "hold":
			err = st.HoldQueueEntry(ctx, id, true)
		case "release":
			if err = st.HoldQueueEntry(ctx, id, false); err == nil {
				err = st.RescheduleQueue(ctx, id, time.Now())
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%s: no such queue entry", id)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done++
	}
	past := map[string]string{"flush": "flushed", "delete": "deleted", "hold": "held", "release": "released"}[cmd]
	fmt.Fprintf(stdout, "queue: %d entr%s %s\n", done, map[bool]string{true: "y", false: "ies"}[done == 1], past)
	if len(errs) > 0 {
		return usageErr("queue %s: %v", cmd, errors.Join(errs...))
	}
	return nil
}

// writeQueueList shows everything known of each entry: what mailq shows, and
// each recipient's state, attempts and next attempt.
func writeQueueList(w io.Writer, entries []store.QueueEntry) {
	for _, e := range entries {
		from := e.From
		if from == "" {
			from = "<>"
		}
		state := "waiting"
		if e.Held {
			state = "held"
		}
		fmt.Fprintf(w, "%s  %d bytes  from %s  arrived %s  next attempt %s  %s\n", e.ID, e.Size, from,
			e.Created.Local().Format(time.DateTime), e.NextAttempt.Local().Format(time.DateTime), state)
		for _, r := range e.Recipients {
			line := fmt.Sprintf("    %-9s %s  attempts %d", r.Status, r.Address, r.Attempts)
			if r.LastError != "" {
				line += "  last: " + oneLine(r.LastError, 200)
			}
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintf(w, "%d entr%s\n", len(entries), map[bool]string{true: "y", false: "ies"}[len(entries) == 1])
}
