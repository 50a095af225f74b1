//! The PostgreSQL schema, as migrations applied in order, and the monthly
//! partitions of the ledger.
//!
//! Text columns that results are sorted by use the `C` collation, so that
//! every listing comes back in the same (byte) order as with SQLite,
//! whatever the database's locale.

/// Schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 7;

/// Schema migrations, applied in order; the database records each one it
/// has in `schema_migrations`.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "checkpoints, runs, split ledger partitioned by month, quarantine, kv, conversations, fleet",
        r#"
CREATE FUNCTION state_now_ms() RETURNS bigint LANGUAGE sql VOLATILE AS
    $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

CREATE TABLE checkpoints (
    connector text COLLATE "C" PRIMARY KEY,
    data bytea NOT NULL,
    run_id bigint
);

CREATE TABLE runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connector text COLLATE "C" NOT NULL,
    started_at_ms bigint NOT NULL,
    finished_at_ms bigint,
    outcome text CHECK (outcome IN ('succeeded', 'failed', 'interrupted')),
    pages bigint NOT NULL DEFAULT 0,
    items_from_source bigint NOT NULL DEFAULT 0,
    items_for_import bigint NOT NULL DEFAULT 0,
    imported bigint NOT NULL DEFAULT 0,
    skipped_duplicates bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    quarantined bigint NOT NULL DEFAULT 0,
    error text,
    kind text NOT NULL DEFAULT 'run' CHECK (kind IN ('run', 'backfill', 'redeliver')),
    range_from_ms bigint,
    range_to_ms bigint,
    pid bigint
);
CREATE INDEX runs_by_connector ON runs (connector, id);
CREATE INDEX runs_by_finish ON runs (finished_at_ms);

CREATE TABLE run_items (
    run_id bigint NOT NULL,
    connector text COLLATE "C" NOT NULL,
    item_id text COLLATE "C" NOT NULL,
    source_sha256 text NOT NULL,
    sent_at_ms bigint NOT NULL,
    mailboxes jsonb NOT NULL,
    unmapped jsonb NOT NULL,
    PRIMARY KEY (run_id, item_id)
);

CREATE TABLE run_failures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id bigint NOT NULL,
    connector text COLLATE "C" NOT NULL,
    item_id text COLLATE "C" NOT NULL,
    source_user_id text COLLATE "C" NOT NULL,
    mailbox text COLLATE "C" NOT NULL,
    kind text NOT NULL CHECK (kind IN ('unmapped', 'refused')),
    reason text NOT NULL,
    at_ms bigint NOT NULL
);
CREATE INDEX run_failures_by_run ON run_failures (run_id, id);
CREATE INDEX run_failures_by_item ON run_failures (connector, item_id);

-- The ledger, split: what is true of an item once (its Message-ID, the
-- SHA-256s of the source item and of the email, when it was first
-- delivered) and one small row per delivery to a mailbox. Both tables are
-- partitioned by month of their time column (partitions `<table>_YYYY_MM`
-- are created as commits need them), so an operator can move or detach
-- old months without touching the rest.
--
-- A partitioned table's unique keys must include its partition key, so
-- "one item row per (connector, item)" and "one delivery per (item,
-- mailbox)" are not constraints: commits of one connector are serialized
-- on its lease row (`SELECT ... FOR UPDATE` in commit_page), and each
-- commit inserts only what is not there yet.
CREATE SEQUENCE ledger_items_id_seq AS bigint;
CREATE TABLE ledger_items (
    id bigint NOT NULL DEFAULT nextval('ledger_items_id_seq'),
    connector text COLLATE "C" NOT NULL,
    item_id text COLLATE "C" NOT NULL,
    message_id text NOT NULL,
    source_sha256 text NOT NULL,
    email_sha256 text NOT NULL,
    first_delivered_at_ms bigint NOT NULL
) PARTITION BY RANGE (first_delivered_at_ms);
CREATE INDEX ledger_items_by_item ON ledger_items (connector, item_id);
CREATE INDEX ledger_items_by_id ON ledger_items (id);

-- A delivery: its item (ledger_items.id), mailbox, receipt, time and run;
-- the email's SHA-256 only when it differs from the item's.
CREATE TABLE deliveries (
    item bigint NOT NULL,
    mailbox text COLLATE "C" NOT NULL,
    receipt text NOT NULL,
    delivered_at_ms bigint NOT NULL,
    run_id bigint NOT NULL,
    email_sha256 text
) PARTITION BY RANGE (delivered_at_ms);
CREATE INDEX deliveries_by_item ON deliveries (item, mailbox);
CREATE INDEX deliveries_by_run ON deliveries (run_id);

-- Quarantined messages. An email held in memory is stored in `email`;
-- a spooled (big) one is NULL there and streamed in chunks into
-- quarantine_chunks.
CREATE TABLE quarantine (
    connector text COLLATE "C" NOT NULL,
    item_id text COLLATE "C" NOT NULL,
    message_id text NOT NULL,
    sent_at_ms bigint NOT NULL,
    unmapped jsonb NOT NULL,
    reason text NOT NULL,
    run_id bigint NOT NULL,
    source_sha256 text NOT NULL DEFAULT '',
    email_len bigint NOT NULL,
    email bytea,
    PRIMARY KEY (connector, item_id)
);
CREATE TABLE quarantine_chunks (
    connector text COLLATE "C" NOT NULL,
    item_id text COLLATE "C" NOT NULL,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (connector, item_id, seq),
    FOREIGN KEY (connector, item_id) REFERENCES quarantine (connector, item_id)
        ON DELETE CASCADE
);

CREATE TABLE kv (
    connector text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (connector, key)
);

CREATE TABLE conversations (
    connector text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    description jsonb NOT NULL,
    PRIMARY KEY (connector, id)
);

-- The fleet: who holds each connector's lease, with its fencing token,
-- and the workers' heartbeats. Every time here is the server's clock.
CREATE TABLE leases (
    connector text COLLATE "C" PRIMARY KEY,
    owner text NOT NULL,
    token bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    fingerprint jsonb NOT NULL
);
CREATE TABLE workers (
    id text COLLATE "C" PRIMARY KEY,
    host text NOT NULL,
    pid bigint NOT NULL,
    version text NOT NULL,
    started_at_ms bigint NOT NULL,
    heartbeat_at_ms bigint NOT NULL,
    connectors jsonb NOT NULL
);
CREATE TABLE fleet_counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO fleet_counters (name, value) VALUES ('fenced_commits', 0);
"#,
    ),
    (
        2,
        "conversations each run could not read; failures of kind external",
        r#"
CREATE TABLE run_unreadable (
    run_id bigint NOT NULL,
    connector text COLLATE "C" NOT NULL,
    conversation text COLLATE "C" NOT NULL,
    reason text NOT NULL,
    fix text NOT NULL,
    reported_at_ms bigint NOT NULL,
    PRIMARY KEY (run_id, conversation)
);
CREATE INDEX run_unreadable_by_connector ON run_unreadable (connector, run_id);
ALTER TABLE run_failures DROP CONSTRAINT run_failures_kind_check;
ALTER TABLE run_failures ADD CONSTRAINT run_failures_kind_check
    CHECK (kind IN ('unmapped', 'refused', 'external'));
"#,
    ),
    (
        3,
        "mailbox slots and rate windows shared by the workers",
        r#"
-- Each mailbox's concurrency slots (numbered from 0 below its limit), held
-- until released or until they expire (a worker that died), and its rate
-- window: when it opened, the requests reserved in it, and what the last
-- reservation granted (computed from the row before the update, which
-- RETURNING cannot see). Times are the server's clock.
CREATE TABLE mailbox_slots (
    mailbox text COLLATE "C" NOT NULL,
    slot integer NOT NULL,
    holder text NOT NULL,
    expires_at_ms bigint NOT NULL,
    PRIMARY KEY (mailbox, slot)
);
CREATE TABLE mailbox_windows (
    mailbox text COLLATE "C" PRIMARY KEY,
    opened_at_ms bigint NOT NULL,
    used bigint NOT NULL,
    granted bigint NOT NULL
);
"#,
    ),
    (
        4,
        "mailbox pauses the mail service asked for, shared by the workers",
        r#"
-- Until when a mailbox is left alone because the mail service answered a
-- request for it with Retry-After (server's clock).
CREATE TABLE mailbox_throttles (
    mailbox text COLLATE "C" PRIMARY KEY,
    until_ms bigint NOT NULL
);
"#,
    ),
    (
        5,
        "what each conversation's days hold for their transcripts",
        r#"
-- Each message a conversation's day holds for its transcripts: the part
-- (0 the day's transcript, then addenda) once sealed, and whether that
-- part's delivery was committed.
CREATE TABLE transcript_lines (
    connector text COLLATE "C" NOT NULL,
    conversation text COLLATE "C" NOT NULL,
    day text COLLATE "C" NOT NULL,
    item_id text COLLATE "C" NOT NULL,
    sent_at_ms bigint NOT NULL,
    mailboxes text[] NOT NULL,
    entry bytea NOT NULL,
    part integer,
    delivered boolean NOT NULL DEFAULT false,
    PRIMARY KEY (connector, conversation, day, item_id)
);
CREATE INDEX transcript_lines_by_state ON transcript_lines (connector, delivered, part, day);
"#,
    ),
    (
        6,
        "the audit trail of admin actions; connector pauses and run requests",
        r#"
-- The admins' actions, chained by SHA-256 (computed by the code, checked
-- by `connector audit verify`). Append-only: a trigger refuses changes,
-- and the chain shows any change made around it. The head row names the
-- last record, so that a removed last record is found too; appends take
-- turns under an advisory lock.
CREATE TABLE audit_trail (
    seq bigint PRIMARY KEY,
    at_ms bigint NOT NULL,
    actor text COLLATE "C" NOT NULL,
    source text NOT NULL,
    action text NOT NULL,
    target text COLLATE "C" NOT NULL,
    detail text NOT NULL,
    prev_sha256 text NOT NULL,
    sha256 text NOT NULL
);
CREATE INDEX audit_trail_by_target ON audit_trail (target, seq);
CREATE FUNCTION audit_trail_append_only() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
CREATE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE ON audit_trail
    FOR EACH ROW EXECUTE FUNCTION audit_trail_append_only();
CREATE TRIGGER audit_trail_no_truncate BEFORE TRUNCATE ON audit_trail
    FOR EACH STATEMENT EXECUTE FUNCTION audit_trail_append_only();
CREATE TABLE audit_head (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    sha256 text NOT NULL
);
-- Connectors paused by an admin, and "run now" requests not yet taken
-- (times are the server's clock).
CREATE TABLE connector_pauses (
    connector text COLLATE "C" PRIMARY KEY,
    paused_by text NOT NULL,
    paused_at_ms bigint NOT NULL
);
CREATE TABLE run_requests (
    connector text COLLATE "C" PRIMARY KEY,
    requested_by text NOT NULL,
    requested_at_ms bigint NOT NULL
);
"#,
    ),
    (
        7,
        "partially imported items per run; failed and for-import pairs count participants without a mailbox",
        // As SQLite's migration 10: runs recorded before are counted again
        // from their failure rows.
        r#"
ALTER TABLE runs ADD COLUMN partially_imported bigint NOT NULL DEFAULT 0;
UPDATE runs SET
    items_for_import = items_for_import + (SELECT COUNT(*) FROM run_failures f
        WHERE f.run_id = runs.id AND f.kind = 'unmapped'),
    failed = GREATEST(failed, (SELECT COUNT(*) FROM run_failures f
        WHERE f.run_id = runs.id AND f.kind <> 'external')),
    quarantined = GREATEST(quarantined, (SELECT COUNT(DISTINCT f.item_id) FROM run_failures f
        WHERE f.run_id = runs.id AND f.kind <> 'external')),
    partially_imported = (SELECT COUNT(DISTINCT f.item_id) FROM run_failures f
        WHERE f.run_id = runs.id AND f.kind <> 'external'
        AND EXISTS (SELECT 1 FROM ledger_items l
            WHERE l.connector = runs.connector AND l.item_id = f.item_id));
"#,
    ),
];
