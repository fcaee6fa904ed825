#!/usr/bin/env bash
# Measures twind's ingest rate and its closed loop (telemetry -> rule -> command), CPU per message and peak memory as ratios to a bare C subscriber ("the floor") on the same private broker in the same run, because shared machines are too noisy for absolute numbers.
#
# usage: tests/bench/bench.sh [COUNT]     (from the repo root; env ROUNDS, TWINS, TWIND,
#        MODELS, RULES, INGEST, CLOSED_LOOP, CL_COUNT, LAT_COUNT, LAT_RATE, CL_WAIT_S;
#        BENCH_KEEP=1 keeps the logs of a run that passed)
#
# Ingest: ROUNDS rounds (default 3) of one floor phase then one twind phase,
# each twind phase with a fresh database; every figure in the table is the
# median over the rounds, and the ratios are medians of twind over medians of
# the floor.
#
# Closed loop: every 10th message of each twin is hotter than 100 and must
# bring exactly one QoS 1 command on plant/{twin}/cmd (twind: the rule in
# tests/bench/closed-loop/rules.json, on twins of the model beside it; the
# floor: twind-floor -c). ROUNDS rounds of floor, twind with a PLC that never
# answers, and twind with a PLC that answers "done", each run on a fresh twind:
# CL_COUNT (50,000) messages as fast as the broker takes them, for the rate
# (messages / time to the last command) and CPU, then LAT_COUNT (20,000) at
# LAT_RATE (2,000) msg/s for trigger -> command latency. A run whose commands
# stop coming for CL_WAIT_S (5) seconds is "stalled", and shown as such.
# RULES=N gives the closed loop N rules per twin too, overheat among them.
set -euo pipefail

COUNT=${1:-200000}
ROUNDS=${ROUNDS:-3}
TWINS=${TWINS:-100}
TWIND=${TWIND:-./twind}
MODELS=${MODELS:-0}
RULES=${RULES:-0}
INGEST=${INGEST:-1}
CLOSED_LOOP=${CLOSED_LOOP:-1}
CL_COUNT=${CL_COUNT:-50000}
LAT_COUNT=${LAT_COUNT:-20000}
LAT_RATE=${LAT_RATE:-2000}
CL_WAIT_S=${CL_WAIT_S:-5}
SYNC=${SYNC:-full}		# [storage] synchronous of every twind phase: full (the default) or normal
FLOOR_BIN=tests/bench/twind-floor
LOAD_BIN=tests/bench/twind-load
CL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/closed-loop" && pwd)
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
			[[ -n ${BENCH_KEEP:-} ]] || rm -rf "$TMP"
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
	# awk reads to the end: leaving early would make curl fail on a closed pipe (pipefail).
	curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" |
		awk -v m="$METRIC" '$1 == m && !seen { printf "%.0f\n", $2; seen = 1 }'
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

# Formats a whole number with thousands separators, as the tables in TARGETS.md.
commas() {
	awk -v n="$1" 'BEGIN {
		s = sprintf("%.0f", n); out = ""
		while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
		print s out
	}'
}

for v in COUNT ROUNDS TWINS CL_COUNT LAT_COUNT LAT_RATE CL_WAIT_S; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[[ $RULES =~ ^[0-9]+$ ]] || die "RULES must be a whole number, not '$RULES'"
[[ $INGEST == [01] && $CLOSED_LOOP == [01] ]] || die "INGEST and CLOSED_LOOP are 0 or 1"
((TWINS <= 100000)) || die "TWINS must be at most 100000"
for bin in "$FLOOR_BIN" "$LOAD_BIN" "$TWIND"; do
	[[ -x $bin ]] || die "$bin is missing: run 'make' and 'make bench' from the repo root"
done
[[ -f $CL_DIR/rules.json && -d $CL_DIR/models ]] || die "$CL_DIR lacks rules.json or models/"
command -v mosquitto >/dev/null || die "mosquitto is not installed"
command -v curl >/dev/null || die "curl is not installed"
CLK_TCK=$(getconf CLK_TCK)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/twind-bench.XXXXXX")
read -r INGEST_PORT CL_PORT HTTP_PORT <<<"$(free_ports 3)"

# --- the private brokers ---------------------------------------------------
# Queues and in-flight windows large enough that the broker never drops or
# throttles a slow subscriber: both contestants see the same broker. Starts
# one on port $1 named $2, with extra configuration lines from stdin; sets
# BROKER_PORT and BROKER_PID.
start_broker() {
	local port=$1 name=$2
	{
		cat <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 1000000
max_packet_size 1048576
log_type error
log_type warning
EOF
		cat
	} >"$TMP/$name.conf"
	mosquitto -c "$TMP/$name.conf" >"$TMP/$name.log" 2>&1 &
	BROKER_PID=$!
	BROKER_PORT=$port
	wait_port "$BROKER_PORT" "$BROKER_PID" || { tail_log "$TMP/$name.log"; die "mosquitto ($name) did not start"; }
}

stop_broker() {
	kill -TERM "$BROKER_PID" 2>/dev/null || true
	wait "$BROKER_PID" 2>/dev/null || true
}

# Waits for pid $1 to exit, at most $2 seconds; returns 1 if it is still running.
wait_exit() {
	local deadline
	now_us
	deadline=$((NOW + $2 * 1000000))
	while kill -0 "$1" 2>/dev/null; do
		now_us
		((NOW < deadline)) || return 1
		sleep 0.02
	done
}

# --- the floor -------------------------------------------------------------
# Starts twind-floor with extra options "$@" (after the round's directory $1
# and the message count $2). Its stdout comes through a FIFO, held open as
# FLOOR_FD, so that a line is seen the moment it is written, without polling;
# returns once it has subscribed. Sets FLOOR_PID.
floor_start() {
	local dir=$1 n=$2 line
	shift 2
	rm -f "$dir/floor.fifo"
	mkfifo "$dir/floor.fifo"
	"$FLOOR_BIN" -p "$BROKER_PORT" -n "$n" -T "$FINISH_S" "$@" \
		>"$dir/floor.fifo" 2>"$dir/floor.err" &
	FLOOR_PID=$!
	exec {FLOOR_FD}<"$dir/floor.fifo"
	line=
	read -r -t "$READY_S" -u "$FLOOR_FD" line || true
	[[ $line == ready ]] || { tail_log "$dir/floor.err"; die "$dir: the floor did not subscribe"; }
}

# --- phase 1 of round $1: the floor --------------------------------------
# Sets FLOOR_US, FLOOR_CPU_S, FLOOR_RSS_KB.
floor_phase() {
	local r=$1 dir=$TMP/r$1 line t0 t1 load_pid
	floor_start "$dir" "$COUNT" -i twind-bench-floor

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
	wait "$FLOOR_PID" || { tail_log "$dir/floor.err"; die "round $r: twind-floor failed"; }
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
	write_twins "$dir/twins.json" "dtmi:twind:bench:Machine;1"
}

# Twins bench-0 .. bench-(TWINS-1) of model $2, in file $1.
write_twins() {
	local i
	{
		printf '['
		for ((i = 0; i < TWINS; i++)); do
			((i > 0)) && printf ','
			printf '{"id":"bench-%d","model":"%s"}' "$i" "$2"
		done
		printf ']\n'
	} >"$1"
}

# Rules r$1 .. r($2-1) that every bench twin evaluates on every message and
# never raise: thresholds and window functions (avg_over, zscore, rate) in
# turn, on the properties $3 $4 $5 $6 (the first is the threshold's). A
# twin's messages are 1 ms apart in ts, so a value with a span of 15 can
# climb at 15,000 a second between two of them: only a rate limit far above
# that never raises (at 100 + i, 10 rules raised ~550 alerts in 100,000
# messages).
filler_rules() {
	local i
	for ((i = $1; i < $2; i++)); do
		((i > $1)) && printf ','
		case $((i % 4)) in
		0) printf '{"name":"r%d","when":"%s > %d"}' "$i" "$3" $((1000 + i)) ;;
		1) printf '{"name":"r%d","when":"avg_over(%s, 1m) > %d"}' "$i" "$4" $((500 + i)) ;;
		2) printf '{"name":"r%d","when":"zscore(%s, 5m) > %d"}' "$i" "$5" $((50 + i)) ;;
		3) printf '{"name":"r%d","when":"rate(%s, 10m) > %d"}' "$i" "$6" $((1000000 + i)) ;;
		esac
	done
}

# RULES=N such rules for the ingest load's payload.
write_rules() {
	{
		printf '['
		filler_rules 0 "$RULES" temperature vibration current temperature
		printf ']\n'
	} >"$1/rules.json"
}

# --- twind ---------------------------------------------------------------
# The settings every twind phase shares, for a twind with its database in $1.
twind_conf() {
	cat <<EOF
[mqtt]
host = 127.0.0.1
port = $BROKER_PORT
client_id = $TWIND_ID
[http]
listen = 127.0.0.1:$HTTP_PORT
[storage]
database = $1/bench.db
synchronous = $SYNC
EOF
}

# Starts twind on config $2 (logs in directory $1). Start-up: from the fork
# to the first /healthz 200, polled every ~10 ms (so it is an upper bound by
# about a poll and a curl). Sets TWIND_PID and TWIND_START_US.
twind_start() {
	local dir=$1 conf=$2 t0 deadline
	now_us
	t0=$NOW
	"$TWIND" -c "$conf" >"$dir/twind.out" 2>"$dir/twind.log" &
	TWIND_PID=$!
	deadline=$((t0 + READY_S * 1000000))
	until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
		"http://127.0.0.1:$HTTP_PORT/healthz" || true) == 200 ]]; do
		kill -0 "$TWIND_PID" 2>/dev/null || { tail_log "$dir/twind.log"; die "$dir: twind exited during start-up"; }
		now_us
		((NOW < deadline)) || { tail_log "$dir/twind.log"; die "$dir: twind /healthz not 200 within ${READY_S}s"; }
		sleep 0.01
	done
	now_us
	TWIND_START_US=$((NOW - t0))
}

# SIGTERM, a clean exit within STOP_S, then the broker session and the
# database go, so the next phase starts from nothing.
twind_stop() {
	local dir=$1 twind_rc
	kill -TERM "$TWIND_PID"
	wait_exit "$TWIND_PID" "$STOP_S" || { tail_log "$dir/twind.log"; die "$dir: twind still running ${STOP_S}s after SIGTERM"; }
	twind_rc=0
	wait "$TWIND_PID" || twind_rc=$?
	((twind_rc == 0)) || { tail_log "$dir/twind.log"; die "$dir: twind exited with $twind_rc after SIGTERM"; }
	clear_session "$TWIND_ID" || die "$dir: could not clear twind's broker session"
	rm -f "$dir/bench.db" "$dir/bench.db-wal" "$dir/bench.db-shm"
}

# twind's own view of a run: alerts raised and messages dropped. Drops mean
# the load and the bench's model disagree, and the run would not be the loop
# it claims to be.
twind_counts() {
	curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" |
		awk '$1 == "twind_alerts_raised_total" { a = $2 }
		     $1 ~ /^twind_messages_dropped_total/ { d += $2 }
		     END { printf "%.0f %.0f\n", a, d }'
}

# --- phase 2 of round $1: twind, on a fresh database ---------------------
# Sets TWIND_US, TWIND_TICKS, TWIND_RSS_KB, TWIND_START_US, BATCH_SUM, BATCH_COUNT.
twind_phase() {
	local r=$1 dir=$TMP/r$1 t0 t1 deadline base target seen reached left_us left_s
	local load_pid curl_pid awk_pid cpu0 cpu1 batch alerts dropped
	twind_conf "$dir" >"$dir/twind.conf"
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
	twind_start "$dir" "$dir/twind.conf"
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

	cpu0=$(cpu_ticks "$TWIND_PID")
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
	cpu1=$(cpu_ticks "$TWIND_PID")
	TWIND_RSS_KB=$(hwm_kb "$TWIND_PID")
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
	read -r alerts dropped <<<"$(twind_counts)"
	((alerts + dropped == 0)) ||
		echo "bench: warning: round $r: twind raised $alerts alerts and dropped $dropped messages; the ingest load should bring neither" >&2
	twind_stop "$dir"
}

# --- the closed loop ------------------------------------------------------
# The twins file, and the rules: overheat alone, or with RULES=N > 1 with
# N-1 rules beside it that read the same message and never raise.
write_closed_loop() {
	local dir=$1 one
	write_twins "$dir/twins.json" "dtmi:twind:bench:Pump;1"
	if ((RULES <= 1)); then
		CL_RULES=$CL_DIR/rules.json
		return
	fi
	one=$(<"$CL_DIR/rules.json")
	one=${one#*\[}
	one=${one%\]*}
	{
		printf '[%s,' "$one"
		filler_rules 1 "$RULES" temperature pressure flow pressure
		printf ']\n'
	} >"$dir/rules.json"
	CL_RULES=$dir/rules.json
}

# Runs twind-load -c against whatever listens, with name $1 in directory $2,
# $3 messages at rate $4 (0: flat out), answering when $5 is 1. Its own
# deadlines end it (CL_WAIT_S without a new command, FINISH_S in all); this
# one only guards against a hang. Sets CL_LINE to its report:
# closed published N triggers M commands K duplicates D unexpected U answered A
#   last_cmd_s S p50_ms P p99_ms Q max_ms X
run_closed_load() {
	local name=$1 dir=$2 n=$3 rate=$4 answer=$5 pid
	local -a opt=(-c -p "$BROKER_PORT" -n "$n" -t "$TWINS" -r "$rate" -w "$CL_WAIT_S" -T "$FINISH_S"
		-i "twind-bench-$name")
	((answer)) && opt+=(-a)
	"$LOAD_BIN" "${opt[@]}" >"$dir/$name.out" 2>"$dir/$name.err" &
	pid=$!
	wait_exit "$pid" $((FINISH_S + READY_S)) || { tail_log "$dir/$name.err"; die "$dir: twind-load ($name) hangs"; }
	wait "$pid" || { tail_log "$dir/$name.err"; die "$dir: twind-load ($name) failed"; }
	CL_LINE=$(<"$dir/$name.out")
	[[ $CL_LINE == closed\ published* ]] || { tail_log "$dir/$name.err"; die "$dir: twind-load ($name) printed no report"; }
}

# The field after word $1 in CL_LINE.
cl_field() {
	local -a f
	local i
	read -r -a f <<<"$CL_LINE"
	for ((i = 0; i + 1 < ${#f[@]}; i++)); do
		if [[ ${f[i]} == "$1" ]]; then
			echo "${f[i + 1]}"
			return
		fi
	done
	die "no $1 in: $CL_LINE"
}

# Results, by system (floor, silent, answers), one word per round appended.
declare -A CL_RATE CL_DONE CL_CPU CL_RSS CL_P50 CL_P99 CL_LDONE CL_WRONG
CL_SYSTEMS=(floor silent answers)

# Records the throughput run of system $1 from CL_LINE, with CPU seconds $2 and
# peak RSS in kB $3: its rate when every command came, else "-" and the count.
cl_record_rate() {
	local sys=$1 n m k dup unexp last
	n=$(cl_field published) m=$(cl_field triggers) k=$(cl_field commands)
	dup=$(cl_field duplicates) unexp=$(cl_field unexpected) last=$(cl_field last_cmd_s)
	CL_DONE[$sys]+=" $k/$m"
	if ((k == m)); then
		CL_RATE[$sys]+=" $(awk -v n="$n" -v s="$last" 'BEGIN { printf "%.1f", n / s }')"
	fi
	CL_CPU[$sys]+=" $(awk -v c="$2" -v n="$n" 'BEGIN { printf "%.4f", c * 1e6 / n }')"
	CL_RSS[$sys]+=" $(awk -v k="$3" 'BEGIN { printf "%.3f", k / 1024 }')"
	((dup + unexp == 0)) || CL_WRONG[$sys]+=" $dup/$unexp"
}

# Records the latency run of system $1 from CL_LINE.
cl_record_latency() {
	local sys=$1 m k dup unexp
	m=$(cl_field triggers) k=$(cl_field commands)
	dup=$(cl_field duplicates) unexp=$(cl_field unexpected)
	CL_LDONE[$sys]+=" $k/$m"
	if ((k > 0)); then
		CL_P50[$sys]+=" $(cl_field p50_ms)"
		CL_P99[$sys]+=" $(cl_field p99_ms)"
	fi
	((dup + unexp == 0)) || CL_WRONG[$sys]+=" $dup/$unexp"
}

# One line per run, so a stall or an odd round shows where it happened: run
# $2 of round $1, paced when $3 is 1 (then its rate is the load's, not news),
# followed by $4.
cl_say() {
	local r=$1 what=$2 paced=$3 extra=${4:-}
	awk -v r="$r" -v rr="$ROUNDS" -v what="$what" -v paced="$paced" -v extra="$extra" \
		-v line="$CL_LINE" 'BEGIN {
		n = split(line, f, " ")
		for (i = 1; i < n; i++) v[f[i]] = f[i + 1]
		if (v["commands"] != v["triggers"])
			s = sprintf("stalled: %d of %d commands", v["commands"], v["triggers"])
		else if (paced)
			s = sprintf("%d of %d commands", v["commands"], v["triggers"])
		else
			s = sprintf("%.0f msg/s", v["published"] / v["last_cmd_s"])
		printf "bench: closed loop round %d/%d: %-26s %s, p50 %s ms p99 %s ms", r, rr, what, s, v["p50_ms"], v["p99_ms"]
		if (v["duplicates"] + v["unexpected"] > 0)
			printf ", WRONG: %d duplicate and %d unexpected commands", v["duplicates"], v["unexpected"]
		printf "%s\n", extra
	}'
}

# Round $1 of the floor: kind $2 is rate (CL_COUNT flat out) or latency
# (LAT_COUNT at LAT_RATE). The floor leaves once the broker has taken all
# its commands, and then reports its CPU and peak RSS.
cl_floor() {
	local r=$1 kind=$2 dir=$TMP/cl$1 n rate line cpu rss
	if [[ $kind == rate ]]; then n=$CL_COUNT rate=0; else n=$LAT_COUNT rate=$LAT_RATE; fi
	floor_start "$dir" "$n" -c -i twind-bench-floor-cl
	run_closed_load "floor-$kind-$r" "$dir" "$n" "$rate" 0
	line=
	read -r -t "$READY_S" -u "$FLOOR_FD" line || true
	[[ $line == received* ]] || { tail_log "$dir/floor.err"; die "round $r: the closed-loop floor did not finish"; }
	wait "$FLOOR_PID" || { tail_log "$dir/floor.err"; die "round $r: twind-floor -c failed"; }
	exec {FLOOR_FD}<&-
	# received N first_to_last_s S cpu_s C maxrss_kb K commands X
	read -r _ _ _ _ _ cpu _ rss _ <<<"$line"
	if [[ $kind == rate ]]; then
		cl_record_rate floor "$cpu" "$rss"
		cl_say "$r" "floor" 0 "; $(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.2f", c * 1e6 / n }') ms CPU per 1k msgs"
	else
		cl_record_latency floor
		cl_say "$r" "floor at $rate msg/s" 1
	fi
}

# Round $1 of twind, kind $2 as cl_floor's, PLC answering when $3 is 1.
# CPU runs from the load's start to its exit, so a stalled run also counts
# twind's idle CL_WAIT_S seconds (its 1 s rule timer: a few ms).
cl_twind() {
	local r=$1 kind=$2 answer=$3 dir=$TMP/cl$1 sys n rate cpu0 cpu1 rss counts alerts dropped
	sys=silent
	((answer)) && sys=answers
	if [[ $kind == rate ]]; then n=$CL_COUNT rate=0; else n=$LAT_COUNT rate=$LAT_RATE; fi
	{
		twind_conf "$dir"
		printf '[twins]\nmodels = %s/models\nfile = %s/cl/twins.json\n' "$CL_DIR" "$TMP"
		printf '[rules]\nfile = %s\n' "$CL_RULES"
	} >"$dir/twind.conf"
	twind_start "$dir" "$dir/twind.conf"
	cpu0=$(cpu_ticks "$TWIND_PID")
	run_closed_load "$sys-$kind-$r" "$dir" "$n" "$rate" "$answer"
	cpu1=$(cpu_ticks "$TWIND_PID")
	rss=$(hwm_kb "$TWIND_PID")
	counts=$(twind_counts)
	read -r alerts dropped <<<"$counts"
	((dropped == 0 && alerts == $(cl_field triggers))) ||
		echo "bench: warning: $sys-$kind-$r: twind dropped $dropped messages and raised $alerts alerts for $(cl_field triggers) triggers" >&2
	twind_stop "$dir"
	if [[ $kind == rate ]]; then
		cl_record_rate "$sys" "$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" 'BEGIN { print t / hz }')" "$rss"
		cl_say "$r" "twind, PLC $([[ $sys == silent ]] && echo silent || echo answers)" 0 \
			"; $(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }') ms CPU per 1k msgs; twind raised $alerts alerts"
	else
		cl_record_latency "$sys"
		cl_say "$r" "twind, PLC $([[ $sys == silent ]] && echo silent || echo answers) at $rate" 1 \
			"; twind raised $alerts alerts"
	fi
}

# A table cell for the rate of system $1: the median rate, or the stall.
cl_rate_cell() {
	local sys=$1 stalled=0 worst='' w rounds=0
	for w in ${CL_DONE[$sys]}; do
		rounds=$((rounds + 1))
		if [[ ${w%/*} != "${w#*/}" ]]; then
			stalled=$((stalled + 1))
			[[ -z $worst || ${w%/*} -lt ${worst%/*} ]] && worst=$w
		fi
	done
	if ((stalled == 0)); then
		# shellcheck disable=SC2086 # one word per round
		commas "$(median ${CL_RATE[$sys]})"
	elif ((stalled == rounds)); then
		echo "stalled: $(commas "${worst%/*}") of $(commas "${worst#*/}") commands"
	else
		echo "stalled in $stalled of $rounds rounds: $(commas "${worst%/*}") of $(commas "${worst#*/}") commands"
	fi
}

# A latency cell: median of the rounds' percentile $2 (P50 or P99) of system
# $1, and how many commands it is over when some never came.
cl_lat_cell() {
	local sys=$1 which=$2 vals worst='' w
	if [[ $which == P50 ]]; then vals=${CL_P50[$sys]:-}; else vals=${CL_P99[$sys]:-}; fi
	for w in ${CL_LDONE[$sys]}; do
		[[ ${w%/*} != "${w#*/}" ]] && [[ -z $worst || ${w%/*} -lt ${worst%/*} ]] && worst=$w
	done
	if [[ -z $vals ]]; then
		echo "no command"
		return
	fi
	# shellcheck disable=SC2086 # one word per round
	printf '%.3f ms' "$(median $vals)"
	[[ -n $worst ]] && printf ' (%s of %s commands)' "$(commas "${worst%/*}")" "$(commas "${worst#*/}")"
	echo
}

closed_loop() {
	local r sys fr fc frate rate cpu rss share label
	mkdir "$TMP/cl"
	write_closed_loop "$TMP/cl"
	echo "bench: closed loop: $CL_COUNT messages flat out and $LAT_COUNT at $LAT_RATE msg/s x $ROUNDS rounds," \
		"$TWINS twins, QoS 1, model on, $((RULES > 1 ? RULES : 1)) rules per twin," \
		"stalled after ${CL_WAIT_S}s without a command, broker 127.0.0.1:$BROKER_PORT"
	for ((r = 1; r <= ROUNDS; r++)); do
		mkdir "$TMP/cl$r"
		cl_floor "$r" rate
		cl_twind "$r" rate 0
		cl_twind "$r" rate 1
		cl_floor "$r" latency
		cl_twind "$r" latency 0
		cl_twind "$r" latency 1
	done

	# shellcheck disable=SC2086 # one word per round
	fr=$(median ${CL_RATE[floor]:-0})
	# shellcheck disable=SC2086
	fc=$(median ${CL_CPU[floor]})
	echo
	echo "closed loop, median of $ROUNDS rounds: $CL_COUNT messages for the rate and CPU, $LAT_COUNT at $LAT_RATE msg/s for latency"
	echo
	echo "| system | closed-loop msg/s | share of floor | trigger->command p50 at $LAT_RATE msg/s | trigger->command p99 at $LAT_RATE msg/s | CPU per 1k msgs | peak RSS |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	frate=$(cl_rate_cell floor)
	for sys in "${CL_SYSTEMS[@]}"; do
		case $sys in
		floor) label="floor (bare C subscriber)" ;;
		silent) label="twind (PLC silent)" ;;
		answers) label="twind (PLC answers)" ;;
		esac
		rate=$(cl_rate_cell "$sys")
		share=-
		if [[ $rate != stalled* && $frate != stalled* ]]; then
			# shellcheck disable=SC2086
			share=$(awk -v t="$(median ${CL_RATE[$sys]})" -v f="$fr" 'BEGIN { printf "%.2f", t / f }')
		fi
		# shellcheck disable=SC2086
		cpu=$(awk -v t="$(median ${CL_CPU[$sys]})" -v f="$fc" -v s="$sys" 'BEGIN {
			printf "%.1f ms", t
			if (s != "floor") printf " (%.2f x floor)", t / f
		}')
		# shellcheck disable=SC2086
		rss=$(awk -v m="$(median ${CL_RSS[$sys]})" 'BEGIN { printf "%.1f MB", m }')
		echo "| $label | $rate | $share | $(cl_lat_cell "$sys" P50) | $(cl_lat_cell "$sys" P99) | $cpu | $rss |"
	done
	for sys in "${CL_SYSTEMS[@]}"; do
		if [[ -n ${CL_WRONG[$sys]:-} ]]; then
			echo "WRONG: $sys sent duplicate/unexpected commands (per run):${CL_WRONG[$sys]}"
		fi
	done
}

# --- ingest: the rounds ----------------------------------------------------
ingest() {
	local r fr fc fm tr tc tm ts tb
	start_broker "$INGEST_PORT" mosquitto </dev/null
	echo "bench: $COUNT messages x $ROUNDS rounds, $TWINS twins, QoS 1, models $([[ $MODELS == 1 ]] && echo on || echo off), $RULES rules per twin, broker 127.0.0.1:$BROKER_PORT"
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
	stop_broker
}

if ((INGEST)); then
	ingest
fi
if ((CLOSED_LOOP)); then
	# Nagle's algorithm in the broker would hold a command or a trigger back
	# for milliseconds whenever an earlier segment is unacknowledged, for every
	# contestant alike: the latency would be the broker's. The ingest broker
	# keeps the default, as its figures always have.
	start_broker "$CL_PORT" mosquitto-cl <<<"set_tcp_nodelay true"
	closed_loop
	stop_broker
fi
