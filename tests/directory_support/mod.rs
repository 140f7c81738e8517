//! A real OpenLDAP `slapd` on a random loopback port, with a test tree, started once per test
//! binary. Under `CI=true` a missing slapd fails; elsewhere the tests skip.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

pub const SUFFIX: &str = "dc=example,dc=edu";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=edu";
pub const ROOT_PW: &str = "root-secret";
pub const SERVICE_DN: &str = "cn=depot,ou=services,dc=example,dc=edu";
pub const SERVICE_PW: &str = "depot-secret";

pub struct Slapd {
    pub url: String,
    _dir: tempfile::TempDir,
    _child: std::sync::Mutex<Child>,
}

const SLAPD: &str = "/usr/sbin/slapd";

fn person(uid: &str, name: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name}\n\
         displayName: {name}\nmail: {uid}@example.edu\n\n"
    )
}

fn tree() -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: depot\nsn: depot\n\
         userPassword: {SERVICE_PW}\n\n"
    );
    for (uid, name) in [
        ("alice", "Alice Archer"),
        ("bob", "Bob Baker"),
        ("carol", "Carol Cole"),
        ("dave", "Dave Dunn"),
        ("erin", "Erin Eng"),
        ("frank", "Frank Fox"),
        ("grace", "Grace Gil"),
    ] {
        ldif.push_str(&person(uid, name));
    }
    let member = |uid: &str| format!("member: uid={uid},ou=people,{SUFFIX}\n");
    ldif.push_str(&format!(
        "dn: cn=physics-users,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: physics-users\n{}{}\n",
        member("alice"),
        member("bob")
    ));
    ldif.push_str(&format!(
        "dn: cn=chem-users,ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: chem-users\ngidNumber: 5001\n\
         memberUid: carol\nmemberUid: dave\n\n"
    ));
    ldif.push_str(&format!(
        "dn: cn=lib-users,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: lib-users\n{}{}{}\n",
        member("erin"),
        member("frank"),
        member("grace")
    ));
    ldif
}

fn config(dir: &Path) -> String {
    format!(
        "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/nis.schema\ninclude /etc/ldap/schema/inetorgperson.schema\n\
         pidfile {d}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
         database mdb\nmaxsize 104857600\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\n\
         directory {d}/db\nindex objectClass,uid,cn eq\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by users read by * none\n",
        d = dir.display()
    )
}

fn start() -> Option<Slapd> {
    if !Path::new(SLAPD).exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("slapd is not installed ({SLAPD}): apt-get install slapd ldap-utils");
        }
        eprintln!("skipping: slapd is not installed ({SLAPD})");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    let conf = dir.path().join("slapd.conf");
    std::fs::write(&conf, config(dir.path())).unwrap();
    let ldif = dir.path().join("tree.ldif");
    std::fs::write(&ldif, tree()).unwrap();
    let out = Command::new("/usr/sbin/slapadd")
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(&ldif)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slapadd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ldap://127.0.0.1:{port}");
    // -d keeps slapd in the foreground. The static holding it is never dropped, so a shell
    // between them kills slapd when this process's end closes the shell's stdin.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("\"$@\" & pid=$!; read _ || true; kill $pid")
        .arg("sh")
        .arg(SLAPD)
        .arg("-f")
        .arg(&conf)
        .arg("-h")
        .arg(format!("{url}/"))
        .arg("-d")
        .arg("0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Slapd {
                url,
                _dir: dir,
                _child: std::sync::Mutex::new(child),
            });
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("slapd exited at start: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("slapd did not listen on {url}");
}

/// The shared slapd, or `None` (skip) where it is not installed outside CI.
pub fn slapd() -> Option<&'static Slapd> {
    static SLAPD: OnceLock<Option<Slapd>> = OnceLock::new();
    SLAPD.get_or_init(start).as_ref()
}

impl Slapd {
    /// Applies an LDIF change as the directory's root, with the stock `ldapmodify`.
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url, "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify (ldap-utils) is needed beside slapd");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Ok(mut c) = self._child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("ldap-password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}
