package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

// System flags as bits of messages.flags; the rest are keywords.
var flagBits = []struct {
	name string
	bit  int64
}{
	{store.FlagSeen, 1},
	{store.FlagAnswered, 2},
	{store.FlagFlagged, 4},
	{store.FlagDeleted, 8},
	{store.FlagDraft, 16},
}

// maxKeywords bounds the keywords of one message.
const maxKeywords = 100

// encodeFlags splits flags into the system bits and the keywords (sorted,
// space-separated). \Recent is session state and is not stored.
func encodeFlags(flags []string) (int64, string) {
	var bits int64
	var kws []string
	for _, f := range flags {
		if f == "" {
			continue
		}
		matched := false
		for _, fb := range flagBits {
			if strings.EqualFold(f, fb.name) {
				bits |= fb.bit
				matched = true
				break
			}
		}
		if matched || strings.HasPrefix(f, `\`) || strings.ContainsAny(f, " \t\r\n") {
			continue
		}
		kws = appendKeyword(kws, f)
	}
	return bits, joinKeywords(kws)
}

func appendKeyword(kws []string, k string) []string {
	for _, e := range kws {
		if strings.EqualFold(e, k) {
			return kws
		}
	}
	if len(kws) >= maxKeywords {
		return kws
	}
	return append(kws, k)
}

func joinKeywords(kws []string) string {
	sort.Slice(kws, func(i, j int) bool { return strings.ToLower(kws[i]) < strings.ToLower(kws[j]) })
	return strings.Join(kws, " ")
}

func splitKeywords(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

func decodeFlags(bits int64, keywords string) []string {
	out := make([]string, 0, 2)
	for _, fb := range flagBits {
		if bits&fb.bit != 0 {
			out = append(out, fb.name)
		}
	}
	return append(out, splitKeywords(keywords)...)
}

// prepared bytes of a message about to be stored.
type preparedBody struct {
	size   int64
	sum    []byte
	data   []byte // inline, or nil
	fileID string // a committed blob file, or ""
}

// bytesBody is implemented by bodies that hold their bytes in memory.
type bytesBody interface{ Bytes() []byte }

// prepareBody reads the message once: small ones into memory for the
// database, big ones into a durable blob file (written and fsynced here, in the
// caller's goroutine, so that the writer never waits on it).
func (s *Store) prepareBody(ctx context.Context, body store.Body) (*preparedBody, error) {
	size := body.Size()
	p := &preparedBody{size: size}
	if size <= s.inlineMax {
		var data []byte
		if bb, ok := body.(bytesBody); ok && bb.Bytes() != nil {
			data = bb.Bytes()
		} else {
			data = make([]byte, size)
			if _, err := body.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && int64(len(data)) == size) {
				return nil, fmt.Errorf("store: reading message: %w", err)
			}
		}
		sum := sha256.Sum256(data)
		p.data, p.sum = data, sum[:]
		return p, nil
	}
	w, err := s.blobs.Create(ctx)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), io.NewSectionReader(body, 0, size)); err != nil {
		w.Abort()
		return nil, fmt.Errorf("store: writing message: %w", err)
	}
	id, err := w.Commit()
	if err != nil {
		return nil, err
	}
	p.fileID, p.sum = id, h.Sum(nil)
	return p, nil
}

// discard removes the file of a body that was not stored.
func (s *Store) discard(p *preparedBody) {
	if p != nil && p.fileID != "" {
		s.blobs.Delete(p.fileID)
	}
}

// insertBlob adds the bytes with the number of rows that will refer to them.
func insertBlob(tx *wtx, p *preparedBody, refs int) (int64, error) {
	var file any
	if p.fileID != "" {
		file = p.fileID
	}
	var data any
	if p.data != nil || p.fileID == "" {
		data = p.data
		if p.data == nil {
			data = []byte{}
		}
	}
	res, err := tx.Exec(qInsertBlob, refs, p.size, p.sum, data, file)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// setRefs corrects the reference count of a blob made with more references
// than were made in the end; with none it is removed (its file after the
// commit, see blobs_unreferenced).
func setRefs(tx *wtx, blobID int64, refs int) error {
	_, err := tx.Exec(qSetRefs, refs, blobID)
	return err
}

// allocUIDs takes n UIDs and one new MODSEQ from a mailbox.
func allocUIDs(tx *wtx, mailboxID int64, n int) (first uint32, modseq uint64, err error) {
	var next uint32
	err = tx.QueryRow(qAllocUIDs,
		n, mailboxID).Scan(&next, &modseq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, mailboxID)
	}
	return next - uint32(n), modseq, err
}

// newModSeq takes a new MODSEQ from a mailbox.
func newModSeq(tx *wtx, mailboxID int64) (uint64, error) {
	var m uint64
	err := tx.QueryRow(qNewModSeq, mailboxID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, mailboxID)
	}
	return m, err
}

// usedBytes is an account's usage: the sum of its mailboxes' sizes.
func usedBytes(tx *wtx, accountID int64) (int64, error) {
	var used int64
	err := tx.QueryRow(qUsedBytes, accountID).Scan(&used)
	return used, err
}

// mailboxQuota returns a mailbox's account and whether size more bytes fit
// in its quota.
func mailboxQuota(tx *wtx, mailboxID, size int64) (accountID int64, fits bool, err error) {
	var quota int64
	err = tx.QueryRow(qMailboxAccount, mailboxID).Scan(&accountID, &quota)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, mailboxID)
	}
	if err != nil || quota <= 0 || size == 0 {
		return accountID, true, err
	}
	used, err := usedBytes(tx, accountID)
	return accountID, used+size <= quota, err
}

// addMessage takes the next UID and a new MODSEQ for one message, and counts
// it in the mailbox, in one UPDATE.
func addMessage(tx *wtx, mailboxID int64, bits, size int64) (uint32, uint64, error) {
	var next uint32
	var modseq uint64
	err := tx.QueryRow(qAddMessage, boolInt(bits&1 == 0), boolInt(bits&8 != 0), size, mailboxID).Scan(&next, &modseq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, mailboxID)
	}
	return next - 1, modseq, err
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func insertMessage(tx *wtx, mailboxID int64, uid uint32, modseq uint64, bits int64, kws string, date time.Time, size, blobID int64, meta []byte) error {
	_, offset := date.Zone()
	_, err := tx.Exec(qInsertMessage,
		mailboxID, uid, modseq, bits, kws, date.Unix(), offset, now(), size, blobID, meta)
	return err
}

// Deliver stores a message into local mailboxes and the queue at once.
func (s *Store) Deliver(ctx context.Context, d *store.Delivery) (*store.DeliveryResult, error) {
	body, err := s.prepareBody(ctx, d.Body)
	if err != nil {
		return nil, err
	}
	date := d.InternalDate
	if date.IsZero() {
		date = time.Now()
	}
	res := &store.DeliveryResult{Local: make([]store.TargetResult, len(d.Local))}
	req := &writeReq{fast: true}
	req.fn = func(tx *wtx) error {
		req.changes = req.changes[:0]
		// The blob is made with the references it should get; the count is
		// corrected below in the rare case that a target cannot take it.
		expect := len(d.Local)
		if len(d.Remote) > 0 {
			expect++
		}
		blobID, err := insertBlob(tx, body, expect)
		if err != nil {
			return err
		}
		refs := 0
		for i, t := range d.Local {
			res.Local[i] = store.TargetResult{}
			mbName := t.Mailbox
			if mbName == "" {
				mbName = store.Inbox
			}
			mbName, err := normaliseMailboxName(mbName)
			if err != nil {
				res.Local[i].Err = err
				continue
			}
			tg, err := s.targets.lookup(tx, t.Account, mbName)
			if errors.Is(err, store.ErrNotFound) {
				res.Local[i].Err = err
				continue
			}
			if err != nil {
				return err
			}
			mbID, uv, accountID, quota := tg.mailboxID, tg.uidValidity, tg.accountID, tg.quota
			if quota > 0 {
				used, err := usedBytes(tx, accountID)
				if err != nil {
					return err
				}
				if used+body.size > quota {
					res.Local[i].Err = fmt.Errorf("%w: account %s", store.ErrOverQuota, t.Account)
					continue
				}
			}
			bits, kws := encodeFlags(t.Flags)
			uid, modseq, err := addMessage(tx, mbID, bits, body.size)
			if errors.Is(err, store.ErrNotFound) {
				// The cached mailbox went away (another process): look again.
				s.targets.clear()
				if tg, err = s.targets.lookup(tx, t.Account, mbName); err == nil {
					mbID, uv, accountID = tg.mailboxID, tg.uidValidity, tg.accountID
					uid, modseq, err = addMessage(tx, mbID, bits, body.size)
				}
				if errors.Is(err, store.ErrNotFound) {
					res.Local[i].Err = err
					continue
				}
			}
			if err != nil {
				return err
			}
			if err := insertMessage(tx, mbID, uid, modseq, bits, kws, date, body.size, blobID, d.Meta); err != nil {
				return err
			}
			res.Local[i] = store.TargetResult{MailboxID: mbID, UIDValidity: uv, UID: uid}
			refs++
			req.changes = append(req.changes, store.Change{AccountID: accountID, MailboxID: mbID, Kind: store.ChangeNew, UIDs: []uint32{uid}, ModSeq: modseq})
		}
		res.QueueID = ""
		if len(d.Remote) > 0 {
			id := d.QueueID
			if id == "" {
				id = newQueueID()
			}
			t := now()
			if _, err := tx.Exec(qInsertQueue,
				id, d.From, d.EnvID, d.Ret, t, t, body.size, blobID); err != nil {
				return err
			}
			for _, r := range d.Remote {
				if _, err := tx.Exec(qInsertQueueRcpt,
					id, r.Address, r.ORCPT, r.Notify, store.RcptPending); err != nil {
					return err
				}
			}
			res.QueueID = id
			refs++
		}
		if refs == expect {
			return nil
		}
		req.trash = refs == 0
		return setRefs(tx, blobID, refs)
	}
	if err := s.write(ctx, req); err != nil {
		s.discard(body)
		return nil, err
	}
	if res.QueueID == "" {
		res.QueueID = d.QueueID
	}
	return res, nil
}

// Append stores a message into one mailbox.
func (s *Store) Append(ctx context.Context, mailboxID int64, b store.Body, meta []byte, flags []string, date time.Time) (store.MessageInfo, error) {
	body, err := s.prepareBody(ctx, b)
	if err != nil {
		return store.MessageInfo{}, err
	}
	if date.IsZero() {
		date = time.Now()
	}
	bits, kws := encodeFlags(flags)
	info := store.MessageInfo{MailboxID: mailboxID, Flags: decodeFlags(bits, kws), InternalDate: date, Size: body.size, Meta: meta}
	req := &writeReq{fast: true}
	req.fn = func(tx *wtx) error {
		accountID, fits, err := mailboxQuota(tx, mailboxID, body.size)
		if err != nil {
			return err
		}
		if !fits {
			return store.ErrOverQuota
		}
		blobID, err := insertBlob(tx, body, 1)
		if err != nil {
			return err
		}
		uid, modseq, err := addMessage(tx, mailboxID, bits, body.size)
		if err != nil {
			return err
		}
		if err := insertMessage(tx, mailboxID, uid, modseq, bits, kws, date, body.size, blobID, meta); err != nil {
			return err
		}
		info.UID, info.ModSeq, info.BlobID, info.SaveDate = uid, modseq, strconv.FormatInt(blobID, 10), time.Unix(now(), 0)
		req.changes = []store.Change{{AccountID: accountID, MailboxID: mailboxID, Kind: store.ChangeNew, UIDs: []uint32{uid}, ModSeq: modseq}}
		return nil
	}
	if err := s.write(ctx, req); err != nil {
		s.discard(body)
		return store.MessageInfo{}, err
	}
	return info, nil
}

// AppendBatch stores imported messages into one mailbox in one write.
func (s *Store) AppendBatch(ctx context.Context, mailboxID int64, msgs []store.ImportMessage) ([]store.MessageInfo, error) {
	bodies := make([]*preparedBody, 0, len(msgs))
	discardAll := func() {
		for _, b := range bodies {
			s.discard(b)
		}
	}
	var total int64
	for _, m := range msgs {
		b, err := s.prepareBody(ctx, m.Body)
		if err != nil {
			discardAll()
			return nil, err
		}
		bodies = append(bodies, b)
		total += b.size
	}
	infos := make([]store.MessageInfo, len(msgs))
	req := &writeReq{}
	req.fn = func(tx *wtx) error {
		accountID, fits, err := mailboxQuota(tx, mailboxID, total)
		if err != nil {
			return err
		}
		if !fits {
			return store.ErrOverQuota
		}
		ins, err := tx.Prepare(`INSERT INTO messages(mailbox_id, uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size, blob_id, meta, pop3_uidl)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		uids := make([]uint32, 0, len(msgs))
		var modseq uint64
		for i, m := range msgs {
			date := m.InternalDate
			if date.IsZero() {
				date = time.Now()
			}
			bits, kws := encodeFlags(m.Flags)
			blobID, err := insertBlob(tx, bodies[i], 1)
			if err != nil {
				return err
			}
			var uid uint32
			uid, modseq, err = addMessage(tx, mailboxID, bits, bodies[i].size)
			if err != nil {
				return err
			}
			var uidl any
			if m.POP3UIDL != "" {
				uidl = m.POP3UIDL
			}
			_, offset := date.Zone()
			saved := now()
			if _, err := ins.Exec(mailboxID, uid, modseq, bits, kws, date.Unix(), offset, saved, bodies[i].size, blobID, m.Meta, uidl); err != nil {
				return err
			}
			infos[i] = store.MessageInfo{MailboxID: mailboxID, UID: uid, ModSeq: modseq, Flags: decodeFlags(bits, kws),
				InternalDate: date, SaveDate: time.Unix(saved, 0), Size: bodies[i].size, BlobID: strconv.FormatInt(blobID, 10),
				Meta: m.Meta, POP3UIDL: m.POP3UIDL}
			uids = append(uids, uid)
		}
		req.changes = []store.Change{{AccountID: accountID, MailboxID: mailboxID, Kind: store.ChangeNew, UIDs: uids, ModSeq: modseq}}
		return nil
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	if err := s.write(ctx, req); err != nil {
		discardAll()
		return nil, err
	}
	return infos, nil
}

func scanMessage(rows interface{ Scan(...any) error }, mailboxID int64, withMeta bool) (store.MessageInfo, error) {
	var m store.MessageInfo
	var bits, date, tz, save, blobID int64
	var kws string
	var uidl sql.NullString
	dest := []any{&m.UID, &m.ModSeq, &bits, &kws, &date, &tz, &save, &m.Size, &blobID, &uidl}
	if withMeta {
		dest = append(dest, &m.Meta)
	}
	if err := rows.Scan(dest...); err != nil {
		return m, err
	}
	m.MailboxID = mailboxID
	m.Flags = decodeFlags(bits, kws)
	m.InternalDate = time.Unix(date, 0).In(zone(int(tz)))
	m.SaveDate = time.Unix(save, 0)
	m.BlobID = strconv.FormatInt(blobID, 10)
	m.POP3UIDL = uidl.String
	return m, nil
}

// zone returns a fixed zone for an offset, sharing the common ones.
func zone(offset int) *time.Location {
	if offset == 0 {
		return time.UTC
	}
	return time.FixedZone("", offset)
}

const messageColumns = "uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size, blob_id, pop3_uidl"

// ListMessages returns a mailbox's messages in UID order.
func (s *Store) ListMessages(ctx context.Context, mailboxID int64, changedSince uint64, withMeta bool) ([]store.MessageInfo, error) {
	cols := messageColumns
	if withMeta {
		cols += ", meta"
	}
	rows, err := s.rQuery(ctx, "SELECT "+cols+" FROM messages WHERE mailbox_id = ? AND modseq > ? ORDER BY uid", mailboxID, changedSince)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.MessageInfo
	for rows.Next() {
		m, err := scanMessage(rows, mailboxID, withMeta)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// GetMessage returns one message.
func (s *Store) GetMessage(ctx context.Context, mailboxID int64, uid uint32) (*store.MessageInfo, error) {
	m, err := scanMessage(s.rQueryRow(ctx, "SELECT "+messageColumns+", meta FROM messages WHERE mailbox_id = ? AND uid = ?", mailboxID, uid), mailboxID, true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: message %d", store.ErrNotFound, uid)
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// memReader is a MessageReader over bytes held in memory.
type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// OpenMessage opens the bytes of a message.
func (s *Store) OpenMessage(ctx context.Context, mailboxID int64, uid uint32) (store.MessageReader, error) {
	var data []byte
	var file sql.NullString
	err := s.rQueryRow(ctx, "SELECT b.data, b.file FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ? AND m.uid = ?",
		mailboxID, uid).Scan(&data, &file)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: message %d", store.ErrNotFound, uid)
	}
	if err != nil {
		return nil, err
	}
	return s.openBlob(data, file)
}

func (s *Store) openBlob(data []byte, file sql.NullString) (store.MessageReader, error) {
	if file.Valid && file.String != "" {
		r, err := s.blobs.Open(file.String)
		if err != nil {
			return nil, fmt.Errorf("store: message bytes: %w", err)
		}
		return r, nil
	}
	return memReader{bytes.NewReader(data)}, nil
}

// uidList encodes UIDs for "uid IN (SELECT value FROM json_each(?))".
func uidList(uids []uint32) string {
	b, _ := json.Marshal(uids)
	return string(b)
}

// StoreFlags changes flags (STORE FLAGS, +FLAGS, -FLAGS), with UNCHANGEDSINCE.
func (s *Store) StoreFlags(ctx context.Context, mailboxID int64, uids []uint32, op store.FlagOp, flags []string, unchangedSince uint64) ([]store.MessageInfo, []uint32, error) {
	opBits, opKws := encodeFlags(flags)
	opKwList := splitKeywords(opKws)
	var changed []store.MessageInfo
	var modified []uint32
	req := &writeReq{}
	req.fn = func(tx *wtx) error {
		changed, modified = changed[:0], modified[:0]
		accountID, _, err := mailboxQuota(tx, mailboxID, 0)
		if err != nil {
			return err
		}
		rows, err := tx.Query(qFlagsSelect, mailboxID, uidList(uids))
		if err != nil {
			return err
		}
		type update struct {
			m    store.MessageInfo
			bits int64
			kws  string
		}
		var updates []update
		for rows.Next() {
			m, err := scanMessage(rows, mailboxID, false)
			if err != nil {
				rows.Close()
				return err
			}
			if unchangedSince > 0 && m.ModSeq > unchangedSince {
				modified = append(modified, m.UID)
				continue
			}
			oldBits, oldKws := encodeFlags(m.Flags)
			newBits, kwList := oldBits, splitKeywords(oldKws)
			switch op {
			case store.FlagsSet:
				newBits, kwList = opBits, opKwList
			case store.FlagsAdd:
				newBits |= opBits
				for _, k := range opKwList {
					kwList = appendKeyword(kwList, k)
				}
			case store.FlagsRemove:
				newBits &^= opBits
				kwList = removeKeywords(kwList, opKwList)
			}
			newKws := joinKeywords(append([]string(nil), kwList...))
			if newBits == oldBits && newKws == oldKws {
				continue
			}
			updates = append(updates, update{m, newBits, newKws})
		}
		rows.Close()
		if len(updates) == 0 {
			return nil
		}
		modseq, err := newModSeq(tx, mailboxID)
		if err != nil {
			return err
		}
		changedUIDs := make([]uint32, 0, len(updates))
		for _, u := range updates {
			if _, err := tx.Exec(qFlagsUpdate, u.bits, u.kws, modseq, mailboxID, u.m.UID); err != nil {
				return err
			}
			u.m.Flags, u.m.ModSeq = decodeFlags(u.bits, u.kws), modseq
			changed = append(changed, u.m)
			changedUIDs = append(changedUIDs, u.m.UID)
		}
		req.changes = []store.Change{{AccountID: accountID, MailboxID: mailboxID, Kind: store.ChangeFlags, UIDs: changedUIDs, ModSeq: modseq}}
		return nil
	}
	if err := s.write(ctx, req); err != nil {
		return nil, nil, err
	}
	return changed, modified, nil
}

func removeKeywords(kws, remove []string) []string {
	out := kws[:0:0]
	for _, k := range kws {
		keep := true
		for _, r := range remove {
			if strings.EqualFold(k, r) {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, k)
		}
	}
	return out
}

// expungeTx removes messages and records them for VANISHED.
func expungeTx(tx *wtx, mailboxID int64, uids []uint32) ([]uint32, uint64, error) {
	var gone []uint32
	var err error
	if uids == nil {
		gone, err = scanUIDs(tx.Query(qDeletedUIDs, mailboxID))
	} else {
		gone, err = scanUIDs(tx.Query(qExistingUIDs, mailboxID, uidList(uids)))
	}
	if err != nil {
		return nil, 0, err
	}
	if len(gone) == 0 {
		return nil, 0, nil
	}
	modseq, err := newModSeq(tx, mailboxID)
	if err != nil {
		return nil, 0, err
	}
	list := uidList(gone)
	if _, err := tx.Exec(qDeleteMessages, mailboxID, list); err != nil {
		return nil, 0, err
	}
	if _, err := tx.Exec(qRecordExpunged, mailboxID, modseq, list); err != nil {
		return nil, 0, err
	}
	return gone, modseq, nil
}

// Expunge removes messages: the given ones, or with uids nil every \Deleted one.
func (s *Store) Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	var gone []uint32
	req := &writeReq{trash: true}
	req.fn = func(tx *wtx) error {
		accountID, _, err := mailboxQuota(tx, mailboxID, 0)
		if err != nil {
			return err
		}
		var modseq uint64
		gone, modseq, err = expungeTx(tx, mailboxID, uids)
		if err != nil || len(gone) == 0 {
			return err
		}
		req.changes = []store.Change{{AccountID: accountID, MailboxID: mailboxID, Kind: store.ChangeExpunge, UIDs: gone, ModSeq: modseq}}
		return nil
	}
	if err := s.write(ctx, req); err != nil {
		return nil, err
	}
	return gone, nil
}

// copyTx copies messages to another mailbox of the same account.
// checkQuota is false for a move, which does not change the account's usage.
func (s *Store) copyTx(tx *wtx, src int64, uids []uint32, dst int64, checkQuota bool) (srcDone, dstUIDs []uint32, changes []store.Change, err error) {
	var srcAcct, dstAcct int64
	if err := tx.QueryRow("SELECT account_id FROM mailboxes WHERE id = ?", src).Scan(&srcAcct); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, src)
	}
	if err := tx.QueryRow("SELECT account_id FROM mailboxes WHERE id = ?", dst).Scan(&dstAcct); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, dst)
	}
	if srcAcct != dstAcct {
		// Never between accounts: one account can never reach another's mail.
		return nil, nil, nil, fmt.Errorf("%w: mailbox %d", store.ErrNotFound, dst)
	}
	if checkQuota {
		var total int64
		if err := tx.QueryRow("SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))",
			src, uidList(uids)).Scan(&total); err != nil {
			return nil, nil, nil, err
		}
		if _, fits, err := mailboxQuota(tx, dst, total); err != nil {
			return nil, nil, nil, err
		} else if !fits {
			return nil, nil, nil, store.ErrOverQuota
		}
	}
	rows, err := tx.Query("SELECT uid, flags, size, blob_id FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid", src, uidList(uids))
	if err != nil {
		return nil, nil, nil, err
	}
	var blobs []int64
	var unseen, deleted, total int64
	for rows.Next() {
		var u uint32
		var bits, size, blobID int64
		if err := rows.Scan(&u, &bits, &size, &blobID); err != nil {
			rows.Close()
			return nil, nil, nil, err
		}
		srcDone = append(srcDone, u)
		blobs = append(blobs, blobID)
		unseen += boolInt(bits&1 == 0)
		deleted += boolInt(bits&8 != 0)
		total += size
	}
	rows.Close()
	if len(srcDone) == 0 {
		return nil, nil, nil, nil
	}
	first, modseq, err := allocUIDs(tx, dst, len(srcDone))
	if err != nil {
		return nil, nil, nil, err
	}
	// Copies keep flags, internal date, bytes and structure; SAVEDATE is now.
	stmt, err := tx.Prepare(`INSERT INTO messages(mailbox_id, uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size, blob_id, meta)
		SELECT ?, ?, ?, flags, keywords, internal_date, internal_tz, ?, size, blob_id, meta FROM messages WHERE mailbox_id = ? AND uid = ?`)
	if err != nil {
		return nil, nil, nil, err
	}
	defer stmt.Close()
	t := now()
	for i, u := range srcDone {
		nu := first + uint32(i)
		if _, err := stmt.Exec(dst, nu, modseq, t, src, u); err != nil {
			return nil, nil, nil, err
		}
		if _, err := tx.Exec("UPDATE blobs SET refs = refs + 1 WHERE id = ?", blobs[i]); err != nil {
			return nil, nil, nil, err
		}
		dstUIDs = append(dstUIDs, nu)
	}
	if _, err := tx.Exec("UPDATE mailboxes SET messages = messages + ?, unseen = unseen + ?, deleted = deleted + ?, size = size + ? WHERE id = ?",
		len(srcDone), unseen, deleted, total, dst); err != nil {
		return nil, nil, nil, err
	}
	changes = []store.Change{{AccountID: dstAcct, MailboxID: dst, Kind: store.ChangeNew, UIDs: dstUIDs, ModSeq: modseq}}
	return srcDone, dstUIDs, changes, nil
}

// Copy copies messages to another mailbox of the same account (COPYUID).
func (s *Store) Copy(ctx context.Context, src int64, uids []uint32, dst int64) ([]uint32, []uint32, error) {
	var srcDone, dstUIDs []uint32
	req := &writeReq{}
	req.fn = func(tx *wtx) error {
		var err error
		srcDone, dstUIDs, req.changes, err = s.copyTx(tx, src, uids, dst, true)
		return err
	}
	if err := s.write(ctx, req); err != nil {
		return nil, nil, err
	}
	return srcDone, dstUIDs, nil
}

// moveTx is copyTx then the expunge of the sources.
func (s *Store) moveTx(tx *wtx, src int64, uids []uint32, dst int64) ([]uint32, []uint32, []store.Change, error) {
	srcDone, dstUIDs, changes, err := s.copyTx(tx, src, uids, dst, false)
	if err != nil || len(srcDone) == 0 {
		return nil, nil, changes, err
	}
	gone, modseq, err := expungeTx(tx, src, srcDone)
	if err != nil {
		return nil, nil, nil, err
	}
	changes = append(changes, store.Change{AccountID: changes[0].AccountID, MailboxID: src, Kind: store.ChangeExpunge, UIDs: gone, ModSeq: modseq})
	return srcDone, dstUIDs, changes, nil
}

// Move moves messages to another mailbox of the same account (RFC 6851).
func (s *Store) Move(ctx context.Context, src int64, uids []uint32, dst int64) ([]uint32, []uint32, error) {
	var srcDone, dstUIDs []uint32
	req := &writeReq{trash: true}
	req.fn = func(tx *wtx) error {
		var err error
		srcDone, dstUIDs, req.changes, err = s.moveTx(tx, src, uids, dst)
		return err
	}
	if err := s.write(ctx, req); err != nil {
		return nil, nil, err
	}
	return srcDone, dstUIDs, nil
}

// Vanished returns UIDs expunged after sinceModSeq (QRESYNC).
func (s *Store) Vanished(ctx context.Context, mailboxID int64, sinceModSeq uint64) ([]uint32, error) {
	return scanUIDs(s.rQuery(ctx, "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid", mailboxID, sinceModSeq))
}

func readerOf(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// targetCache remembers where deliveries for an account's mailbox go, so that
// a delivery does not look the account and the mailbox up each time. Only the
// writer goroutine uses it. Entries live targetCacheTTL (another process may
// change accounts), and the cache is cleared whenever this store changes
// mailboxes or accounts. A mailbox deleted meanwhile by another process is
// caught by addMessage (ErrNotFound), which clears the cache: the group then
// runs again and looks it up afresh.
type targetCache struct {
	m map[string]deliveryTarget
}

type deliveryTarget struct {
	mailboxID, accountID, quota int64
	uidValidity                 uint32
	at                          time.Time
}

const (
	targetCacheTTL = 2 * time.Second
	targetCacheMax = 10000
)

func (c *targetCache) clear() { c.m = nil }

func (c *targetCache) lookup(tx *wtx, account, mailbox string) (deliveryTarget, error) {
	key := account + "\x00" + mailbox
	now := time.Now()
	if t, ok := c.m[key]; ok && now.Sub(t.at) < targetCacheTTL {
		return t, nil
	}
	var t deliveryTarget
	err := tx.QueryRow(qDeliverTarget, account, mailbox).Scan(&t.mailboxID, &t.uidValidity, &t.accountID, &t.quota)
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("%w: %s/%s", store.ErrNotFound, account, mailbox)
	}
	if err != nil {
		return t, err
	}
	if c.m == nil || len(c.m) >= targetCacheMax {
		c.m = map[string]deliveryTarget{}
	}
	t.at = now
	c.m[key] = t
	return t, nil
}
