use super::*;
use crate::domain::{OrgCode, Platform, RegistrationKey, Version};
use crate::org::{Org, OrgConfig};
use std::fs;
use std::path::PathBuf;

const KEY_LINE: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

fn org() -> Org {
    let mut config = OrgConfig::new("Physics & Astronomy").unwrap();
    config.contact_email = Some("it-help@physics.example.edu".into());
    config.settings.insert(
        "DEPLOYMENT_URL".into(),
        "https://backup.example.edu:4285".into(),
    );
    config.settings.insert(
        "DEPLOYMENT_POLICY_TOKEN".into(),
        "2f1c7d3a-9b1e-4c55-8d0e-3a6b2f1c9e77".into(),
    );
    Org {
        code: OrgCode::parse("physics").unwrap(),
        registration_key: RegistrationKey::parse("7QKX-M2PA-9D4R-HV0T").unwrap(),
        config,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

fn payload_for(platform: Platform) -> &'static str {
    match platform.os() {
        Os::Windows => "CrashPlan_11.2.1_Win64.msi",
        Os::Macos => "CrashPlan_11.2.1_Mac.dmg",
        Os::Linux => "CrashPlan_11.2.1_Linux.tgz",
    }
}

fn context_for(org: &Org, platform: Platform) -> RenderContext {
    RenderContext::new(
        org,
        &Version::parse("11.2.1").unwrap(),
        "Fixes a crash when the backup set is empty.",
        platform,
        payload_for(platform),
        &Sha256::digest(b"payload"),
        123_456_789,
        "https://depot.example.edu",
        KEY_LINE,
    )
}

fn text(files: &[RenderedFile], name: &str) -> String {
    let f = files
        .iter()
        .find(|f| f.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} missing"));
    String::from_utf8(f.bytes.clone()).unwrap()
}

/// Parses `deploy.properties` the way `java.util.Properties` reads what we write.
fn properties(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), unescape_properties(v))
        })
        .collect()
}

fn unescape_properties(v: &str) -> String {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next().unwrap() {
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(u16::from_str_radix(&hex, 16).unwrap());
                    continue;
                }
                'n' => out.push(b'\n' as u16),
                't' => out.push(b'\t' as u16),
                'r' => out.push(b'\r' as u16),
                'f' => out.push(0x0c),
                other => out.extend(other.encode_utf16(&mut [0; 2]).iter()),
            }
        } else {
            out.extend(c.encode_utf16(&mut [0; 2]).iter());
        }
    }
    String::from_utf16(&out).unwrap()
}

fn write_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, body) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    dir
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|p| p.join(program))
        .find(|p| p.is_file())
}

#[test]
fn builtin_renders_every_platform() {
    let set = TemplateSet::builtin();
    let org = org();
    for platform in Platform::ALL {
        let files = set
            .render(platform.os(), &context_for(&org, platform))
            .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for common in ["README.txt", "backup-selection.txt", "deploy.properties"] {
            assert!(names.contains(&common), "{platform}: {names:?}");
        }
        let script = match platform.os() {
            Os::Windows => "install.ps1",
            Os::Macos => "install.command",
            Os::Linux => "install.sh",
        };
        let script_text = text(&files, script);
        assert!(script_text.contains(&Sha256::digest(b"payload").to_hex()));
        assert!(script_text.contains(payload_for(platform)));
        assert!(!script_text.contains("{{") && !script_text.contains("{%"));

        let props = properties(&text(&files, "deploy.properties"));
        assert_eq!(props["DEPOT_SERVER_URL"], "https://depot.example.edu");
        assert_eq!(props["DEPOT_ORG"], "physics");
        assert_eq!(props["DEPOT_REGISTRATION_KEY"], "7QKX-M2PA-9D4R-HV0T");
        assert_eq!(props["DEPOT_CHANNEL"], "stable");
        assert_eq!(props["DEPOT_PUBLIC_KEY"], KEY_LINE);
        assert_eq!(props["DEPOT_VERSION"], "11.2.1");
        assert_eq!(props["DEPOT_PLATFORM"], platform.as_str());
        assert_eq!(props["DEPOT_PAYLOAD"], payload_for(platform));
        assert_eq!(
            props["DEPOT_PAYLOAD_SHA256"],
            Sha256::digest(b"payload").to_hex()
        );
        assert_eq!(props["DEPLOYMENT_URL"], "https://backup.example.edu:4285");
        assert_eq!(props["CP_SILENT"], "true");
        assert!(!props.contains_key("backup.encrypt"));

        let readme = text(&files, "README.txt");
        assert!(readme.contains("it-help@physics.example.edu"));
        assert!(readme.contains(&format!(
            "minisign -Vm physics-11.2.1-{platform}.zip -P {KEY_LINE}"
        )));
        let selection = text(&files, "backup-selection.txt");
        assert!(selection.contains("EXCLUSIONS WIN"));
        assert!(selection.contains("\nexclude (?i).*/node_modules/.*\n"));
        assert!(selection.contains("\ninclude mac:/Users/\n"));
        assert!(selection.contains("#   backup.retention_days = 90"));
    }
}

#[test]
fn windows_install_passes_settings_to_msiexec() {
    let set = TemplateSet::builtin();
    let files = set
        .render(Os::Windows, &context_for(&org(), Platform::WindowsX86_64))
        .unwrap();
    let ps = text(&files, "install.ps1");
    assert!(ps.contains("'CP_SILENT' = 'true'"));
    assert!(ps.contains("'DEPLOYMENT_POLICY_TOKEN' = '2f1c7d3a-9b1e-4c55-8d0e-3a6b2f1c9e77'"));
    assert!(ps.contains("'/qn', '/norestart', '/l*v'"));
    assert!(ps.contains("agent enroll --state-dir $DepotStateDir --from $properties"));
    assert!(text(&files, "install.cmd").contains("\r\n"));
    assert!(text(&files, "detect-user.ps1").contains("AGENT_USERNAME="));
}

#[test]
fn hostile_values_stay_inside_their_literals() {
    let set = TemplateSet::builtin();
    let mut org = org();
    let hostile = "O'Brien’s \"lab\" #> $(touch /tmp/pwned) `id` ${HOME} \\ & ; | * ü";
    org.config.name = hostile.into();
    org.config
        .settings
        .insert("PROXY_URL".into(), format!(" {hostile}"));
    org.config.backup.exclude.push(format!("#{hostile}"));
    let bash = which("bash");
    for platform in [
        Platform::WindowsX86_64,
        Platform::MacosAarch64,
        Platform::LinuxX86_64,
    ] {
        let files = set
            .render(platform.os(), &context_for(&org, platform))
            .unwrap();
        let props = properties(&text(&files, "deploy.properties"));
        assert_eq!(props["PROXY_URL"], format!(" {hostile}"));
        assert_eq!(props["DEPOT_ORG"], "physics");
        match platform.os() {
            Os::Windows => {
                // The value never appears unquoted: a raw copy would hold its lone `'`.
                for script in ["install.ps1", "uninstall.ps1"] {
                    assert!(!text(&files, script).contains(hostile), "{script}");
                }
                let ps = text(&files, "install.ps1");
                assert!(
                    ps.contains("$OrgName        = 'O''Brien’’s \"lab\" #> $(touch /tmp/pwned)")
                );
            }
            os => {
                let name = if os == Os::Macos {
                    "install.command"
                } else {
                    "install.sh"
                };
                let script = text(&files, name);
                assert!(!script.contains(hostile), "{name}");
                assert!(script.contains(&format!("ORG_NAME={}\n", filters::sh_quote(hostile))));
                let Some(bash) = &bash else { continue };
                // The quoted assignments evaluate back to the original values.
                let assignments: String = script
                    .lines()
                    .filter(|l| l.starts_with("ORG_NAME=") || l.starts_with("DEPLOY_OPTIONS="))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let out = std::process::Command::new(bash)
                    .arg("-c")
                    .arg(format!(
                        "{assignments}printf '%s\\n%s' \"$ORG_NAME\" \"$DEPLOY_OPTIONS\""
                    ))
                    .output()
                    .unwrap();
                let out = String::from_utf8(out.stdout).unwrap();
                let (name, options) = out.split_once('\n').unwrap();
                assert_eq!(name, hostile);
                if os == Os::Linux {
                    assert!(
                        options.contains(&format!("&PROXY_URL= {hostile}")),
                        "{options}"
                    );
                }
            }
        }
    }
}

#[test]
fn shell_scripts_pass_bash_n() {
    let Some(bash) = which("bash") else { return };
    let set = TemplateSet::builtin();
    let mut org = org();
    org.config.name = "It's $(id) `x`".into();
    for platform in [Platform::MacosX86_64, Platform::LinuxAarch64] {
        for f in set
            .render(platform.os(), &context_for(&org, platform))
            .unwrap()
        {
            let name = f.name.as_str();
            if !(name.ends_with(".sh") || name.ends_with(".command")) {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            fs::write(&path, &f.bytes).unwrap();
            let status = std::process::Command::new(&bash)
                .arg("-n")
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success(), "{platform}/{name} fails bash -n");
            if name.ends_with(".sh") {
                if let Some(sh) = which("dash") {
                    let status = std::process::Command::new(sh)
                        .arg("-n")
                        .arg(&path)
                        .status()
                        .unwrap();
                    assert!(status.success(), "{platform}/{name} fails dash -n");
                }
            }
        }
    }
}

#[test]
fn powershell_scripts_parse_when_pwsh_is_available() {
    let Some(pwsh) = which("pwsh") else { return };
    let set = TemplateSet::builtin();
    let files = set
        .render(Os::Windows, &context_for(&org(), Platform::WindowsX86_64))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in files.iter().filter(|f| f.name.as_str().ends_with(".ps1")) {
        let path = dir.path().join(f.name.as_str());
        fs::write(&path, &f.bytes).unwrap();
        let check = format!(
            "$e = $null; [void][System.Management.Automation.Language.Parser]::ParseFile('{}', [ref]$null, [ref]$e); if ($e) {{ $e | Out-String | Write-Error; exit 1 }}",
            path.display()
        );
        let status = std::process::Command::new(&pwsh)
            .args(["-NoProfile", "-Command", &check])
            .status()
            .unwrap();
        assert!(status.success(), "{} does not parse", f.name);
    }
}

#[test]
fn embedded_copy_equals_the_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("installer-templates");
    let on_disk = TemplateSet::load(&dir).unwrap();
    assert_eq!(on_disk.digest(), TemplateSet::builtin().digest());
    for os in [Os::Windows, Os::Macos, Os::Linux] {
        assert!(on_disk
            .output_names(os)
            .eq(TemplateSet::builtin().output_names(os)));
    }
}

#[test]
fn write_builtin_round_trips_and_refuses_to_overwrite() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested/installer-templates");
    TemplateSet::write_builtin(&dir).unwrap();
    assert_eq!(
        TemplateSet::load(&dir).unwrap().digest(),
        TemplateSet::builtin().digest()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("linux/install.sh.tera"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    let err = TemplateSet::write_builtin(&dir).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    // Nothing is left behind beside it.
    let leftovers: Vec<_> = fs::read_dir(dir.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1);
}

#[test]
fn os_file_replaces_common_file_and_plain_files_are_copied() {
    let dir = write_tree(&[
        ("common/deploy.properties.tera", "ORG={{ org.code }}\n"),
        ("common/detect-user.sh", "#!/bin/sh\necho common\n"),
        (
            "linux/detect-user.sh",
            "#!/bin/sh\necho linux {{ org.code }}\n",
        ),
        ("windows/custom/logo.png", "\u{89}PNG"),
        (".git/config", "[core]"),
    ]);
    let set = TemplateSet::load(dir.path()).unwrap();
    let org = org();
    let linux = set
        .render(Os::Linux, &context_for(&org, Platform::LinuxX86_64))
        .unwrap();
    assert_eq!(
        text(&linux, "detect-user.sh"),
        "#!/bin/sh\necho linux {{ org.code }}\n"
    );
    assert_eq!(text(&linux, "deploy.properties"), "ORG=physics\n");
    let mac = set
        .render(Os::Macos, &context_for(&org, Platform::MacosX86_64))
        .unwrap();
    assert_eq!(text(&mac, "detect-user.sh"), "#!/bin/sh\necho common\n");
    let win = set
        .render(Os::Windows, &context_for(&org, Platform::WindowsX86_64))
        .unwrap();
    let names: Vec<_> = win.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["custom/logo.png", "deploy.properties", "detect-user.sh"]
    );
}

#[test]
fn digest_changes_with_any_byte_or_name() {
    let a = write_tree(&[("common/a.txt", "x")]);
    let b = write_tree(&[("common/a.txt", "y")]);
    let c = write_tree(&[("linux/a.txt", "x")]);
    let d = write_tree(&[("common/a.txt", "x")]);
    let digest = |dir: &tempfile::TempDir| TemplateSet::load(dir.path()).unwrap().digest();
    assert_ne!(digest(&a), digest(&b));
    assert_ne!(digest(&a), digest(&c));
    assert_eq!(digest(&a), digest(&d));
}

fn load_error(files: &[(&str, &str)]) -> String {
    let dir = write_tree(files);
    TemplateSet::load(dir.path()).unwrap_err().to_string()
}

fn render_error(files: &[(&str, &str)]) -> String {
    let dir = write_tree(files);
    let set = TemplateSet::load(dir.path()).unwrap();
    set.render(Os::Windows, &context_for(&org(), Platform::WindowsX86_64))
        .unwrap_err()
        .to_string()
}

#[test]
fn syntax_error_names_path_and_line() {
    let err = load_error(&[(
        "windows/install.ps1.tera",
        "# line 1\n$Org = {{ org.code | ps_quote }}\n$Name = {{ org.name | }}\n",
    )]);
    assert!(
        err.starts_with("template windows/install.ps1.tera line 3: "),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    let err = load_error(&[("common/README.txt.tera", "a\nb\n{% if org.name %}\nc\n")]);
    assert!(
        err.starts_with("template common/README.txt.tera line "),
        "{err}"
    );
}

#[test]
fn unknown_variable_names_path_and_line() {
    let err = render_error(&[(
        "windows/install.ps1.tera",
        "# {{ org.name }}\n$a = 1\n$b = 2\n$c = 3\n$d = 4\n$e = 5\n$f = 6\n$g = 7\n$h = 8\n$i = 9\n$j = 10\n$Name = {{ org.nme | ps_quote }}\n",
    )]);
    assert_eq!(
        err,
        "template windows/install.ps1.tera line 12: variable `org.nme` not found"
    );
    let err = render_error(&[(
        "common/a.txt.tera",
        "{{ org.name }}\n{% for x in org.nme %}x{% endfor %}\n",
    )]);
    assert_eq!(
        err,
        "template common/a.txt.tera line 2: variable `org.nme` not found"
    );
}

#[test]
fn unknown_filter_and_bad_argument_name_path_and_line() {
    let err = render_error(&[("common/a.txt.tera", "ok\n{{ org.name | shell_quote }}\n")]);
    assert_eq!(
        err,
        "template common/a.txt.tera line 2: unknown filter `shell_quote`"
    );
    let err = render_error(&[(
        "common/a.txt.tera",
        "{{ org.name | ps_quote }}\n\n{{ org.backup.include | sh_quote }}\n",
    )]);
    assert!(
        err.starts_with("template common/a.txt.tera line 3: filter `sh_quote`: "),
        "{err}"
    );
    assert!(err.contains("not a list"), "{err}");
    let err = render_error(&[(
        "common/a.txt.tera",
        "\n{{ org.name | truncate(length=\"x\") }}\n",
    )]);
    assert!(
        err.starts_with("template common/a.txt.tera line 2: filter `truncate`"),
        "{err}"
    );
}

#[test]
fn error_in_an_included_template_names_that_template() {
    let err = render_error(&[
        (
            "common/a.txt.tera",
            "top\n{% include \"common/b.txt.tera\" %}\n",
        ),
        ("common/b.txt.tera", "one\ntwo {{ release.verison }}\n"),
    ]);
    assert_eq!(
        err,
        "template common/b.txt.tera line 2: variable `release.verison` not found"
    );
}

#[test]
fn bad_layouts_are_refused() {
    for (files, expected) in [
        (vec![("templates/a.txt", "x")], "templates: unknown entry"),
        (vec![("README.md", "x")], "README.md: unknown entry"),
        (
            vec![("common/bad name.txt", "x")],
            "common/bad name.txt: its output name",
        ),
        (vec![("linux/install.sh~", "x")], "linux/install.sh~"),
        (vec![("common/.tera", "x")], "common/.tera"),
        (
            vec![("common/a.txt", "x"), ("common/a.txt.tera", "y")],
            "also produces a.txt",
        ),
        (
            vec![("macos/depot-package.json", "{}")],
            "written by depot itself",
        ),
    ] {
        let err = load_error(&files);
        assert!(err.contains(expected), "{files:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("common")).unwrap();
    fs::write(dir.path().join("common/a.txt.tera"), [0xff, 0xfe]).unwrap();
    let err = TemplateSet::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("UTF-8"), "{err}");
    let err = TemplateSet::load(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot read"), "{err}");
}

#[test]
fn autoescape_is_off() {
    let dir = write_tree(&[("common/page.html.tera", "{{ org.name }}")]);
    let set = TemplateSet::load(dir.path()).unwrap();
    let files = set
        .render(Os::Linux, &context_for(&org(), Platform::LinuxX86_64))
        .unwrap();
    assert_eq!(text(&files, "page.html"), "Physics & Astronomy");
}

#[test]
fn render_cost_per_package() {
    let set = TemplateSet::builtin();
    let mut org = org();
    // A heavy but valid org: hundreds of patterns.
    org.config.backup.exclude = (0..400)
        .map(|i| format!("(?i).*/project-{i}/scratch/.*"))
        .collect();
    let contexts: Vec<_> = Platform::ALL
        .iter()
        .map(|p| (p.os(), context_for(&org, *p)))
        .collect();
    let rounds = 50;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for (os, ctx) in &contexts {
            std::hint::black_box(set.render(*os, ctx).unwrap());
        }
    }
    let per_package = start.elapsed() / (rounds * contexts.len() as u32);
    println!("template render: {per_package:?} per package (400 exclude patterns)");
    assert!(
        per_package < std::time::Duration::from_millis(20),
        "{per_package:?}"
    );
}

/// A link to the signing key would put the secret key into every package.
#[cfg(unix)]
#[test]
fn symbolic_links_are_refused_with_their_path() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("depot.key");
    fs::write(
        &secret,
        "untrusted comment: minisign secret key\nRWRTY0Iy...",
    )
    .unwrap();

    let dir = write_tree(&[("common/README.txt.tera", "hello")]);
    symlink(&secret, dir.path().join("common/signing.key")).unwrap();
    let err = TemplateSet::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("common/signing.key"), "{err}");
    assert!(err.contains("symbolic link"), "{err}");

    // A linked folder, and a link whose target is inside the directory, are refused alike.
    let dir = write_tree(&[("common/README.txt.tera", "hello")]);
    fs::create_dir(outside.path().join("keys")).unwrap();
    fs::write(outside.path().join("keys/depot.key"), "secret").unwrap();
    symlink(outside.path().join("keys"), dir.path().join("linux")).unwrap();
    let err = TemplateSet::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("linux") && err.contains("symbolic link"),
        "{err}"
    );

    let dir = write_tree(&[("common/README.txt.tera", "hello")]);
    symlink(
        dir.path().join("common/README.txt.tera"),
        dir.path().join("common/copy.txt"),
    )
    .unwrap();
    let err = TemplateSet::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("common/copy.txt"), "{err}");

    // The templates directory itself may be reached through a link.
    let real = write_tree(&[("common/README.txt.tera", "hello")]);
    let link = outside.path().join("templates");
    symlink(real.path(), &link).unwrap();
    assert!(TemplateSet::load(&link).is_ok());
}

/// The launchd daemon install.command writes (CONTRACT 7a) loads with Python's plistlib, as
/// launchd's own parser would take it, and says what to run and how often.
#[test]
fn macos_launchd_daemon_is_a_valid_plist() {
    let set = TemplateSet::builtin();
    let files = set
        .render(Os::Macos, &context_for(&org(), Platform::MacosAarch64))
        .unwrap();
    let script = text(&files, "install.command");
    assert!(text(&files, "uninstall.command").contains("launchctl bootout system/edu.depot.agent"));
    assert!(script.contains("PLIST=/Library/LaunchDaemons/edu.depot.agent.plist"));
    let start = script.find("<<PLIST\n").unwrap() + "<<PLIST\n".len();
    let end = start + script[start..].find("\nPLIST\n").unwrap();
    // What the shell's here-document expands to on the Mac.
    let plist = script[start..end]
        .replace("$AGENT_BIN", "/Library/Application Support/depot/depot")
        .replace(
            "$DEPOT_STATE_DIR",
            "/Library/Application Support/depot/state",
        );
    assert!(!plist.contains('$'), "{plist}");
    let python = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match python {
        Ok(child) => child,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: python3 is needed to load the plist: {e}");
            return;
        }
        Err(e) => panic!("python3 is needed under CI: {e}"),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plist.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "plistlib refused:\n{plist}");
    let loaded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(loaded["Label"], "edu.depot.agent");
    assert_eq!(loaded["StartInterval"], 3600);
    assert_eq!(loaded["RunAtLoad"], true);
    assert_eq!(
        loaded["ProgramArguments"],
        serde_json::json!([
            "/Library/Application Support/depot/depot",
            "agent",
            "run",
            "--once",
            "--jitter",
            "1800",
            "--state-dir",
            "/Library/Application Support/depot/state"
        ])
    );
    if let Ok(out) = std::process::Command::new("plutil").arg("-help").output() {
        let _ = out;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("edu.depot.agent.plist");
        fs::write(&path, &plist).unwrap();
        let lint = std::process::Command::new("plutil")
            .arg("-lint")
            .arg(&path)
            .output()
            .unwrap();
        assert!(lint.status.success(), "plutil -lint: {lint:?}");
    }
}

/// The scheduled task install.ps1 registers (CONTRACT 7a), argument by argument: what
/// Register-ScheduledTask and its helper cmdlets take.
#[test]
fn windows_scheduled_task_arguments() {
    let set = TemplateSet::builtin();
    let files = set
        .render(Os::Windows, &context_for(&org(), Platform::WindowsX86_64))
        .unwrap();
    let ps = text(&files, "install.ps1");
    for line in [
        "$AgentExe       = Join-Path $AgentDir 'depot.exe'",
        "$TaskName       = 'depot agent'",
        "$action = New-ScheduledTaskAction -Execute $AgentExe -Argument ('agent run --once --state-dir \"{0}\"' -f $DepotStateDir)",
        "$trigger = New-ScheduledTaskTrigger -Once -At (Get-Date) -RepetitionInterval (New-TimeSpan -Hours 1) -RandomDelay (New-TimeSpan -Minutes 30)",
        "$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest",
        "$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Hours 2)",
        "$null = Register-ScheduledTask -TaskName $TaskName -TaskPath '\\' -Action $action -Trigger $trigger -Principal $principal -Settings $settings -Description 'Checks for and installs backup client updates (depot).' -Force",
    ] {
        assert!(ps.contains(line), "install.ps1 lacks:\n{line}");
    }
    let uninstall = text(&files, "uninstall.ps1");
    assert!(uninstall.contains(
        "Unregister-ScheduledTask -TaskName 'depot agent' -TaskPath '\\' -Confirm:$false"
    ));
    assert!(uninstall
        .contains("(Join-Path $env:ProgramFiles 'depot'), (Join-Path $env:ProgramData 'depot')"));
    // Nothing of the other OS families in a Windows package.
    assert!(files.iter().all(|f| !f.name.as_str().ends_with(".sh")));
}
