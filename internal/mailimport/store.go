package mailimport

// Moving messages into and out of the store.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// Batch bounds: a batch is one durable write; memory holds one batch.
const (
	batchBytes    = 8 << 20
	batchMessages = 1000
)

// Result counts what an import did (or, dry, would do).
type Result struct {
	Messages   int   // imported
	Duplicates int   // already in the mailbox (same bytes): skipped
	Bytes      int64 // of the messages imported
}

// Add adds r to the counts.
func (r *Result) Add(o Result) {
	r.Messages += o.Messages
	r.Duplicates += o.Duplicates
	r.Bytes += o.Bytes
}

// Into puts messages into one mailbox of an account.
type Into struct {
	Store   store.Store // nil in a dry run before there is a store
	Account string
	Mailbox string // "" is INBOX; made when missing
	DryRun  bool   // count, change nothing

	mbID   int64
	have   map[[32]byte]int // bytes already in the mailbox, by hash: how many
	batch  []store.ImportMessage
	size   int64
	result Result
}

// Open finds (or, unless dry, makes) the mailbox and hashes the messages it
// holds, so that a second run skips what the first imported.
func (in *Into) Open(ctx context.Context) error {
	if in.Mailbox == "" {
		in.Mailbox = store.Inbox
	}
	in.have = map[[32]byte]int{}
	if in.DryRun && in.Store == nil {
		return nil // no store yet: everything is new
	}
	acct, err := in.Store.GetAccount(ctx, in.Account)
	if in.DryRun && errors.Is(err, store.ErrNotFound) {
		return nil // made by the real run
	}
	if err != nil {
		return fmt.Errorf("account %s: %w", in.Account, err)
	}
	mb, err := in.Store.GetMailbox(ctx, acct.ID, in.Mailbox)
	if errors.Is(err, store.ErrNotFound) {
		if in.DryRun {
			return nil
		}
		mb, err = in.Store.CreateMailbox(ctx, acct.ID, in.Mailbox, "")
	}
	if err != nil {
		return fmt.Errorf("mailbox %s of %s: %w", in.Mailbox, in.Account, err)
	}
	in.mbID = mb.ID
	msgs, err := in.Store.ListMessages(ctx, mb.ID, 0, false)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		r, err := in.Store.OpenMessage(ctx, mb.ID, m.UID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return err
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		in.have[sum]++
	}
	if _, ok := in.Store.(store.Importer); !ok && !in.DryRun {
		return errors.New("this store cannot import (no AppendBatch)")
	}
	return nil
}

// Add takes one message; it is stored with the batch it falls in.
func (in *Into) Add(ctx context.Context, m *Message) error {
	sum := sha256.Sum256(m.Data)
	if in.have[sum] > 0 {
		in.have[sum]--
		in.result.Duplicates++
		return nil
	}
	in.result.Messages++
	in.result.Bytes += int64(len(m.Data))
	if in.DryRun {
		return nil
	}
	uidl := m.UIDL
	in.batch = append(in.batch, store.ImportMessage{
		Body:         bytes.NewReader(m.Data),
		Meta:         msg.ParseBytes(m.Data).Marshal(),
		Flags:        m.Flags,
		InternalDate: m.Date,
		POP3UIDL:     uidl,
	})
	in.size += int64(len(m.Data))
	if in.size >= batchBytes || len(in.batch) >= batchMessages {
		return in.Flush(ctx)
	}
	return nil
}

// Flush stores the batch.
func (in *Into) Flush(ctx context.Context) error {
	if len(in.batch) == 0 {
		return nil
	}
	_, err := in.Store.(store.Importer).AppendBatch(ctx, in.mbID, in.batch)
	clear(in.batch)
	in.batch, in.size = in.batch[:0], 0
	if err != nil {
		return fmt.Errorf("storing into %s of %s: %w", in.Mailbox, in.Account, err)
	}
	return nil
}

// Result returns the counts so far.
func (in *Into) Result() Result { return in.result }

// ImportMbox reads an mbox into a mailbox; progress, when set, is told how
// many bytes of the file were read after each message.
func ImportMbox(ctx context.Context, in *Into, mr *MboxReader, progress func(int64)) (Result, error) {
	if err := in.Open(ctx); err != nil {
		return Result{}, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return in.Result(), err
		}
		m, err := mr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return in.Result(), err
		}
		if err := in.Add(ctx, m); err != nil {
			return in.Result(), err
		}
		if progress != nil {
			progress(mr.Offset())
		}
	}
	return in.Result(), in.Flush(ctx)
}

// ImportMaildir imports every folder of the Maildir tree at root into the
// account (subfolders as mailboxes of the same names).
func ImportMaildir(ctx context.Context, st store.Store, account, root string, dry bool, progress func(mailbox string, n int)) (Result, error) {
	folders, err := MaildirFolders(root)
	if err != nil {
		return Result{}, err
	}
	var total Result
	for _, f := range folders {
		in := &Into{Store: st, Account: account, Mailbox: f.Mailbox, DryRun: dry}
		if err := in.Open(ctx); err != nil {
			return total, err
		}
		n := 0
		err := ReadMaildirFolder(f.Path, func(m *Message) error {
			n++
			if progress != nil {
				progress(f.Mailbox, n)
			}
			return in.Add(ctx, m)
		})
		if err == nil {
			err = in.Flush(ctx)
		}
		total.Add(in.Result())
		if err != nil {
			return total, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return total, nil
}

// exportFn is given each message of an export.
type exportFn func(mb store.Mailbox, info store.MessageInfo, data []byte) error

// eachMessage calls fn for every message of every mailbox of the account.
func eachMessage(ctx context.Context, st store.Store, account string, start func(store.Mailbox) error, fn exportFn) error {
	acct, err := st.GetAccount(ctx, account)
	if err != nil {
		return fmt.Errorf("account %s: %w", account, err)
	}
	mbs, err := st.ListMailboxes(ctx, acct.ID)
	if err != nil {
		return err
	}
	for _, mb := range mbs {
		if err := start(mb); err != nil {
			return err
		}
		msgs, err := st.ListMessages(ctx, mb.ID, 0, false)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			r, err := st.OpenMessage(ctx, mb.ID, m.UID)
			if errors.Is(err, store.ErrNotFound) {
				continue // expunged meanwhile
			}
			if err != nil {
				return err
			}
			data, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				return err
			}
			if err := fn(mb, m, data); err != nil {
				return err
			}
		}
	}
	return nil
}

// MboxPath is where ExportMbox writes a mailbox: dir/INBOX, dir/Sent, and
// "A/B" as dir/A.sbd/B (Thunderbird's layout, so that "A" can be both a
// file and a folder of mailboxes).
func MboxPath(dir, mailbox string) string {
	parts := strings.Split(mailbox, "/")
	for i := range parts {
		parts[i] = safeLevel(parts[i])
		if i < len(parts)-1 {
			parts[i] += ".sbd"
		}
	}
	return filepath.Join(append([]string{dir}, parts...)...)
}

// ExportMbox writes every mailbox of the account as an mboxrd file under
// dir (MboxPath), the flags in Status:/X-Status:/X-Keywords:, and returns
// the counts.
func ExportMbox(ctx context.Context, st store.Store, account, dir string) (Result, error) {
	var res Result
	var f *os.File
	var w *MboxWriter
	closeFile := func() error {
		if f == nil {
			return nil
		}
		err := w.Flush()
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		f = nil
		return err
	}
	err := eachMessage(ctx, st, account, func(mb store.Mailbox) error {
		if err := closeFile(); err != nil {
			return err
		}
		path := MboxPath(dir, mb.Name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		var err error
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return err
		}
		w = NewMboxWriter(f, nil)
		return nil
	}, func(mb store.Mailbox, info store.MessageInfo, data []byte) error {
		res.Messages++
		res.Bytes += int64(len(data))
		return w.Write(data, info.Flags, info.InternalDate, "")
	})
	if cerr := closeFile(); err == nil {
		err = cerr
	}
	return res, err
}

// ExportMaildir writes every mailbox of the account into the Maildir++ tree
// at dir: INBOX at dir, "A/B" at dir/.A.B; flags in the file names.
func ExportMaildir(ctx context.Context, st store.Store, account, dir string) (Result, error) {
	var res Result
	err := eachMessage(ctx, st, account, func(mb store.Mailbox) error {
		p := MaildirFolderPath(dir, mb.Name)
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(p, sub), 0o700); err != nil {
				return err
			}
		}
		return nil
	}, func(mb store.Mailbox, info store.MessageInfo, data []byte) error {
		res.Messages++
		res.Bytes += int64(len(data))
		return WriteMaildirMessage(MaildirFolderPath(dir, mb.Name), data, info.Flags, info.InternalDate)
	})
	return res, err
}
