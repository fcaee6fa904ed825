#!/usr/bin/env bash
# Measures twind's ingest rate, CPU per message and peak memory as ratios to a bare C subscriber ("the floor") on the same private broker in the same run, because shared machines are too noisy for absolute numbers.
#
# usage: tests/bench/bench.sh [COUNT]     (from the repo root; env ROUNDS, TWINS, TWIND)
#
# ROUNDS rounds (default 3) of one floor phase then one twind phase, each twind
# phase with a fresh database; every figure in the table is the median over the
# rounds, and the ratios are medians of twind over medians of the floor.
set -euo pipefail

COUNT=${1:-200000}
ROUNDS=${ROUNDS:-3}
TWINS=${TWINS:-100}
TWIND=${TWIND:-./twind}
MODELS=${MODELS:-0}
RULES=${RULES:-0}
FLOOR_BIN=tests/bench/twind-floor
LOAD_BIN=tests/bench/twind-load
METRIC=twind_updates_applied_total
TWIND_ID=twind-bench
READY_S=10          # broker start, floor subscription, twind /healthz, session clearing
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

# "sum count" of twind_commit_batch_size, or nothing when twind does not export it.
batch_now() {
	curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" |
		awk '$1 == "twind_commit_batch_size_sum" { s = $2 }
		     $1 == "twind_commit_batch_size_count" { c = $2 }
		     END { if (s != "" && c != "") printf "%.0f %.0f\n", s, c }'
}

tail_log() {
	echo "--- last lines of $1:" >&2
	tail -n 20 "$1" >&2 || true
}

# twind keeps a persistent session (clean session off) and leaves without
# unsubscribing, so after its phase the broker would go on queueing for it:
# extra broker work during the next floor phase, and a backlog that the next
# twind would count as its own. One bare MQTT 3.1.1 CONNECT with the same
# client id and clean session on makes the broker discard that session (no
# client tools needed). CONNACK is 20 02 00 00: the first read stops at the
# NUL of the flags byte, the second at the NUL of a zero return code; a
# refusal is followed by the broker closing, so that read fails. Bounded by READY_S.
clear_session() {
	local LC_ALL=C id=$1 fd rl idl hdr rest
	((${#id} <= 100)) || return 1 # the remaining length must fit in one byte
	printf -v rl '\\x%02x' $((12 + ${#id}))
	printf -v idl '\\x%02x' "${#id}"
	exec {fd}<>"/dev/tcp/127.0.0.1/$BROKER_PORT" || return 1
	# shellcheck disable=SC2059 # the format holds the packet's bytes
	printf "\\x10${rl}\\x00\\x04MQTT\\x04\\x02\\x00\\x0a\\x00${idl}%s" "$id" >&"$fd"
	if IFS= read -r -d '' -t "$READY_S" -u "$fd" hdr && [[ $hdr == $'\x20\x02' ]] &&
		IFS= read -r -d '' -t "$READY_S" -u "$fd" rest && [[ -z $rest ]]; then
		printf '\xe0\x00' >&"$fd"
		exec {fd}>&-
		return 0
	fi
	exec {fd}>&-
	return 1
}

# Median of the arguments (mean of the middle two for an even count).
median() {
	printf '%s\n' "$@" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

[[ $COUNT =~ ^[1-9][0-9]*$ ]] || die "COUNT must be a positive integer, not '$COUNT'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $TWINS =~ ^[1-9][0-9]*$ ]] || die "TWINS must be a positive integer, not '$TWINS'"
for bin in "$FLOOR_BIN" "$LOAD_BIN" "$TWIND"; do
	[[ -x $bin ]] || die "$bin is missing: run 'make' and 'make bench' from the repo root"
done
command -v mosquitto >/dev/null || die "mosquitto is not installed"
command -v curl >/dev/null || die "curl is not installed"
CLK_TCK=$(getconf CLK_TCK)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/twind-bench.XXXXXX")
read -r BROKER_PORT HTTP_PORT <<<"$(free_ports 2)"

# --- the private broker, shared by every round -----------------------------
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
echo "bench: $COUNT messages x $ROUNDS rounds, $TWINS twins, QoS 1, models $([[ $MODELS == 1 ]] && echo on || echo off), $RULES rules per twin, broker 127.0.0.1:$BROKER_PORT"

# --- phase 1 of round $1: the floor --------------------------------------
# Sets FLOOR_US, FLOOR_CPU_S, FLOOR_RSS_KB. The floor's stdout comes through a
# FIFO so that its last line is seen the moment it is written, without polling.
floor_phase() {
	local r=$1 dir=$TMP/r$1 line t0 t1 load_pid floor_pid
	mkfifo "$dir/floor.fifo"
	"$FLOOR_BIN" -p "$BROKER_PORT" -n "$COUNT" -i twind-bench-floor -T "$FINISH_S" \
		>"$dir/floor.fifo" 2>"$dir/floor.err" &
	floor_pid=$!
	exec {FLOOR_FD}<"$dir/floor.fifo"
	line=
	read -r -t "$READY_S" -u "$FLOOR_FD" line || true
	[[ $line == ready ]] || { tail_log "$dir/floor.err"; die "round $r: the floor did not subscribe"; }

	now_us
	t0=$NOW
	"$LOAD_BIN" -p "$BROKER_PORT" -n "$COUNT" -t "$TWINS" -i "twind-bench-load-$r-1" \
		>"$dir/load1.out" 2>"$dir/load1.err" &
	load_pid=$!
	line=
	read -r -t "$FINISH_S" -u "$FLOOR_FD" line || true
	now_us
	t1=$NOW
	[[ $line == received* ]] || { tail_log "$dir/floor.err"; die "round $r: the floor did not receive $COUNT messages"; }
	wait "$load_pid" || { tail_log "$dir/load1.err"; die "round $r: twind-load failed in the floor phase"; }
	wait "$floor_pid" || { tail_log "$dir/floor.err"; die "round $r: twind-floor failed"; }
	exec {FLOOR_FD}<&-
	echo "$line" >"$dir/floor.out"
	# received N first_to_last_s S cpu_s C maxrss_kb K
	read -r _ _ _ _ _ FLOOR_CPU_S _ FLOOR_RSS_KB <<<"$line"
	FLOOR_US=$((t1 - t0))
}

# A DTDL model for the load's payload and a twins file that gives it to every bench twin.
write_models() {
	local dir=$1 i
	mkdir -p "$dir/models"
	cat >"$dir/models/bench.json" <<'JSON'
{"@context": ["dtmi:dtdl:context;3", "dtmi:twind:context;1"],
 "@id": "dtmi:twind:bench:Machine;1", "@type": "Interface", "strict": true,
 "contents": [
  {"@type": "Telemetry", "name": "temperature", "schema": "double", "minimum": -50, "maximum": 200, "period": "10s"},
  {"@type": "Telemetry", "name": "vibration", "schema": "double", "minimum": 0, "maximum": 50, "period": "10s"},
  {"@type": "Telemetry", "name": "current", "schema": "double", "minimum": 0, "maximum": 100, "period": "10s"}]}
JSON
	{
		printf '['
		for ((i = 0; i < TWINS; i++)); do
			((i > 0)) && printf ','
			printf '{"id":"bench-%d","model":"dtmi:twind:bench:Machine;1"}' "$i"
		done
		printf ']\n'
	} >"$dir/twins.json"
}

# RULES=N rules that every bench twin evaluates on every message and never
# raise: thresholds and window functions (avg_over, zscore, rate) in turn.
write_rules() {
	local dir=$1 i
	{
		printf '['
		for ((i = 0; i < RULES; i++)); do
			((i > 0)) && printf ','
			case $((i % 4)) in
			0) printf '{"name":"r%d","when":"temperature > %d"}' "$i" $((1000 + i)) ;;
			1) printf '{"name":"r%d","when":"avg_over(vibration, 1m) > %d"}' "$i" $((500 + i)) ;;
			2) printf '{"name":"r%d","when":"zscore(current, 5m) > %d"}' "$i" $((50 + i)) ;;
			3) printf '{"name":"r%d","when":"rate(temperature, 10m) > %d"}' "$i" $((100 + i)) ;;
			esac
		done
		printf ']\n'
	} >"$dir/rules.json"
}

# --- phase 2 of round $1: twind, on a fresh database ---------------------
# Sets TWIND_US, TWIND_TICKS, TWIND_RSS_KB, TWIND_START_US, BATCH_SUM, BATCH_COUNT.
twind_phase() {
	local r=$1 dir=$TMP/r$1 t0 t1 deadline base target seen reached left_us left_s
	local twind_pid load_pid curl_pid awk_pid cpu0 cpu1 twind_rc batch
	cat >"$dir/twind.conf" <<EOF
[mqtt]
host = 127.0.0.1
port = $BROKER_PORT
client_id = $TWIND_ID
[http]
listen = 127.0.0.1:$HTTP_PORT
[storage]
database = $dir/bench.db
EOF
	# MODELS=1: every bench twin has a model, so each value is checked
	# (type, range) as in a modelled plant.
	if [[ $MODELS == 1 ]]; then
		write_models "$dir"
		printf '[twins]\nmodels = %s/models\nfile = %s/twins.json\n' "$dir" "$dir" \
			>>"$dir/twind.conf"
	fi
	if ((RULES > 0)); then
		write_rules "$dir"
		printf '[rules]\nfile = %s/rules.json\n' "$dir" >>"$dir/twind.conf"
	fi
	# Start-up: from the fork to the first /healthz 200, polled every ~10 ms
	# (so it is an upper bound by about a poll and a curl).
	now_us
	t0=$NOW
	"$TWIND" -c "$dir/twind.conf" >"$dir/twind.out" 2>"$dir/twind.log" &
	twind_pid=$!
	deadline=$((t0 + READY_S * 1000000))
	until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
		"http://127.0.0.1:$HTTP_PORT/healthz" || true) == 200 ]]; do
		kill -0 "$twind_pid" 2>/dev/null || { tail_log "$dir/twind.log"; die "round $r: twind exited during start-up"; }
		now_us
		((NOW < deadline)) || { tail_log "$dir/twind.log"; die "round $r: twind /healthz not 200 within ${READY_S}s"; }
		sleep 0.01
	done
	now_us
	TWIND_START_US=$((NOW - t0))
	base=$(metric_now)
	[[ -n $base ]] || die "twind's /metrics has no $METRIC line"
	target=$((base + COUNT))

	# One curl keeps polling (one connection, POLL_RATE a second) and awk passes
	# on only the number: forking a curl every 20 ms would cost the machine more
	# than twind spends on the messages.
	mkfifo "$dir/curl.fifo" "$dir/poll.fifo"
	curl -s --max-time 2 --rate "$POLL_RATE/s" \
		"http://127.0.0.1:$HTTP_PORT/metrics?poll=[1-$((FINISH_S * POLL_RATE))]" \
		>"$dir/curl.fifo" 2>/dev/null &
	curl_pid=$!
	awk -v m="$METRIC" '$1 == m { printf "%.0f\n", $2; fflush() }' \
		<"$dir/curl.fifo" >"$dir/poll.fifo" &
	awk_pid=$!
	exec {POLL_FD}<"$dir/poll.fifo"

	cpu0=$(cpu_ticks "$twind_pid")
	now_us
	t0=$NOW
	"$LOAD_BIN" -p "$BROKER_PORT" -n "$COUNT" -t "$TWINS" -i "twind-bench-load-$r-2" \
		>"$dir/load2.out" 2>"$dir/load2.err" &
	load_pid=$!
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
	((reached)) || { tail_log "$dir/twind.log"; die "round $r: twind applied $((seen - base)) of $COUNT within ${FINISH_S}s"; }
	cpu1=$(cpu_ticks "$twind_pid")
	TWIND_RSS_KB=$(hwm_kb "$twind_pid")
	TWIND_TICKS=$((cpu1 - cpu0))
	TWIND_US=$((t1 - t0))
	# The poller is done: stop it now rather than let it run into the next round.
	kill -TERM "$curl_pid" "$awk_pid" 2>/dev/null || true
	wait "$curl_pid" 2>/dev/null || true
	wait "$awk_pid" 2>/dev/null || true
	exec {POLL_FD}<&-
	# A commit counts its messages as applied after its batch size, so once
	# every message is applied the histogram holds every commit of this run.
	batch=$(batch_now)
	[[ -n $batch ]] || die "twind's /metrics has no twind_commit_batch_size_sum/_count lines"
	read -r BATCH_SUM BATCH_COUNT <<<"$batch"
	((BATCH_COUNT > 0)) || die "round $r: twind reports no commits"
	wait "$load_pid" || { tail_log "$dir/load2.err"; die "round $r: twind-load failed in the twind phase"; }

	kill -TERM "$twind_pid"
	now_us
	deadline=$((NOW + STOP_S * 1000000))
	while kill -0 "$twind_pid" 2>/dev/null && ((NOW < deadline)); do
		sleep 0.05
		now_us
	done
	if kill -0 "$twind_pid" 2>/dev/null; then
		tail_log "$dir/twind.log"
		die "round $r: twind still running ${STOP_S}s after SIGTERM"
	fi
	twind_rc=0
	wait "$twind_pid" || twind_rc=$?
	((twind_rc == 0)) || { tail_log "$dir/twind.log"; die "round $r: twind exited with $twind_rc after SIGTERM"; }
	clear_session "$TWIND_ID" || die "round $r: could not clear twind's broker session"
	rm -f "$dir/bench.db" "$dir/bench.db-wal" "$dir/bench.db-shm"
}

# --- the rounds ----------------------------------------------------------
F_RATE=() F_CPU=() F_RSS=() T_RATE=() T_CPU=() T_RSS=() T_START=() T_BATCH=()
for ((r = 1; r <= ROUNDS; r++)); do
	mkdir "$TMP/r$r"
	floor_phase "$r"
	twind_phase "$r"
	# rate msg/s, CPU us/msg, RSS MB for each, then start-up ms and messages per commit
	read -r fr fc fm tr tc tm ts tb < <(
		awk -v n="$COUNT" -v fus="$FLOOR_US" -v tus="$TWIND_US" \
			-v fcpu="$FLOOR_CPU_S" -v tticks="$TWIND_TICKS" -v hz="$CLK_TCK" \
			-v frss="$FLOOR_RSS_KB" -v trss="$TWIND_RSS_KB" -v sus="$TWIND_START_US" \
			-v bs="$BATCH_SUM" -v bc="$BATCH_COUNT" 'BEGIN {
			printf "%.1f %.4f %.3f %.1f %.4f %.3f %.1f %.2f\n", n / (fus / 1e6), fcpu * 1e6 / n,
			    frss / 1024, n / (tus / 1e6), tticks / hz * 1e6 / n, trss / 1024, sus / 1e3, bs / bc
		}')
	F_RATE+=("$fr") F_CPU+=("$fc") F_RSS+=("$fm")
	T_RATE+=("$tr") T_CPU+=("$tc") T_RSS+=("$tm") T_START+=("$ts") T_BATCH+=("$tb")
	awk -v r="$r" -v rr="$ROUNDS" -v fr="$fr" -v fc="$fc" -v fm="$fm" \
		-v tr="$tr" -v tc="$tc" -v tm="$tm" -v ts="$ts" -v tb="$tb" 'BEGIN {
		printf "bench: round %d/%d: floor %.0f msg/s %.2f us/msg %.1f MB; " \
		    "twind %.0f msg/s %.2f us/msg %.1f MB start-up %.0f ms batch %.1f msg/commit; " \
		    "ingest %.2f cpu %.2f\n", r, rr, fr, fc, fm, tr, tc, tm, ts, tb, tr / fr, tc / fc
	}'
done

# --- the table: medians over the rounds ----------------------------------
awk -v rr="$ROUNDS" \
	-v fr="$(median "${F_RATE[@]}")" -v fc="$(median "${F_CPU[@]}")" -v fm="$(median "${F_RSS[@]}")" \
	-v tr="$(median "${T_RATE[@]}")" -v tc="$(median "${T_CPU[@]}")" -v tm="$(median "${T_RSS[@]}")" \
	-v ts="$(median "${T_START[@]}")" -v tb="$(median "${T_BATCH[@]}")" 'BEGIN {
	printf "%-16s %12s %12s %12s   (median of %d rounds)\n", "", "floor", "twind", "twind/floor", rr
	printf "%-16s %12.0f %12.0f %12.2f\n", "ingest msg/s", fr, tr, tr / fr
	printf "%-16s %12.2f %12.2f %12.2f\n", "CPU us/msg", fc, tc, tc / fc
	printf "%-16s %12.1f %12.1f\n", "peak RSS MB", fm, tm
	printf "%-16s %12s %12.0f\n", "start-up ms", "", ts
	printf "%-16s %12s %12.1f\n", "msg/commit", "", tb
	printf "ratio ingest=%.2f cpu=%.2f\n", tr / fr, tc / fc
}'
