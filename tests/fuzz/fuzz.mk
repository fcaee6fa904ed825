# libFuzzer targets of twind's parsers (tests/fuzz/fuzz_*.c), built with
# clang into build/fuzz/ and run for FUZZ_SECONDS each, one after the other.
# Meant to be included by the main Makefile (paths are from the repo root):
#	include tests/fuzz/fuzz.mk
# and works alone too: make -f tests/fuzz/fuzz.mk fuzz (it then reads the
# main Makefile itself, for CORE, PKGS and DEFS).
#
# Each run starts from a scratch copy of tests/fuzz/corpus/<name>/ in
# build/fuzz/corpus/<name>/, so the seed corpus is never written to. A
# crash, leak, timeout, out-of-memory or UBSan report in any target fails
# `make fuzz`, after all targets ran; the reproducers are in
# build/fuzz/artifacts/ and each target's output in build/fuzz/<target>.log.

ifndef TW_FUZZ_MK
TW_FUZZ_MK := 1

ifndef CORE
include Makefile
.DEFAULT_GOAL := fuzz
endif

# Debian packages the fuzz build needs besides DEPS_BUILD (the runtime is
# only recommended by clang, and deps.sh installs without recommends).
FUZZ_DEPS := clang libclang-rt-14-dev

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
FUZZ_FLAGS ?= -timeout=10 -rss_limit_mb=1024
FUZZ_DIR := build/fuzz
FUZZ_TARGETS := ingest topic expr model plant rules conf http_guard tokens route history whatif anomaly block rollup_block

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -O1 -g $(filter-out -Werror,$(WARN)) $(FUZZ_SAN) \
	-fsanitize=fuzzer-no-link $(DEFS) -Iinclude -Itests/fuzz -MMD -MP
FUZZ_LDFLAGS := -fsanitize=fuzzer $(FUZZ_SAN)
FUZZ_PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

FUZZ_OBJ := $(CORE:%=$(FUZZ_DIR)/obj/%.o)
FUZZ_LIB := $(FUZZ_DIR)/libtwind.a
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)

.PHONY: fuzz fuzz-build fuzz-deps
.SECONDARY: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/obj/fuzz_%.o)

$(FUZZ_DIR)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_PKG_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/obj/fuzz_%.o: tests/fuzz/fuzz_%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_PKG_CFLAGS) -c -o $@ $<

# An archive, so that each target links only the parts it reaches.
$(FUZZ_LIB): $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_PKG_LIBS) -lpthread -lm

fuzz-deps:
	@./tests/deps.sh $(DEPS_BUILD) $(FUZZ_DEPS)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@fail=""; mkdir -p $(FUZZ_DIR)/artifacts; \
	for t in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ_DIR)/corpus/$$t && mkdir -p $(FUZZ_DIR)/corpus/$$t && \
		cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus/$$t/ || exit 1; \
		dict=""; [ -f tests/fuzz/$$t.dict ] && dict="-dict=tests/fuzz/$$t.dict"; \
		log=$(FUZZ_DIR)/fuzz_$$t.log; \
		if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		    $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) \
		    -print_final_stats=1 $$dict -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- \
		    $(FUZZ_DIR)/corpus/$$t > $$log 2>&1; then \
			echo "fuzz_$$t: ok, $$(grep -E '^#[0-9]+' $$log | tail -1 | \
			    sed 's/^\(#[0-9]*\)[^c]*\(cov: [0-9]*\) \(ft: [0-9]*\).*\(exec\/s: [0-9]*\).*/\1 runs \2 \3 \4/')"; \
		else \
			tail -n 60 $$log; echo "fuzz_$$t: FAILED (see $$log)"; fail="$$fail $$t"; \
		fi; \
	done; \
	[ -z "$$fail" ] || { echo "fuzz: findings in:$$fail; reproducers in $(FUZZ_DIR)/artifacts/"; exit 1; }

-include $(wildcard $(FUZZ_DIR)/obj/*.d)

endif
