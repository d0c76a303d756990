//! The host's identity: one long-lived key pair kept in the configuration folder, a
//! self-signed certificate for it, and its fingerprint (SHA-256 of the certificate's
//! SubjectPublicKeyInfo, 64 lowercase hex), which people compare as colours and hex groups.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// The file in the configuration folder that holds the host's private key (PKCS#8 PEM).
pub const KEY_FILE: &str = "identity.key";

/// The folder ferry keeps its identity and known hosts in: `FERRY_CONFIG_DIR` when set (tests,
/// portable installs), else the system's configuration folder plus `ferry`.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("FERRY_CONFIG_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::config_dir().map(|d| d.join("ferry")),
    }
}

/// SHA-256 of a SubjectPublicKeyInfo: what identifies a host.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(spki_der).into())
    }

    /// The fingerprint of a DER certificate's public key, or `None` if it is not a certificate.
    pub fn of_certificate(cert_der: &[u8]) -> Option<Fingerprint> {
        spki_of_certificate(cert_der).map(Fingerprint::of_spki)
    }

    /// 64 lowercase hex digits, as the protocol and the known-hosts file write it.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits (either case).
    pub fn parse_hex(s: &str) -> Option<Fingerprint> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Fingerprint(out))
    }

    /// The hex in groups of four, for people to read out: `1a2b 3c4d …` (16 groups).
    pub fn groups(&self) -> String {
        let hex = self.hex();
        hex.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("hex is ASCII")).collect::<Vec<_>>().join(" ")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.hex())
    }
}

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no configuration folder is known on this system (set FERRY_CONFIG_DIR)")]
    NoConfigDir,
    #[error("cannot {action} {}: {source}", .path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{} does not hold a usable private key ({reason}); move it away to make a new identity", .path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("cannot make the certificate: {0}")]
    Certificate(String),
}

/// A host's key pair and the self-signed certificate it presents.
pub struct Identity {
    key_der: PrivatePkcs8KeyDer<'static>,
    cert_der: CertificateDer<'static>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl Identity {
    /// A new identity that lives only in memory (tests, or a host with nowhere to keep one).
    pub fn generate() -> Result<Identity, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        Self::from_key(key)
    }

    /// The identity for a PKCS#8 PEM private key.
    pub fn from_key_pem(pem: &str) -> Result<Identity, String> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
        Self::from_key(key).map_err(|e| e.to_string())
    }

    fn from_key(key: rcgen::KeyPair) -> Result<Identity, IdentityError> {
        use rcgen::PublicKeyData;
        let params = rcgen::CertificateParams::new(vec!["ferry".to_string()])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let cert = params.self_signed(&key).map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let fingerprint = Fingerprint::of_spki(&key.subject_public_key_info());
        Ok(Identity {
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert_der: cert.der().clone(),
            fingerprint,
        })
    }

    /// The identity kept in `dir` (`identity.key`), made on first use. The key file is private
    /// to this user (mode 0600 on Unix; the folder 0700 when ferry creates it). An existing
    /// file that is not a key is reported, never replaced.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(pem) => {
                return Self::from_key_pem(&pem).map_err(|reason| IdentityError::BadKey { path, reason });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(IdentityError::Io { action: "read", path, source }),
        }
        create_private_dir(dir).map_err(|source| IdentityError::Io { action: "create", path: dir.into(), source })?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let pem = key.serialize_pem();
        // Written under a temporary name and linked into place: a half-written key never sits
        // under the final name, and a key another ferry made meanwhile is kept, not replaced.
        let tmp = dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
        let written = write_private(&tmp, pem.as_bytes());
        let placed = written.and_then(|()| fs::hard_link(&tmp, &path));
        let _ = fs::remove_file(&tmp);
        match placed {
            Ok(()) => Self::from_key(key),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load_or_create(dir),
            Err(source) => Err(IdentityError::Io { action: "write", path, source }),
        }
    }

    /// The persistent identity in [`config_dir`].
    pub fn load_default() -> Result<Identity, IdentityError> {
        Self::load_or_create(&config_dir().ok_or(IdentityError::NoConfigDir)?)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The SubjectPublicKeyInfo (DER, tag and length included) inside a DER certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }`.
pub fn spki_of_certificate(cert: &[u8]) -> Option<&[u8]> {
    let (cert_body, _) = der_element(cert, 0x30)?;
    let (tbs, _) = der_element(der_content(cert_body)?, 0x30)?;
    let mut rest = der_content(tbs)?;
    if rest.first() == Some(&0xa0) {
        rest = der_any(rest)?.1; // version
    }
    for _ in 0..5 {
        rest = der_any(rest)?.1; // serialNumber, signature, issuer, validity, subject
    }
    let (spki, _) = der_element(rest, 0x30)?;
    Some(spki)
}

/// The first element of `input` (whole: tag, length, content) and what follows it.
fn der_any(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first_len = *input.get(1)?;
    let (len, header) = if first_len < 0x80 {
        (first_len as usize, 2)
    } else {
        let n = (first_len & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some(input.split_at(end))
}

fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    der_any(input)
}

/// The content of one whole element (after its tag and length).
fn der_content(element: &[u8]) -> Option<&[u8]> {
    let header = if element.get(1)? & 0x80 == 0 { 2 } else { 2 + (element[1] & 0x7f) as usize };
    element.get(header..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_of_the_certificates_public_key_info() {
        use rcgen::PublicKeyData;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let id = Identity::from_key_pem(&key.serialize_pem()).unwrap();
        let spki = key.subject_public_key_info();
        assert_eq!(spki_of_certificate(id.certificate()).unwrap(), &spki[..]);
        assert_eq!(id.fingerprint(), Fingerprint(Sha256::digest(&spki).into()));
        assert_eq!(Fingerprint::of_certificate(id.certificate()), Some(id.fingerprint()));
    }

    #[test]
    fn fingerprint_hex_round_trips_and_groups_by_four() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(fp.hex(), "ab".repeat(32));
        assert_eq!(Fingerprint::parse_hex(&fp.hex().to_uppercase()), Some(fp));
        assert_eq!(fp.groups().split(' ').count(), 16);
        assert!(fp.groups().starts_with("abab abab "));
        assert_eq!(Fingerprint::parse_hex("abc"), None);
        assert_eq!(Fingerprint::parse_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(spki_of_certificate(b""), None);
        assert_eq!(spki_of_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(spki_of_certificate(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }

    #[test]
    fn identity_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        let first = Identity::load_or_create(&cfg).unwrap();
        let again = Identity::load_or_create(&cfg).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint(), "the same key is loaded back");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(cfg.join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(&cfg).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let names: Vec<_> = fs::read_dir(&cfg).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [KEY_FILE], "no temporary file left behind");
    }

    #[test]
    fn a_file_that_is_not_a_key_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::BadKey { .. }), "{err}");
        assert_eq!(fs::read_to_string(dir.path().join(KEY_FILE)).unwrap(), "not a key");
    }
}
