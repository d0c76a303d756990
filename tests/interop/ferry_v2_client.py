"""An independent client for ferry's wire protocol, version 2 (PROTOCOL.md), used by
tests/interop_python.rs. It shares no code with ferry: TLS 1.3 and the exporter come from
pyOpenSSL (Debian python3-openssl), SPAKE2 from python-spake2 (Debian python3-spake2).

usage: ferry_v2_client.py HOST PORT PIN|- PATH     fetch PATH over TLS, PIN by SPAKE2
       ferry_v2_client.py HOST PORT plain -        send a plain version 1 hello
Prints "identity <sha256 of the host's SubjectPublicKeyInfo>", "name <folder>", then
"<md5hex>  <PATH>" once the trailer matched the bytes received. Exit 0 on success, 3 when the
host's PIN confirm does not match (wrong PIN or someone in between), 4 on a checksum mismatch,
1 on anything else (the reason on stderr).
"""
import base64
import hashlib
import hmac
import json
import signal
import socket
import struct
import sys

from OpenSSL import SSL, crypto
from cryptography.hazmat.primitives import serialization
from spake2 import SPAKE2_A


def read_exact(conn, n):
    out = bytearray()
    while len(out) < n:
        try:
            chunk = conn.recv(min(n - len(out), 1 << 20))
        except SSL.WantReadError:
            continue
        except SSL.ZeroReturnError:
            chunk = b""
        if not chunk:
            raise EOFError(f"the stream ended after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def send_frame(conn, obj):
    payload = json.dumps(obj).encode()
    conn.sendall(struct.pack(">Q", len(payload)) + payload)


def read_frame(conn):
    (n,) = struct.unpack(">Q", read_exact(conn, 8))
    if n > 64 << 20:
        raise ValueError(f"control frame of {n} bytes")
    return json.loads(read_exact(conn, n))


def expect_ok(reply, what):
    if not reply.get("ok"):
        raise RuntimeError(f"{what}: {reply.get('error')}: {reply.get('message')}")
    return reply


def check_version(hello_reply):
    if hello_reply.get("version") != 2:
        raise RuntimeError(f"hello answered version {hello_reply.get('version')}, not 2")


def b64(data):
    return base64.b64encode(data).decode()


def main():
    host, port, pin, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sock = socket.create_connection((host, port), timeout=20)
    # pyOpenSSL wants a blocking socket (a timeout makes it raise WantReadError); the whole
    # run is bounded by an alarm instead.
    sock.settimeout(None)
    signal.alarm(60)
    if pin == "plain":
        send_frame(sock, {"op": "hello", "version": 1, "client": "interop-py/1"})
        print("reply " + json.dumps(read_frame(sock), sort_keys=True))
        return 0

    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_alpn_protos([b"ferry/2"])
    ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)  # pinning, not CAs: compared below
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    conn.do_handshake()
    if conn.get_alpn_proto_negotiated() != b"ferry/2":
        raise RuntimeError(f"ALPN: {conn.get_alpn_proto_negotiated()!r}")
    if conn.get_protocol_version_name() != "TLSv1.3":
        raise RuntimeError(conn.get_protocol_version_name())
    cert = conn.get_peer_certificate().to_cryptography()
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    print("identity " + hashlib.sha256(spki).hexdigest())

    hello = {"op": "hello", "version": 2, "client": "interop-py/1"}
    if pin != "-":
        exporter = conn.export_keying_material(b"EXPORTER-ferry-pin", 32, b"")
        pake = SPAKE2_A(pin.encode(), idA=b"ferry-client", idB=b"ferry-host")
        hello["pake"] = b64(pake.start())
        send_frame(conn, hello)
        reply = expect_ok(read_frame(conn), "hello")
        check_version(reply)
        key = pake.finish(base64.b64decode(reply["pake"]))
        want = hmac.new(key, b"host" + exporter, hashlib.sha256).digest()
        if not hmac.compare_digest(want, base64.b64decode(reply["confirm"])):
            print("the host's confirm does not match: wrong PIN, or someone in between", file=sys.stderr)
            return 3
        mac = hmac.new(key, b"client" + exporter, hashlib.sha256).digest()
        send_frame(conn, {"op": "confirm", "mac": b64(mac)})
        reply = expect_ok(read_frame(conn), "confirm")
    else:
        send_frame(conn, hello)
        reply = expect_ok(read_frame(conn), "hello")
        check_version(reply)
    print("name " + reply["name"])

    send_frame(conn, {"op": "get", "path": path, "offset": 0})
    reply = expect_ok(read_frame(conn), "get")
    (n,) = struct.unpack(">Q", read_exact(conn, 8))
    if n != reply["size"]:
        raise RuntimeError(f"data section of {n} bytes for a file of {reply['size']}")
    digest = hashlib.md5()
    left = n
    while left:
        chunk = read_exact(conn, min(left, 1 << 20))
        digest.update(chunk)
        left -= len(chunk)
    trailer = read_exact(conn, 16)
    if trailer != digest.digest():
        print(f"MD5 mismatch: host {trailer.hex()}, received {digest.hexdigest()}", file=sys.stderr)
        return 4
    print(f"{digest.hexdigest()}  {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
