#!/usr/bin/env bash
# Screenshots of ferry's real window, for a person to look at (they are not committed).
#
#   scripts/screenshots.sh [OUT_DIR]        (default: target/screenshots)
#   FERRY_PROFILE=release scripts/screenshots.sh   to use a release build (default: debug)
#
# Two copies of the app run under Xvfb, each on its own virtual display, like two machines:
# one hosts a folder (Server tab), the other downloads a 64 MiB file from it (Client tab)
# through a small relay that slows the bytes to about 6 MiB/s, so "mid-transfer" can be
# captured. A third copy downloads through a relay that flips one byte, to show what the person
# sees then: the connection is encrypted, so TLS catches the change before any MD5 could (a
# mismatch verdict needs --plain on both sides, which only the command line offers). Saved:
#   server-mid.png  client-mid.png        during the transfer
#   server-done.png client-verified.png   after the verdict
#   client-tampered-light-min.png         a transfer changed on the way, light theme, 720x520
#   client-min.png                        the Client tab at 720x520 with a verdict (dark),
#                                         the hosted folder with its CJK names
#   server-light-min.png                  a second host in the light theme at 720x520
# The hosted folder has names in Japanese and Chinese: they render where the system has a font
# for them (the script installs fonts-wqy-microhei if no CJK font is found).
#
# Nobody clicks: the window is driven by ferry's hidden demo mode, FERRY_DEMO, a `;`-separated
# list of key=value (host=DIR, bind=HOST:PORT, pin=PIN, connect=ADDR, open=FOLDER, get=PATH, dest=DIR,
# tab=server|client, theme=light|dark, size=WxH; see src/gui/demo.rs). In demo mode nothing is saved and no native dialog
# opens.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${1:-target/screenshots}
mkdir -p "$out"
out=$(cd "$out" && pwd)
profile=${FERRY_PROFILE:-debug}

need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v import >/dev/null || need+=(imagemagick)
command -v python3 >/dev/null || need+=(python3)
fc-list 2>/dev/null | grep -qiE 'cjk|wqy|droid' || need+=(fonts-wqy-microhei)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y --no-install-recommends "${need[@]}"
fi

if [[ $profile == release ]]; then
    cargo build --release --quiet
else
    cargo build --quiet
fi
ferry="${CARGO_TARGET_DIR:-$root/target}/$profile/ferry"
export FERRY_NO_DISCOVERY=1 # no mDNS on the machine's real network

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The folder to host.
share="$work/Shared with ferry"
mkdir -p "$share/videos" "$share/photos/2024" "$share/documents"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$share/videos/holiday.mp4"
head -c 3000000 /dev/urandom >"$share/videos/trailer.webm"
for i in $(seq 1 40); do head -c $((i * 7919)) /dev/urandom >"$share/photos/2024/IMG_$((4000 + i)).jpg"; done
echo "Flight AB123, gate 12" >"$share/documents/itinerary.txt"
echo "旅行" >"$share/旅行の写真.txt"
echo "报告" >"$share/年度报告 2024.txt"
for i in 1 2 10; do echo "$i" >"$share/documents/chapter $i.txt"; done
head -c 250000 /dev/urandom >"$share/documents/report.pdf"
mkdir -p "$work/downloads" "$work/downloads-2" "$work/downloads-3"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
slow=$(free_port)
bad=$(free_port)

# relay.py LISTEN TARGET BYTES_PER_SEC FLIP_AT: forwards 127.0.0.1 connections; what the
# server sends is paced to BYTES_PER_SEC (0: no limit) and its byte FLIP_AT (-1: none) flipped.
cat >"$work/relay.py" <<'PY'
import socket, sys, threading, time
listen, target, rate, flip_at = (int(a) for a in sys.argv[1:5])
def pump(src, dst, paced):
    pos, start = 0, time.monotonic()
    try:
        while True:
            data = bytearray(src.recv(65536))
            if not data:
                break
            if paced and 0 <= flip_at - pos < len(data):
                data[flip_at - pos] ^= 1
            pos += len(data)
            dst.sendall(data)
            if paced and rate > 0:
                ahead = pos / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen))
srv.listen()
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(c, u, False), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, True), daemon=True).start()
PY
python3 "$work/relay.py" "$slow" "$port" $((6 * 1024 * 1024)) -1 &
pids+=($!)
python3 "$work/relay.py" "$bad" "$port" 0 $((20 * 1024 * 1024)) &
pids+=($!)

export XDG_RUNTIME_DIR="$work/xdg"
mkdir -m 0700 "$XDG_RUNTIME_DIR"
size=1040x760

free_display() {
    local n=90
    while [[ -e /tmp/.X$n-lock || -e /tmp/.X11-unix/X$n ]]; do n=$((n + 1)); done
    echo "$n"
}
# start_app NAME FERRY_DEMO: a virtual display with one ferry window; prints the display.
start_app() {
    local name=$1 demo=$2 screen=${3:-$size} n
    n=$(free_display)
    Xvfb ":$n" -screen 0 "${screen}x24" -nolisten tcp >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do [[ -e /tmp/.X11-unix/X$n ]] && break; sleep 0.1; done
    mkdir -p "$work/home-$name"
    # FERRY_NO_DISCOVERY: screenshots must not announce or browse on the real network.
    HOME="$work/home-$name" DISPLAY=":$n" FERRY_DEMO="$demo" FERRY_NO_DISCOVERY=1 "$ferry" >"$work/$name.log" 2>&1 &
    pids+=($!)
    display=":$n"
}
shot() { DISPLAY=$1 import -window root "$out/$2"; echo "saved $out/$2"; }
wait_for() { # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; return 1; }
        sleep 0.2
    done
}
part_over() { [[ -f "$1" ]] && (($(stat -c %s "$1") > $2)); }

start_app host "host=$share;bind=0.0.0.0:$port;pin=482913;tab=server"
host_display=$display
wait_for 30 python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)"
sleep 1

start_app client "pin=482913;connect=127.0.0.1:$slow;open=videos;get=videos/holiday.mp4;dest=$work/downloads;tab=client"
client_display=$display
wait_for 60 part_over "$work/downloads/holiday.mp4.ferry-part" $((24 * 1024 * 1024))
shot "$client_display" client-mid.png
shot "$host_display" server-mid.png

wait_for 120 test -f "$work/downloads/holiday.mp4"
sleep 1.5
shot "$client_display" client-verified.png

start_app small "pin=482913;connect=127.0.0.1:$port;get=documents/report.pdf;dest=$work/downloads-3;tab=client;size=720x520" 720x520
small_display=$display
wait_for 60 test -f "$work/downloads-3/report.pdf"
sleep 2
shot "$small_display" client-min.png

start_app tampered "pin=482913;connect=127.0.0.1:$bad;open=videos;get=videos/holiday.mp4;dest=$work/downloads-2;tab=client;theme=light;size=720x520" 720x520
tampered_display=$display
sleep 10 # unpaced: the damaged record arrives within a few seconds and ends the transfer
shot "$tampered_display" client-tampered-light-min.png
shot "$host_display" server-done.png
if [[ -e "$work/downloads-2/holiday.mp4" ]]; then
    echo "unexpected: the damaged download was saved" >&2
    exit 1
fi

port2=$(free_port)
start_app host2 "host=$share;bind=127.0.0.1:$port2;tab=server;theme=light;size=720x520" 720x520
wait_for 30 python3 -c "import socket; socket.create_connection(('127.0.0.1', $port2), 1)"
sleep 2
shot "$display" server-light-min.png
echo "screenshots in $out"
