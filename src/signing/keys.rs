//! The depot signing keypair and its files, in minisign's formats so that the stock tool can
//! verify with the public key and sign with the secret key.
//!
//! Public key: base64 of `"Ed" || key id (8) || Ed25519 public key (32)`, under an
//! `untrusted comment: minisign public key <KEYID>` line. Secret key (unencrypted, as
//! `minisign -G -W` writes it): base64 of `"Ed" || kdf "\0\0" || "B2" || salt (32) ||
//! opslimit (8) || memlimit (8) || key id (8) || seed (32) || public key (32) || checksum (32)`,
//! where the checksum is BLAKE2b-256 of `"Ed" || key id || seed || public key`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ed25519_dalek::VerifyingKey;
use rand::rngs::OsRng;
use rand::RngCore;

use super::{Result, SigningError};

pub(super) const UNTRUSTED_COMMENT_PREFIX: &str = "untrusted comment: ";
/// minisign's algorithm tag in keys and in legacy signatures.
pub(super) const ALG_ED25519: [u8; 2] = *b"Ed";
const KDF_NONE: [u8; 2] = [0, 0];
const KDF_SCRYPT: [u8; 2] = *b"Sc";
const CHK_BLAKE2B: [u8; 2] = *b"B2";

const KEY_ID_LEN: usize = 8;
const PUBLIC_KEY_LEN: usize = 2 + KEY_ID_LEN + 32;
const SECRET_KEY_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + KEY_ID_LEN + 64 + 32;
/// A secret key file is about 260 bytes; anything far larger is not one, and is not read whole.
const SECRET_KEY_FILE_MAX: u64 = 4096;

/// The depot signing key: an Ed25519 secret key and minisign's random key id.
///
/// Its `Debug` shows the key id only; the secret never leaves this type except into the
/// 0600 file written by [`SigningKey::create_files`]. ed25519-dalek wipes it on drop.
pub struct SigningKey {
    pub(super) secret: ed25519_dalek::SigningKey,
    pub(super) key_id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &key_id_hex(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh keypair from the operating system's random generator.
    pub fn generate() -> Self {
        let mut key_id = [0; KEY_ID_LEN];
        OsRng.fill_bytes(&mut key_id);
        Self {
            secret: ed25519_dalek::SigningKey::generate(&mut OsRng),
            key_id,
        }
    }

    /// Generates a keypair and writes its secret key file (mode 0600, parent directories
    /// created 0700) and public key file. Never overwrites: if either file exists, nothing is
    /// written and the error names it. If writing the public key fails, the new secret key
    /// file is removed again, so a retry starts clean.
    pub fn create_files(secret_path: &Path, public_path: &Path) -> Result<Self> {
        for path in [secret_path, public_path] {
            if path.symlink_metadata().is_ok() {
                return Err(SigningError::KeyFileExists {
                    path: path.to_path_buf(),
                });
            }
        }
        let key = Self::generate();
        if let Some(dir) = non_empty_parent(secret_path) {
            create_private_dir(dir)?;
        }
        write_new_file(secret_path, key.secret_file_text().as_bytes(), true)?;
        let public = (|| {
            if let Some(dir) = non_empty_parent(public_path) {
                std::fs::create_dir_all(dir).map_err(io_error("creating directory", dir))?;
            }
            write_new_file(
                public_path,
                key.public_key().to_file_text().as_bytes(),
                false,
            )
        })();
        if let Err(e) = public {
            let _ = std::fs::remove_file(secret_path);
            return Err(e);
        }
        // The key is the one thing that cannot be regenerated: make its directory entry durable.
        if let Some(dir) = non_empty_parent(secret_path) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("syncing directory", dir))?;
        }
        Ok(key)
    }

    /// Loads an unencrypted minisign secret key file (one written by [`Self::create_files`]
    /// or by `minisign -G -W`). Refuses a file that group or others may read or write, an
    /// encrypted key, and a key whose checksum or public half does not match.
    pub fn load(secret_path: &Path) -> Result<Self> {
        let file =
            File::open(secret_path).map_err(io_error("opening secret key file", secret_path))?;
        let metadata = file
            .metadata()
            .map_err(io_error("reading the metadata of", secret_path))?;
        let malformed = |reason| SigningError::MalformedSecretKey {
            path: secret_path.to_path_buf(),
            reason,
        };
        if !metadata.is_file() {
            return Err(malformed("not a regular file"));
        }
        // Checked on the open file, so a swap of the path after the check changes nothing.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(SigningError::InsecureKeyFile {
                    path: secret_path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut text = String::new();
        file.take(SECRET_KEY_FILE_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => malformed("not a text file"),
                _ => io_error("reading secret key file", secret_path)(e),
            })?;
        if text.len() as u64 > SECRET_KEY_FILE_MAX {
            return Err(malformed("too large to be a secret key file"));
        }
        Self::from_secret_file_text(&text).map_err(|problem| match problem {
            SecretKeyProblem::Encrypted => SigningError::EncryptedKey {
                path: secret_path.to_path_buf(),
            },
            SecretKeyProblem::Malformed(reason) => malformed(reason),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.secret.verifying_key(),
            key_id: self.key_id,
        }
    }

    fn secret_file_text(&self) -> String {
        let mut bytes = [0u8; SECRET_KEY_LEN];
        let mut at = 0;
        let checksum = secret_key_checksum(&self.key_id, &self.secret.to_keypair_bytes());
        // Salt, opslimit and memlimit stay zero: they only mean something for encrypted keys.
        for field in [
            &ALG_ED25519[..],
            &KDF_NONE,
            &CHK_BLAKE2B,
            &[0; 32 + 8 + 8],
            &self.key_id,
            &self.secret.to_keypair_bytes(),
            &checksum,
        ] {
            bytes[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        format!(
            "{UNTRUSTED_COMMENT_PREFIX}minisign unencrypted secret key {}, depot signing key: keep it secret\n{}\n",
            key_id_hex(&self.key_id),
            BASE64.encode(bytes)
        )
    }

    fn from_secret_file_text(text: &str) -> std::result::Result<Self, SecretKeyProblem> {
        use SecretKeyProblem::Malformed;
        // Like the stock tool, the comment line is not interpreted.
        let mut lines = text.lines();
        let (Some(_comment), Some(line)) = (lines.next(), lines.next()) else {
            return Err(Malformed("expected a comment line and a base64 line"));
        };
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(Malformed("unexpected text after the key line"));
        }
        let bytes: [u8; SECRET_KEY_LEN] = BASE64
            .decode(line.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(Malformed(
                "the second line is not a base64 minisign secret key",
            ))?;
        let (alg, rest) = bytes.split_at(2);
        let (kdf, rest) = rest.split_at(2);
        let (chk_alg, rest) = rest.split_at(2);
        let (_kdf_params, rest) = rest.split_at(32 + 8 + 8);
        let (key_id, rest) = rest.split_at(KEY_ID_LEN);
        let (keypair, checksum) = rest.split_at(64);
        if alg != ALG_ED25519 {
            return Err(Malformed("unsupported signature algorithm"));
        }
        if chk_alg != CHK_BLAKE2B {
            return Err(Malformed("unsupported checksum algorithm"));
        }
        match <[u8; 2]>::try_from(kdf) {
            Ok(KDF_NONE) => {}
            Ok(KDF_SCRYPT) => return Err(SecretKeyProblem::Encrypted),
            _ => return Err(Malformed("unsupported key derivation function")),
        }
        let key_id: [u8; KEY_ID_LEN] = key_id.try_into().map_err(|_| Malformed("short key id"))?;
        let keypair: [u8; 64] = keypair.try_into().map_err(|_| Malformed("short key"))?;
        // `minisign -G -W` (0.11) leaves the checksum of an unencrypted key zero.
        if checksum != secret_key_checksum(&key_id, &keypair) && checksum != [0; 32] {
            return Err(Malformed("its checksum does not match (corrupted file)"));
        }
        let secret = ed25519_dalek::SigningKey::from_keypair_bytes(&keypair)
            .map_err(|_| Malformed("its public half does not match its secret half"))?;
        Ok(Self { secret, key_id })
    }
}

enum SecretKeyProblem {
    Encrypted,
    Malformed(&'static str),
}

/// minisign's checksum over a secret key: BLAKE2b with a 256-bit output (not a truncation).
fn secret_key_checksum(key_id: &[u8; KEY_ID_LEN], keypair: &[u8; 64]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(ALG_ED25519);
    h.update(key_id);
    h.update(keypair);
    h.finalize().into()
}

/// A minisign public key: what devices pin and what `minisign -P` takes.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub(super) key: VerifyingKey,
    pub(super) key_id: [u8; KEY_ID_LEN],
}

impl PublicKey {
    /// Accepts the base64 line alone (`RWQ...`, as `minisign -P` takes it) or the two-line
    /// public key file. Surrounding whitespace and CRLF line ends are tolerated.
    pub fn parse(s: &str) -> Result<Self> {
        use SigningError::MalformedPublicKey as Malformed;
        let s = s.trim();
        let line = match s.split_once('\n') {
            None => s,
            Some((comment, line)) => {
                if !comment.starts_with(UNTRUSTED_COMMENT_PREFIX.trim_end()) {
                    return Err(Malformed(
                        "a two-line key must start with an \"untrusted comment:\" line",
                    ));
                }
                if line.trim().contains('\n') {
                    return Err(Malformed("expected at most two lines"));
                }
                line.trim()
            }
        };
        let bytes: [u8; PUBLIC_KEY_LEN] = BASE64
            .decode(line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(Malformed(
                "expected 56 base64 characters encoding 42 bytes (a line starting with RW)",
            ))?;
        let (alg, rest) = bytes.split_at(2);
        let (key_id, key) = rest.split_at(KEY_ID_LEN);
        if alg != ALG_ED25519 {
            return Err(Malformed("unsupported signature algorithm"));
        }
        let key_id = key_id.try_into().map_err(|_| Malformed("short key id"))?;
        let key = key
            .try_into()
            .ok()
            .and_then(|k| VerifyingKey::from_bytes(k).ok())
            .ok_or(Malformed("not a valid Ed25519 public key"))?;
        Ok(Self { key, key_id })
    }

    /// The base64 line (`RWQ...`), as `minisign -P` takes it.
    pub fn to_line(&self) -> String {
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        bytes[..2].copy_from_slice(&ALG_ED25519);
        bytes[2..2 + KEY_ID_LEN].copy_from_slice(&self.key_id);
        bytes[2 + KEY_ID_LEN..].copy_from_slice(self.key.as_bytes());
        BASE64.encode(bytes)
    }

    /// The public key file, as `minisign -G` writes it and `minisign -p` reads it.
    pub fn to_file_text(&self) -> String {
        format!(
            "{UNTRUSTED_COMMENT_PREFIX}minisign public key {}\n{}\n",
            self.key_id(),
            self.to_line()
        )
    }

    /// The key id as minisign prints it: the 8 bytes read as a little-endian number, in
    /// 16 upper-case hex digits (minisign 0.12 pads to 16; 0.11 dropped leading zeros).
    pub fn key_id(&self) -> String {
        key_id_hex(&self.key_id)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.key_id(), self.to_line())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = SigningError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

pub(super) fn key_id_hex(key_id: &[u8; KEY_ID_LEN]) -> String {
    format!("{:016X}", u64::from_le_bytes(*key_id))
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SigningError + 'a {
    move |source| SigningError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn non_empty_parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(io_error("creating directory", dir))
}

/// Creates `path` (never replacing an existing file), writes `bytes` and syncs them; a file
/// left half-written by an error is removed.
fn write_new_file(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => SigningError::KeyFileExists {
            path: path.to_path_buf(),
        },
        _ => io_error("creating", path)(e),
    })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io_error("writing", path)(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn blake2b_256_is_the_real_variable_length_hash() {
        // RFC 7693 appendix / reference implementation: BLAKE2b-256("abc").
        let h: [u8; 32] = Blake2b::<U32>::digest(b"abc").into();
        assert_eq!(
            hex::encode(h),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }

    #[test]
    fn public_key_round_trips_through_line_and_file_text() {
        let public = SigningKey::generate().public_key();
        let line = public.to_line();
        assert_eq!(line.len(), 56);
        assert!(line.starts_with("RW"), "{line}");
        assert_eq!(PublicKey::parse(&line).unwrap(), public);
        assert_eq!(PublicKey::parse(&public.to_file_text()).unwrap(), public);
        assert_eq!(
            PublicKey::parse(&public.to_file_text().replace('\n', "\r\n")).unwrap(),
            public
        );
        assert_eq!(PublicKey::parse(&format!("  {line}\n")).unwrap(), public);
        assert!(public.to_file_text().starts_with(&format!(
            "untrusted comment: minisign public key {}\n",
            public.key_id()
        )));
    }

    #[test]
    fn key_id_is_printed_as_minisign_does() {
        // From a key made by `minisign -G -W` 0.11, which printed "54A578CB2CBF92DA".
        let public =
            PublicKey::parse("RWTakr8sy3ilVAgIg6HH6SsCouUVd4XjYNL7Fg44kNRhfGjAUIbZSqdK").unwrap();
        assert_eq!(public.key_id(), "54A578CB2CBF92DA");
        assert_eq!(
            public.to_line(),
            "RWTakr8sy3ilVAgIg6HH6SsCouUVd4XjYNL7Fg44kNRhfGjAUIbZSqdK"
        );
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        let line = SigningKey::generate().public_key().to_line();
        for bad in [
            String::new(),
            "RW".into(),
            line[..55].into(),
            format!("{line}A"),
            format!("comment\n{line}"),
            format!("untrusted comment: x\n{line}\n{line}"),
            // "Sc" instead of "Ed".
            BASE64.encode([&b"Sc"[..], &[0; 40]].concat()),
        ] {
            assert!(PublicKey::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = SigningKey::generate();
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.public_key().key_id()), "{debug}");
        let text = key.secret_file_text();
        let secret_b64 = text.lines().nth(1).unwrap();
        assert!(!debug.contains(&secret_b64[..20]));
        let seed = hex::encode(key.secret.to_bytes());
        assert!(!debug.to_lowercase().contains(&seed[..16]));
    }

    #[test]
    fn secret_file_text_round_trips() {
        let key = SigningKey::generate();
        let text = key.secret_file_text();
        let back = SigningKey::from_secret_file_text(&text).ok().unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(back.secret.to_bytes(), key.secret.to_bytes());
    }

    #[test]
    fn secret_key_checks() {
        let key = SigningKey::generate();
        let text = key.secret_file_text();
        let b64 = text.lines().nth(1).unwrap();
        let bytes = BASE64.decode(b64).unwrap();
        let reencode = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            f(&mut b);
            format!("untrusted comment: x\n{}\n", BASE64.encode(b))
        };
        let problem = |t: &str| SigningKey::from_secret_file_text(t).err().unwrap();

        // What `minisign -G -W` writes: the checksum left zero. Accepted.
        let zero_chk = reencode(&|b| b[SECRET_KEY_LEN - 32..].fill(0));
        assert!(SigningKey::from_secret_file_text(&zero_chk).is_ok());

        let encrypted = reencode(&|b| b[2..4].copy_from_slice(b"Sc"));
        assert!(matches!(problem(&encrypted), SecretKeyProblem::Encrypted));
        for corrupt in [
            reencode(&|b| b[SECRET_KEY_LEN - 1] ^= 1),  // checksum
            reencode(&|b| b[2 + 2 + 2 + 48 + 8] ^= 1),  // first byte of the seed
            reencode(&|b| b[SECRET_KEY_LEN - 33] ^= 1), // last byte of the public half
            reencode(&|b| b[0] = b'X'),                 // algorithm
            reencode(&|b| b[2] = 1),                    // kdf
            reencode(&|b| b.truncate(100)),
            "only one line".to_string(),
            format!("{text}more\n"),
        ] {
            assert!(
                matches!(problem(&corrupt), SecretKeyProblem::Malformed(_)),
                "{corrupt:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn create_files_then_load_and_refusals() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("keys/nested/depot.key");
        let public = tmp.path().join("keys/nested/depot.pub");
        let key = SigningKey::create_files(&secret, &public).unwrap();
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(mode(&tmp.path().join("keys")), 0o700);
        assert_eq!(mode(&tmp.path().join("keys/nested")), 0o700);
        let public_text = std::fs::read_to_string(&public).unwrap();
        assert_eq!(PublicKey::parse(&public_text).unwrap(), key.public_key());

        let loaded = SigningKey::load(&secret).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());

        // Never overwrites, whichever of the two exists.
        let before = std::fs::read(&secret).unwrap();
        let err = SigningKey::create_files(&secret, &tmp.path().join("other.pub")).unwrap_err();
        assert!(matches!(err, SigningError::KeyFileExists { .. }), "{err}");
        assert_eq!(std::fs::read(&secret).unwrap(), before);
        let other_secret = tmp.path().join("other.key");
        let err = SigningKey::create_files(&other_secret, &public).unwrap_err();
        assert!(matches!(err, SigningError::KeyFileExists { .. }), "{err}");
        assert!(!other_secret.exists());
        assert_eq!(std::fs::read_to_string(&public).unwrap(), public_text);

        // Group- or world-accessible: refused, with the fix in the message.
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load(&secret).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            SigningError::InsecureKeyFile { mode: 0o644, .. }
        ));
        assert!(
            msg.contains(&format!("chmod 600 {}", secret.display())),
            "{msg}"
        );
        assert!(msg.contains("0644"), "{msg}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(SigningKey::load(&secret).is_err());
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(SigningKey::load(&secret).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn load_names_the_path_and_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.key");
        let msg = SigningKey::load(&missing).unwrap_err().to_string();
        assert!(msg.contains("missing.key"), "{msg}");

        let encrypted = tmp.path().join("enc.key");
        let key = SigningKey::generate();
        let mut bytes = BASE64
            .decode(key.secret_file_text().lines().nth(1).unwrap())
            .unwrap();
        bytes[2..4].copy_from_slice(b"Sc");
        std::fs::write(
            &encrypted,
            format!("untrusted comment: x\n{}\n", BASE64.encode(bytes)),
        )
        .unwrap();
        std::fs::set_permissions(&encrypted, std::fs::Permissions::from_mode(0o600)).unwrap();
        let msg = SigningKey::load(&encrypted).unwrap_err().to_string();
        assert!(
            msg.contains("encrypted") && msg.contains("minisign -C -W -s"),
            "{msg}"
        );

        let big = tmp.path().join("big.key");
        std::fs::write(&big, vec![b'A'; 10_000]).unwrap();
        std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SigningKey::load(&big)
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_text_never_panics(text in "(?s).{0,200}") {
                let _ = PublicKey::parse(&text);
                let _ = SigningKey::from_secret_file_text(&text);
            }

            /// Random points: most are not on the curve. Whatever parses must print back
            /// the same line.
            #[test]
            fn key_shaped_noise_parses_or_is_refused(body in proptest::collection::vec(any::<u8>(), 40)) {
                let line = BASE64.encode([&b"Ed"[..], &body].concat());
                if let Ok(key) = PublicKey::parse(&line) {
                    prop_assert_eq!(key.to_line(), line);
                }
            }

            #[test]
            fn secret_key_shaped_noise_never_panics(body in proptest::collection::vec(any::<u8>(), SECRET_KEY_LEN - 6)) {
                let text = format!("c\n{}\n", BASE64.encode([&b"Ed\0\0B2"[..], &body].concat()));
                prop_assert!(SigningKey::from_secret_file_text(&text).is_err());
            }
        }
    }
}
