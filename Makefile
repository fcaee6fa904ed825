# twind: a digital-twin state daemon. Plain GNU make; see README.md.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
WITH_SYSTEMD ?= yes
SANITIZE ?=
PYTHON ?= /usr/bin/python3
SIM_RATE ?= 20
SIM_ACCEL ?= 10
# make run RULES=config/rules-anomaly.json: another rules file for the plant
RULES ?= config/rules.json

CC ?= cc
PKGS := libmosquitto libcjson sqlite3 libmicrohttpd inih libsodium gnutls
DEFS := -D_GNU_SOURCE -DTW_WWW_DIR='"$(DATADIR)/twind/www"'
ifeq ($(WITH_SYSTEMD),yes)
PKGS += libsystemd
DEFS += -DWITH_SYSTEMD
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
TW_CFLAGS := -std=c11 -O2 -g $(WARN) $(DEFS) -Iinclude -MMD -MP
TW_LDFLAGS :=
ifneq ($(SANITIZE),)
TW_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -O1
TW_LDFLAGS += -fsanitize=$(SANITIZE)
BUILD := build/san
else
BUILD := build/rel
endif

# Debian packages: what the build, `make run` and `make test` need.
DEPS_BUILD := gcc make pkg-config libmosquitto-dev libcjson-dev libsqlite3-dev libgnutls28-dev \
	libmicrohttpd-dev libinih-dev uthash-dev libsystemd-dev libsodium-dev
DEPS_RUN := mosquitto curl
DEPS_TEST := libcmocka-dev python3-pytest python3-paho-mqtt python3-requests sqlite3 \
	chromium chromium-driver python3-selenium prometheus debhelper fakeroot dpkg-dev lintian git

# Only after the dependencies exist: pkg-config fails quietly before.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CORE := err log clock text names topic conf ring ingest value metrics block model model_parse model_resolve envelope converge plant expr expr_eval window quantile anomaly rules \
	twin store store_write store_read history history_blocks rollup_block rollup_blocks retention events alert progress request outbox commands desired alerts runtime actions undo apply \
	restore twin_doc watchdog whatif whatif_rules backtest anomaly_store engine engine_batch engine_timer engine_serve mqtt tokens http_guard www http api_page api_twins api_history api_forecast api_simulate api_backtest api_alerts api_models \
	api_events api_system
CORE_OBJ := $(CORE:%=$(BUILD)/%.o)
UNIT := block rollup_block history_model envelope converge anomaly quantile whatif history tokens http_guard www ring ingest conf clock twin store model plant events expr window rules runtime request outbox commands alloc_fail
UNIT_BIN := $(UNIT:%=$(BUILD)/tests/test_%)

ifeq ($(SANITIZE),)
TWIND := twind
else
TWIND := $(BUILD)/twind
endif

.PHONY: all run test unit integration bench install uninstall clean deps deps-test \
	test-sanitize deb

all: $(TWIND) twind-sim tests/bench/twind-load tests/bench/twind-floor tests/bench/twind-functions \
	tests/bench/twind-rollups

$(BUILD)/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(TW_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(TW_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

$(TWIND): $(CORE_OBJ) $(BUILD)/main.o
	$(CC) $(TW_LDFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -lm

twind-sim: src/sim.c src/sim_plant.c include/sim.h
	$(CC) $(TW_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^) \
		$(PKG_LIBS) -lm

tests/bench/twind-load: tests/bench/load.c
	$(CC) $(TW_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(PKG_LIBS) -lm

tests/bench/twind-floor: tests/bench/floor.c
	$(CC) $(TW_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(PKG_LIBS) -lm

tests/bench/twind-functions: tests/bench/functions.c $(CORE_OBJ)
	$(CC) $(TW_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -lm

tests/bench/twind-rollups: tests/bench/rollups.c $(CORE_OBJ)
	$(CC) $(TW_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -lm

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(CORE_OBJ)
	$(CC) $(TW_LDFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka -lpthread -lm

# Allocation failures injected into the parsers: every allocation call of
# twind's objects goes through the test's counting wrappers, and so do
# inih's, linked from its static library (libinih-dev) for that alone.
ALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup \
	-Wl,--wrap=asprintf,--wrap=free
$(BUILD)/tests/test_alloc_fail: $(BUILD)/tests/test_alloc_fail.o $(CORE_OBJ)
	$(CC) $(TW_LDFLAGS) $(LDFLAGS) $(ALLOC_WRAP) -o $@ $^ -l:libinih.a $(PKG_LIBS) -lcmocka \
		-lpthread -lm

# Installs what is missing, as root or through sudo; does nothing when all is there.
deps:
	@./tests/deps.sh $(DEPS_BUILD) $(DEPS_RUN)

deps-test:
	@./tests/deps.sh $(DEPS_BUILD) $(DEPS_RUN) $(DEPS_TEST)

# A private broker (config/mosquitto.conf: passwords and an ACL), twind
# (config/twind.conf, its database in run/) and the plant simulator; Ctrl-C
# stops all three. The first run makes random passwords for twind and the
# simulator in run/ (mode 0600), and the broker's password file from them.
# Passwords go to mosquitto_passwd on its standard input, never its command
# line (which every local user can read); a failed step starts over next time.
run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p run
	@cd run && umask 077 && if [ ! -s mosquitto.passwd ]; then \
		: > mosquitto.passwd.new; for u in twind twind-sim; do \
		head -c 18 /dev/urandom | base64 | tr -d '/+=' > $$u.password && \
		{ cat $$u.password; cat $$u.password; } | \
		mosquitto_passwd mosquitto.passwd.new $$u > /dev/null || exit 1; done; \
		mv mosquitto.passwd.new mosquitto.passwd; fi; \
	{ cat ../config/mosquitto.conf; echo "user $$(id -un)"; } > mosquitto.conf
	@cd run && trap 'kill $$sim $$tw $$mq 2>/dev/null; wait 2>/dev/null' INT TERM EXIT; \
	mosquitto -c mosquitto.conf > mosquitto.log 2>&1 & mq=$$!; \
	sleep 0.5; kill -0 $$mq 2>/dev/null || { cat mosquitto.log; \
		echo "mosquitto did not start: is port 1883 taken by another broker?"; exit 1; }; \
	../twind -c ../config/twind.conf -o storage.database=twind.db -o mqtt.username=twind \
		-o rules.file=$(abspath $(RULES)) \
		-o mqtt.client_id=twind -o mqtt.password_file=twind.password & tw=$$!; \
	for i in $$(seq 50); do curl -sf http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.1; done; \
	../twind-sim -p 1883 -r $(SIM_RATE) -a $(SIM_ACCEL) -u twind-sim -i twind-sim \
		-w twind-sim.password > sim.log 2>&1 & sim=$$!; \
	echo; echo "twind is running: broker 127.0.0.1:1883, simulator at $(SIM_RATE) msg/s"; \
	echo "  the API:  http://127.0.0.1:8080/api/v1/twins"; \
	echo "  metrics:  http://127.0.0.1:8080/metrics     http://127.0.0.1:8080/healthz"; \
	echo "Ctrl-C stops broker, twind and simulator."; echo; \
	echo "open http://127.0.0.1:8080/"; echo; \
	wait $$tw

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(TWIND) twind-sim
	TWIND_BIN=$(abspath $(TWIND)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

test: deps-test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit integration

# UBSan only reports by default; halting makes a finding fail the test.
test-sanitize: deps-test
	@UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		$(MAKE) --no-print-directory SANITIZE=address,undefined unit integration

bench: deps deps-test
	@$(MAKE) --no-print-directory all
	./tests/bench/bench.sh
	$(PYTHON) tests/bench/history.py
	./tests/bench/twind-rollups
	./tests/bench/twind-functions

# Settings already in $(SYSCONFDIR)/twind are the plant's: never overwritten
# (the new example goes beside them as *.dist). Mode 0644, whatever the umask.
ETC := $(DESTDIR)$(SYSCONFDIR)/twind
MANDIR ?= $(DATADIR)/man
install: $(TWIND) twind-sim
	install -d $(DESTDIR)$(BINDIR) $(ETC)/models $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(DATADIR)/twind/www $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(TWIND) twind-sim $(DESTDIR)$(BINDIR)/
	install -m 0644 www/* $(DESTDIR)$(DATADIR)/twind/www/
	install -m 0644 man/twind.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/twind-sim.1 $(DESTDIR)$(MANDIR)/man1/
	@mkdir -p build
	sed 's|^www *=.*|www = $(DATADIR)/twind/www|' config/twind.conf > build/twind.conf.install
	@set -e; for f in build/twind.conf.install:twind.conf config/mosquitto.conf:mosquitto.conf \
		config/twins.json:twins.json config/rules.json:rules.json \
		$$(for m in config/models/*.json; do echo $$m:models/$${m##*/}; done); do \
		src=$${f%%:*}; dst=$(ETC)/$${f#*:}; \
		if [ -e "$$dst" ]; then install -m 0644 "$$src" "$$dst.dist"; \
			echo "kept $$dst (the new example is $$dst.dist)"; \
		else install -m 0644 "$$src" "$$dst"; fi; \
	done
	sed 's|@BINDIR@|$(BINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g' systemd/twind.service \
		> build/twind.service.install
	install -m 0644 build/twind.service.install $(DESTDIR)$(UNITDIR)/twind.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/twind $(DESTDIR)$(BINDIR)/twind-sim \
		$(DESTDIR)$(UNITDIR)/twind.service $(DESTDIR)$(MANDIR)/man8/twind.8 \
		$(DESTDIR)$(MANDIR)/man1/twind-sim.1
	rm -rf $(DESTDIR)$(DATADIR)/twind/www
	-rmdir $(DESTDIR)$(DATADIR)/twind 2>/dev/null
	@echo "left $(ETC) in place: it holds your settings"

# A Debian package, built by debhelper in build/deb/ from the tree as git
# has it (the committed files, with uncommitted edits to them; never
# untracked files), so that nothing here is cleaned and nothing is written
# outside the project. Ends with lintian's verdict.
DEPS_DEB := debhelper fakeroot dpkg-dev lintian git
deb: deps
	@./tests/deps.sh $(DEPS_DEB)
	rm -rf build/deb && mkdir -p build/deb/src
	@set -e; ref=$$(git stash create); git archive -o build/deb/src.tar $${ref:-HEAD}; \
		tar -xf build/deb/src.tar -C build/deb/src
	@# The package is the release build, whatever this make was told (SANITIZE=...).
	cd build/deb/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u SANITIZE \
		dpkg-buildpackage -b -us -uc --no-sign -j2 > ../build.log 2>&1 || \
		{ tail -40 ../build.log; exit 1; }
	lintian --info --display-info --pedantic --tag-display-limit 0 --fail-on error,warning \
		build/deb/twind_*.deb
	@echo "built: $$(ls build/deb/twind_*.deb)"

clean:
	rm -rf build twind twind-sim tests/bench/twind-load tests/bench/twind-floor \
		tests/bench/twind-functions tests/bench/twind-rollups

-include $(wildcard build/*/*.d build/*/tests/*.d)

# libFuzzer targets of every parser (make fuzz; see tests/fuzz/fuzz.mk).
include tests/fuzz/fuzz.mk
