use super::*;
use crate::store::behaviour_tests::{self, code, org, release};
use crate::store::{DeviceEvent, EventKind, Role, RolloutCounts};

crate::store::behaviour_tests::meta_store_tests!(((), SqliteStore::open_in_memory().unwrap()));

/// A store on a file in a fresh temp dir.
fn on_disk() -> (tempfile::TempDir, SqliteStore, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("depot.db");
    let store = SqliteStore::open(&path).unwrap();
    (dir, store, path)
}

/// The behaviour suite also holds on a WAL file, where commits really go through the log.
mod on_file {
    use super::*;
    crate::store::behaviour_tests::meta_store_tests!({
        let (dir, store, _) = on_disk();
        (dir, store)
    });
}

#[test]
fn two_stores_on_one_file_see_each_other() {
    let (_dir, a, path) = on_disk();
    let b = SqliteStore::open(&path).unwrap();
    behaviour_tests::sees_other_handles_commits(&a, &b);
}

#[test]
fn file_is_private_wal_and_migrated() {
    let (_dir, store, path) = on_disk();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let conn = store.lock();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::MIGRATIONS.len());
    let fk: bool = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert!(fk);
}

#[test]
fn reopening_keeps_data_and_schema() {
    let (_dir, store, path) = on_disk();
    let physics = org("physics", 1);
    store.create_org(&physics).unwrap();
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.get_org(&physics.code).unwrap(), Some(physics));
}

#[test]
fn refuses_a_newer_schema() {
    let (_dir, store, path) = on_disk();
    let newer = schema::MIGRATIONS.len() + 1;
    store
        .lock()
        .execute_batch(&format!("PRAGMA user_version = {newer}"))
        .unwrap();
    drop(store);
    let message = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        message.contains(&format!("schema version {newer}")),
        "{message}"
    );
}

#[test]
fn migrates_an_empty_file_created_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("depot.db");
    std::fs::write(&path, b"").unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.change_counter().unwrap(), 0);
}

/// Rewrites one cell behind the store's back, as a manual edit or a bad migration would.
fn tamper(store: &SqliteStore, sql: &str) {
    let conn = store.lock();
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    conn.execute_batch(sql).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
}

fn corrupt_message<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn bad_rows_are_corrupt_naming_table_and_key() {
    let store = SqliteStore::open_in_memory().unwrap();
    let physics = org("physics", 1);
    store.create_org(&physics).unwrap();
    store.add_release(&release("11.2.1", 1)).unwrap();

    tamper(
        &store,
        "UPDATE orgs SET channel = 'Not A Channel' WHERE code = 'physics'",
    );
    let message = corrupt_message(store.get_org(&physics.code));
    assert!(message.contains("orgs row physics"), "{message}");
    assert!(message.contains("channel"), "{message}");
    corrupt_message(store.list_orgs());

    tamper(
        &store,
        "UPDATE orgs SET channel = 'stable', settings = '{\"CP_SILENT\": \"x\\ny\"}' \
         WHERE code = 'physics'",
    );
    let message = corrupt_message(store.get_org(&physics.code));
    assert!(message.contains("settings.CP_SILENT"), "{message}");

    tamper(
        &store,
        "UPDATE orgs SET settings = 'not json' WHERE code = 'physics'",
    );
    corrupt_message(store.get_org(&physics.code));

    tamper(
        &store,
        "UPDATE release_payloads SET size = -1 WHERE platform = 'macos-aarch64'",
    );
    let message = corrupt_message(store.list_releases());
    assert!(
        message.contains("release_payloads row 11.2.1/macos-aarch64"),
        "{message}"
    );
    assert!(message.contains("size"), "{message}");

    tamper(
        &store,
        "UPDATE release_payloads SET size = 1, platform = 'beos-m68k' \
         WHERE platform = 'macos-aarch64'",
    );
    corrupt_message(store.get_release(&behaviour_tests::ver("11.2.1")));

    let t = behaviour_tests::token("tok", Role::Admin, None, 1);
    store.create_token(&t).unwrap();
    tamper(&store, "UPDATE tokens SET secret_hash = 'abc'");
    let message = corrupt_message(store.list_tokens());
    assert!(message.contains("tokens row tok"), "{message}");

    store
        .append_audit(&behaviour_tests::event(1, "x", None, "y"))
        .unwrap();
    tamper(&store, "UPDATE audit SET org = '../etc'");
    let message = corrupt_message(store.query_audit(&AuditFilter::default()));
    assert!(message.contains("audit row 1"), "{message}");
}

#[test]
fn audit_appends_leave_the_change_counter_alone() {
    let store = SqliteStore::open_in_memory().unwrap();
    let before = store.change_counter().unwrap();
    store
        .append_audit(&behaviour_tests::event(
            1,
            "device:1",
            Some("physics"),
            "package.download",
        ))
        .unwrap();
    assert_eq!(store.change_counter().unwrap(), before);
}

#[test]
fn a_failed_write_rolls_back_and_keeps_the_counter() {
    let store = SqliteStore::open_in_memory().unwrap();
    let before = store.change_counter().unwrap();
    assert!(store.delete_org(&code("ghost")).is_err());
    assert_eq!(store.change_counter().unwrap(), before);
}

#[test]
fn audit_queries_use_the_indexes() {
    let store = SqliteStore::open_in_memory().unwrap();
    let conn = store.lock();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>();
        rows.join("; ")
    };
    let by_org = plan("SELECT * FROM audit WHERE org = 'x' ORDER BY at DESC, id DESC LIMIT 100");
    assert!(by_org.contains("audit_org_at"), "{by_org}");
    assert!(!by_org.contains("TEMP B-TREE"), "{by_org}");
    let recent = plan("SELECT * FROM audit ORDER BY at DESC, id DESC LIMIT 100");
    assert!(recent.contains("audit_at"), "{recent}");
    assert!(!recent.contains("TEMP B-TREE"), "{recent}");
}

/// The CLI and the server write at the same time: writers queue on the lock instead of failing
/// with "database is locked", and no write is lost.
#[test]
fn concurrent_writers_on_one_file_all_succeed() {
    let (_dir, first, path) = on_disk();
    let second = SqliteStore::open(&path).unwrap();
    first.create_org(&org("physics", 1)).unwrap();
    let start = first.change_counter().unwrap();
    const WRITES: i64 = 200;
    std::thread::scope(|scope| {
        for (n, store) in [&first, &second].into_iter().enumerate() {
            scope.spawn(move || {
                for i in 0..WRITES {
                    let id = format!("tok-{n}-{i}");
                    store
                        .create_token(&behaviour_tests::token(
                            &id,
                            Role::Partner,
                            Some("physics"),
                            i,
                        ))
                        .unwrap();
                    store
                        .append_audit(&behaviour_tests::event(i, &id, None, "token.create"))
                        .unwrap();
                    // A read between writes, as the server does.
                    store.get_org(&code("physics")).unwrap().unwrap();
                }
            });
        }
    });
    assert_eq!(second.list_tokens().unwrap().len(), 2 * WRITES as usize);
    assert_eq!(first.change_counter().unwrap(), start + 2 * WRITES as u64);
    let all = AuditFilter {
        limit: Some(1000),
        ..Default::default()
    };
    assert_eq!(first.query_audit(&all).unwrap().len(), 2 * WRITES as usize);
}

/// The counts the V3 schema computed by scanning every report, per release and channel.
const RECOUNT: &str = "\
    SELECT k.version, k.channel, \
      (SELECT count(*) FROM offers o WHERE o.version = k.version AND o.channel = k.channel), \
      (SELECT count(DISTINCT device_id) FROM device_events d \
        WHERE d.version = k.version AND d.channel = k.channel AND d.kind = 'downloaded'), \
      (SELECT count(*) FROM device_events e \
        WHERE e.version = k.version AND e.channel = k.channel AND e.kind = ?1 \
          AND e.id = (SELECT max(l.id) FROM device_events l \
                       WHERE l.version = e.version AND l.channel = e.channel \
                         AND l.device_id = e.device_id AND l.kind IN ('installed', 'failed'))), \
      (SELECT count(*) FROM device_events e \
        WHERE e.version = k.version AND e.channel = k.channel AND e.kind = ?2 \
          AND e.id = (SELECT max(l.id) FROM device_events l \
                       WHERE l.version = e.version AND l.channel = e.channel \
                         AND l.device_id = e.device_id AND l.kind IN ('installed', 'failed'))) \
    FROM (SELECT version, channel FROM offers \
          UNION SELECT version, channel FROM device_events WHERE version IS NOT NULL) k \
    ORDER BY k.version, k.channel";

type Recounted = Vec<(String, String, [i64; 4])>;

fn recount(conn: &Connection) -> Recounted {
    let mut stmt = conn.prepare(RECOUNT).unwrap();
    let rows = stmt
        .query_map(["installed", "failed"], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn kept_counts(conn: &Connection) -> Recounted {
    let mut stmt = conn
        .prepare(
            "SELECT version, channel, offered, downloaded, installed, failed FROM rollout_counts \
             ORDER BY version, channel",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn assert_kept_counts_match_a_recount(store: &SqliteStore) {
    let conn = store.lock();
    assert_eq!(kept_counts(&conn), recount(&conn));
}

/// Reports as a V3 depot stored them: ids in arrival order, some naming no release.
const V3_REPORTS: &[(&str, Option<&str>, &str, &str)] = &[
    ("dev_a", Some("2.0.0"), "stable", "failed"),
    ("dev_a", Some("2.0.0"), "stable", "failed"),
    ("dev_a", Some("2.0.0"), "stable", "installed"),
    ("dev_b", Some("2.0.0"), "stable", "installed"),
    ("dev_b", Some("2.0.0"), "stable", "failed"),
    ("dev_b", Some("2.0.0"), "stable", "downloaded"),
    ("dev_b", Some("2.0.0"), "stable", "downloaded"),
    ("dev_c", Some("2.0.0"), "stable", "downloaded"),
    ("dev_c", Some("2.0.0"), "beta", "failed"),
    ("dev_c", None, "stable", "failed"),
    ("dev_d", Some("2.1.0"), "stable", "installed"),
];

#[test]
fn migrating_a_v3_database_counts_its_reports_and_offers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("depot.db");
    {
        let conn = Connection::open(&path).unwrap();
        for migration in &schema::MIGRATIONS[..3] {
            conn.execute_batch(migration).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 3").unwrap();
        for (i, (device, version, channel, kind)) in V3_REPORTS.iter().enumerate() {
            conn.execute(
                "INSERT INTO device_events (device_id, org, version, channel, kind, message, at) \
                 VALUES (?1, 'physics', ?2, ?3, ?4, '', ?5)",
                rusqlite::params![device, version, channel, kind, i as i64],
            )
            .unwrap();
        }
        for (device, version) in [("dev_a", "2.0.0"), ("dev_e", "2.0.0"), ("dev_f", "3.0.0")] {
            conn.execute(
                "INSERT INTO offers (device_id, version, channel, at) VALUES (?1, ?2, 'stable', 1)",
                [device, version],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let counts = |v: &str, c: &str| {
        store
            .rollout_counts(&behaviour_tests::ver(v), &behaviour_tests::channel(c))
            .unwrap()
    };
    let expect = |offered, downloaded, installed, failed| RolloutCounts {
        offered,
        downloaded,
        installed,
        failed,
    };
    assert_eq!(counts("2.0.0", "stable"), expect(2, 2, 1, 1));
    assert_eq!(counts("2.0.0", "beta"), expect(0, 0, 0, 1));
    assert_eq!(counts("2.1.0", "stable"), expect(0, 0, 1, 0));
    assert_eq!(counts("3.0.0", "stable"), expect(1, 0, 0, 0));
    assert_eq!(counts("9.0.0", "stable"), expect(0, 0, 0, 0));
    assert_kept_counts_match_a_recount(&store);

    // New reports move on from the counted ones: dev_b installs at last, dev_c fails again.
    for (device, kind) in [
        ("dev_b", EventKind::Installed),
        ("dev_c", EventKind::Failed),
    ] {
        store
            .append_device_event(&DeviceEvent {
                device_id: device.into(),
                org: code("physics"),
                version: Some(behaviour_tests::ver("2.0.0")),
                channel: behaviour_tests::channel("stable"),
                kind,
                message: String::new(),
                at: 100,
            })
            .unwrap();
    }
    assert_eq!(counts("2.0.0", "stable"), expect(2, 2, 2, 1));
    assert_kept_counts_match_a_recount(&store);
}

/// After the behaviour suite's mixed sequence, the kept counts are what the V3 scan of every
/// report gives.
#[test]
fn kept_counts_match_a_scan_of_the_reports() {
    let store = SqliteStore::open_in_memory().unwrap();
    behaviour_tests::rollout_counts_agree_with_a_recount(&store);
    assert_eq!(kept_counts(&store.lock()).len(), 3);
    assert_kept_counts_match_a_recount(&store);
}

/// Recording a report and reading the counts are lookups by key, not scans.
#[test]
fn count_queries_use_keys() {
    let store = SqliteStore::open_in_memory().unwrap();
    let conn = store.lock();
    for sql in [
        "SELECT downloaded, outcome FROM rollout_devices \
         WHERE version = 'a' AND channel = 'b' AND device_id = 'c'",
        "SELECT offered FROM rollout_counts WHERE version = 'a' AND channel = 'b'",
    ] {
        let plan: String = conn
            .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3))
            .unwrap();
        assert!(plan.contains("USING INDEX"), "{sql}: {plan}");
    }
}
