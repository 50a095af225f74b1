//! The SQLite schema, as migrations applied in order.

/// Schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 11;

/// Schema migrations, applied in order; a database records each one it has.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "checkpoints, runs, ledger, quarantine, kv",
        "
    CREATE TABLE checkpoints (
        connector TEXT PRIMARY KEY NOT NULL,
        data BLOB NOT NULL,
        run_id INTEGER
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        connector TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        outcome TEXT CHECK (outcome IN ('succeeded', 'failed', 'interrupted')),
        pages INTEGER NOT NULL DEFAULT 0,
        items_from_source INTEGER NOT NULL DEFAULT 0,
        items_for_import INTEGER NOT NULL DEFAULT 0,
        imported INTEGER NOT NULL DEFAULT 0,
        skipped_duplicates INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        quarantined INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX runs_by_connector ON runs (connector, id);
    CREATE TABLE ledger (
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        message_id TEXT NOT NULL,
        email_sha256 TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        receipt TEXT NOT NULL,
        delivered_at_ms INTEGER NOT NULL,
        run_id INTEGER NOT NULL,
        PRIMARY KEY (connector, item_id, mailbox)
    ) WITHOUT ROWID;
    CREATE TABLE quarantine (
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        email BLOB NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        unmapped TEXT NOT NULL,
        reason TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        PRIMARY KEY (connector, item_id)
    );
    CREATE TABLE kv (
        connector TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (connector, key)
    ) WITHOUT ROWID;
    ",
    ),
    (
        2,
        "run kinds, items seen and failures per run, quarantined items' source SHA-256",
        "
    ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run'
        CHECK (kind IN ('run', 'backfill', 'redeliver'));
    ALTER TABLE runs ADD COLUMN range_from_ms INTEGER;
    ALTER TABLE runs ADD COLUMN range_to_ms INTEGER;
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    CREATE INDEX runs_by_finish ON runs (finished_at_ms);
    ALTER TABLE quarantine ADD COLUMN source_sha256 TEXT NOT NULL DEFAULT '';
    CREATE TABLE run_items (
        run_id INTEGER NOT NULL,
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        mailboxes TEXT NOT NULL,
        unmapped TEXT NOT NULL,
        PRIMARY KEY (run_id, item_id)
    ) WITHOUT ROWID;
    CREATE TABLE run_failures (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        source_user_id TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('unmapped', 'refused')),
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX run_failures_by_run ON run_failures (run_id, id);
    CREATE INDEX run_failures_by_item ON run_failures (connector, item_id);
    ",
    ),
    (
        3,
        "quarantined emails in the last column, so big ones stream in and out",
        // SQLite keeps a zero-filled blob unexpanded (and lets it be written
        // in place) only when it is the record's last column.
        "
    CREATE TABLE quarantine_v3 (
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        unmapped TEXT NOT NULL,
        reason TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        source_sha256 TEXT NOT NULL DEFAULT '',
        email BLOB NOT NULL,
        PRIMARY KEY (connector, item_id)
    );
    INSERT INTO quarantine_v3 (connector, item_id, message_id, sent_at_ms, unmapped,
        reason, run_id, source_sha256, email)
        SELECT connector, item_id, message_id, sent_at_ms, unmapped, reason, run_id,
            source_sha256, email FROM quarantine;
    DROP TABLE quarantine;
    ALTER TABLE quarantine_v3 RENAME TO quarantine;
    ",
    ),
    (
        4,
        "conversations the plugins described",
        "
    CREATE TABLE conversations (
        connector TEXT NOT NULL,
        id TEXT NOT NULL,
        description TEXT NOT NULL,
        PRIMARY KEY (connector, id)
    ) WITHOUT ROWID;
    ",
    ),
    (
        5,
        "ledger split into items and small deliveries; fleet leases, workers and counters",
        // The per-item fields (Message-ID, SHA-256s) are kept once per item;
        // a delivery names its item by key and keeps an email SHA-256 only
        // when it differs from the item's. The view `ledger` shows the old
        // shape, for queries and for operators using `sqlite3`.
        "
    CREATE TABLE ledger_items (
        item_key INTEGER PRIMARY KEY,
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        email_sha256 TEXT NOT NULL,
        first_delivered_at_ms INTEGER NOT NULL,
        UNIQUE (connector, item_id)
    );
    CREATE TABLE deliveries (
        item_key INTEGER NOT NULL,
        mailbox TEXT NOT NULL,
        receipt TEXT NOT NULL,
        delivered_at_ms INTEGER NOT NULL,
        run_id INTEGER NOT NULL,
        email_sha256 TEXT,
        PRIMARY KEY (item_key, mailbox)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_by_run ON deliveries (run_id);
    INSERT INTO ledger_items (connector, item_id, message_id, source_sha256, email_sha256,
        first_delivered_at_ms)
        SELECT connector, item_id, message_id, source_sha256, email_sha256, MIN(delivered_at_ms)
        FROM ledger GROUP BY connector, item_id;
    INSERT INTO deliveries (item_key, mailbox, receipt, delivered_at_ms, run_id, email_sha256)
        SELECT i.item_key, l.mailbox, l.receipt, l.delivered_at_ms, l.run_id,
            NULLIF(l.email_sha256, i.email_sha256)
        FROM ledger l JOIN ledger_items i ON i.connector = l.connector AND i.item_id = l.item_id;
    DROP TABLE ledger;
    CREATE VIEW ledger AS
        SELECT i.connector, i.item_id, d.mailbox, i.message_id,
            COALESCE(d.email_sha256, i.email_sha256) AS email_sha256, i.source_sha256,
            d.receipt, d.delivered_at_ms, d.run_id
        FROM deliveries d JOIN ledger_items i ON i.item_key = d.item_key;
    CREATE TABLE leases (
        connector TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL,
        token INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        fingerprint TEXT NOT NULL
    );
    CREATE TABLE workers (
        id TEXT PRIMARY KEY NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        heartbeat_at_ms INTEGER NOT NULL,
        connectors TEXT NOT NULL
    );
    CREATE TABLE fleet_counters (
        name TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );
    ",
    ),
    (
        6,
        "conversations each run could not read; failures of kind external",
        // SQLite cannot change a CHECK constraint: run_failures is copied
        // into a table with the new one.
        "
    CREATE TABLE run_unreadable (
        run_id INTEGER NOT NULL,
        connector TEXT NOT NULL,
        conversation TEXT NOT NULL,
        reason TEXT NOT NULL,
        fix TEXT NOT NULL,
        reported_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, conversation)
    ) WITHOUT ROWID;
    CREATE INDEX run_unreadable_by_connector ON run_unreadable (connector, run_id);
    CREATE TABLE run_failures_v6 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        source_user_id TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('unmapped', 'refused', 'external')),
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    INSERT INTO run_failures_v6 (id, run_id, connector, item_id, source_user_id, mailbox, kind,
        reason, at_ms)
        SELECT id, run_id, connector, item_id, source_user_id, mailbox, kind, reason, at_ms
        FROM run_failures;
    DROP TABLE run_failures;
    ALTER TABLE run_failures_v6 RENAME TO run_failures;
    CREATE INDEX run_failures_by_run ON run_failures (run_id, id);
    CREATE INDEX run_failures_by_item ON run_failures (connector, item_id);
    ",
    ),
    (
        7,
        "mailbox slots and rate windows shared by the workers",
        "
    CREATE TABLE mailbox_slots (
        mailbox TEXT NOT NULL,
        slot INTEGER NOT NULL,
        holder TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (mailbox, slot)
    ) WITHOUT ROWID;
    CREATE TABLE mailbox_windows (
        mailbox TEXT PRIMARY KEY NOT NULL,
        opened_at_ms INTEGER NOT NULL,
        used INTEGER NOT NULL,
        granted INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    ),
    (
        8,
        "mailbox pauses the mail service asked for, shared by the workers",
        "
    CREATE TABLE mailbox_throttles (
        mailbox TEXT PRIMARY KEY NOT NULL,
        until_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    ),
    (
        9,
        "what each conversation's days hold for their transcripts",
        "
    CREATE TABLE transcript_lines (
        connector TEXT NOT NULL,
        conversation TEXT NOT NULL,
        day TEXT NOT NULL,
        item_id TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        mailboxes TEXT NOT NULL,
        entry BLOB NOT NULL,
        part INTEGER,
        delivered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (connector, conversation, day, item_id)
    );
    CREATE INDEX transcript_lines_by_state ON transcript_lines (connector, delivered, part, day);
    ",
    ),
    (
        10,
        "the audit trail of admin actions; connector pauses and run requests",
        // The trail is append-only: triggers refuse changes, and the hash
        // chain (kept by the code, checked by `connector audit verify`)
        // shows any change made around them. The head row names the last
        // record, so that a removed last record is found too.
        "
    CREATE TABLE audit_trail (
        seq INTEGER PRIMARY KEY NOT NULL,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_sha256 TEXT NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE INDEX audit_trail_by_target ON audit_trail (target, seq);
    CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_trail_no_delete BEFORE DELETE ON audit_trail
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
        seq INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE TABLE connector_pauses (
        connector TEXT PRIMARY KEY NOT NULL,
        paused_by TEXT NOT NULL,
        paused_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE run_requests (
        connector TEXT PRIMARY KEY NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    ),
    (
        11,
        "partially imported items per run; failed and for-import pairs count participants without a mailbox",
        // Runs recorded before counted only refused pairs as failed, left
        // participants without a mailbox out of the pairs for import and
        // quarantined items only for them: their failure rows say what
        // the counts are now (runs older than these rows keep theirs).
        "
    ALTER TABLE runs ADD COLUMN partially_imported INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET
        items_for_import = items_for_import + (SELECT COUNT(*) FROM run_failures f
            WHERE f.run_id = runs.id AND f.kind = 'unmapped'),
        failed = MAX(failed, (SELECT COUNT(*) FROM run_failures f
            WHERE f.run_id = runs.id AND f.kind <> 'external')),
        quarantined = MAX(quarantined, (SELECT COUNT(DISTINCT f.item_id) FROM run_failures f
            WHERE f.run_id = runs.id AND f.kind <> 'external')),
        partially_imported = (SELECT COUNT(DISTINCT f.item_id) FROM run_failures f
            WHERE f.run_id = runs.id AND f.kind <> 'external'
            AND EXISTS (SELECT 1 FROM ledger_items l
                WHERE l.connector = runs.connector AND l.item_id = f.item_id));
    ",
    ),
];
