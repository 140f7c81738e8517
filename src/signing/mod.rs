//! Checksums and minisign signatures of published artifacts (CONTRACT section 4).
//!
//! Everything written here must pass the stock tools: `sha256sum -c SHA256SUMS` and
//! `minisign -Vm FILE -P KEY`. Packages of one release and platform share a payload part of
//! hundreds of MB, so signing works on a *prehash*: [`StreamDigest`] hashes that shared prefix
//! once (SHA-256 for the checksum, BLAKE2b-512 for minisign's prehashed `ED` algorithm), each
//! package clones the state and feeds only its own tail, and [`SigningKey::sign_prehashed`]
//! signs the resulting 64 bytes.
//!
//! This module never logs, prints or serialises secret key material (the `Debug` of
//! [`SigningKey`] shows the key id only), never overwrites a key file, never loads a secret key
//! that group or others can read, and never panics on untrusted input: public keys, `.minisig`
//! texts and `SHA256SUMS` texts arriving from the network or a file share.

mod checksums;
mod digest;
mod keys;
mod minisig;

pub use checksums::{parse_sha256sums, sha256sums};
pub use digest::{digest_reader, StreamDigest};
pub use keys::{PublicKey, SigningKey};

use std::path::PathBuf;

/// Why a key could not be created or loaded, a signature did not verify, or a checksum file
/// was refused. Every message is one line and says what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{action} {path}: {source}", path = .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the data to hash failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("{path} already exists; depot never overwrites a key file (move it away first if you really want a new key)", path = .path.display())]
    KeyFileExists { path: PathBuf },
    #[error("secret key file {path} is readable or writable by group or others (mode {mode:04o}); run `chmod 600 {path}`", path = .path.display())]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    #[error("secret key file {path} is encrypted with a password; depot needs an unencrypted key: run `minisign -C -W -s {path}` to remove the password", path = .path.display())]
    EncryptedKey { path: PathBuf },
    #[error("{path} is not a usable minisign secret key: {reason}", path = .path.display())]
    MalformedSecretKey { path: PathBuf, reason: &'static str },
    #[error("not a minisign public key: {0}")]
    MalformedPublicKey(&'static str),
    #[error("not a minisign signature: {0}")]
    MalformedSignature(&'static str),
    #[error("the signature was made by key {signature} but the public key is {key}")]
    KeyIdMismatch { signature: String, key: String },
    #[error("a legacy (non-prehashed) signature can only be checked against the whole data, not a prehash")]
    LegacyNeedsData,
    #[error("signature verification failed: the data or the signature was altered, or another key signed it")]
    BadSignature,
    #[error("trusted comment signature verification failed: the trusted comment was altered")]
    BadTrustedComment,
    #[error("SHA256SUMS line {line}: {reason}")]
    MalformedChecksums { line: usize, reason: String },
}

pub type Result<T> = std::result::Result<T, SigningError>;
