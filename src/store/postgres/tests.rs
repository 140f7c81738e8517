//! `PgStore` against a real PostgreSQL: the server named by `DEPOT_TEST_POSTGRES` (a superuser
//! URL, see `scripts/test-postgres.sh`). Each test makes a database of its own and drops it after.
//! Without the variable the tests say why and pass, except under `CI=true`, where they fail.

use super::*;
use crate::domain::Platform;
use crate::store::behaviour_tests::{self, code, org, release, ver};
use crate::store::{Checkin, DeviceEvent, EventKind, Role, RolloutCounts};
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const SERVER_VARIABLE: &str = "DEPOT_TEST_POSTGRES";

/// A database of its own on the test server, dropped (with whatever is still connected) when
/// this is dropped.
struct ScratchDb {
    server: String,
    name: String,
    url: String,
}

impl ScratchDb {
    /// `None`, having said why, when no test server is configured.
    fn create() -> Option<Self> {
        let Ok(server) = std::env::var(SERVER_VARIABLE) else {
            let why = format!(
                "{SERVER_VARIABLE} is not set; start a server with \
                 eval \"$(scripts/test-postgres.sh start)\""
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipped: {why}");
            return None;
        };
        let name = format!("depot_test_{}", hex::encode(rand::random::<[u8; 8]>()));
        let mut admin = Client::connect(&server, NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_dbname(&server, &name);
        Some(Self { server, name, url })
    }

    fn store(&self) -> PgStore {
        PgStore::connect(&self.url).unwrap()
    }

    /// A store whose every counter read is a query: exact at once, as the shared two-handle
    /// test expects.
    fn polling_store(&self) -> PgStore {
        PgStore::open(&self.url, false).unwrap()
    }

    fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).unwrap()
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.server, NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The server URL with another database name.
fn with_dbname(server: &str, dbname: &str) -> String {
    let (base, query) = server
        .split_once('?')
        .map_or((server, None), |(b, q)| (b, Some(q)));
    let (authority, _) = base
        .rsplit_once('/')
        .filter(|(a, _)| a.contains("//") && !a.ends_with('/'))
        .unwrap_or((base, ""));
    match query {
        Some(q) => format!("{authority}/{dbname}?{q}"),
        None => format!("{authority}/{dbname}"),
    }
}

macro_rules! scratch {
    () => {
        match ScratchDb::create() {
            Some(db) => db,
            None => return,
        }
    };
}

crate::store::behaviour_tests::meta_store_tests!({
    let db = scratch!();
    let store = db.store();
    (db, store)
});

/// Polls `f` until it holds, for at most `limit`; returns how long it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn wait_live(store: &PgStore) {
    let changes = store.changes.as_ref().unwrap();
    within(Duration::from_secs(5), || changes.current().is_some())
        .expect("the change listener connects");
}

#[test]
fn with_dbname_replaces_only_the_database() {
    assert_eq!(
        with_dbname("postgres://u:p@127.0.0.1:5432/postgres", "x"),
        "postgres://u:p@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_dbname("postgres://u@h/postgres?connect_timeout=3", "x"),
        "postgres://u@h/x?connect_timeout=3"
    );
    assert_eq!(with_dbname("postgres://u@h", "x"), "postgres://u@h/x");
}

#[test]
fn two_stores_on_one_database_see_each_other() {
    let db = scratch!();
    let (a, b) = (db.polling_store(), db.polling_store());
    behaviour_tests::sees_other_handles_commits(&a, &b);
}

#[test]
fn a_change_reaches_another_instance_within_a_second() {
    let db = scratch!();
    let (a, b) = (db.store(), db.store());
    wait_live(&b);
    let mut slowest = Duration::ZERO;
    for (i, name) in ["physics", "chemistry", "biology"].into_iter().enumerate() {
        let before = b.change_counter().unwrap();
        a.create_org(&org(name, i as i64)).unwrap();
        let expected = a.change_counter().unwrap();
        assert_ne!(expected, before);
        let took = within(Duration::from_secs(1), || {
            b.change_counter().unwrap() == expected
        })
        .unwrap_or_else(|| panic!("b still at {} after 1 s", b.change_counter().unwrap()));
        slowest = slowest.max(took);
    }
    eprintln!("a change through one store reached the other in at most {slowest:?}");
    // Reads need no query: the counter is answered from memory.
    let start = Instant::now();
    for _ in 0..10_000 {
        b.change_counter().unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn own_writes_move_the_counter_at_once() {
    let db = scratch!();
    let store = db.store();
    wait_live(&store);
    for i in 0..20 {
        let before = store.change_counter().unwrap();
        store
            .create_token(&behaviour_tests::token(
                &format!("t{i}"),
                Role::Admin,
                None,
                i,
            ))
            .unwrap();
        assert_eq!(store.change_counter().unwrap(), before + 1);
    }
}

fn terminate(db: &ScratchDb, application_name: &str) -> u64 {
    db.client()
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&application_name],
        )
        .unwrap()
        .len() as u64
}

#[test]
fn the_listener_reconnects_and_the_counter_stays_right() {
    let db = scratch!();
    let (a, b) = (db.store(), db.polling_store());
    wait_live(&a);
    let changes = a.changes.as_ref().unwrap();
    assert_eq!(changes.connections(), 1);
    for round in 0..2 {
        assert_eq!(terminate(&db, changes::APPLICATION_NAME), 1);
        // Commits while the listener is away or reconnecting are not announced to it.
        for i in 0..3 {
            b.create_token(&behaviour_tests::token(
                &format!("t{round}-{i}"),
                Role::Admin,
                None,
                i,
            ))
            .unwrap();
        }
        let truth = b.change_counter().unwrap();
        within(Duration::from_secs(1), || {
            a.change_counter().unwrap() == truth
        })
        .expect("the counter is right while the listener is away or after it is back");
        within(Duration::from_secs(5), || {
            changes.connections() == round + 2
        })
        .expect("the listener reconnects");
        wait_live(&a);
        assert_eq!(a.change_counter().unwrap(), truth);
        b.create_org(&org(&format!("org-{round}"), 1)).unwrap();
        let truth = b.change_counter().unwrap();
        within(Duration::from_secs(1), || {
            a.change_counter().unwrap() == truth
        })
        .expect("notifications arrive again after the reconnection");
    }
}

#[test]
fn pool_connections_killed_under_the_store_are_replaced() {
    let db = scratch!();
    let store = db.polling_store();
    store.create_org(&org("physics", 1)).unwrap();
    assert!(terminate(&db, "depot") >= 1);
    // Reads and writes go on, on new connections.
    assert!(store.get_org(&code("physics")).unwrap().is_some());
    store.create_org(&org("chemistry", 1)).unwrap();
    assert!(terminate(&db, "depot") >= 1);
    store
        .append_audit(&behaviour_tests::event(1, "x", None, "y"))
        .unwrap();
    assert_eq!(
        store.query_audit(&AuditFilter::default()).unwrap().len(),
        1,
        "an audit event is written once"
    );
}

#[test]
fn migrations_are_idempotent_and_safe_to_race() {
    let db = scratch!();
    let url = Arc::new(db.url.clone());
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = Arc::clone(&url);
            std::thread::spawn(move || PgStore::open(&url, false).map(|_| ()))
        })
        .collect();
    for handle in opened {
        handle.join().unwrap().unwrap();
    }
    let store = db.polling_store();
    assert!(schema::migrate(&mut store.pool.get().unwrap())
        .unwrap()
        .is_empty());
    let versions: Vec<i32> = db
        .client()
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i32> = (1..=schema::MIGRATIONS.len() as i32).collect();
    assert_eq!(versions, expected);
    assert_eq!(store.change_counter().unwrap(), 0);
}

#[test]
fn refuses_a_newer_schema() {
    let db = scratch!();
    drop(db.polling_store());
    let newer = schema::MIGRATIONS.len() as i32 + 1;
    db.client()
        .execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&newer],
        )
        .unwrap();
    let message = PgStore::open(&db.url, false).unwrap_err().to_string();
    assert!(
        message.contains(&format!("schema version {newer}")),
        "{message}"
    );
}

#[test]
fn a_bad_url_is_refused_with_its_reason() {
    let message = PgStore::connect("postgres://u@h:notaport/db")
        .unwrap_err()
        .to_string();
    assert!(message.contains("database URL is not valid"), "{message}");
}

#[test]
fn the_build_lock_waits_for_the_holder_and_dies_with_it() {
    let db = scratch!();
    let (a, b) = (db.polling_store(), db.polling_store());
    let held = a.lock_builds().unwrap();
    let acquired = Arc::new(AtomicBool::new(false));
    let waiter = std::thread::spawn({
        let acquired = Arc::clone(&acquired);
        move || {
            let lock = b.lock_builds().unwrap();
            acquired.store(true, Ordering::SeqCst);
            lock
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!acquired.load(Ordering::SeqCst), "the second locker waits");
    drop(held);
    within(Duration::from_secs(2), || acquired.load(Ordering::SeqCst))
        .expect("the second locker gets the lock once it is released");
    let second = waiter.join().unwrap();

    // A holder whose session ends without a word (a killed process) frees the lock too.
    let third = Arc::new(AtomicBool::new(false));
    let waiter = std::thread::spawn({
        let third = Arc::clone(&third);
        move || {
            let lock = a.lock_builds().unwrap();
            third.store(true, Ordering::SeqCst);
            drop(lock);
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!third.load(Ordering::SeqCst));
    // Both the holder's and the waiter's connections carry the name; the waiter's retry is not
    // needed because only the holder's termination is awaited here.
    let holder_pid: i32 = db
        .client()
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    db.client()
        .execute("SELECT pg_terminate_backend($1)", &[&holder_pid])
        .unwrap();
    within(Duration::from_secs(2), || third.load(Ordering::SeqCst))
        .expect("the lock of a dead session is free");
    waiter.join().unwrap();
    drop(second);
}

#[test]
fn concurrent_writers_on_two_stores_all_succeed() {
    let db = scratch!();
    let (first, second) = (db.store(), db.store());
    first.create_org(&org("physics", 1)).unwrap();
    let start = first.change_counter().unwrap();
    const WRITES: i64 = 100;
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
                    store.get_org(&code("physics")).unwrap().unwrap();
                }
            });
        }
    });
    assert_eq!(second.list_tokens().unwrap().len(), 2 * WRITES as usize);
    let end = start + 2 * WRITES as u64;
    within(Duration::from_secs(1), || {
        first.change_counter().unwrap() == end && second.change_counter().unwrap() == end
    })
    .expect("every commit moved the counter once, and both stores know it");
    let all = AuditFilter {
        limit: Some(1000),
        ..Default::default()
    };
    assert_eq!(first.query_audit(&all).unwrap().len(), 2 * WRITES as usize);
}

/// Two replicas recording the same devices' reports and offers at once count each device once.
#[test]
fn replicas_reporting_at_once_keep_the_counts_exact() {
    let db = scratch!();
    let (a, b) = (db.store(), db.store());
    let key = (ver("2.0.0"), behaviour_tests::channel("stable"));
    std::thread::scope(|scope| {
        for (n, store) in [&a, &b].into_iter().enumerate() {
            let key = &key;
            scope.spawn(move || {
                for i in 0..60 {
                    let device = format!("dev_{}", i % 6);
                    let kind = [
                        EventKind::Failed,
                        EventKind::Installed,
                        EventKind::Downloaded,
                    ][(i + n) % 3];
                    store
                        .append_device_event(&DeviceEvent {
                            device_id: device.clone(),
                            org: code("physics"),
                            version: Some(key.0.clone()),
                            channel: key.1.clone(),
                            kind,
                            message: String::new(),
                            at: i as i64,
                        })
                        .unwrap();
                    store
                        .record_checkins(&[Checkin {
                            device_id: format!("dev_{}", (i * 7 + n) % 9),
                            at: i as i64,
                            address: "10.0.0.1".into(),
                            version: None,
                            platform: Platform::LinuxX86_64,
                            offered: Some(key.clone()),
                        }])
                        .unwrap();
                }
            });
        }
    });
    let mut client = db.client();
    let recount = client
        .query_one(
            "SELECT (SELECT count(*) FROM offers), \
                    count(*) FILTER (WHERE downloaded), \
                    count(*) FILTER (WHERE outcome = 'installed'), \
                    count(*) FILTER (WHERE outcome = 'failed') \
             FROM rollout_devices",
            &[],
        )
        .unwrap();
    let recount = RolloutCounts {
        offered: recount.get::<_, i64>(0) as u64,
        downloaded: recount.get::<_, i64>(1) as u64,
        installed: recount.get::<_, i64>(2) as u64,
        failed: recount.get::<_, i64>(3) as u64,
    };
    let kept = a.rollout_counts(&key.0, &key.1).unwrap();
    assert_eq!(kept, recount);
    assert_eq!(kept.offered, 9);
    assert_eq!(kept.downloaded, 4, "devices 1, 2, 4 and 5 report downloads");
    assert_eq!(kept.installed + kept.failed, 6);
}

#[test]
fn a_thousand_checkins_are_one_quick_batch() {
    let db = scratch!();
    let store = db.store();
    store.create_org(&org("physics", 1)).unwrap();
    let ids: Vec<String> = (0..1000).map(|i| format!("dev_{i:04}")).collect();
    for id in &ids {
        store
            .create_device(&crate::store::Device {
                id: id.clone(),
                org: code("physics"),
                hostname: format!("{id}.example.edu"),
                platform: Platform::LinuxX86_64,
                os_version: "Debian 12".into(),
                user: "alice".into(),
                token_hash: Sha256::digest(id.as_bytes()),
                enrolled_at: 1,
                deactivated_at: None,
                last_seen_at: None,
                last_address: None,
                current_version: None,
            })
            .unwrap();
    }
    let batch = |at: i64| -> Vec<Checkin> {
        ids.iter()
            .map(|id| Checkin {
                device_id: id.clone(),
                at,
                address: "10.1.2.3".into(),
                version: Some(ver("1.0.0")),
                platform: Platform::LinuxX86_64,
                offered: Some((ver("1.1.0"), behaviour_tests::channel("stable"))),
            })
            .collect()
    };
    let mut timings = Vec::new();
    for at in [100, 200, 300] {
        let checkins = batch(at);
        let start = Instant::now();
        store.record_checkins(&checkins).unwrap();
        timings.push(start.elapsed());
    }
    eprintln!("record_checkins of 1000 devices (first offers, then repeats): {timings:?}");
    assert!(
        timings.iter().all(|t| *t < Duration::from_secs(2)),
        "{timings:?}"
    );
    let devices = store.list_devices(Some(&code("physics"))).unwrap();
    assert!(devices
        .iter()
        .all(|d| d.last_seen_at == Some(300) && d.current_version == Some(ver("1.0.0"))));
    assert_eq!(
        store
            .rollout_counts(&ver("1.1.0"), &behaviour_tests::channel("stable"))
            .unwrap()
            .offered,
        1000
    );
}

#[test]
fn audit_appends_and_failed_writes_leave_the_counter_alone() {
    let db = scratch!();
    let store = db.polling_store();
    let before = store.change_counter().unwrap();
    store
        .append_audit(&behaviour_tests::event(
            1,
            "device:1",
            Some("physics"),
            "package.download",
        ))
        .unwrap();
    assert!(store.delete_org(&code("ghost")).is_err());
    assert_eq!(store.change_counter().unwrap(), before);
}

#[test]
fn bad_rows_are_corrupt_naming_table_and_key() {
    let db = scratch!();
    let store = db.polling_store();
    let physics = org("physics", 1);
    store.create_org(&physics).unwrap();
    store.add_release(&release("11.2.1", 1)).unwrap();
    let mut client = db.client();
    let corrupt = |r: Result<_>| match r {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("expected Corrupt, got {other:?}"),
    };

    client
        .batch_execute("UPDATE orgs SET channel = 'Not A Channel' WHERE code = 'physics'")
        .unwrap();
    let message = corrupt(store.get_org(&physics.code).map(|_| ()));
    assert!(message.contains("orgs row physics"), "{message}");
    assert!(message.contains("channel"), "{message}");

    client
        .batch_execute(
            "UPDATE release_payloads SET platform = 'beos-m68k' WHERE platform = 'macos-aarch64'",
        )
        .unwrap();
    let message = corrupt(store.list_releases().map(|_| ()));
    assert!(
        message.contains("release_payloads row 11.2.1/beos-m68k"),
        "{message}"
    );

    store
        .append_audit(&behaviour_tests::event(1, "x", None, "y"))
        .unwrap();
    client
        .batch_execute("UPDATE audit SET org = '../etc'")
        .unwrap();
    let message = corrupt(store.query_audit(&AuditFilter::default()).map(|_| ()));
    assert!(message.contains("audit row 1"), "{message}");
}

/// The plans of the hot lookups use the keys, not scans, however small the tables.
#[test]
fn lookups_use_the_indexes() {
    let db = scratch!();
    drop(db.polling_store());
    let mut client = db.client();
    // With empty tables every plan is cheap: rule out the scans that would hide a missing index.
    client
        .batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .unwrap();
    for sql in [
        "SELECT * FROM audit WHERE org = 'x' ORDER BY at DESC, id DESC LIMIT 100",
        "SELECT * FROM audit ORDER BY at DESC, id DESC LIMIT 100",
        "SELECT * FROM rollout_devices WHERE version = 'a' AND channel = 'b' AND device_id = 'c'",
        "SELECT * FROM tokens WHERE secret_hash = '\\x00'",
    ] {
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {sql}"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("Index"), "{sql}:\n{plan}");
        assert!(!plan.contains("Sort"), "{sql}:\n{plan}");
    }
}

/// An org deleted while another replica writes a record of it: the record lands first (and goes
/// with the org) or is refused as not found, never failing on the foreign key (a 500).
#[test]
fn an_org_deleted_during_a_write_into_it_is_not_found() {
    let db = scratch!();
    let (first, second) = (db.store(), db.store());
    let mut refused = 0;
    for i in 0..60 {
        let name = format!("race{i}");
        first.create_org(&org(&name, i)).unwrap();
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let token =
                    behaviour_tests::token(&format!("tok-{i}"), Role::Partner, Some(&name), i);
                start.wait();
                second.create_token(&token)
            });
            start.wait();
            first.delete_org(&code(&name)).unwrap();
            match writer.join().unwrap() {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => refused += 1,
                Err(e) => panic!("write {i} racing the org's deletion: {e}"),
            }
        });
    }
    assert!(
        second.list_tokens().unwrap().is_empty(),
        "tokens went with their orgs"
    );
    eprintln!("{refused} of 60 writes came after the deletion");
}
