//! A generated corpus of hostile paths against a real server: every one is refused or stays
//! inside the hosted folder, and nothing from outside ever comes back.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use ferry::protocol::frame;
use serde_json::{Value, json};
use support::*;

const SECRET: &[u8] = b"TOP-SECRET-OUTSIDE-THE-FOLDER";

fn call(s: &mut TcpStream, v: &Value) -> Value {
    let mut wire = Vec::new();
    frame::write_control(&mut wire, v).unwrap();
    std::io::Write::write_all(s, &wire).unwrap();
    let payload = frame::read_frame(s, frame::MAX_RESPONSE_LEN).unwrap();
    assert!(!payload.windows(SECRET.len()).any(|w| w == SECRET), "secret leaked in a reply");
    serde_json::from_slice(&payload).unwrap()
}

#[test]
fn generated_traversal_corpus_is_refused_or_confined() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), SECRET).unwrap();
    std::fs::create_dir(outside.path().join("dir")).unwrap();
    std::fs::write(outside.path().join("dir/secret.txt"), SECRET).unwrap();

    // Raw frames in the clear: a plain host (the same checks run inside TLS).
    let srv = TestServer::start_plain();
    let inside: &[u8] = b"inside";
    srv.put("sub/inside.txt", inside.to_vec());
    #[cfg(unix)] // control characters are not allowed in Windows file names
    srv.put("ctrl\x01name.txt", inside.to_vec());
    srv.put("%2e%2e/inside.txt", inside.to_vec());
    // Links need a Unix host (on Windows: admin rights or developer mode; Wine 8 cannot follow
    // the links it makes). Elsewhere the corpus runs against plain folders and files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        let root = srv.root();
        symlink(outside.path(), root.join("out")).unwrap();
        symlink(outside.path().join("secret.txt"), root.join("out_file")).unwrap();
        symlink("/", root.join("slash")).unwrap();
        symlink(root, root.join("self_abs")).unwrap();
        symlink("sub", root.join("in")).unwrap();
        symlink("..", root.join("up")).unwrap();
        symlink("self_loop", root.join("self_loop")).unwrap();
        // A chain of 60 links inside the folder: longer than the 40-hop limit.
        for i in 0..60 {
            symlink(format!("chain{}", i + 1), root.join(format!("chain{i}"))).unwrap();
        }
        symlink("sub/inside.txt", root.join("chain60")).unwrap();
        // A short chain that ends outside.
        symlink("hop2", root.join("hop1")).unwrap();
        symlink("hop3", root.join("hop2")).unwrap();
        symlink("out/secret.txt", root.join("hop3")).unwrap();
    }
    #[cfg(not(unix))]
    {
        srv.put("in/inside.txt", inside.to_vec());
        srv.put("inside.txt", inside.to_vec());
    }

    let pieces = [
        "..",
        ".",
        "",
        "sub",
        "in",
        "up",
        "out",
        "out_file",
        "slash",
        "self_abs",
        "self_loop",
        "chain0",
        "hop1",
        "secret.txt",
        "inside.txt",
        "%2e%2e",
        "..%2f",
        "%252e%252e",
        "．．",
        "\u{2024}\u{2024}",
        "..\\..",
        "sub\\..",
        "ctrl\x01name.txt",
        "\u{1b}[2J",
        "\n",
        "a\0b",
        "etc",
        "passwd",
        "C:",
        "~",
        "$HOME",
        "...",
    ];
    let seps = ["/", "\\", "//", "/./"];
    let mut corpus: Vec<String> = Vec::new();
    for a in pieces {
        corpus.push(a.to_string());
        corpus.push(format!("/{a}"));
        for b in pieces {
            for sep in seps {
                corpus.push(format!("{a}{sep}{b}"));
            }
        }
    }
    for depth in [10, 100, 1000, 3000] {
        corpus.push(vec![".."; depth].join("/"));
        corpus.push(format!("{}secret.txt", "sub/../".repeat(depth)));
    }
    corpus.push("a".repeat(300));
    corpus.push(format!("sub/{}", "b".repeat(5000)));
    corpus.push("x/".repeat(2100) + "x");

    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(call(&mut s, &json!({"op":"hello","version":1,"client":"corpus"}))["ok"], true);
    let allowed_errors = ["bad_path", "forbidden", "not_found", "not_a_directory", "is_directory", "io"];
    let (mut ok_gets, mut ok_lists) = (0, 0);
    for p in &corpus {
        let v = call(&mut s, &json!({"op":"get","path":p,"offset":0}));
        if v["ok"] == true {
            // Confined: whatever was served is one of the files inside.
            let n = frame::read_header(&mut s).unwrap();
            let mut bytes = vec![0u8; n as usize + 16];
            s.read_exact(&mut bytes).unwrap();
            assert_eq!(&bytes[..n as usize], inside, "get {p:?} served something that is not inside");
            ok_gets += 1;
        } else {
            let code = v["error"].as_str().unwrap();
            assert!(allowed_errors.contains(&code), "get {p:?}: {v}");
        }
        let v = call(&mut s, &json!({"op":"list","path":p}));
        if v["ok"] == true {
            let names: Vec<&str> =
                v["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
            assert!(!names.contains(&"secret.txt"), "list {p:?} shows an outside file: {names:?}");
            assert!(!names.contains(&"out") && !names.contains(&"slash"), "escaping links listed: {names:?}");
            ok_lists += 1;
        } else {
            let code = v["error"].as_str().unwrap();
            assert!(allowed_errors.contains(&code), "list {p:?}: {v}");
        }
    }
    // The corpus really exercised both sides: some requests stay inside and succeed.
    assert!(ok_gets >= 4 && ok_lists >= 4, "{ok_gets} gets and {ok_lists} lists succeeded");
    eprintln!("{} paths: {ok_gets} confined gets, {ok_lists} confined lists, the rest refused", corpus.len());

    // Specific verdicts worth naming.
    let v = call(&mut s, &json!({"op":"get","path":"sub/../x","offset":0}));
    assert_eq!(v["error"], "bad_path", "{v}");
    #[cfg(unix)]
    {
        for (p, code) in [
            ("out/secret.txt", "forbidden"),
            ("hop1", "forbidden"),
            ("chain0", "forbidden"),
            ("self_loop", "forbidden"),
            ("slash/etc/passwd", "forbidden"),
            ("up/x", "forbidden"),
        ] {
            let v = call(&mut s, &json!({"op":"get","path":p,"offset":0}));
            assert_eq!(v["error"], code, "{p}: {v}");
        }
        let v = call(&mut s, &json!({"op":"get","path":"self_abs/sub/inside.txt","offset":0}));
        assert_eq!(v["ok"], true, "an absolute link to the folder itself stays inside: {v}");
    }
}
