package sqlite

// schemaVersion is kept in PRAGMA user_version: the version of schema plus
// the migrations applied after it.
var schemaVersion = 1 + len(migrations)

// migrations take a database from version n+1 to n+2 (migrations[n]); a new
// database gets schema and then all of them, so both paths end equal.
var migrations = []string{
	// 2: held entries (posthorn queue hold) and the delay-notice mark.
	`ALTER TABLE queue ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE queue ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;`,
	// 3: SCRAM-SHA-256 credentials (RFC 5803 form); '' until the password is
	// set again or used once with PLAIN/LOGIN.
	`ALTER TABLE accounts ADD COLUMN scram_sha256 TEXT NOT NULL DEFAULT '';`,
	// 4: the POP3 unique-id an imported message had on the old server
	// (store.MessageInfo.POP3UIDL); NULL for all others.
	`ALTER TABLE messages ADD COLUMN pop3_uidl TEXT;`,
	// 5: ids of accounts and mailboxes are never given twice. SQLite
	// gives a deleted row's id (the highest) to the next row; an IMAP or
	// webmail session that still held the deleted mailbox's or account's
	// id then reached whoever got it next. The last id given is kept here
	// and every insert takes the next one (see nextID).
	`INSERT OR IGNORE INTO meta(key, value) SELECT 'last_account_id', coalesce(max(id), 0) FROM accounts;
	INSERT OR IGNORE INTO meta(key, value) SELECT 'last_mailbox_id', coalesce(max(id), 0) FROM mailboxes;`,
}

// schema is the database at version 1. The counters of a mailbox and the
// reference count of a blob change in the same transaction as the messages
// they count: on insert the code that inserts sets them (a delivery bumps the
// mailbox counters in the UPDATE that takes its UID, and creates its blob with
// its number of references: fewer B-tree operations on the hot path); on
// delete and on a change of flags, triggers do. An account's usage is the sum
// of its mailboxes' sizes. Check verifies all of them.
const schema = `
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
INSERT INTO meta(key, value) VALUES ('uidvalidity', 0);

CREATE TABLE accounts (
	id            INTEGER PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	quota_bytes   INTEGER NOT NULL DEFAULT 0,
	admin         INTEGER NOT NULL DEFAULT 0,
	created       INTEGER NOT NULL
);

CREATE TABLE mailboxes (
	id            INTEGER PRIMARY KEY,
	account_id    INTEGER NOT NULL REFERENCES accounts(id),
	name          TEXT NOT NULL,
	uidvalidity   INTEGER NOT NULL,
	uidnext       INTEGER NOT NULL DEFAULT 1,
	highestmodseq INTEGER NOT NULL DEFAULT 1,
	special_use   TEXT NOT NULL DEFAULT '',
	subscribed    INTEGER NOT NULL DEFAULT 1,
	messages      INTEGER NOT NULL DEFAULT 0,
	unseen        INTEGER NOT NULL DEFAULT 0,
	deleted       INTEGER NOT NULL DEFAULT 0,
	size          INTEGER NOT NULL DEFAULT 0,
	UNIQUE (account_id, name)
);

-- Message bytes: inline (data) up to the inline limit, else a blob file.
CREATE TABLE blobs (
	id     INTEGER PRIMARY KEY,
	refs   INTEGER NOT NULL DEFAULT 0,
	size   INTEGER NOT NULL,
	sha256 BLOB NOT NULL,
	data   BLOB,
	file   TEXT
);

-- Files of blobs that lost their last reference, removed after the commit.
CREATE TABLE blob_trash (
	file TEXT NOT NULL
);

CREATE TABLE messages (
	mailbox_id    INTEGER NOT NULL,
	uid           INTEGER NOT NULL,
	modseq        INTEGER NOT NULL,
	flags         INTEGER NOT NULL DEFAULT 0,
	keywords      TEXT NOT NULL DEFAULT '',
	internal_date INTEGER NOT NULL,
	internal_tz   INTEGER NOT NULL DEFAULT 0,
	save_date     INTEGER NOT NULL,
	size          INTEGER NOT NULL,
	blob_id       INTEGER NOT NULL,
	meta          BLOB,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

CREATE TABLE expunged (
	mailbox_id INTEGER NOT NULL,
	uid        INTEGER NOT NULL,
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);

CREATE TABLE queue (
	id           TEXT PRIMARY KEY,
	sender       TEXT NOT NULL,
	envid        TEXT NOT NULL DEFAULT '',
	ret          TEXT NOT NULL DEFAULT '',
	created      INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	size         INTEGER NOT NULL,
	blob_id      INTEGER NOT NULL
);
CREATE INDEX queue_next ON queue(next_attempt);

CREATE TABLE queue_rcpts (
	queue_id   TEXT NOT NULL,
	address    TEXT NOT NULL,
	orcpt      TEXT NOT NULL DEFAULT '',
	notify     TEXT NOT NULL DEFAULT '',
	status     TEXT NOT NULL,
	attempts   INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	last_try   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (queue_id, address)
) WITHOUT ROWID;

-- Bit 0 of flags is \Seen, bit 3 \Deleted (see flagBits).
CREATE TRIGGER messages_delete AFTER DELETE ON messages BEGIN
	UPDATE mailboxes SET messages = messages - 1,
		unseen = unseen - ((OLD.flags & 1) = 0),
		deleted = deleted - ((OLD.flags & 8) != 0),
		size = size - OLD.size
	WHERE id = OLD.mailbox_id;
	UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
END;

CREATE TRIGGER messages_flags AFTER UPDATE OF flags ON messages BEGIN
	UPDATE mailboxes SET
		unseen = unseen - ((OLD.flags & 1) = 0) + ((NEW.flags & 1) = 0),
		deleted = deleted - ((OLD.flags & 8) != 0) + ((NEW.flags & 8) != 0)
	WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER queue_delete AFTER DELETE ON queue BEGIN
	DELETE FROM queue_rcpts WHERE queue_id = OLD.id;
	UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
END;

CREATE TRIGGER blobs_unreferenced AFTER UPDATE OF refs ON blobs WHEN NEW.refs <= 0 BEGIN
	INSERT INTO blob_trash(file) SELECT NEW.file WHERE NEW.file IS NOT NULL;
	DELETE FROM blobs WHERE id = NEW.id;
END;
`
