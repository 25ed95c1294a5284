// Package store defines posthorn's durable state: accounts, their mailboxes, the
// messages in them (UIDs, MODSEQs, flags, dates, sizes, the parsed structure kept at
// delivery) and the outbound queue. The protocol servers (SMTP delivery, POP3, IMAP,
// webmail) talk to this interface only; implementations live in subpackages
// (store/sqlite today, PostgreSQL later) and keep message bytes through internal/blob.
//
// Invariants every implementation keeps:
//   - A method that returns nil has made its change durable (fsynced). Deliver and
//     Append in particular return only after the bytes and the rows are on disk, so
//     that "250" after DATA and "OK" after APPEND are true.
//   - UIDs in a mailbox strictly increase and are never reused while the mailbox's
//     UIDVALIDITY stays the same (RFC 9051 section 2.3.1.1).
//   - Every change to a message (arrival, flags, expunge) takes a new MODSEQ from its
//     mailbox, greater than any MODSEQ the mailbox gave before, and the mailbox's
//     HIGHESTMODSEQ is the greatest one given (RFC 7162 section 3.1). Expunged UIDs are
//     remembered with the MODSEQ of their expunge, so that QRESYNC can report VANISHED.
//   - Names of accounts are lower-case; names of mailboxes are UTF-8 with "/" as the
//     hierarchy separator, and "INBOX" is matched case-insensitively.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors returned by every implementation; test with errors.Is.
var (
	ErrNotFound    = errors.New("store: not found")
	ErrExists      = errors.New("store: already exists")
	ErrOverQuota   = errors.New("store: over quota")
	ErrInvalidName = errors.New("store: invalid name")
	// ErrModified is returned for messages whose MODSEQ is above a STORE's
	// UNCHANGEDSINCE (RFC 7162 section 3.1.3).
	ErrModified = errors.New("store: modified since")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store: closed")
)

// Special-use attributes (RFC 6154) of the default mailboxes.
const (
	SpecialSent    = `\Sent`
	SpecialDrafts  = `\Drafts`
	SpecialJunk    = `\Junk`
	SpecialTrash   = `\Trash`
	SpecialArchive = `\Archive`
)

// Inbox is the name of every account's inbox.
const Inbox = "INBOX"

// DefaultMailboxes are created with every account, with their special use.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{Inbox, ""},
	{"Sent", SpecialSent},
	{"Drafts", SpecialDrafts},
	{"Junk", SpecialJunk},
	{"Trash", SpecialTrash},
	{"Archive", SpecialArchive},
}

// System flags (RFC 9051 section 2.3.2). Keywords are any other atom.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Account is a login: a mail user.
type Account struct {
	ID           int64
	Name         string // login name, lower-case ("pp")
	PasswordHash string // PHC string (argon2id) or bcrypt; never logged
	// SCRAMSHA256 is the SCRAM-SHA-256 credential (RFC 5802, RFC 7677) in RFC
	// 5803's form "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>", made
	// from the same password as PasswordHash; "" when none was made yet. It
	// lets a password be checked without the password: keep it as secret as
	// the hash, never logged.
	SCRAMSHA256 string
	QuotaBytes  int64 // 0 means no limit
	UsedBytes   int64 // sum of the sizes of the account's messages
	Admin       bool
	Created     time.Time
}

// Mailbox is a folder of one account.
type Mailbox struct {
	ID            int64
	AccountID     int64
	Name          string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	SpecialUse    string // "" or one of the Special* constants
	Subscribed    bool
	Messages      uint32 // number of messages
	Unseen        uint32 // messages without \Seen
	Deleted       uint32 // messages with \Deleted
	Size          int64  // sum of message sizes (STATUS=SIZE)
}

// MessageInfo is what the store keeps of a message in a mailbox, without its bytes.
type MessageInfo struct {
	MailboxID    int64
	UID          uint32
	ModSeq       uint64
	Flags        []string // sorted; system flags and keywords
	InternalDate time.Time
	SaveDate     time.Time // when it was put into this mailbox (RFC 8514)
	Size         int64
	BlobID       string // identifies the bytes; shared by copies of the message
	// Meta is the structure parsed once at delivery by internal/msg (envelope,
	// body structure). The store keeps it but does not interpret it.
	Meta []byte
	// POP3UIDL is the unique-id another POP3 server gave the message, kept
	// by an import (Importer) so that POP3 clients do not download it again;
	// "" for every other message.
	POP3UIDL string
}

// HasFlag reports whether the message carries flag (case-insensitive, as IMAP
// flags are).
func (m *MessageInfo) HasFlag(flag string) bool {
	for _, f := range m.Flags {
		if equalFold(f, flag) {
			return true
		}
	}
	return false
}

// Body is the bytes of a message handed to Deliver or Append. A *bytes.Reader and
// an *io.SectionReader over a spool file both fit.
type Body interface {
	io.ReaderAt
	Size() int64
}

// MessageReader reads a stored message.
type MessageReader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	Size() int64
}

// LocalTarget is one mailbox a delivered message goes into.
type LocalTarget struct {
	Account string   // account name
	Mailbox string   // "" means INBOX
	Flags   []string // initial flags, usually none
}

// QueueRecipient is a remote recipient put on the outbound queue, with its RFC 3461
// DSN parameters.
type QueueRecipient struct {
	Address string
	ORCPT   string // original recipient, "rfc822;addr" form, may be empty
	Notify  string // comma list of NEVER, SUCCESS, FAILURE, DELAY; empty = default
}

// Delivery is a message accepted for some local mailboxes and/or remote
// recipients. Deliver stores it all in one durable step: the bytes once, however
// many targets share them.
type Delivery struct {
	Body         Body
	Meta         []byte
	InternalDate time.Time
	Local        []LocalTarget

	// Outbound part: when Remote is not empty, a queue entry is created.
	From   string // envelope sender, "" for the null sender
	Remote []QueueRecipient
	EnvID  string // RFC 3461 ENVID
	Ret    string // RFC 3461 RET: "FULL", "HDRS" or ""
	// QueueID, when set, is used as the queue entry's ID (so that the SMTP reply,
	// the log line and mailq name the same ID); otherwise one is made.
	QueueID string
}

// TargetResult says what became of one LocalTarget, in the order given.
type TargetResult struct {
	MailboxID   int64
	UIDValidity uint32
	UID         uint32
	Err         error // ErrOverQuota, ErrNotFound (no such account/mailbox)
}

// DeliveryResult is what Deliver did.
type DeliveryResult struct {
	Local   []TargetResult
	QueueID string // "" when nothing was queued
}

// QueueEntry is a message on the outbound queue.
type QueueEntry struct {
	ID          string
	From        string
	EnvID       string
	Ret         string
	Created     time.Time
	NextAttempt time.Time
	Size        int64
	BlobID      string
	Held        bool // not tried until released
	Warned      bool // the delay notice went out
	Recipients  []QueueRecipientState
}

// QueueUpdate is what one round of delivery attempts changes in a queue entry.
type QueueUpdate struct {
	Recipients  []QueueRecipientState
	NextAttempt time.Time
	Warned      bool // set the delay-notice mark (it is never cleared)
}

// Recipient states on the queue.
const (
	RcptPending   = "pending"
	RcptDelivered = "delivered"
	RcptFailed    = "failed"
)

// QueueRecipientState is one recipient of a queue entry and how its delivery goes.
type QueueRecipientState struct {
	QueueRecipient
	Status    string // RcptPending, RcptDelivered, RcptFailed
	Attempts  int
	LastError string
	LastTry   time.Time
}

// FlagOp says how StoreFlags changes the flags (IMAP STORE FLAGS, +FLAGS, -FLAGS).
type FlagOp int

const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// Change is published to live sessions when a mailbox of an account changes.
type Change struct {
	AccountID int64
	MailboxID int64
	Kind      ChangeKind
	UIDs      []uint32 // the messages concerned, when known
	ModSeq    uint64   // the mailbox's HIGHESTMODSEQ after the change
}

// ChangeKind is what happened.
type ChangeKind int

const (
	ChangeNew       ChangeKind = iota // messages arrived (delivery, APPEND, COPY, MOVE)
	ChangeFlags                       // flags of messages changed
	ChangeExpunge                     // messages were expunged
	ChangeMailboxes                   // mailboxes were created, renamed or deleted
)

// ImportMessage is one message of Importer.AppendBatch.
type ImportMessage struct {
	Body         Body
	Meta         []byte
	Flags        []string
	InternalDate time.Time // zero: now
	POP3UIDL     string    // the unique-id the old POP3 server gave it, or ""
}

// Importer is implemented by stores that take imported mail (posthorn
// import) in batches: one durable write for many messages, and the POP3
// unique-id of each kept.
type Importer interface {
	// AppendBatch stores the messages into one mailbox, in the order given
	// (their UIDs increase in that order), durably, in one step: all of them
	// or, on an error (ErrOverQuota, ErrNotFound), none.
	AppendBatch(ctx context.Context, mailboxID int64, msgs []ImportMessage) ([]MessageInfo, error)
}

// Store is the durable state. All methods are safe for concurrent use.
type Store interface {
	// Accounts.

	// CreateAccount makes an account with the default mailboxes.
	CreateAccount(ctx context.Context, name, passwordHash string) (*Account, error)
	GetAccount(ctx context.Context, name string) (*Account, error)
	ListAccounts(ctx context.Context) ([]Account, error)
	// SetPassword replaces an account's password hash and its SCRAM-SHA-256
	// credential together ("" for none), so that a credential never outlives
	// the password it was made from.
	SetPassword(ctx context.Context, name, passwordHash, scramSHA256 string) error
	// UpgradePassword is SetPassword done only while the account's hash is
	// still oldHash, else ErrModified: a login that rehashes the password or
	// adds its SCRAM credential must not undo a password change made meanwhile.
	UpgradePassword(ctx context.Context, name, oldHash, passwordHash, scramSHA256 string) error
	SetQuota(ctx context.Context, name string, quotaBytes int64) error
	SetAdmin(ctx context.Context, name string, admin bool) error
	// DeleteAccount removes the account, its mailboxes and its messages.
	DeleteAccount(ctx context.Context, name string) error

	// Mailboxes.

	ListMailboxes(ctx context.Context, accountID int64) ([]Mailbox, error)
	GetMailbox(ctx context.Context, accountID int64, name string) (*Mailbox, error)
	GetMailboxByID(ctx context.Context, mailboxID int64) (*Mailbox, error)
	CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (*Mailbox, error)
	// RenameMailbox renames a mailbox and its children ("a" -> "b" renames "a/x" to
	// "b/x"). Renaming INBOX moves its messages to the new mailbox and leaves INBOX
	// empty (RFC 9051 section 6.3.6).
	RenameMailbox(ctx context.Context, accountID int64, oldName, newName string) error
	DeleteMailbox(ctx context.Context, accountID int64, name string) error
	SetSubscribed(ctx context.Context, accountID int64, name string, subscribed bool) error

	// Messages.

	// Deliver stores a message into every local target and queues it for the remote
	// recipients, durably, before it returns. Deliveries from concurrent callers are
	// committed together (group commit). A target that cannot take the message
	// (over quota, no such account) gets its error in the result; the others are
	// delivered. The error return is for failures of the whole delivery.
	Deliver(ctx context.Context, d *Delivery) (*DeliveryResult, error)
	// Append stores a message into one mailbox (IMAP APPEND, webmail drafts),
	// durably, and returns its UID.
	Append(ctx context.Context, mailboxID int64, body Body, meta []byte, flags []string, date time.Time) (MessageInfo, error)
	// ListMessages returns the messages of a mailbox in UID order; with
	// changedSince > 0 only those whose MODSEQ is greater. Meta is filled only
	// with withMeta (FETCH FLAGS of 50,000 messages should not read their
	// structures).
	ListMessages(ctx context.Context, mailboxID int64, changedSince uint64, withMeta bool) ([]MessageInfo, error)
	GetMessage(ctx context.Context, mailboxID int64, uid uint32) (*MessageInfo, error)
	// OpenMessage opens the bytes of a message.
	OpenMessage(ctx context.Context, mailboxID int64, uid uint32) (MessageReader, error)
	// StoreFlags changes the flags of the given messages. With unchangedSince > 0,
	// messages whose MODSEQ is greater are not changed and are returned in
	// modified (RFC 7162 section 3.1.3). changed holds the messages whose flags
	// changed, with their new flags and MODSEQ. UIDs that do not exist are ignored.
	StoreFlags(ctx context.Context, mailboxID int64, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (changed []MessageInfo, modified []uint32, err error)
	// Expunge removes the given messages; with uids == nil, every message that has
	// \Deleted. It returns the UIDs removed, in order.
	Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error)
	// Copy copies messages to another mailbox of the same account and returns the
	// new UIDs in the order of srcUIDs that existed (COPYUID, RFC 4315).
	Copy(ctx context.Context, srcMailboxID int64, srcUIDs []uint32, dstMailboxID int64) (srcDone, dstUIDs []uint32, err error)
	// Move is Copy then Expunge of the sources, in one step (RFC 6851).
	Move(ctx context.Context, srcMailboxID int64, srcUIDs []uint32, dstMailboxID int64) (srcDone, dstUIDs []uint32, err error)
	// Vanished returns the UIDs expunged from the mailbox with a MODSEQ greater
	// than sinceModSeq, in order (QRESYNC).
	Vanished(ctx context.Context, mailboxID int64, sinceModSeq uint64) ([]uint32, error)

	// Outbound queue.

	ListQueue(ctx context.Context) ([]QueueEntry, error)
	GetQueueEntry(ctx context.Context, id string) (*QueueEntry, error)
	// OpenQueueMessage opens the bytes of a queued message.
	OpenQueueMessage(ctx context.Context, id string) (MessageReader, error)
	// DueQueue returns up to limit entries that are not held and whose next
	// attempt is at or before now, the earliest first, with their recipients.
	DueQueue(ctx context.Context, now time.Time, limit int) ([]QueueEntry, error)
	// UpdateQueueEntry records delivery attempts: the recipient states replace
	// those of the same Address, and the entry's next attempt and delay-notice
	// mark are set.
	UpdateQueueEntry(ctx context.Context, id string, u QueueUpdate) error
	// HoldQueueEntry holds (held true) or releases an entry: a held entry is not
	// tried until released (`posthorn queue hold|release`).
	HoldQueueEntry(ctx context.Context, id string, held bool) error
	// RescheduleQueue makes an entry, or with id "" every entry, due at t
	// (`posthorn queue flush`). Held entries stay held.
	RescheduleQueue(ctx context.Context, id string, t time.Time) error
	// DeleteQueueEntry removes an entry (delivered, bounced, or deleted by hand).
	DeleteQueueEntry(ctx context.Context, id string) error

	// Subscribe returns a channel of changes to the account's mailboxes, and a
	// function that ends the subscription. Slow readers lose changes rather than
	// block writers: a receiver that sees a full channel should re-read the mailbox.
	Subscribe(accountID int64) (<-chan Change, func())

	// Check verifies the store's integrity: every message's bytes present and
	// matching size and hash, UIDs below UIDNEXT, counters consistent. It returns
	// one line per problem found.
	Check(ctx context.Context) ([]string, error)

	Close() error
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
