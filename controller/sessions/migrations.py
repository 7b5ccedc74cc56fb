"""The ledger's schema as a versioned list of migrations; `PRAGMA user_version` is the applied count.

Append only: a released migration is never edited, because boxes in the field have run it. Each
entry runs in one transaction together with the `user_version` bump.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions (one row per session, its latest version) and the outbox (one row per message).
    """
    CREATE TABLE sessions (
        session_id      TEXT PRIMARY KEY,
        charger_id      TEXT NOT NULL,
        transaction_id  TEXT NOT NULL,
        id_tag          TEXT,
        started_utc     TEXT NOT NULL,
        stopped_utc     TEXT,
        meter_start_wh  INTEGER NOT NULL,
        meter_stop_wh   INTEGER,
        energy_wh       INTEGER NOT NULL,
        stop_reason     TEXT,
        version         INTEGER NOT NULL,
        record          TEXT NOT NULL
    );
    CREATE INDEX sessions_by_transaction ON sessions (charger_id, transaction_id);
    CREATE INDEX sessions_by_start ON sessions (started_utc);
    CREATE INDEX sessions_open ON sessions (charger_id) WHERE stopped_utc IS NULL;
    CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id       TEXT NOT NULL UNIQUE,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_utc  TEXT NOT NULL,
        acked_utc    TEXT
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE acked_utc IS NULL;
    """,
    # 2: OCPP 1.6 transaction ids handed out by this box (AUTOINCREMENT: an id is never reused).
    """
    CREATE TABLE ocpp_transactions (
        transaction_id  INTEGER PRIMARY KEY AUTOINCREMENT,
        start_key       TEXT NOT NULL UNIQUE,
        charger_id      TEXT NOT NULL,
        id_tag          TEXT,
        meter_start_wh  REAL,
        started_utc     TEXT,
        meter_stop_wh   REAL,
        stopped_utc     TEXT
    );
    """,
    # 3: commands from the backend: stored results (idempotency by command id) and the audit log.
    """
    CREATE TABLE command_results (
        command_id    TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        received_utc  TEXT NOT NULL,
        result        TEXT NOT NULL
    );
    CREATE TABLE command_audit (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        received_utc  TEXT NOT NULL,
        name          TEXT NOT NULL,
        command_id    TEXT,
        status        TEXT NOT NULL,
        reason        TEXT,
        payload       TEXT
    );
    CREATE INDEX command_audit_by_time ON command_audit (received_utc);
    """,
    # 4: a register the charger did not send is NULL: meter_start_wh and energy_wh may be NULL
    # (SQLite cannot drop NOT NULL in place: the table is rebuilt, rows and indexes kept).
    """
    CREATE TABLE sessions_v4 (
        session_id      TEXT PRIMARY KEY,
        charger_id      TEXT NOT NULL,
        transaction_id  TEXT NOT NULL,
        id_tag          TEXT,
        started_utc     TEXT NOT NULL,
        stopped_utc     TEXT,
        meter_start_wh  INTEGER,
        meter_stop_wh   INTEGER,
        energy_wh       INTEGER,
        stop_reason     TEXT,
        version         INTEGER NOT NULL,
        record          TEXT NOT NULL
    );
    INSERT INTO sessions_v4 (session_id, charger_id, transaction_id, id_tag, started_utc, stopped_utc,
            meter_start_wh, meter_stop_wh, energy_wh, stop_reason, version, record)
        SELECT session_id, charger_id, transaction_id, id_tag, started_utc, stopped_utc,
            meter_start_wh, meter_stop_wh, energy_wh, stop_reason, version, record
        FROM sessions;
    DROP TABLE sessions;
    ALTER TABLE sessions_v4 RENAME TO sessions;
    CREATE INDEX sessions_by_transaction ON sessions (charger_id, transaction_id);
    CREATE INDEX sessions_by_start ON sessions (started_utc);
    CREATE INDEX sessions_open ON sessions (charger_id) WHERE stopped_utc IS NULL;
    """,
    # 5: the local authorization list from the backend, so residents charge while the cloud is away.
    """
    CREATE TABLE auth_list (
        id_tag      TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL,
        expiry_utc  TEXT,
        group_id    TEXT
    );
    CREATE TABLE auth_list_version (
        singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
        version     INTEGER NOT NULL
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
