//! The state database: SQLite in WAL mode with a busy timeout, so several berth processes
//! can use one root at once. Schema migrations are applied in code, in order.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::Result;

const MIGRATIONS: &[&str] = &[
    // 1: images, tags, containers, volumes
    "CREATE TABLE images (
        id TEXT PRIMARY KEY,            -- config digest, sha256:…
        manifest TEXT NOT NULL,         -- manifest digest
        layers TEXT NOT NULL,           -- JSON [[blob, diff_id], …] bottom first
        size INTEGER NOT NULL,          -- unpacked size in bytes
        created TEXT NOT NULL,          -- from the config
        added TEXT NOT NULL             -- when it entered this store
    );
    CREATE TABLE tags (
        name TEXT PRIMARY KEY,          -- full reference docker.io/library/x:tag
        image TEXT NOT NULL REFERENCES images(id)
    );
    CREATE INDEX tags_image ON tags(image);
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,            -- image id
        created TEXT NOT NULL,
        config TEXT NOT NULL            -- JSON ContainerRecord
    );
    CREATE INDEX containers_image ON containers(image);
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        labels TEXT NOT NULL,
        anonymous INTEGER NOT NULL DEFAULT 0
    );",
    // 2: events
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nano INTEGER NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        attributes TEXT NOT NULL
    );
    CREATE INDEX events_time ON events(time_nano);",
    // 3: the repository@digest names of pulled and pushed images (RepoDigests)
    "CREATE TABLE repo_digests (
        repository TEXT NOT NULL,       -- full: docker.io/library/busybox
        digest TEXT NOT NULL,           -- the manifest (or index) digest in that repository
        image TEXT NOT NULL,            -- image id
        PRIMARY KEY (repository, digest)
    );
    CREATE INDEX repo_digests_image ON repo_digests(image);",
    // 4: the build cache: a step's key (its parent's key, the instruction and its
    // inputs) and the layer it made; the layers stay until `builder prune`
    "CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,
        blob TEXT NOT NULL,
        diff_id TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created TEXT NOT NULL,
        last_used TEXT NOT NULL
    );",
    // 5: digests of build context files, by path, while their stat (device, inode, size,
    // mtime, ctime) stays the same: a cached build reads no file twice
    "CREATE TABLE build_file_digests (
        path BLOB PRIMARY KEY,
        stat TEXT NOT NULL,
        digest BLOB NOT NULL
    );",
    // 6: networks, and the containers' addresses on them (kept from the first start to
    // `rm`)
    "CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        ip_range TEXT NOT NULL DEFAULT '',
        bridge TEXT NOT NULL,
        internal INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL
    );
    CREATE TABLE endpoints (
        network TEXT NOT NULL REFERENCES networks(id),
        container TEXT NOT NULL,
        ip TEXT NOT NULL,
        mac TEXT NOT NULL,
        PRIMARY KEY (network, container),
        UNIQUE (network, ip)
    );",
    // 7: a container on several networks: its network-scoped aliases on each, and the
    // order of its interfaces (eth0, eth1, …); endpoints are now made at create and by
    // `network connect`
    "ALTER TABLE endpoints ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE endpoints ADD COLUMN position INTEGER NOT NULL DEFAULT 0;",
    // 8: pod sandboxes (CRI): one per pod identity and attempt
    "CREATE TABLE pods (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        namespace TEXT NOT NULL,
        uid TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        created INTEGER NOT NULL,       -- nanoseconds since the epoch
        state TEXT NOT NULL,            -- ready, notready
        record TEXT NOT NULL,           -- JSON PodRecord
        UNIQUE (name, namespace, uid, attempt)
    );",
];

/// Opens (creating and migrating) the database at `path`.
pub fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // Switching a new database to WAL needs it to itself, and SQLite does not wait for
    // that (no busy handler): processes opening a fresh root at once retry.
    let mut tries = 0;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 200 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other?,
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every CLI call opens and closes the database. A checkpoint (and its fsyncs) on each
    // close would dominate short commands, so closing does not checkpoint; but a process
    // that opens a database nobody has open must read the whole WAL to rebuild its index,
    // so the WAL is checkpointed early (64 pages) and kept short.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    conn.pragma_update(None, "wal_autocheckpoint", 64)?;
    conn.pragma_update(None, "journal_size_limit", 1 << 20)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if (version as usize) < MIGRATIONS.len() {
        // Re-read inside a write transaction: another process may have migrated meanwhile.
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
    }
    Ok(conn)
}
