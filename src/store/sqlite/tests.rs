use super::*;
use crate::store::behaviour_tests::{self, code, org, release};
use crate::store::Role;

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
