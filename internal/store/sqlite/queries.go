package sqlite

// The statements of the hot paths (delivery, append, flags), prepared once on
// the writer's connection.
const (
	qSavepoint  = "SAVEPOINT req"
	qRollbackTo = "ROLLBACK TO req"
	qRelease    = "RELEASE req"
	qInsertBlob = "INSERT INTO blobs(refs, size, sha256, data, file) VALUES (?, ?, ?, ?, ?)"
	qSetRefs    = "UPDATE blobs SET refs = ? WHERE id = ?"
	qAddMessage = `UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
		messages = messages + 1, unseen = unseen + ?, deleted = deleted + ?, size = size + ?
		WHERE id = ? RETURNING uidnext, highestmodseq`
	qUsedBytes       = "SELECT coalesce(sum(size), 0) FROM mailboxes WHERE account_id = ?"
	qMailboxAccount  = "SELECT a.id, a.quota_bytes FROM mailboxes m JOIN accounts a ON a.id = m.account_id WHERE m.id = ?"
	qAllocUIDs       = "UPDATE mailboxes SET uidnext = uidnext + ?, highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING uidnext, highestmodseq"
	qNewModSeq       = "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING highestmodseq"
	qInsertQueue     = "INSERT INTO queue(id, sender, envid, ret, created, next_attempt, size, blob_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
	qInsertQueueRcpt = "INSERT OR IGNORE INTO queue_rcpts(queue_id, address, orcpt, notify, status) VALUES (?, ?, ?, ?, ?)"
	// The queue runner's: one of these per message sent (a delete with its
	// trigger was a tenth of the relay path's CPU when parsed each time).
	qDeleteQueue     = "DELETE FROM queue WHERE id = ?"
	qUpdateQueue     = "UPDATE queue SET next_attempt = ?, warned = warned OR ? WHERE id = ?"
	qUpdateQueueRcpt = "UPDATE queue_rcpts SET status = ?, attempts = ?, last_error = ?, last_try = ? WHERE queue_id = ? AND address = ?"
	qDeliverTarget   = `SELECT m.id, m.uidvalidity, a.id, a.quota_bytes FROM accounts a JOIN mailboxes m ON m.account_id = a.id
				WHERE a.name = ? AND m.name = ?`
	qInsertMessage = `INSERT INTO messages(mailbox_id, uid, modseq, flags, keywords, internal_date, internal_tz, save_date, size, blob_id, meta)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

var hotWrites = []string{
	qSavepoint, qRollbackTo, qRelease,
	qInsertBlob,
	qSetRefs,
	qAddMessage,
	qUsedBytes,
	qMailboxAccount,
	qAllocUIDs,
	qNewModSeq,
	qInsertQueue,
	qInsertQueueRcpt,
	qDeleteQueue,
	qUpdateQueue,
	qUpdateQueueRcpt,
	qDeliverTarget,
	qInsertMessage,
	qFlagsSelect,
	qFlagsUpdate,
	qDeletedUIDs,
	qExistingUIDs,
	qDeleteMessages,
	qRecordExpunged,
}

// The statements of STORE and EXPUNGE, run for every IMAP flag change:
// prepared once (preparing them took a sixth of the CPU of a busy IMAP
// server).
const (
	qFlagsSelect    = "SELECT " + messageColumns + " FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid"
	qFlagsUpdate    = "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?"
	qDeletedUIDs    = "SELECT uid FROM messages WHERE mailbox_id = ? AND (flags & 8) != 0 ORDER BY uid"
	qExistingUIDs   = "SELECT uid FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid"
	qDeleteMessages = "DELETE FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))"
	qRecordExpunged = "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) SELECT ?, value, ? FROM json_each(?)"
)
