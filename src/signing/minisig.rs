//! The `.minisig` format: signing a prehash, and verifying signatures made by depot or by the
//! stock tool.
//!
//! ```text
//! untrusted comment: <free text, not signed>
//! base64("ED" || key id (8) || Ed25519(BLAKE2b-512(file)) (64))     ("Ed": Ed25519(file), legacy)
//! trusted comment: <text>
//! base64(Ed25519(signature (64) || trusted comment))
//! ```

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signature, Signer};

use super::keys::{key_id_hex, ALG_ED25519, UNTRUSTED_COMMENT_PREFIX};
use super::{PublicKey, Result, SigningError, SigningKey};

const TRUSTED_COMMENT_PREFIX: &str = "trusted comment: ";
const ALG_PREHASHED: [u8; 2] = *b"ED";
const UNTRUSTED_COMMENT: &str = "signature from depot secret key";
/// minisign 0.6 formats the trusted comment line in a 4096-byte buffer; stay well inside it.
const TRUSTED_COMMENT_MAX: usize = 4000;
const SIG_LEN: usize = 2 + 8 + 64;

impl SigningKey {
    /// The whole `.minisig` text for a file whose BLAKE2b-512 is `prehash` (minisign's
    /// prehashed `ED` algorithm, which `minisign -V` checks by hashing the file itself).
    ///
    /// The trusted comment must be one line: CR, LF and NUL become spaces, surrounding
    /// whitespace is dropped (minisign implementations differ on keeping it) and it is cut to
    /// 4000 bytes, so that every minisign reads back exactly what was signed.
    pub fn sign_prehashed(&self, prehash: &[u8; 64], trusted_comment: &str) -> String {
        let trusted_comment = one_line(trusted_comment);
        let signature = self.secret.sign(prehash).to_bytes();
        let global = self
            .secret
            .sign(&[&signature[..], trusted_comment.as_bytes()].concat())
            .to_bytes();
        let mut sig = [0u8; SIG_LEN];
        sig[..2].copy_from_slice(&ALG_PREHASHED);
        sig[2..10].copy_from_slice(&self.key_id);
        sig[10..].copy_from_slice(&signature);
        format!(
            "{UNTRUSTED_COMMENT_PREFIX}{UNTRUSTED_COMMENT}\n{}\n{TRUSTED_COMMENT_PREFIX}{trusted_comment}\n{}\n",
            BASE64.encode(sig),
            BASE64.encode(global)
        )
    }

    /// [`Self::sign_prehashed`] for data already in memory (SHA256SUMS, manifests).
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        self.sign_prehashed(&Blake2b512::digest(data).into(), trusted_comment)
    }
}

impl PublicKey {
    /// Verifies a `.minisig` text against `data`: the signature (prehashed `ED`, or legacy
    /// `Ed`), the key id, and the signature over the trusted comment. Returns the trusted
    /// comment, which only now can be believed.
    pub fn verify(&self, data: &[u8], minisig: &str) -> Result<String> {
        let sig = Minisig::parse(minisig)?;
        let message = match sig.algorithm {
            Algorithm::Prehashed => Cow::Owned(Blake2b512::digest(data).to_vec()),
            Algorithm::Legacy => Cow::Borrowed(data),
        };
        self.check(sig, &message)
    }

    /// [`Self::verify`] for data known by its BLAKE2b-512 (from a
    /// [`StreamDigest`](super::StreamDigest)). A legacy signature cannot be checked this way.
    pub fn verify_prehashed(&self, prehash: &[u8; 64], minisig: &str) -> Result<String> {
        let sig = Minisig::parse(minisig)?;
        if sig.algorithm == Algorithm::Legacy {
            self.check_key_id(&sig)?;
            return Err(SigningError::LegacyNeedsData);
        }
        self.check(sig, prehash)
    }

    fn check_key_id(&self, sig: &Minisig) -> Result<()> {
        if sig.key_id != self.key_id {
            return Err(SigningError::KeyIdMismatch {
                signature: key_id_hex(&sig.key_id),
                key: self.key_id(),
            });
        }
        Ok(())
    }

    fn check(&self, sig: Minisig, message: &[u8]) -> Result<String> {
        self.check_key_id(&sig)?;
        // Strict: no malleable or small-order signatures, as libsodium refuses them too.
        self.key
            .verify_strict(message, &sig.signature)
            .map_err(|_| SigningError::BadSignature)?;
        let signed = [
            &sig.signature.to_bytes()[..],
            sig.trusted_comment.as_bytes(),
        ]
        .concat();
        self.key
            .verify_strict(&signed, &sig.global_signature)
            .map_err(|_| SigningError::BadTrustedComment)?;
        Ok(sig.trusted_comment)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    /// `Ed`: Ed25519 over the file itself.
    Legacy,
    /// `ED`: Ed25519 over BLAKE2b-512 of the file.
    Prehashed,
}

/// A parsed, not yet verified, `.minisig` text.
struct Minisig {
    algorithm: Algorithm,
    key_id: [u8; 8],
    signature: Signature,
    trusted_comment: String,
    global_signature: Signature,
}

impl Minisig {
    /// Reads the four lines as the stock tool does (LF or CRLF line ends; the untrusted
    /// comment is not interpreted) and refuses anything after them.
    fn parse(text: &str) -> Result<Self> {
        use SigningError::MalformedSignature as Malformed;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let mut next = |what| lines.next().ok_or(Malformed(what));
        let untrusted = next("the untrusted comment line is missing")?;
        let sig_line = next("the signature line is missing")?;
        let trusted = next("the trusted comment line is missing")?;
        let global_line = next("the trusted comment signature line is missing")?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(Malformed(
                "unexpected text after the four lines of a signature",
            ));
        }
        if !untrusted.starts_with(UNTRUSTED_COMMENT_PREFIX) {
            return Err(Malformed(
                "the first line must start with \"untrusted comment: \"",
            ));
        }
        let trusted_comment = trusted
            .strip_prefix(TRUSTED_COMMENT_PREFIX)
            .ok_or(Malformed(
                "the third line must start with \"trusted comment: \"",
            ))?;
        let sig: [u8; SIG_LEN] = decode(sig_line).ok_or(Malformed(
            "the second line is not a base64 signature of 74 bytes",
        ))?;
        let global: [u8; 64] = decode(global_line).ok_or(Malformed(
            "the fourth line is not a base64 signature of 64 bytes",
        ))?;
        let (alg, rest) = sig.split_at(2);
        let (key_id, signature) = rest.split_at(8);
        let algorithm = match [alg[0], alg[1]] {
            ALG_PREHASHED => Algorithm::Prehashed,
            ALG_ED25519 => Algorithm::Legacy,
            _ => return Err(Malformed("unsupported signature algorithm")),
        };
        Ok(Self {
            algorithm,
            key_id: key_id.try_into().map_err(|_| Malformed("short key id"))?,
            signature: Signature::from_slice(signature)
                .map_err(|_| Malformed("short signature"))?,
            trusted_comment: trusted_comment.to_string(),
            global_signature: Signature::from_bytes(&global),
        })
    }
}

fn decode<const N: usize>(line: &str) -> Option<[u8; N]> {
    // Checked before decoding so that a huge line costs nothing.
    if line.len() != N.div_ceil(3) * 4 {
        return None;
    }
    BASE64.decode(line).ok()?.try_into().ok()
}

/// The trusted comment as it will be signed and read back: see [`SigningKey::sign_prehashed`].
fn one_line(comment: &str) -> Cow<'_, str> {
    let mut comment = Cow::Borrowed(comment.trim());
    if comment.contains(['\r', '\n', '\0']) {
        comment = Cow::Owned(comment.replace(['\r', '\n', '\0'], " ").trim().to_string());
    }
    if comment.len() > TRUSTED_COMMENT_MAX {
        let mut cut = TRUSTED_COMMENT_MAX;
        while !comment.is_char_boundary(cut) {
            cut -= 1;
        }
        comment = Cow::Owned(comment[..cut].trim_end().to_string());
    }
    comment
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> &'static SigningKey {
        static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
        KEY.get_or_init(SigningKey::generate)
    }

    #[test]
    fn format_is_minisigs() {
        let text = key().sign(b"hello", "timestamp:1\tfile:x.zip\tprehashed");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            "untrusted comment: signature from depot secret key"
        );
        assert_eq!(lines[1].len(), 100);
        let sig = BASE64.decode(lines[1]).unwrap();
        assert_eq!(&sig[..2], b"ED");
        assert_eq!(sig[2..10], key().key_id);
        assert_eq!(
            lines[2],
            "trusted comment: timestamp:1\tfile:x.zip\tprehashed"
        );
        assert_eq!(lines[3].len(), 88);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn round_trip_plain_and_prehashed() {
        let public = key().public_key();
        let data = b"SHA256SUMS body";
        let text = key().sign(data, "hello");
        assert_eq!(public.verify(data, &text).unwrap(), "hello");
        let prehash: [u8; 64] = Blake2b512::digest(data).into();
        assert_eq!(public.verify_prehashed(&prehash, &text).unwrap(), "hello");
        assert_eq!(
            public.verify(data, &text.replace('\n', "\r\n")).unwrap(),
            "hello"
        );
    }

    #[test]
    fn every_tampering_fails() {
        let public = key().public_key();
        let data = b"package bytes";
        let text = key().sign(data, "file:a.zip");
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let with_line = |i: usize, line: String| {
            let mut l = lines.clone();
            l[i] = line;
            l.join("\n") + "\n"
        };
        let flip = |line: &str, byte: usize| {
            let mut b = BASE64.decode(line).unwrap();
            b[byte] ^= 0x01;
            BASE64.encode(b)
        };

        assert!(matches!(
            public.verify(b"package bytez", &text),
            Err(SigningError::BadSignature)
        ));
        let err = public
            .verify(data, &with_line(1, flip(&lines[1], 20)))
            .unwrap_err();
        assert!(matches!(err, SigningError::BadSignature), "{err}");
        let err = public
            .verify(data, &with_line(1, flip(&lines[1], 3)))
            .unwrap_err();
        assert!(matches!(err, SigningError::KeyIdMismatch { .. }), "{err}");
        let err = public
            .verify(data, &with_line(2, "trusted comment: file:b.zip".into()))
            .unwrap_err();
        assert!(matches!(err, SigningError::BadTrustedComment), "{err}");
        let err = public
            .verify(data, &with_line(3, flip(&lines[3], 7)))
            .unwrap_err();
        assert!(matches!(err, SigningError::BadTrustedComment), "{err}");
        // The untrusted comment is, as its name says, not covered.
        assert!(public
            .verify(data, &with_line(0, "untrusted comment: hi".into()))
            .is_ok());

        let other = SigningKey::generate().public_key();
        assert!(matches!(
            other.verify(data, &text),
            Err(SigningError::KeyIdMismatch { .. })
        ));
        // Same key id, other key: the signature itself must fail.
        let impostor = PublicKey {
            key: other.key,
            key_id: public.key_id,
        };
        assert!(matches!(
            impostor.verify(data, &text),
            Err(SigningError::BadSignature)
        ));
    }

    #[test]
    fn legacy_signatures_verify_against_data_only() {
        let public = key().public_key();
        let data = b"legacy data";
        let signature = key().secret.sign(data).to_bytes();
        let global = key()
            .secret
            .sign(&[&signature[..], b"old"].concat())
            .to_bytes();
        let sig = [&b"Ed"[..], &key().key_id, &signature].concat();
        let text = format!(
            "untrusted comment: x\n{}\ntrusted comment: old\n{}\n",
            BASE64.encode(sig),
            BASE64.encode(global)
        );
        assert_eq!(public.verify(data, &text).unwrap(), "old");
        let prehash: [u8; 64] = Blake2b512::digest(data).into();
        assert!(matches!(
            public.verify_prehashed(&prehash, &text),
            Err(SigningError::LegacyNeedsData)
        ));
    }

    #[test]
    fn trusted_comment_is_made_one_line() {
        let public = key().public_key();
        let text = key().sign(b"d", "  a\r\nb\0c  ");
        assert_eq!(text.lines().count(), 4);
        assert_eq!(public.verify(b"d", &text).unwrap(), "a  b c");
        let long = "é".repeat(3000);
        let text = key().sign(b"d", &long);
        let got = public.verify(b"d", &text).unwrap();
        assert!(got.len() <= TRUSTED_COMMENT_MAX && long.starts_with(&got) && !got.is_empty());
        assert_eq!(public.verify(b"d", &key().sign(b"d", "")).unwrap(), "");
    }

    #[test]
    fn malformed_texts_are_refused() {
        let public = key().public_key();
        let text = key().sign(b"d", "c");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut sig = BASE64.decode(&lines[1]).unwrap();
        sig[1] = b'X';
        lines[1] = BASE64.encode(sig);
        let unknown_algorithm = lines.join("\n");
        for bad in [
            String::new(),
            "untrusted comment: x\n".to_string(),
            text.replacen("untrusted comment: ", "comment: ", 1),
            text.replacen("trusted comment: c", "trusted: c", 1),
            format!("{text}extra\n"),
            unknown_algorithm,
            text.replacen("\n", "\n\n", 1),
        ] {
            assert!(public.verify(b"d", &bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn arbitrary_text_never_panics(text in ".*", data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let public = key().public_key();
            let _ = public.verify(&data, &text);
            let _ = public.verify_prehashed(&[0; 64], &text);
            let _ = PublicKey::parse(&text);
        }

        #[test]
        fn signature_shaped_noise_never_panics(
            sig in proptest::collection::vec(any::<u8>(), SIG_LEN),
            global in proptest::collection::vec(any::<u8>(), 64),
            comment in "[^\r\n]*",
        ) {
            let text = format!(
                "untrusted comment: x\n{}\ntrusted comment: {comment}\n{}\n",
                BASE64.encode(sig), BASE64.encode(global)
            );
            prop_assert!(key().public_key().verify(b"data", &text).is_err());
        }

        #[test]
        fn sign_verify_round_trips_and_any_flip_fails(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            comment in "[ -~]{0,80}",
            flip_data in any::<prop::sample::Index>(),
            flip_sig in 10usize..SIG_LEN,
            flip_global in 0usize..64,
            flip_key_id in 2usize..10,
        ) {
            let public = key().public_key();
            let text = key().sign(&data, &comment);
            prop_assert_eq!(public.verify(&data, &text).unwrap(), comment.trim());

            if !data.is_empty() {
                let mut changed = data.clone();
                changed[flip_data.index(data.len())] ^= 0x80;
                prop_assert!(public.verify(&changed, &text).is_err());
            }
            let lines: Vec<&str> = text.lines().collect();
            let flip = |line: &str, at: usize| {
                let mut b = BASE64.decode(line).unwrap();
                b[at] ^= 0x01;
                BASE64.encode(b)
            };
            let reassemble = |i: usize, line: &str| {
                let mut l = lines.clone();
                l[i] = line;
                l.join("\n")
            };
            prop_assert!(public.verify(&data, &reassemble(1, &flip(lines[1], flip_sig))).is_err());
            prop_assert!(public.verify(&data, &reassemble(1, &flip(lines[1], flip_key_id))).is_err());
            prop_assert!(public.verify(&data, &reassemble(3, &flip(lines[3], flip_global))).is_err());
            let other_comment = format!("{}x", lines[2]);
            prop_assert!(public.verify(&data, &reassemble(2, &other_comment)).is_err());
        }
    }
}
