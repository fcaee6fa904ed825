#!/usr/bin/env bash
# Measures twind's ingest rate, CPU per message and peak memory as ratios to a bare C subscriber ("the floor") on the same private broker in the same run, because shared machines are too noisy for absolute numbers.
#
# usage: tests/bench/bench.sh [COUNT]     (from the repo root; env TWINS, TWIND)
set -euo pipefail

COUNT=${1:-200000}
TWINS=${TWINS:-100}
TWIND=${TWIND:-./twind}
FLOOR_BIN=tests/bench/twind-floor
LOAD_BIN=tests/bench/twind-load
METRIC=twind_updates_applied_total
READY_S=10          # broker start, floor subscription, twind /healthz
FINISH_S=120        # from load start until every message is in
STOP_S=15           # twind must exit this long after SIGTERM
POLL_RATE=50        # /metrics polls per second (every 20 ms)

TMP=
die() {
	echo "bench: $*" >&2
	exit 1
}

# Every process this script starts is a background job of this shell, so
# `jobs -p` names exactly ours and never a reused pid of someone else's.
cleanup() {
	local rc=$? pid i
	local -a left
	trap - EXIT INT TERM
	for pid in $(jobs -p); do kill -TERM "$pid" 2>/dev/null || true; done
	for ((i = 0; i < 50; i++)); do
		left=()
		for pid in $(jobs -p); do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
		((${#left[@]} == 0)) && break
		sleep 0.1
	done
	for pid in $(jobs -p); do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ -n $TMP && -d $TMP ]]; then
		if ((rc == 0)); then
			rm -rf "$TMP"
		else
			echo "bench: logs kept in $TMP" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Sets NOW to the time in microseconds; no fork, so it is cheap in a polling loop.
now_us() {
	local t=$EPOCHREALTIME
	NOW=${t/./}
}

# Prints $1 distinct free loopback ports, holding them all at once so they differ.
free_ports() {
	if [[ -x /usr/bin/python3 ]]; then
		/usr/bin/python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
		return
	fi
	local -a ports=()
	local p
	while ((${#ports[@]} < $1)); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && [[ " ${ports[*]} " != *" $p "* ]]; then
			ports+=("$p")
		fi
	done
	echo "${ports[*]}"
}

# Waits until 127.0.0.1:$1 accepts connections while pid $2 lives; bounded by READY_S.
wait_port() {
	local deadline
	now_us
	deadline=$((NOW + READY_S * 1000000))
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		kill -0 "$2" 2>/dev/null || return 1
		now_us
		((NOW < deadline)) || return 1
		sleep 0.05
	done
}

# utime + stime of pid $1 in clock ticks; the name field may hold spaces, so
# the fields are counted after its closing parenthesis (field 3 is f[0]).
cpu_ticks() {
	local stat
	local -a f
	stat=$(<"/proc/$1/stat")
	read -r -a f <<<"${stat##*) }"
	echo $((f[11] + f[12]))
}

hwm_kb() {
	local key val rest
	while read -r key val rest; do
		if [[ $key == VmHWM: ]]; then
			echo "$val"
			return
		fi
	done <"/proc/$1/status"
	echo 0
}

# The current value of METRIC, or nothing when twind does not export it.
metric_now() {
	curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" |
		awk -v m="$METRIC" '$1 == m { printf "%.0f\n", $2; exit }'
}

tail_log() {
	echo "--- last lines of $1:" >&2
	tail -n 20 "$1" >&2 || true
}

[[ $COUNT =~ ^[1-9][0-9]*$ ]] || die "COUNT must be a positive integer, not '$COUNT'"
[[ $TWINS =~ ^[1-9][0-9]*$ ]] || die "TWINS must be a positive integer, not '$TWINS'"
for bin in "$FLOOR_BIN" "$LOAD_BIN" "$TWIND"; do
	[[ -x $bin ]] || die "$bin is missing: run 'make' and 'make bench' from the repo root"
done
command -v mosquitto >/dev/null || die "mosquitto is not installed"
command -v curl >/dev/null || die "curl is not installed"
CLK_TCK=$(getconf CLK_TCK)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/twind-bench.XXXXXX")
read -r BROKER_PORT HTTP_PORT <<<"$(free_ports 2)"

# --- the private broker --------------------------------------------------
# Queues and in-flight windows large enough that the broker never drops or
# throttles a slow subscriber: both contestants see the same broker.
cat >"$TMP/mosquitto.conf" <<EOF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 1000000
max_packet_size 1048576
log_type error
log_type warning
EOF
mosquitto -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
BROKER_PID=$!
wait_port "$BROKER_PORT" "$BROKER_PID" || { tail_log "$TMP/mosquitto.log"; die "mosquitto did not start"; }
echo "bench: $COUNT messages, $TWINS twins, QoS 1, broker 127.0.0.1:$BROKER_PORT"

# --- phase 1: the floor --------------------------------------------------
# The floor's stdout comes through a FIFO so that its last line is seen the
# moment it is written, without polling.
mkfifo "$TMP/floor.fifo"
"$FLOOR_BIN" -p "$BROKER_PORT" -n "$COUNT" -i twind-bench-floor -T "$FINISH_S" \
	>"$TMP/floor.fifo" 2>"$TMP/floor.err" &
FLOOR_PID=$!
exec {FLOOR_FD}<"$TMP/floor.fifo"
line=
read -r -t "$READY_S" -u "$FLOOR_FD" line || true
[[ $line == ready ]] || { tail_log "$TMP/floor.err"; die "the floor did not subscribe"; }

now_us
t0=$NOW
"$LOAD_BIN" -p "$BROKER_PORT" -n "$COUNT" -t "$TWINS" -i twind-bench-load-1 \
	>"$TMP/load1.out" 2>"$TMP/load1.err" &
LOAD_PID=$!
line=
read -r -t "$FINISH_S" -u "$FLOOR_FD" line || true
now_us
t1=$NOW
[[ $line == received* ]] || { tail_log "$TMP/floor.err"; die "the floor did not receive $COUNT messages"; }
wait "$LOAD_PID" || { tail_log "$TMP/load1.err"; die "twind-load failed in phase 1"; }
wait "$FLOOR_PID" || { tail_log "$TMP/floor.err"; die "twind-floor failed"; }
exec {FLOOR_FD}<&-
# received N first_to_last_s S cpu_s C maxrss_kb K
read -r _ _ _ _ _ FLOOR_CPU_S _ FLOOR_RSS_KB <<<"$line"
FLOOR_US=$((t1 - t0))
echo "bench: floor:  $line; $(<"$TMP/load1.out")"

# --- phase 2: twind ------------------------------------------------------
cat >"$TMP/twind.conf" <<EOF
[mqtt]
host = 127.0.0.1
port = $BROKER_PORT
client_id = twind-bench
[http]
listen = 127.0.0.1:$HTTP_PORT
[storage]
database = $TMP/bench.db
EOF
"$TWIND" -c "$TMP/twind.conf" >"$TMP/twind.out" 2>"$TMP/twind.log" &
TWIND_PID=$!
now_us
deadline=$((NOW + READY_S * 1000000))
until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
	"http://127.0.0.1:$HTTP_PORT/healthz" || true) == 200 ]]; do
	kill -0 "$TWIND_PID" 2>/dev/null || { tail_log "$TMP/twind.log"; die "twind exited during start-up"; }
	now_us
	((NOW < deadline)) || { tail_log "$TMP/twind.log"; die "twind /healthz not 200 within ${READY_S}s"; }
	sleep 0.05
done
base=$(metric_now)
[[ -n $base ]] || die "twind's /metrics has no $METRIC line"
target=$((base + COUNT))

# One curl keeps polling (one connection, POLL_RATE a second) and awk passes
# on only the number: forking a curl every 20 ms would cost the machine more
# than twind spends on the messages.
mkfifo "$TMP/curl.fifo" "$TMP/poll.fifo"
curl -s --max-time 2 --rate "$POLL_RATE/s" \
	"http://127.0.0.1:$HTTP_PORT/metrics?poll=[1-$((FINISH_S * POLL_RATE))]" \
	>"$TMP/curl.fifo" 2>/dev/null &
awk -v m="$METRIC" '$1 == m { printf "%.0f\n", $2; fflush() }' \
	<"$TMP/curl.fifo" >"$TMP/poll.fifo" &
exec {POLL_FD}<"$TMP/poll.fifo"

cpu0=$(cpu_ticks "$TWIND_PID")
now_us
t0=$NOW
"$LOAD_BIN" -p "$BROKER_PORT" -n "$COUNT" -t "$TWINS" -i twind-bench-load-2 \
	>"$TMP/load2.out" 2>"$TMP/load2.err" &
LOAD_PID=$!
deadline=$((t0 + FINISH_S * 1000000))
seen=$base
reached=0
while :; do
	now_us
	left_us=$((deadline - NOW))
	((left_us > 0)) || break
	printf -v left_s '%d.%06d' $((left_us / 1000000)) $((left_us % 1000000))
	read -r -t "$left_s" -u "$POLL_FD" seen || break
	if ((seen >= target)); then
		reached=1
		break
	fi
done
now_us
t1=$NOW
((reached)) || { tail_log "$TMP/twind.log"; die "twind applied $((seen - base)) of $COUNT within ${FINISH_S}s"; }
cpu1=$(cpu_ticks "$TWIND_PID")
TWIND_RSS_KB=$(hwm_kb "$TWIND_PID")
TWIND_US=$((t1 - t0))
exec {POLL_FD}<&-
wait "$LOAD_PID" || { tail_log "$TMP/load2.err"; die "twind-load failed in phase 2"; }
echo "bench: twind:  $METRIC $seen; $(<"$TMP/load2.out")"

kill -TERM "$TWIND_PID"
now_us
deadline=$((NOW + STOP_S * 1000000))
while kill -0 "$TWIND_PID" 2>/dev/null && ((NOW < deadline)); do
	sleep 0.05
	now_us
done
if kill -0 "$TWIND_PID" 2>/dev/null; then
	tail_log "$TMP/twind.log"
	die "twind still running ${STOP_S}s after SIGTERM"
fi
twind_rc=0
wait "$TWIND_PID" || twind_rc=$?
((twind_rc == 0)) || { tail_log "$TMP/twind.log"; die "twind exited with $twind_rc after SIGTERM"; }

# --- the table -----------------------------------------------------------
awk -v n="$COUNT" -v fus="$FLOOR_US" -v tus="$TWIND_US" \
	-v fcpu="$FLOOR_CPU_S" -v tticks="$((cpu1 - cpu0))" -v hz="$CLK_TCK" \
	-v frss="$FLOOR_RSS_KB" -v trss="$TWIND_RSS_KB" 'BEGIN {
	frate = n / (fus / 1e6); trate = n / (tus / 1e6)
	fcpu_us = fcpu * 1e6 / n; tcpu_us = tticks / hz * 1e6 / n
	printf "%-16s %12s %12s %12s\n", "", "floor", "twind", "twind/floor"
	printf "%-16s %12.0f %12.0f %12.2f\n", "ingest msg/s", frate, trate, trate / frate
	printf "%-16s %12.2f %12.2f %12.2f\n", "CPU us/msg", fcpu_us, tcpu_us, tcpu_us / fcpu_us
	printf "%-16s %12.1f %12.1f\n", "peak RSS MB", frss / 1024, trss / 1024
	printf "ratio ingest=%.2f cpu=%.2f\n", trate / frate, tcpu_us / fcpu_us
}'
