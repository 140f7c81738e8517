//! Interchangeable replicas: three `depot serve` processes on one store, asked directly and
//! through nginx (with the shipped contrib configuration). Each scenario runs on one shared
//! SQLite data directory, and on PostgreSQL + Garage when `DEPOT_TEST_POSTGRES` and
//! `DEPOT_TEST_S3_ENDPOINT` are set (skipped with the reason printed otherwise; a failure under
//! CI=true).
//!
//! - a change through one replica (an org created, a registration key rotated, a token revoked,
//!   a rollout widened) is served by every replica within a second;
//! - a replica killed with SIGKILL under a stream of update checks through nginx costs no check;
//! - reports and audit events sent through the balancer are counted once each;
//! - two replicas asked to publish the same release at once build each package once;
//! - `X-Forwarded-For` names the client only when a trusted proxy sent it.

mod common;
mod replica_support;

use replica_support::{
    call, client, request_counts, requests_served, Backend, Cluster, PROPAGATION_LIMIT, REPLICAS,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const CHECK: &str = r#"{"platform":"linux-x86_64","current_version":"1.0.0"}"#;

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Polls `served` on every replica from the moment of the change; returns when all serve it,
/// fails when one does not within [`PROPAGATION_LIMIT`].
fn served_by_all(what: &str, bases: &[&str], mut served: impl FnMut(&str) -> bool) -> Duration {
    let start = Instant::now();
    let mut pending: Vec<&str> = bases.to_vec();
    loop {
        pending.retain(|base| !served(base));
        let elapsed = start.elapsed();
        if pending.is_empty() {
            eprintln!(
                "{what}: served by all {} replicas after {elapsed:?}",
                bases.len()
            );
            return elapsed;
        }
        assert!(
            elapsed <= PROPAGATION_LIMIT,
            "{what}: not served by {pending:?} after {elapsed:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn json_of(status: u16, body: &str, context: &str) -> Value {
    assert!((200..300).contains(&status), "{context}: {status} {body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{context}: {e}: {body}"))
}

fn changes_through_one_replica_are_served_by_all(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, false) else {
        return;
    };
    let http = client(None);
    let bases: Vec<&str> = cluster.replicas.iter().map(|r| r.base.as_str()).collect();
    let admin = cluster.admin.as_str();
    let get = |base: &str, path: &str, token: &str| {
        call(&http, "GET", &format!("{base}{path}"), Some(token), None)
    };

    // An org created through replica 0.
    let (status, body) = call(
        &http,
        "POST",
        &format!("{}/v1/orgs", bases[0]),
        Some(admin),
        Some(json!({"code": "chemistry", "name": "Chemistry"})),
    );
    json_of(status, &body, "create chemistry");
    served_by_all("org created", &bases, |base| {
        get(base, "/v1/orgs/chemistry", admin).0 == 200
    });

    // A registration key rotated through replica 1: the old key stops enrolling everywhere
    // (until then it still enrolls, which is why this polls with it), the new one works.
    let old_key = cluster.registration_key.clone();
    let (status, body) = call(
        &http,
        "POST",
        &format!("{}/v1/orgs/physics/rotate-key", bases[1]),
        Some(admin),
        None,
    );
    let new_key = json_of(status, &body, "rotate")["registration_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_key, old_key);
    let enroll = |base: &str, key: &str| {
        call(
            &http,
            "POST",
            &format!("{base}/v1/devices/enroll"),
            None,
            Some(
                json!({"registration_key": key, "hostname": "laptop", "platform": "linux-x86_64",
                        "os_version": "Debian 12", "user": "tester"}),
            ),
        )
    };
    served_by_all("registration key rotated", &bases, |base| {
        enroll(base, &old_key).0 == 403
    });
    for base in &bases {
        let (status, body) = enroll(base, &new_key);
        assert_eq!(status, 201, "the new key through {base}: {body}");
    }

    // A partner token created through replica 0 and revoked through replica 2.
    let (status, body) = call(
        &http,
        "POST",
        &format!("{}/v1/tokens", bases[0]),
        Some(admin),
        Some(json!({"role": "partner", "org": "physics", "name": "physics-it"})),
    );
    let created = json_of(status, &body, "create token");
    let partner = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    served_by_all("token created", &bases, |base| {
        get(base, "/v1/orgs/physics", &partner).0 == 200
    });
    let (status, body) = call(
        &http,
        "DELETE",
        &format!("{}/v1/tokens/{id}", bases[2]),
        Some(admin),
        None,
    );
    assert!((200..300).contains(&status), "revoke: {status} {body}");
    served_by_all("token revoked", &bases, |base| {
        get(base, "/v1/orgs/physics", &partner).0 == 401
    });

    // A rollout widened through replica 1: every replica offers the new version.
    let (status, body) = enroll(bases[0], &new_key);
    let device = json_of(status, &body, "enroll")["device_token"]
        .as_str()
        .unwrap()
        .to_string();
    let offered = |base: &str| {
        let (status, body) = call(
            &http,
            "POST",
            &format!("{base}/v1/update-check"),
            Some(&device),
            Some(serde_json::from_str(CHECK).unwrap()),
        );
        json_of(status, &body, "update check")["offer"]["version"]
            .as_str()
            .map(str::to_string)
    };
    for base in &bases {
        assert_eq!(offered(base), None, "1.1.0 is at 0 % on {base}");
    }
    let (status, body) = call(
        &http,
        "PUT",
        &format!("{}/v1/releases/1.1.0/rollout", bases[1]),
        Some(admin),
        Some(json!({"channel": "stable", "percent": 100})),
    );
    json_of(status, &body, "widen");
    served_by_all("rollout widened", &bases, |base| {
        offered(base).as_deref() == Some("1.1.0")
    });
}

#[test]
fn sqlite_changes_through_one_replica_are_served_by_all() {
    changes_through_one_replica_are_served_by_all(Backend::SqliteDataDir);
}

#[test]
fn postgres_garage_changes_through_one_replica_are_served_by_all() {
    changes_through_one_replica_are_served_by_all(Backend::PostgresGarage);
}

/// What the update-check stream saw.
#[derive(Default)]
struct Stream {
    answered: u64,
    answered_after_kill: u64,
    failures: Vec<String>,
}

fn a_killed_replica_costs_no_update_check(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, true) else {
        return;
    };
    let balancer = cluster.balancer().to_string();
    // Devices on addresses of their own, so that nginx's per-address hashing spreads them.
    let devices: Vec<(IpAddr, String)> = (0..6)
        .map(|i| {
            let address = loopback(10 + i);
            let (_, token) =
                cluster.enroll(&balancer, &client(Some(address)), &format!("desk-{i}"));
            (address, token)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let stream = Arc::new(Mutex::new(Stream::default()));
    let checkers: Vec<_> = devices
        .iter()
        .cloned()
        .map(|(address, token)| {
            let (stop, killed, stream) = (stop.clone(), killed.clone(), stream.clone());
            let url = format!("{balancer}/v1/update-check");
            std::thread::spawn(move || {
                let http = client(Some(address));
                while !stop.load(Ordering::Relaxed) {
                    let after_kill = killed.load(Ordering::Relaxed);
                    let (status, body) = call(
                        &http,
                        "POST",
                        &url,
                        Some(&token),
                        Some(serde_json::from_str(CHECK).unwrap()),
                    );
                    let mut seen = stream.lock().unwrap();
                    if status == 200 {
                        seen.answered += 1;
                        seen.answered_after_kill += u64::from(after_kill);
                    } else {
                        seen.failures.push(format!("{address}: {status} {body}"));
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(1));
    // The replica answering the most checks is the one whose loss would hurt most.
    let served: Vec<u64> = cluster
        .replicas
        .iter()
        .map(|r| requests_served(&r.base, "/v1/update-check"))
        .collect();
    let victim = (0..REPLICAS).max_by_key(|&i| served[i]).unwrap();
    assert!(served[victim] > 0, "no replica served a check: {served:?}");
    let before = stream.lock().unwrap().answered;
    killed.store(true, Ordering::Relaxed);
    cluster.replicas[victim].kill();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for checker in checkers {
        checker.join().unwrap();
    }
    let stream = stream.lock().unwrap();
    eprintln!(
        "{backend:?}: checks served per replica before the kill {served:?}; killed replica {victim}; \
         {} checks answered ({before} before the kill, {} after), {} failed",
        stream.answered,
        stream.answered_after_kill,
        stream.failures.len()
    );
    assert!(
        stream.failures.is_empty(),
        "failed checks: {:#?}",
        stream.failures
    );
    assert!(
        stream.answered_after_kill > 0,
        "no check answered after the kill"
    );

    // Through nginx, each device's check-in was recorded under its own address, not nginx's
    // (check-ins are written each second; the killed replica's pending ones died with it).
    let survivor = cluster.replicas.iter().find(|r| r.is_running()).unwrap();
    let http = client(None);
    let expected: BTreeSet<String> = devices.iter().map(|(a, _)| a.to_string()).collect();
    let mut recorded = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorded != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let (status, body) = call(
            &http,
            "GET",
            &format!("{}/v1/orgs/physics/devices", survivor.base),
            Some(&cluster.admin),
            None,
        );
        recorded = json_of(status, &body, "devices")
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["last_address"].as_str().map(str::to_string))
            .collect();
    }
    assert_eq!(recorded, expected, "check-in addresses");
}

#[test]
fn sqlite_a_killed_replica_costs_no_update_check() {
    a_killed_replica_costs_no_update_check(Backend::SqliteDataDir);
}

#[test]
fn postgres_garage_a_killed_replica_costs_no_update_check() {
    a_killed_replica_costs_no_update_check(Backend::PostgresGarage);
}

fn reports_and_audit_events_are_counted_once(backend: Backend) {
    const CLIENTS: u8 = 8;
    const DEVICES_PER_CLIENT: usize = 3;
    let Some(cluster) = Cluster::start(backend, true) else {
        return;
    };
    let balancer = cluster.balancer().to_string();
    let admin = cluster.admin.clone();
    let (status, body) = call(
        &client(None),
        "PUT",
        &format!("{balancer}/v1/releases/1.1.0/rollout"),
        Some(&admin),
        Some(json!({"channel": "stable", "percent": 100})),
    );
    json_of(status, &body, "widen");

    // Each client, from an address of its own, enrolls devices that report an install, and
    // creates an org, all through the balancer at the same time as the others.
    let cluster = Arc::new(cluster);
    let start = Arc::new(Barrier::new(usize::from(CLIENTS)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (cluster, start, balancer, admin) = (
                cluster.clone(),
                start.clone(),
                balancer.clone(),
                admin.clone(),
            );
            std::thread::spawn(move || {
                let http = client(Some(loopback(30 + i)));
                start.wait();
                for d in 0..DEVICES_PER_CLIENT {
                    let (_, token) = cluster.enroll(&balancer, &http, &format!("lab-{i}-{d}"));
                    // A report counts only for a release the device was offered (CONTRACT 6
                    // rule 6): the check goes first, to the same replica (hashed by address).
                    let (status, body) = call(
                        &http,
                        "POST",
                        &format!("{balancer}/v1/update-check"),
                        Some(&token),
                        Some(json!({"platform": "linux-x86_64", "current_version": null})),
                    );
                    assert_eq!(status, 200, "check: {body}");
                    let (status, body) = call(
                        &http,
                        "POST",
                        &format!("{balancer}/v1/devices/events"),
                        Some(&token),
                        Some(json!({"version": "1.1.0", "kind": "installed", "message": ""})),
                    );
                    assert_eq!(status, 204, "report: {body}");
                }
                let (status, body) = call(
                    &http,
                    "POST",
                    &format!("{balancer}/v1/orgs"),
                    Some(&admin),
                    Some(json!({"code": format!("dept-{i}"), "name": format!("Department {i}")})),
                );
                json_of(status, &body, "create org");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }

    let reports = u64::from(CLIENTS) * DEVICES_PER_CLIENT as u64;
    let spread: Vec<u64> = cluster
        .replicas
        .iter()
        .map(|r| requests_served(&r.base, "/v1/devices/events"))
        .collect();
    eprintln!(
        "{backend:?}: {reports} reports through the balancer, answered per replica: {spread:?}"
    );
    let counts: Vec<Vec<String>> = cluster
        .replicas
        .iter()
        .map(|r| request_counts(&r.base, "/v1/devices/events"))
        .collect();
    assert_eq!(
        spread.iter().sum::<u64>(),
        reports,
        "reports answered by the replicas: {counts:#?}"
    );
    assert!(
        spread.iter().filter(|&&n| n > 0).count() >= 2,
        "the balancer should spread {CLIENTS} client addresses: {spread:?}"
    );
    let http = client(None);
    let expected_addresses: BTreeMap<String, String> = (0..CLIENTS)
        .map(|i| (format!("dept-{i}"), loopback(30 + i).to_string()))
        .collect();
    for replica in &cluster.replicas {
        let (status, body) = call(
            &http,
            "GET",
            &format!("{}/v1/rollouts", replica.base),
            Some(&admin),
            None,
        );
        let rollouts = json_of(status, &body, "rollouts");
        let rollout = rollouts
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == "1.1.0" && r["channel"] == "stable")
            .unwrap();
        assert_eq!(rollout["installed"], reports, "{}: {rollout}", replica.base);

        let (status, body) = call(
            &http,
            "GET",
            &format!("{}/v1/audit?action=org.create", replica.base),
            Some(&admin),
            None,
        );
        let created: Vec<(String, String)> = json_of(status, &body, "audit")
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["target"].as_str().unwrap().starts_with("dept-"))
            .map(|e| {
                (
                    e["target"].as_str().unwrap().to_string(),
                    e["address"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // One event per org, none doubled, each recorded under the address of the client that
        // created the org.
        assert_eq!(
            created.len(),
            usize::from(CLIENTS),
            "{}: {created:?}",
            replica.base
        );
        let created: BTreeMap<String, String> = created.into_iter().collect();
        assert_eq!(created, expected_addresses, "{}", replica.base);
    }
}

#[test]
fn sqlite_reports_and_audit_events_are_counted_once() {
    reports_and_audit_events_are_counted_once(Backend::SqliteDataDir);
}

#[test]
fn postgres_garage_reports_and_audit_events_are_counted_once() {
    reports_and_audit_events_are_counted_once(Backend::PostgresGarage);
}

fn two_replicas_build_each_package_once(backend: Backend) {
    const ORGS: usize = 8;
    let Some(cluster) = Cluster::start(backend, false) else {
        return;
    };
    for i in 0..ORGS {
        cluster
            .ws
            .ok(&["org", "add", &format!("unit-{i}"), "--name", "Unit"]);
    }
    // A payload large enough that building for every org takes a while.
    let payload = cluster.ws.dir.path().join("client-2.0.0.tgz");
    std::fs::write(&payload, common_pattern(8 * 1024 * 1024)).unwrap();
    cluster.ws.ok(&[
        "release",
        "add",
        "2.0.0",
        "--payload",
        &format!("linux-x86_64={}", payload.display()),
    ]);

    let start = Arc::new(Barrier::new(2));
    let publishers: Vec<_> = cluster.replicas[..2]
        .iter()
        .map(|replica| {
            let (start, url, admin) = (
                start.clone(),
                format!("{}/v1/releases/2.0.0/publish", replica.base),
                cluster.admin.clone(),
            );
            std::thread::spawn(move || {
                let http = client(None);
                start.wait();
                let sent = Instant::now();
                let (status, body) = call(
                    &http,
                    "POST",
                    &url,
                    Some(&admin),
                    Some(json!({"channel": "stable", "rollout_percent": 0})),
                );
                (sent, Instant::now(), json_of(status, &body, "publish"))
            })
        })
        .collect();
    let answers: Vec<_> = publishers.into_iter().map(|p| p.join().unwrap()).collect();
    // Both were asked before either answered: the builds really were asked for at once.
    let (first_answered, last_sent) = (
        answers.iter().map(|a| a.1).min().unwrap(),
        answers.iter().map(|a| a.0).max().unwrap(),
    );
    assert!(
        last_sent < first_answered,
        "the two publishes did not overlap"
    );

    let mut built: Vec<String> = Vec::new();
    for (sent, answered, view) in &answers {
        let files: Vec<String> = view["rebuilt"]["built"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        eprintln!(
            "{backend:?}: a replica built {} packages in {:?}, {} unchanged",
            files.len(),
            *answered - *sent,
            view["rebuilt"]["unchanged"]
        );
        built.extend(files);
    }
    let mut expected: Vec<String> = ["default", "physics"]
        .into_iter()
        .map(str::to_string)
        .chain((0..ORGS).map(|i| format!("unit-{i}")))
        .map(|org| format!("{org}-2.0.0-linux-x86_64.zip"))
        .collect();
    expected.sort();
    built.sort();
    assert_eq!(built, expected, "each package built exactly once");

    // The third replica serves each of them.
    let http = client(None);
    for file in &expected {
        let org = file.split("-2.0.0-").next().unwrap();
        let (status, body) = call(
            &http,
            "GET",
            &format!(
                "{}/v1/download/{org}/2.0.0/{file}",
                cluster.replicas[2].base
            ),
            Some(&cluster.admin),
            None,
        );
        assert_eq!(status, 200, "{file}: {}", &body[..body.len().min(200)]);
    }
}

/// Bytes that do not compress or repeat.
fn common_pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn sqlite_two_replicas_build_each_package_once() {
    two_replicas_build_each_package_once(Backend::SqliteDataDir);
}

#[test]
fn postgres_garage_two_replicas_build_each_package_once() {
    two_replicas_build_each_package_once(Backend::PostgresGarage);
}

/// `X-Forwarded-For` is believed from the trusted proxy (127.0.0.1) and from no one else: for
/// audit addresses and for the failed-token limit.
#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let Some(cluster) = Cluster::start(Backend::SqliteDataDir, false) else {
        return;
    };
    let base = &cluster.replicas[0].base;
    let send = |from: IpAddr, forwarded: &str, token: &str, body: Option<Value>| {
        let mut request = client(Some(from))
            .request(
                if body.is_some() {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::GET
                },
                format!("{base}/v1/orgs"),
            )
            .bearer_auth(token)
            .header("X-Forwarded-For", forwarded);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().unwrap().status().as_u16()
    };
    let admin = cluster.admin.as_str();
    // From the proxy: the right-most address it did not append itself; the client forged the
    // left-most one.
    let org = |code: &str| Some(json!({"code": code, "name": code}));
    assert_eq!(
        send(
            loopback(1),
            "198.51.100.66, 203.0.113.7",
            admin,
            org("via-proxy")
        ),
        201
    );
    // From anyone else: the peer, whatever the header says.
    assert_eq!(send(loopback(2), "203.0.113.8", admin, org("direct")), 201);
    let (status, body) = call(
        &client(None),
        "GET",
        &format!("{base}/v1/audit?action=org.create"),
        Some(admin),
        None,
    );
    let addresses: BTreeMap<String, String> = json_of(status, &body, "audit")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["target"].as_str().unwrap().to_string(),
                e["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(addresses["via-proxy"], "203.0.113.7");
    assert_eq!(addresses["direct"], "127.0.0.2");

    // Bad tokens are limited per forwarded client: one client behind the proxy is blocked,
    // another behind the same proxy is not, and an untrusted peer cannot borrow the blocked
    // client's address to get itself blocked or unblocked.
    let bad = "depot_not_a_token";
    let statuses: Vec<u16> = (0..25)
        .map(|_| send(loopback(1), "203.0.113.50", bad, None))
        .collect();
    assert_eq!(statuses.first(), Some(&401));
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(send(loopback(1), "203.0.113.51", bad, None), 401);
    assert_eq!(send(loopback(3), "203.0.113.50", bad, None), 401);
    assert_eq!(send(loopback(1), "203.0.113.51", admin, None), 200);
}
