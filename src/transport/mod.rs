//! What a connection runs over: TLS 1.3 (protocol version 2, the default) or plain TCP
//! (version 1, only when both sides are told `--plain`). [`Stream`] is one `Read + Write` for
//! either, so the server and the client never need to know which.
//!
//! ```text
//! TCP ─▶ TLS 1.3, ALPN "ferry/2" ─▶ frames, data sections, MD5 trailers (unchanged)
//!        host: self-signed certificate for its long-lived key (identity.rs)
//!        client: no CAs; the key's SHA-256 fingerprint is pinned (known_hosts.rs)
//!        PIN: SPAKE2 bound to the session by the TLS exporter (pake.rs)
//! ```
//!
//! A version 2 host peeks at the first byte of a connection: a TLS record starts with `0x16`,
//! a plain frame with `0x00` (the high byte of its length), which it answers `tls_required`.

pub mod identity;
pub mod known_hosts;
pub mod pake;
pub mod sliced;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, ServerConnection, SignatureScheme, StreamOwned};

pub use identity::{Fingerprint, Identity, IdentityError, config_dir};
pub use known_hosts::{Contact, KnownHosts, host_key};

/// The ALPN protocol name of version 2.
pub const ALPN: &[u8] = b"ferry/2";
/// The TLS exporter label the PIN exchange is bound to (empty context, 32 bytes).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-ferry-pin";
/// The first byte of a TLS handshake record.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// One connection, plain or encrypted.
pub enum Stream {
    Plain(TcpStream),
    /// The host's end of a TLS session.
    Host(Box<StreamOwned<ServerConnection, TcpStream>>),
    /// The client's end of a TLS session.
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_tls() { "Tls" } else { "Plain" };
        f.debug_tuple(kind).field(self.tcp()).finish()
    }
}

impl Stream {
    /// The socket underneath (for timeouts, `shutdown` from another thread, `sendfile`).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Host(s) => &s.sock,
            Stream::Client(s) => &s.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The exporter value E the PIN exchange is bound to; `None` on a plain connection.
    pub fn exporter(&self) -> Option<[u8; 32]> {
        let out = [0u8; 32];
        match self {
            Stream::Plain(_) => None,
            Stream::Host(s) => s.conn.export_keying_material(out, EXPORTER_LABEL, Some(b"")).ok(),
            Stream::Client(s) => s.conn.export_keying_material(out, EXPORTER_LABEL, Some(b"")).ok(),
        }
    }

    /// The host's identity, on the client's end of a TLS session.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Stream::Client(s) => s.conn.peer_certificates()?.first().and_then(|c| Fingerprint::of_certificate(c)),
            _ => None,
        }
    }

    /// Ends the session politely (TLS `close_notify`, best effort) and shuts the socket's
    /// sending side.
    pub fn close(&mut self) {
        match self {
            Stream::Plain(_) => {}
            Stream::Host(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
            }
            Stream::Client(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
            }
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }
}

/// A peer that closes its socket without TLS `close_notify` ends the stream like a plain one
/// would: every ferry message carries its own length (and every file its digest), so an end
/// between messages loses nothing and an end inside one is reported by the frame layer.
fn eof_is_end(r: io::Result<usize>) -> io::Result<usize> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Host(s) => eof_is_end(s.read(buf)),
            Stream::Client(s) => eof_is_end(s.read(buf)),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Host(s) => s.write(buf),
            Stream::Client(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Host(s) => s.flush(),
            Stream::Client(s) => s.flush(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // AES-128-GCM first: with AES instructions it costs the least per byte, and ferry's
            // bulk transfers are CPU-bound on both ends (the MD5 is already one core's work).
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
            Arc::new(provider)
        })
        .clone()
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Drives a handshake to its end on a blocking socket (its timeouts apply).
fn handshake<S: rustls::SideData>(conn: &mut rustls::ConnectionCommon<S>, tcp: &mut TcpStream) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(tcp)?;
    }
    // The last flight (the client's Finished) goes out now, not with the first request.
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    if conn.alpn_protocol() != Some(ALPN) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the other side does not speak ferry/2 (ALPN)"));
    }
    Ok(())
}

/// The host's TLS settings for its identity.
#[derive(Clone)]
pub struct HostTls {
    config: Arc<rustls::ServerConfig>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for HostTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTls").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl HostTls {
    /// TLS 1.3 only, ALPN `ferry/2`, no client certificates, no session tickets.
    pub fn new(identity: &Identity) -> io::Result<HostTls> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(vec![identity.certificate().clone()], identity.private_key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.send_tls13_tickets = 0;
        Ok(HostTls { config: Arc::new(config), fingerprint: identity.fingerprint() })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The host's side of the handshake on an accepted socket.
    pub fn accept(&self, mut tcp: TcpStream) -> io::Result<Stream> {
        let mut conn = rustls::ServerConnection::new(self.config.clone()).map_err(tls_error)?;
        handshake(&mut conn, &mut tcp)?;
        Ok(Stream::Host(Box::new(StreamOwned::new(conn, tcp))))
    }
}

/// Whether a read failed because a TLS record did not decrypt: its bytes were changed on the
/// way (a faulty device, or someone tampering). TLS checks every record before it gives a byte
/// of it, so everything read before was intact.
pub fn is_integrity_failure(e: &io::Error) -> bool {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(|e| {
        matches!(e, rustls::Error::DecryptError | rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac))
    })
}

/// What arrives first on an accepted socket, without taking it: `None` if the peer closed.
pub fn peek_first_byte(tcp: &TcpStream) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        match tcp.peek(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Pinning, not CAs: any well-formed certificate passes here, as long as the host proves in
/// the handshake that it holds the certificate's key (the TLS 1.3 signature is checked). The
/// client compares the key's fingerprint with the one it knows before it sends anything.
#[derive(Debug)]
struct PinLater {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinLater {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match Fingerprint::of_certificate(end_entity) {
            Some(_) => Ok(ServerCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("ferry speaks TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let verifier = PinLater { algorithms: provider.signature_verification_algorithms };
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("the ring provider speaks TLS 1.3")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            config.alpn_protocols = vec![ALPN.to_vec()];
            config.enable_sni = false;
            // Every connection shows the host's certificate, so every one is checked.
            config.resumption = rustls::client::Resumption::disabled();
            Arc::new(config)
        })
        .clone()
}

/// The client's side of the handshake on a connected socket. The host's identity is then
/// [`Stream::peer_fingerprint`]; nothing has been sent inside the session yet.
pub fn connect(mut tcp: TcpStream) -> io::Result<Stream> {
    let name = ServerName::try_from("ferry").expect("a valid name");
    let mut conn = rustls::ClientConnection::new(client_config(), name).map_err(tls_error)?;
    handshake(&mut conn, &mut tcp)?;
    Ok(Stream::Client(Box::new(StreamOwned::new(conn, tcp))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn pair(identity: &Identity) -> (Stream, Stream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let host = HostTls::new(identity).unwrap();
        let t = thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            assert_eq!(peek_first_byte(&tcp).unwrap(), Some(TLS_HANDSHAKE_BYTE));
            host.accept(tcp).unwrap()
        });
        let client = connect(TcpStream::connect(addr).unwrap()).unwrap();
        (client, t.join().unwrap())
    }

    #[test]
    fn a_session_carries_bytes_both_ways_and_shows_the_hosts_identity() {
        let id = Identity::generate().unwrap();
        let (mut client, mut host) = pair(&id);
        assert!(client.is_tls() && host.is_tls());
        assert_eq!(client.peer_fingerprint(), Some(id.fingerprint()));
        assert_eq!(client.exporter(), host.exporter(), "both ends derive the same exporter value");
        assert!(client.exporter().is_some());
        client.write_all(b"ping").unwrap();
        client.flush().unwrap();
        let mut got = [0u8; 4];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        host.write_all(&vec![7u8; 300_000]).unwrap();
        host.flush().unwrap();
        let mut big = vec![0u8; 300_000];
        client.read_exact(&mut big).unwrap();
        assert!(big.iter().all(|&b| b == 7));
        host.close();
        assert_eq!(client.read(&mut got).unwrap(), 0, "a closed session reads as the end");
    }

    #[test]
    fn another_key_is_another_identity_and_another_exporter() {
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        assert_ne!(a.fingerprint(), b.fingerprint());
        let (c1, h1) = pair(&a);
        let (c2, _h2) = pair(&b);
        assert_eq!(c2.peer_fingerprint(), Some(b.fingerprint()));
        assert_ne!(c1.exporter(), c2.exporter());
        drop(h1);
    }

    #[test]
    fn a_plain_peer_is_no_tls_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            // A version 1 host answers a frame: eight length bytes starting 0x00.
            let _ = tcp.write_all(&[0, 0, 0, 0, 0, 0, 0, 2, b'{', b'}']);
        });
        let err = connect(TcpStream::connect(addr).unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        t.join().unwrap();
    }
}
