//! The PIN as a PAKE: SPAKE2 over Ed25519 (RustCrypto's `spake2`, the M and N constants of
//! python-spake2), password = the PIN's UTF-8 bytes, identity A = `ferry-client`, identity B =
//! `ferry-host`, each side's confirmation bound to the TLS session by the exporter value E:
//!
//! ```text
//! client                                             host
//!   hello {pake: A}                         ──────▶
//!                                           ◀──────  {pake: B, confirm: HMAC(K, "host" || E)}
//!   (checks the host's confirm)
//!   confirm {mac: HMAC(K, "client" || E)}   ──────▶  (checks it)
//!                                           ◀──────  {ok, name}
//! ```
//!
//! The PIN never leaves either machine; someone in between who does not know it gets one
//! guess per connection, and a relay that forwards the TLS-less messages into another TLS
//! session fails because E differs.
//!
//! ```
//! use ferry::transport::pake;
//! let e = [7u8; 32];
//! let (client, a) = pake::client_start("4711");
//! let (b, host_confirm, host) = pake::host_respond("4711", &a, &e).unwrap();
//! let client_mac = client.finish(&b, &host_confirm, &e).unwrap();
//! assert!(host.check(&client_mac));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// SPAKE2 identity A.
pub const CLIENT_ID: &[u8] = b"ferry-client";
/// SPAKE2 identity B.
pub const HOST_ID: &[u8] = b"ferry-host";

type HmacSha256 = Hmac<Sha256>;

/// Why the exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PakeError {
    #[error("the other side sent a malformed PIN exchange message")]
    Malformed,
    /// Wrong PIN, or someone between the two machines.
    #[error("the PIN does not match (a wrong PIN, or someone between you and the host)")]
    Mismatch,
}

fn confirm(key: &[u8], who: &[u8], exporter: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(who);
    mac.update(exporter);
    mac
}

/// The client's half, between its first message and the host's answer.
pub struct ClientPake(Spake2<Ed25519Group>);

/// Starts the client's side: the state and message A.
pub fn client_start(pin: &str) -> (ClientPake, Vec<u8>) {
    let (state, msg) = Spake2::<Ed25519Group>::start_a(
        &Password::new(pin.as_bytes()),
        &Identity::new(CLIENT_ID),
        &Identity::new(HOST_ID),
    );
    (ClientPake(state), msg)
}

impl ClientPake {
    /// Takes the host's message B and confirmation; returns the client's confirmation
    /// (`HMAC-SHA256(K, "client" || E)`) if the host's was right.
    pub fn finish(self, msg_b: &[u8], host_confirm: &[u8], exporter: &[u8]) -> Result<[u8; 32], PakeError> {
        let key = self.0.finish(msg_b).map_err(|_| PakeError::Malformed)?;
        confirm(&key, b"host", exporter).verify_slice(host_confirm).map_err(|_| PakeError::Mismatch)?;
        Ok(confirm(&key, b"client", exporter).finalize().into_bytes().into())
    }
}

/// The host's half after it answered: what it expects the client to confirm.
pub struct HostPake {
    key: Vec<u8>,
    exporter: Vec<u8>,
}

impl HostPake {
    /// True if the client's confirmation proves it knows the PIN (compared in constant time).
    pub fn check(&self, client_mac: &[u8]) -> bool {
        confirm(&self.key, b"client", &self.exporter).verify_slice(client_mac).is_ok()
    }
}

/// The host's side: from message A, its message B, its confirmation
/// (`HMAC-SHA256(K, "host" || E)`) and the state to check the client's answer with.
pub fn host_respond(pin: &str, msg_a: &[u8], exporter: &[u8]) -> Result<(Vec<u8>, [u8; 32], HostPake), PakeError> {
    let (state, msg_b) = Spake2::<Ed25519Group>::start_b(
        &Password::new(pin.as_bytes()),
        &Identity::new(CLIENT_ID),
        &Identity::new(HOST_ID),
    );
    let key = state.finish(msg_a).map_err(|_| PakeError::Malformed)?;
    let host_confirm = confirm(&key, b"host", exporter).finalize().into_bytes().into();
    Ok((msg_b, host_confirm, HostPake { key, exporter: exporter.to_vec() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_pin_and_session_agree() {
        let e = [1u8; 32];
        let (client, a) = client_start("271828");
        let (b, hc, host) = host_respond("271828", &a, &e).unwrap();
        let mac = client.finish(&b, &hc, &e).unwrap();
        assert!(host.check(&mac));
        assert!(!host.check(&[0u8; 32]));
    }

    #[test]
    fn a_wrong_pin_fails_at_the_hosts_confirmation() {
        let e = [1u8; 32];
        let (client, a) = client_start("271828");
        let (b, hc, _) = host_respond("271829", &a, &e).unwrap();
        assert_eq!(client.finish(&b, &hc, &e).unwrap_err(), PakeError::Mismatch);
    }

    #[test]
    fn another_tls_session_fails_even_with_the_right_pin() {
        let (client, a) = client_start("1234");
        let (b, hc, _) = host_respond("1234", &a, &[1u8; 32]).unwrap();
        assert_eq!(client.finish(&b, &hc, &[2u8; 32]).unwrap_err(), PakeError::Mismatch);
    }

    #[test]
    fn messages_are_side_tagged_and_a_tampered_one_fails() {
        let e = [1u8; 32];
        let (client, mut a) = client_start("1234");
        assert_eq!((a.len(), a[0]), (33, b'A'), "python-spake2's format: side byte + element");
        a[5] ^= 1;
        match host_respond("1234", &a, &e) {
            Err(PakeError::Malformed) => {}
            Ok((b, hc, _)) => assert!(client.finish(&b, &hc, &e).is_err()),
            Err(other) => panic!("{other:?}"),
        }
        assert_eq!(host_respond("1234", b"short", &e).err(), Some(PakeError::Malformed));
    }

    #[test]
    fn the_pin_is_nowhere_in_the_messages() {
        let (_, a) = client_start("987654");
        let (b, hc, _) = host_respond("987654", &a, &[0u8; 32]).unwrap();
        for bytes in [&a[..], &b[..], &hc[..]] {
            assert!(!bytes.windows(6).any(|w| w == b"987654"));
        }
    }
}
