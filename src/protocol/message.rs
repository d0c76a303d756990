//! Control messages: the JSON objects carried in control frames.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Md5Digest;

/// A secret (the optional PIN) whose `Debug` never shows its value, so it cannot leak into logs,
/// and whose `==` takes the same time wherever the first difference is.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself, for the one place that must show it (the host's own screen).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        // The length is not secret; the bytes are compared without an early exit.
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

/// A request from client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// First message of every connection.
    Hello {
        version: u32,
        client: String,
        /// Version 1 only: the PIN itself (inside version 2 it never travels; see `pake`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin: Option<Secret>,
        /// ferry extension: the same for every connection of one running client, so a host can
        /// show one person with several connections (browsing plus one per download) as one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
        /// Version 2 with a PIN: base64 of SPAKE2 message A.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pake: Option<String>,
    },
    /// Version 2 with a PIN, after the host's `hello` answer: base64 of the client's
    /// HMAC-SHA256 confirmation.
    Confirm { mac: String },
    /// List a folder (`""` is the hosted folder itself).
    List { path: String },
    /// Download a file from `offset` (a resumed transfer when non-zero).
    Get {
        path: String,
        /// ferry extension: a missing offset means 0.
        #[serde(default)]
        offset: u64,
    },
    /// Upload a file of `size` bytes to `path` (on a host that takes uploads; otherwise
    /// `read_only`). The host answers [`PutReply`]; the client then sends one data section from
    /// the offset it names, and the host answers [`PutDone`] or `checksum_mismatch`.
    Put {
        path: String,
        size: u64,
        /// ferry extension: create the folders on the way that are missing (inside the hosted
        /// folder). Without it a missing parent folder is `not_found`, as the contract says.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        mkdirs: bool,
    },
    /// After a data section: what the client computed, and whether it kept the file
    /// (`ok`: verified and saved). The server answers `{"ok":true}`.
    Verdict { path: String, md5: String, ok: bool },
}

/// The ops this version understands; anything else is answered with `unsupported`.
pub const KNOWN_OPS: [&str; 6] = ["hello", "list", "get", "put", "verdict", "confirm"];

/// An answer with nothing in it but `"ok": true` (to `verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ack {}

/// Error codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    TooLarge,
    Unsupported,
    UnsupportedVersion,
    Unauthorized,
    Busy,
    BadPath,
    Forbidden,
    NotFound,
    IsDirectory,
    NotADirectory,
    ReadOnly,
    Exists,
    ChecksumMismatch,
    Io,
    /// A plain (version 1) frame reached a host that speaks only TLS (version 2).
    TlsRequired,
    /// The host's disk cannot hold an upload (answered before any byte is sent).
    NoSpace,
    /// A code this version does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Busy => "busy",
            ErrorCode::BadPath => "bad_path",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::IsDirectory => "is_directory",
            ErrorCode::NotADirectory => "not_a_directory",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::Exists => "exists",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::Io => "io",
            ErrorCode::TlsRequired => "tls_required",
            ErrorCode::NoSpace => "no_space",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"ok":false,"error":…,"message":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({error})")]
pub struct ErrorReply {
    pub ok: bool,
    pub error: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReply { ok: false, error, message: message.into() }
    }
}

/// Wraps a reply body with `"ok": true` on the wire.
#[derive(Debug, Serialize)]
pub struct Okay<'a, T> {
    pub ok: bool,
    #[serde(flatten)]
    pub body: &'a T,
}

impl<'a, T> Okay<'a, T> {
    pub fn new(body: &'a T) -> Self {
        Okay { ok: true, body }
    }
}

/// Answer to `hello`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    pub version: u32,
    pub server: String,
    /// The hosted folder's name (for display only; never a local path). A version 2 host
    /// that asks for a PIN names it only in its answer to `confirm`.
    #[serde(default)]
    pub name: String,
    /// Version 2 with a PIN: base64 of SPAKE2 message B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pake: Option<String>,
    /// Version 2 with a PIN: base64 of the host's HMAC-SHA256 confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// Answer to `confirm`: the PIN exchange succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmReply {
    pub name: String,
}

/// What a listing entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Dir,
    File,
    /// A kind this version does not know (sent by a newer peer).
    #[serde(other)]
    Other,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Modification time, Unix seconds (ferry sends it for folders too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<i64>,
    /// The file's MD5 as 32 lowercase hex digits, when the host already knows it (from its
    /// digest index). A hint for showing and for skipping a file the client already has; a
    /// transfer is still verified by its trailer. See [`Entry::digest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

impl Entry {
    /// The listed MD5, if the host sent one that is a digest at all (anything else is ignored).
    pub fn digest(&self) -> Option<Md5Digest> {
        self.md5.as_deref().and_then(super::parse_hex)
    }
}

/// Answer to `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    pub path: String,
    pub entries: Vec<Entry>,
}

/// Answer to `get`, followed on the wire by one data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    pub size: u64,
    pub offset: u64,
}

/// Answer to `put`: the client sends one data section starting at `offset` (the length of the
/// host's partial file of an earlier, interrupted upload; 0 for a fresh one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReply {
    pub offset: u64,
}

/// Answer after an upload's data section: the file is saved under its name, and `md5` is what
/// the host computed over the whole file (equal to the client's trailer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutDone {
    pub md5: String,
}

/// `checksum_mismatch` after an upload's data section, with the digest the host computed
/// (`md5`: a ferry extension, so both sides can show both digests; others ignore it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MismatchReply {
    pub ok: bool,
    pub error: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// Sorts entries the way the contract lists them: folders first, then files, each by name.
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        let rank = |k: EntryKind| match k {
            EntryKind::Dir => 0,
            EntryKind::File => 1,
            EntryKind::Other => 2,
        };
        rank(a.kind).cmp(&rank(b.kind)).then_with(|| a.name.cmp(&b.name))
    });
}

/// Decodes a request frame, telling apart the contract's two failure codes:
/// `bad_request` (not JSON, not an object, a missing or mistyped field) and
/// `unsupported` (a well-formed request with an op this version does not know).
pub fn parse_request(payload: &[u8]) -> Result<Request, ErrorReply> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, format!("request is not valid JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(ErrorReply::new(ErrorCode::BadRequest, "request is not a JSON object"));
    };
    let Some(op) = obj.get("op").and_then(Value::as_str).map(str::to_owned) else {
        return Err(ErrorReply::new(ErrorCode::BadRequest, "request has no \"op\" string"));
    };
    if !KNOWN_OPS.contains(&op.as_str()) {
        let shown: String = op.chars().take(64).flat_map(char::escape_default).collect();
        return Err(ErrorReply::new(ErrorCode::Unsupported, format!("unknown op \"{shown}\"")));
    }
    serde_json::from_value(value)
        .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, format!("malformed {op} request: {e}")))
}

/// Why a reply could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("the peer sent a reply that is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the peer sent a reply without a boolean \"ok\"")]
    NoOk,
    #[error("the peer sent a malformed reply: {0}")]
    Malformed(serde_json::Error),
}

/// Decodes a reply frame: `Ok(Ok(body))` for `"ok":true`, `Ok(Err(reply))` for an error reply.
pub fn parse_reply<T: DeserializeOwned>(payload: &[u8]) -> Result<Result<T, ErrorReply>, ReplyError> {
    let value: Value = serde_json::from_slice(payload).map_err(ReplyError::NotJson)?;
    match value.get("ok").and_then(Value::as_bool) {
        Some(true) => serde_json::from_value(value).map(Ok).map_err(ReplyError::Malformed),
        Some(false) => serde_json::from_value(value).map(Err).map_err(ReplyError::Malformed),
        None => Err(ReplyError::NoOk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_serialise_exactly_as_the_contract_shows() {
        let hello = Request::Hello { version: 1, client: "ferry/0.1".into(), pin: None, instance: None, pake: None };
        assert_eq!(serde_json::to_string(&hello).unwrap(), r#"{"op":"hello","version":1,"client":"ferry/0.1"}"#);
        let get = Request::Get { path: "sub/a.bin".into(), offset: 0 };
        assert_eq!(serde_json::to_string(&get).unwrap(), r#"{"op":"get","path":"sub/a.bin","offset":0}"#);
        let list = Request::List { path: "sub/dir".into() };
        assert_eq!(serde_json::to_string(&list).unwrap(), r#"{"op":"list","path":"sub/dir"}"#);
    }

    #[test]
    fn contract_examples_parse() {
        let r = parse_request(br#"{"op":"put","path":"b.bin","size":123}"#).unwrap();
        assert_eq!(r, Request::Put { path: "b.bin".into(), size: 123, mkdirs: false });
        let put = Request::Put { path: "b.bin".into(), size: 123, mkdirs: false };
        assert_eq!(serde_json::to_string(&put).unwrap(), r#"{"op":"put","path":"b.bin","size":123}"#);
        let r = parse_request(br#"{"op":"put","path":"a/b.bin","size":1,"mkdirs":true}"#).unwrap();
        assert_eq!(r, Request::Put { path: "a/b.bin".into(), size: 1, mkdirs: true });
        let done: PutDone = parse_reply(br#"{"ok":true,"md5":"d41d8cd98f00b204e9800998ecf8427e"}"#).unwrap().unwrap();
        assert_eq!(done.md5, "d41d8cd98f00b204e9800998ecf8427e");
        let e: Result<PutReply, ErrorReply> = parse_reply(br#"{"ok":false,"error":"no_space","message":"m"}"#).unwrap();
        assert_eq!(e.unwrap_err().error, ErrorCode::NoSpace);
        let r = parse_request(br#"{"op":"hello","version":1,"client":"x","pin":"1234"}"#).unwrap();
        assert_eq!(
            r,
            Request::Hello {
                version: 1,
                client: "x".into(),
                pin: Some(Secret("1234".into())),
                instance: None,
                pake: None
            }
        );
        let r = parse_request(br#"{"op":"hello","version":1,"client":"x","instance":"5f3a"}"#).unwrap();
        assert_eq!(
            r,
            Request::Hello { version: 1, client: "x".into(), pin: None, instance: Some("5f3a".into()), pake: None }
        );
        // Unknown fields are ignored: that is how the protocol grows compatibly.
        let r = parse_request(br#"{"op":"list","path":"","future":true}"#).unwrap();
        assert_eq!(r, Request::List { path: "".into() });
    }

    #[test]
    fn version_2_messages_have_the_contracts_shape() {
        let hello =
            Request::Hello { version: 2, client: "c".into(), pin: None, pake: Some("QQ==".into()), instance: None };
        assert_eq!(serde_json::to_string(&hello).unwrap(), r#"{"op":"hello","version":2,"client":"c","pake":"QQ=="}"#);
        let confirm = parse_request(br#"{"op":"confirm","mac":"bWFj"}"#).unwrap();
        assert_eq!(confirm, Request::Confirm { mac: "bWFj".into() });
        let reply = HelloReply {
            version: 2,
            server: "s".into(),
            pake: Some("Qg==".into()),
            confirm: Some("aA==".into()),
            ..Default::default()
        };
        let json = serde_json::to_string(&Okay::new(&reply)).unwrap();
        let back: HelloReply = parse_reply(json.as_bytes()).unwrap().unwrap();
        assert_eq!(back, reply);
        let no_name: HelloReply =
            parse_reply(br#"{"ok":true,"version":2,"server":"s","pake":"Qg==","confirm":"aA=="}"#).unwrap().unwrap();
        assert_eq!(no_name.name, "");
        let e: Result<HelloReply, ErrorReply> =
            parse_reply(br#"{"ok":false,"error":"tls_required","message":"m"}"#).unwrap();
        assert_eq!(e.unwrap_err().error, ErrorCode::TlsRequired);
    }

    #[test]
    fn the_clients_verdict_is_the_contracts_message() {
        let r =
            parse_request(br#"{"op":"verdict","path":"a/b.bin","md5":"d41d8cd98f00b204e9800998ecf8427e","ok":true}"#);
        let expected =
            Request::Verdict { path: "a/b.bin".into(), md5: "d41d8cd98f00b204e9800998ecf8427e".into(), ok: true };
        assert_eq!(r.unwrap(), expected);
        let encoded = serde_json::to_string(&expected).unwrap();
        assert_eq!(encoded, r#"{"op":"verdict","path":"a/b.bin","md5":"d41d8cd98f00b204e9800998ecf8427e","ok":true}"#);
        assert_eq!(serde_json::to_string(&Okay::new(&Ack {})).unwrap(), r#"{"ok":true}"#);
    }

    #[test]
    fn get_without_offset_means_from_the_start() {
        let r = parse_request(br#"{"op":"get","path":"a"}"#).unwrap();
        assert_eq!(r, Request::Get { path: "a".into(), offset: 0 });
    }

    #[test]
    fn not_json_is_bad_request() {
        assert_eq!(parse_request(b"{nope").unwrap_err().error, ErrorCode::BadRequest);
        assert_eq!(parse_request(b"[1,2]").unwrap_err().error, ErrorCode::BadRequest);
        assert_eq!(parse_request(b"\xff\xfe").unwrap_err().error, ErrorCode::BadRequest);
    }

    #[test]
    fn missing_or_mistyped_field_is_bad_request() {
        assert_eq!(parse_request(br#"{"path":"a"}"#).unwrap_err().error, ErrorCode::BadRequest);
        assert_eq!(parse_request(br#"{"op":"get"}"#).unwrap_err().error, ErrorCode::BadRequest);
        assert_eq!(parse_request(br#"{"op":"get","path":"a","offset":-1}"#).unwrap_err().error, ErrorCode::BadRequest);
        assert_eq!(parse_request(br#"{"op":7}"#).unwrap_err().error, ErrorCode::BadRequest);
    }

    #[test]
    fn unknown_op_is_unsupported() {
        let e = parse_request(br#"{"op":"delete","path":"a"}"#).unwrap_err();
        assert_eq!(e.error, ErrorCode::Unsupported);
        assert!(e.message.contains("delete"));
    }

    #[test]
    fn error_reply_round_trips_and_unknown_codes_survive() {
        let e = ErrorReply::new(ErrorCode::NotADirectory, "a.txt is a file");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"ok":false,"error":"not_a_directory","message":"a.txt is a file"}"#);
        let parsed: Result<HelloReply, ErrorReply> = parse_reply(json.as_bytes()).unwrap();
        assert_eq!(parsed.unwrap_err(), e);
        let parsed: Result<HelloReply, ErrorReply> =
            parse_reply(br#"{"ok":false,"error":"teapot","message":"m"}"#).unwrap();
        assert_eq!(parsed.unwrap_err().error, ErrorCode::Unknown);
    }

    #[test]
    fn okay_wraps_body_with_ok_true() {
        let body = GetReply { size: 123, offset: 0 };
        assert_eq!(serde_json::to_string(&Okay::new(&body)).unwrap(), r#"{"ok":true,"size":123,"offset":0}"#);
        let back: GetReply = parse_reply(br#"{"ok":true,"size":123,"offset":0}"#).unwrap().unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn a_listing_entry_carries_its_md5_only_when_known() {
        let known = r#"{"name":"a.bin","kind":"file","size":3,"modified":1,"md5":"900150983cd24fb0d6963f7d28e17f72"}"#;
        let e: Entry = serde_json::from_str(known).unwrap();
        assert_eq!(e.digest().map(|d| crate::protocol::hex(&d)).as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(serde_json::to_string(&e).unwrap(), known);
        let unknown = Entry { md5: None, ..e.clone() };
        assert!(!serde_json::to_string(&unknown).unwrap().contains("md5"), "no field when unknown");
        let junk = Entry { md5: Some("not a digest".into()), ..e };
        assert_eq!(junk.digest(), None, "a malformed hint is ignored");
    }

    #[test]
    fn reply_without_ok_is_refused() {
        assert!(matches!(parse_reply::<GetReply>(br#"{"size":1}"#), Err(ReplyError::NoOk)));
    }

    #[test]
    fn listing_sorts_dirs_first_then_by_name() {
        let e = |name: &str, kind| Entry { name: name.into(), kind, size: None, modified: None, md5: None };
        let mut v =
            vec![e("b", EntryKind::File), e("z", EntryKind::Dir), e("a", EntryKind::File), e("c", EntryKind::Dir)];
        sort_entries(&mut v);
        let names: Vec<_> = v.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "z", "a", "b"]);
    }

    #[test]
    fn pin_never_appears_in_debug_output() {
        let r = Request::Hello {
            version: 1,
            client: "c".into(),
            pin: Some(Secret("4821".into())),
            instance: None,
            pake: None,
        };
        assert!(!format!("{r:?}").contains("4821"));
    }
}
