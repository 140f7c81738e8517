//! depot's checksums, keys and signatures against the stock tools (`minisign`, `sha256sum`)
//! and jedisct1's `minisign` crate: what a user or a device checks must pass with them.
//!
//! When a tool is missing these tests fail under `CI=true` and are skipped (with the reason
//! printed) elsewhere.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use depot::signing::{
    digest_reader, parse_sha256sums, sha256sums, PublicKey, SigningKey, StreamDigest,
};

/// Whether `tool` can be run; panics under CI when it cannot.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg(if tool == "minisign" {
            "-v"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI (install it: apt-get install {tool})"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// Runs a command with no stdin, so that a password prompt fails instead of hanging.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn ok(output: &Output) -> bool {
    if !output.status.success() {
        eprintln!(
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}

fn minisign_verify(file: &Path, key: &[&str]) -> Output {
    run(Command::new("minisign").arg("-Vm").arg(file).args(key))
}

/// Pseudo-random bytes, so that no chunk of the prefix repeats another.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Packages sharing a hashed-once prefix, each signed from a clone of the prefix state, pass
/// `minisign -V` with `-P` and `-p`; their SHA256SUMS passes `sha256sum -c` and its signature
/// `minisign -V`.
#[test]
fn prefix_signed_packages_verify_with_the_stock_tools() {
    if !have("minisign") || !have("sha256sum") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("physics/11.2.1");
    std::fs::create_dir_all(&out).unwrap();
    let key = SigningKey::create_files(
        &tmp.path().join("keys/depot.key"),
        &tmp.path().join("keys/depot.pub"),
    )
    .unwrap();
    let public = key.public_key();
    let pub_file = tmp.path().join("keys/depot.pub");

    let prefix = sample(3 * 1024 * 1024 + 4321, 7);
    let prefix_state: StreamDigest = digest_reader(&mut prefix.as_slice()).unwrap();
    let mut sums = Vec::new();
    for (i, platform) in ["linux-x86_64", "macos-aarch64", "windows-x86_64"]
        .iter()
        .enumerate()
    {
        let name = format!("physics-11.2.1-{platform}.zip");
        let tail = sample(10_000 + i * 777, 100 + i as u64);
        let mut digest = prefix_state.clone();
        digest.update(&tail);
        let (sha256, prehash) = digest.finish();
        let comment = format!("timestamp:1700000000\tfile:{name}\tprehashed");
        let path = out.join(&name);
        std::fs::write(&path, [prefix.as_slice(), &tail].concat()).unwrap();
        std::fs::write(
            out.join(format!("{name}.minisig")),
            key.sign_prehashed(&prehash, &comment),
        )
        .unwrap();
        sums.push((name, sha256));

        let by_line = minisign_verify(&path, &["-P", &public.to_line()]);
        assert!(ok(&by_line));
        assert!(String::from_utf8_lossy(&by_line.stdout).contains(&comment));
        assert!(ok(&minisign_verify(
            &path,
            &["-H", "-p", pub_file.to_str().unwrap()]
        )));
    }
    let sums_text = sha256sums(&sums);
    std::fs::write(out.join("SHA256SUMS"), &sums_text).unwrap();
    std::fs::write(
        out.join("SHA256SUMS.minisig"),
        key.sign(
            sums_text.as_bytes(),
            "timestamp:1700000000\tfile:SHA256SUMS",
        ),
    )
    .unwrap();
    assert_eq!(parse_sha256sums(&sums_text).unwrap().len(), 3);
    assert!(ok(&run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out))));
    assert!(ok(&minisign_verify(
        &out.join("SHA256SUMS"),
        &["-P", &public.to_line()]
    )));

    // The checks can fail: one changed byte in a package fails both tools.
    let victim = out.join("physics-11.2.1-linux-x86_64.zip");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1_000_000] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    assert!(!minisign_verify(&victim, &["-P", &public.to_line()])
        .status
        .success());
    let check = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out));
    assert!(!check.status.success());
    // And another key's public key is refused.
    let stranger = SigningKey::generate().public_key();
    assert!(
        !minisign_verify(&out.join("SHA256SUMS"), &["-P", &stranger.to_line()])
            .status
            .success()
    );
}

/// The stock tool signs with depot's secret key file without asking for a password, and depot
/// verifies what it signs, in both formats.
#[test]
fn stock_tool_signs_with_our_key_and_we_verify_it() {
    if !have("minisign") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("depot.key");
    let key = SigningKey::create_files(&secret, &tmp.path().join("depot.pub")).unwrap();
    let public = key.public_key();
    let file = tmp.path().join("data.bin");
    let data = sample(200_000, 3);
    std::fs::write(&file, &data).unwrap();

    for legacy in [false, true] {
        let sig = tmp.path().join(if legacy {
            "legacy.minisig"
        } else {
            "hashed.minisig"
        });
        let mut cmd = Command::new("minisign");
        cmd.arg("-S")
            .arg("-s")
            .arg(&secret)
            .arg("-m")
            .arg(&file)
            .arg("-x")
            .arg(&sig);
        cmd.args(["-t", "signed by the stock tool"]);
        if legacy {
            cmd.arg("-l");
        }
        assert!(ok(&run(&mut cmd)), "legacy: {legacy}");
        let text = std::fs::read_to_string(&sig).unwrap();
        assert_eq!(
            public.verify(&data, &text).unwrap(),
            "signed by the stock tool"
        );
        let mut changed = data.clone();
        changed[0] ^= 1;
        assert!(public.verify(&changed, &text).is_err());
        let (_, prehash) = {
            let mut d = StreamDigest::new();
            d.update(&data);
            d.finish()
        };
        assert_eq!(public.verify_prehashed(&prehash, &text).is_ok(), !legacy);
    }
}

/// A key made by `minisign -G -W` loads (its checksum is left zero by minisign 0.11), and what
/// depot signs with it verifies with the tool's own public key file.
#[test]
fn we_load_a_key_made_by_the_stock_tool() {
    if !have("minisign") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (secret, pub_file) = (tmp.path().join("m.key"), tmp.path().join("m.pub"));
    let made = run(Command::new("minisign")
        .args(["-G", "-W", "-s"])
        .arg(&secret)
        .arg("-p")
        .arg(&pub_file));
    assert!(ok(&made));
    let key = SigningKey::load(&secret).unwrap();
    let their_public = PublicKey::parse(&std::fs::read_to_string(&pub_file).unwrap()).unwrap();
    assert_eq!(key.public_key(), their_public);
    // The key line must be identical. The comment line is untrusted and its key id is padded
    // to 16 digits by newer minisign releases but not by 0.11 (`%" PRIX64`), so 1 key in 16
    // differs there by a leading zero: compare the number, not the digits.
    let theirs = std::fs::read_to_string(&pub_file).unwrap();
    let ours = key.public_key().to_file_text();
    let (their_comment, their_line) = theirs.split_once('\n').unwrap();
    let (our_comment, our_line) = ours.split_once('\n').unwrap();
    assert_eq!(our_line, their_line);
    let key_id_of = |comment: &str| {
        let hex = comment
            .strip_prefix("untrusted comment: minisign public key ")
            .unwrap_or_else(|| panic!("unexpected comment {comment:?}"));
        u64::from_str_radix(hex, 16).unwrap()
    };
    assert_eq!(key_id_of(our_comment), key_id_of(their_comment));
    assert_eq!(
        our_comment.len(),
        "untrusted comment: minisign public key ".len() + 16
    );

    let file = tmp.path().join("f");
    std::fs::write(&file, b"hello").unwrap();
    std::fs::write(tmp.path().join("f.minisig"), key.sign(b"hello", "ours")).unwrap();
    assert!(ok(&minisign_verify(
        &file,
        &["-p", pub_file.to_str().unwrap()]
    )));
}

/// jedisct1's crate, in process: it reads our secret key file (checking its checksum) and our
/// signatures, and we read its signatures.
#[test]
fn minisign_crate_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("k.key");
    let key = SigningKey::create_files(&secret, &tmp.path().join("k.pub")).unwrap();
    let their_public = minisign::PublicKey::from_base64(&key.public_key().to_line()).unwrap();
    let data = sample(70_000, 11);

    let ours = key.sign(&data, "from depot");
    let sig_box = minisign::SignatureBox::from_string(&ours).unwrap();
    minisign::verify(
        &their_public,
        &sig_box,
        std::io::Cursor::new(&data),
        true,
        false,
        false,
    )
    .unwrap();

    let their_secret =
        minisign::SecretKeyBox::from_string(&std::fs::read_to_string(&secret).unwrap())
            .unwrap()
            .into_unencrypted_secret_key()
            .unwrap();
    let theirs = minisign::sign(
        None,
        &their_secret,
        data.as_slice(),
        Some("from the crate"),
        None,
    )
    .unwrap()
    .into_string();
    assert_eq!(
        key.public_key().verify(&data, &theirs).unwrap(),
        "from the crate"
    );
}

/// Throughput of the one pass over a payload, against hashing both digests on one thread.
/// A measurement, not a pass/fail gate on speed (the machine may be busy):
/// `cargo test --release --test signing_tools -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: run explicitly"]
fn digest_reader_throughput() {
    let data = sample(256 << 20, 5);
    let mb = data.len() as f64 / 1e6;
    let (mut parallel, mut one_thread) = (0f64, 0f64);
    let mut results = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        results.push(digest_reader(&mut data.as_slice()).unwrap().finish());
        parallel = parallel.max(mb / started.elapsed().as_secs_f64());

        let started = std::time::Instant::now();
        let mut digest = StreamDigest::new();
        for chunk in data.chunks(1 << 20) {
            digest.update(chunk);
        }
        results.push(digest.finish());
        one_thread = one_thread.max(mb / started.elapsed().as_secs_f64());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    eprintln!(
        "256 MiB, best of 3: digest_reader {parallel:.0} MB/s, both digests on one thread {one_thread:.0} MB/s"
    );
}
