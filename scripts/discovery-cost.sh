#!/usr/bin/env bash
# Does announcing cost a transfer anything?
#
# Two network namespaces joined by a veth pair (10.77.0.0/24, inside them only; deleted on exit):
# `ferry serve` in one, `ferry get` of a SIZE_MIB file on tmpfs in the other, RUNS times each
# with the host announcing and with FERRY_NO_DISCOVERY=1, alternating. Then the CPU time and
# the wake-ups of the host's mDNS thread over IDLE seconds of hosting with nothing to do.
# Needs root and iproute2. Build first: cargo build --release --no-default-features
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=$(realpath "${FERRY:-target/release/ferry}")
SIZE_MIB=${SIZE_MIB:-512}
RUNS=${RUNS:-5}
IDLE=${IDLE:-60}
A=fcostA$$ B=fcostB$$
W=$(mktemp -d /dev/shm/ferry-cost.XXXXXX)
SP=
cleanup() {
    [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

ip netns add $A
ip netns add $B
ip link add fca$$ netns $A type veth peer name fcb$$ netns $B
ip -n $A addr add 10.77.0.1/24 dev fca$$
ip -n $B addr add 10.77.0.2/24 dev fcb$$
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set fca$$ up multicast on
ip -n $B link set fcb$$ up multicast on
ip -n $A route add 224.0.0.0/4 dev fca$$
ip -n $B route add 224.0.0.0/4 dev fcb$$
sleep 1

mkdir -p "$W/share" "$W/out"
head -c "${SIZE_MIB}M" /dev/urandom >"$W/share/big.bin"

# serve MODE: starts the host (announcing or not) and waits until it is ready.
serve() {
    local log="$W/serve.log"
    : >"$log"
    if [ "$1" = announce ]; then
        ip netns exec $A env -u FERRY_NO_DISCOVERY "$FERRY" serve "$W/share" >"$log" 2>&1 &
        SP=$!
        until grep -q "announced on the local network" "$log"; do sleep 0.05; done
    else
        ip netns exec $A env FERRY_NO_DISCOVERY=1 "$FERRY" serve "$W/share" >"$log" 2>&1 &
        SP=$!
        until grep -q "hosting" "$log"; do sleep 0.05; done
    fi
}
stop() { kill -INT "$SP"; wait "$SP" || true; SP=; }

declare -A times
for run in $(seq "$RUNS"); do
    for mode in announce off; do
        serve $mode
        rm -f "$W/out/big.bin"
        start=$(date +%s.%N)
        ip netns exec $B env FERRY_NO_DISCOVERY=1 "$FERRY" get 10.77.0.1 big.bin -o "$W/out/big.bin" >/dev/null 2>&1
        end=$(date +%s.%N)
        times[$mode]+="$(awk "BEGIN {printf \"%.3f\", $end - $start}") "
        stop
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "ferry get of ${SIZE_MIB} MiB over a veth pair, ${RUNS} runs each (seconds):"
for mode in announce off; do
    m=$(echo "${times[$mode]}" | median)
    printf '  host %-9s %s  median %s s = %s MB/s\n' "$mode" "${times[$mode]}" "$m" \
        "$(awk "BEGIN {printf \"%.0f\", ${SIZE_MIB} * 1048576 / $m / 1000000}")"
done

# The announcing host's mDNS thread, idle.
serve announce
tid=$(grep -l mDNS_daemon /proc/$SP/task/*/comm | head -1 | xargs dirname)
ticks() { awk '{print $14 + $15}' "$tid/stat"; }
switches() { awk '/^voluntary_ctxt_switches/ {print $2}' "$tid/status"; }
t0=$(ticks) s0=$(switches)
sleep "$IDLE"
t1=$(ticks) s1=$(switches)
hz=$(getconf CLK_TCK)
echo "mDNS thread over ${IDLE} s of idle hosting: $(( (t1 - t0) * 1000 / hz )) ms CPU, $((s1 - s0)) wake-ups"
stop
