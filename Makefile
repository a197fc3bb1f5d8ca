# telem: one non-recursive build for every executable, test and benchmark.
# Every .c file that is not a main (main.c, *_main.c) goes into build/libtelem.a;
# each executable is its main linked against that library, and each
# tests/test_*.c or tests/e2e_*.c is a Criterion binary linked against it too.

CC       ?= cc
BUILD    ?= build
BIN      ?= bin
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
# The supervisor finds its stages from its own folder (install-files).
LIBEXECDIR ?= $(abspath $(BINDIR)/../libexec/telem)
MANDIR   ?= $(PREFIX)/share/man
DOCDIR   ?= $(PREFIX)/share/doc/telem
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= $(PREFIX)/etc
OPT      ?= -O2 -g
SAN      ?=
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
# The project's own flags; CPPFLAGS, CFLAGS, LDFLAGS and LDLIBS given on the
# command line or in the environment come after them, so they add to them.
TELEM_CPPFLAGS := -std=c11 -D_GNU_SOURCE -I. -Icommon -MMD -MP
TELEM_CFLAGS   := $(OPT) $(WARN) $(SAN) $(EXTRA_CFLAGS)
TELEM_LDFLAGS  := $(SAN)
# libinih (Debian libinih-dev) reads the pipeline file (supervisor/pipeline.c).
INIH_LIBS := $(shell pkg-config --libs inih 2>/dev/null || echo -linih)
TELEM_LDLIBS   := -lrt -lpthread -lm $(INIH_LIBS)
COMPILE   = $(CC) $(TELEM_CPPFLAGS) $(CPPFLAGS) $(TELEM_CFLAGS) $(CFLAGS)
LINK      = $(CC) $(TELEM_LDFLAGS) $(LDFLAGS)

# One version for every program: the base below, or what `git describe`
# says in a git checkout (the last tag vX.Y.Z and the commits since, else
# the base, the number of commits and the commit: 0.2.0~git123.gabc1234,
# so that a later commit's package sorts after an earlier one's, and every
# one before the tag v0.2.0 sorts before the release it leads to: Debian's
# `~` sorts before anything, even the end of the version);
# `make VERSION=x.y.z` sets it.
VERSION_BASE := 0.2.0
GIT_TAGGED := $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null)
GIT_COMMIT := $(shell git describe --always --dirty 2>/dev/null)
GIT_COUNT  := $(shell git rev-list --count HEAD 2>/dev/null)
VERSION ?= $(strip $(if $(GIT_TAGGED),$(patsubst v%,%,$(GIT_TAGGED)),\
	$(if $(GIT_COMMIT),$(VERSION_BASE)~git$(GIT_COUNT).g$(GIT_COMMIT),\
	$(VERSION_BASE))))

PROGS    := telem-supervisor telem-ingest telem-filter telem-egress-ckms \
            telem-egress-cma telem-egress-statsd telem-sink-carbon \
            telem-sink-prom telemctl telem-example-prefix
main_of   = $(firstword $(wildcard $(1)/main.c $(1)_main.c))
MAINS    := supervisor/main.c ingest/main.c filter/main.c egress/ckms_main.c \
            egress/cma_main.c egress/statsd_main.c egress/sink_carbon_main.c \
            egress/sink_prom_main.c supervisor/telemctl_main.c \
            examples/stages/prefix_filter.c
LIBSRC   := $(filter-out $(MAINS),$(wildcard common/*.c ingest/*.c filter/*.c \
            egress/*.c supervisor/*.c))
LIB      := $(BUILD)/libtelem.a
TESTSRC  := $(wildcard tests/test_*.c tests/e2e_*.c)
TESTLIB  := $(filter-out $(TESTSRC),$(wildcard tests/*.c))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TESTSRC))
BENCHSRC := $(wildcard bench/*.c)
BENCHES  := $(patsubst bench/%.c,$(BIN)/bench-%,$(BENCHSRC))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

all: $(addprefix $(BIN)/,$(PROGS))

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(COMPILE) -c -o $@ $<

# The version is compiled into common/version.c only; its object is rebuilt
# when the version changes (the stamp is rewritten only then).
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(BUILD)/common/version.o: $(BUILD)/version.stamp
$(BUILD)/common/version.o: TELEM_CPPFLAGS += -DTELEM_VERSION='"$(VERSION)"'

$(LIB): $(call obj,$(LIBSRC))
	@rm -f $@
	ar rcs $@ $^

$(BIN)/telem-supervisor: $(call obj,supervisor/main.c) $(LIB)
$(BIN)/telem-ingest:     $(call obj,ingest/main.c) $(LIB)
$(BIN)/telem-filter:     $(call obj,filter/main.c) $(LIB)
$(BIN)/telem-egress-ckms: $(call obj,egress/ckms_main.c) $(LIB)
$(BIN)/telem-egress-cma: $(call obj,egress/cma_main.c) $(LIB)
$(BIN)/telem-egress-statsd: $(call obj,egress/statsd_main.c) $(LIB)
$(BIN)/telem-sink-carbon: $(call obj,egress/sink_carbon_main.c) $(LIB)
$(BIN)/telem-sink-prom:  $(call obj,egress/sink_prom_main.c) $(LIB)
$(BIN)/telemctl:         $(call obj,supervisor/telemctl_main.c) $(LIB)
# A stage of one's own (README "Writing a stage").
$(BIN)/telem-example-prefix: $(call obj,examples/stages/prefix_filter.c) $(LIB)
# Only the supervisor talks to systemd (supervisor/notify.c).
$(BIN)/telem-supervisor: PROG_LDLIBS := -lsystemd
$(addprefix $(BIN)/,$(PROGS)):
	@mkdir -p $(dir $@)
	$(LINK) -o $@ $^ $(PROG_LDLIBS) $(TELEM_LDLIBS) $(LDLIBS)

$(BUILD)/tests/%: $(call obj,tests/%.c) $(call obj,$(TESTLIB)) $(LIB)
	@mkdir -p $(dir $@)
	$(LINK) -o $@ $^ -lcriterion -lsystemd $(PROG_LDLIBS) $(TELEM_LDLIBS) $(LDLIBS)

# The Prometheus sink's HTTP server (egress/prom_http.c) needs libmicrohttpd;
# only what links it gets the library.
$(BUILD)/tests/test_prom_http $(BIN)/bench-prom $(BIN)/telem-sink-prom: \
	PROG_LDLIBS := -lmicrohttpd

$(BIN)/bench-%: $(call obj,bench/%.c) $(LIB)
	@mkdir -p $(dir $@)
	$(LINK) -o $@ $^ $(PROG_LDLIBS) $(TELEM_LDLIBS) $(LDLIBS)

# deps: what the tests need, installed when missing (Debian, as root).
deps:
	@./tests/deps.sh

tests: all $(TESTS) $(BENCHES)

# The unit tests and the end-to-end tests, which drive $(BIN)/ for real.
test: deps
	@$(MAKE) --no-print-directory tests
	@./tests/run.sh $(BUILD) $(BIN)

# The same suite built with AddressSanitizer and UBSan, in its own folders.
# The stages' stderr ends in the tests' temporary files, so every report,
# of any process, goes to a file in $(SAN_LOG) instead, and one there fails
# the check. Criterion's own allocations are suppressed (tests/lsan.supp).
SAN_LOG := build/asan/reports
check: deps
	@$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  OPT="-O1 -g" tests
	@rm -rf $(SAN_LOG) && mkdir -p $(SAN_LOG)
	@ASAN_OPTIONS=detect_leaks=1:log_path=$(CURDIR)/$(SAN_LOG)/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/$(SAN_LOG)/ubsan \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  ./tests/run.sh build/asan build/asan/bin; rc=$$?; \
	  if [ -n "$$(ls $(SAN_LOG))" ]; then \
	    cat $(SAN_LOG)/*; echo "sanitizer reports above ($(SAN_LOG))"; exit 1; \
	  fi; exit $$rc

bench: all $(BENCHES)
	@./bench/run.sh $(BIN)

# Storms of kill -9s under load, one line per round (tests/chaos.sh).
ROUNDS ?= 3
chaos: all $(BIN)/bench-loadgen
	@./tests/chaos.sh $(ROUNDS) $(BIN)

# bench-peers: install the statsd servers bench/statsd.sh compares telem
# with (Etsy statsd 0.9.0 from npm into build/peers, collectd's statsd
# plugin from Debian's collectd-core), then run those steps.
bench-peers: all $(BENCHES)
	@command -v collectd >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq collectd-core </dev/null)
	@[ -f build/peers/node_modules/statsd/stats.js ] || \
	  (mkdir -p build/peers && cd build/peers && \
	   npm install --no-audit --no-fund --silent statsd@0.9.0 </dev/null)
	@./bench/statsd.sh $(BIN)

run: deps all
	./$(BIN)/telem-supervisor

# The commands people type go to BINDIR; the stages, which only the
# supervisor runs, to LIBEXECDIR (the supervisor looks in ../libexec/telem
# beside its own executable first, then next to itself).
USER_PROGS  := telem-supervisor telemctl
STAGE_PROGS := $(filter-out $(USER_PROGS),$(PROGS))
MAN5 := $(wildcard man/*.5)
MAN8 := $(wildcard man/*.8)
EXAMPLES := $(wildcard examples/*)
UNIT := dist/telem.service

install: all
	@$(MAKE) --no-print-directory install-files

# install-files: the copying alone, of programs built already in BIN.
# The two folders of programs are not free to move apart: the supervisor
# finds the stages from its own folder (supervisor/main.c find_bindir).
STAGES_SEEN := $(abspath $(BINDIR)/../libexec/telem)
install-files:
	$(if $(filter-out $(STAGES_SEEN),$(abspath $(LIBEXECDIR))),$(error \
	  LIBEXECDIR=$(LIBEXECDIR): the supervisor in $(BINDIR) looks for its \
	  stages in $(STAGES_SEEN); set PREFIX or BINDIR instead))
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	  $(if $(MAN5),$(DESTDIR)$(MANDIR)/man5)
	install -m 0755 $(addprefix $(BIN)/,$(USER_PROGS)) $(DESTDIR)$(BINDIR)/
	install -m 0755 $(addprefix $(BIN)/,$(STAGE_PROGS)) $(DESTDIR)$(LIBEXECDIR)/
	$(if $(MAN5),install -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/)
	$(if $(MAN8),install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	  $(UNIT) > $(DESTDIR)$(UNITDIR)/telem.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/telem.service
	@# The service's pipeline file starts as the built-in pipeline; one
	@# that is there already is kept.
	install -d $(DESTDIR)$(SYSCONFDIR)/telem
	[ -e $(DESTDIR)$(SYSCONFDIR)/telem/telem.conf ] || \
	  install -m 0644 examples/seed.conf $(DESTDIR)$(SYSCONFDIR)/telem/telem.conf
	$(if $(EXAMPLES),install -d $(DESTDIR)$(DOCDIR)/examples)
	$(if $(EXAMPLES),cp -R $(EXAMPLES) $(DESTDIR)$(DOCDIR)/examples/)

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(USER_PROGS))
	rm -f $(addprefix $(DESTDIR)$(LIBEXECDIR)/,$(STAGE_PROGS))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(MAN5)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8)))
	rm -f $(DESTDIR)$(UNITDIR)/telem.service
	rm -rf $(DESTDIR)$(DOCDIR)/examples
	@# The pipeline file only if nobody changed it.
	-cmp -s examples/seed.conf $(DESTDIR)$(SYSCONFDIR)/telem/telem.conf && \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/telem/telem.conf
	-rmdir $(DESTDIR)$(SYSCONFDIR)/telem 2>/dev/null
	-rmdir $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(DOCDIR) 2>/dev/null

# deb: telem_VERSION_ARCH.deb in DEB_OUT, built with dpkg-deb from a staged
# install (prefix /usr). The programs are built with Debian's build flags
# in their own folders; DEB_BIN=folder packages programs built already
# (the test suite does, to stay quick). See dist/mkdeb.sh.
DEB_OUT   ?= build
DEB_BUILD ?= build/deb
DEB_BIN   ?=
DEB_VERSION := $(subst -,+,$(VERSION))

deb:
ifeq ($(DEB_BIN),)
	@export DEB_BUILD_MAINT_OPTIONS=hardening=+all; \
	$(MAKE) --no-print-directory BUILD=$(DEB_BUILD) BIN=$(DEB_BUILD)/bin \
	  CPPFLAGS="$$(dpkg-buildflags --get CPPFLAGS)" \
	  CFLAGS="$$(dpkg-buildflags --get CFLAGS)" \
	  LDFLAGS="$$(dpkg-buildflags --get LDFLAGS)" all
	@./dist/mkdeb.sh $(DEB_BUILD)/bin $(DEB_OUT) $(DEB_VERSION)
else
	@./dist/mkdeb.sh $(DEB_BIN) $(DEB_OUT) $(DEB_VERSION)
endif

version:
	@echo $(VERSION)

clean:
	rm -rf $(BUILD) $(BIN)

FORCE:

.PHONY: all deps tests test check bench bench-peers chaos run install install-files uninstall deb version clean FORCE
.PRECIOUS: $(BUILD)/%.o
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# fuzz: the libFuzzer targets (tests/fuzz/), built with clang in their
# own folder straight from the sources they test, each run for 60 s on a
# corpus kept under build/fuzz/; prints the executions run and fails on a
# crash (the crashing input is left in build/fuzz/).
FUZZ_DIR   := build/fuzz
FUZZ_CC    := clang
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -I. -Icommon -g -O1 \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
              $(WARN)
FUZZ_TIME  ?= 60

$(FUZZ_DIR)/parse_fuzz: tests/fuzz/parse_fuzz.c ingest/parse.c common/wire.c \
                        egress/report_rec.c ingest/parse.h common/wire.h \
                        egress/report_rec.h
$(FUZZ_DIR)/wire_fuzz: tests/fuzz/wire_fuzz.c common/wire.c common/wire.h \
                       egress/report_rec.c egress/report_rec.h
$(FUZZ_DIR)/statsd_fuzz: tests/fuzz/statsd_fuzz.c ingest/statsd.c \
                         ingest/jsstr.c egress/statsd_agg.c \
                         egress/statsd_agg_flush.c egress/statsd_timer.c \
                         egress/statsd_set.c egress/statsd_num.c \
                         egress/names.c ingest/statsd.h ingest/jsstr.h \
                         egress/statsd_agg.h egress/statsd_agg_impl.h \
                         egress/statsd_timer.h egress/statsd_set.h
$(FUZZ_DIR)/report_rec_fuzz: tests/fuzz/report_rec_fuzz.c egress/report_rec.c \
                             egress/prom_expo.c egress/prom_text.c \
                             egress/prom_fmt.c common/wire.c \
                             egress/report_rec.h egress/prom_expo.h \
                             egress/prom_text.h egress/prom_fmt.h
$(FUZZ_DIR)/parse_fuzz $(FUZZ_DIR)/wire_fuzz $(FUZZ_DIR)/statsd_fuzz \
$(FUZZ_DIR)/report_rec_fuzz:
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $(filter %.c,$^) -lm

# Seeds: a few lines, and a message (host order, little-endian assumed
# for the seed only) with a telemetry and a flush record.
$(FUZZ_DIR)/corpus-parse/seed:
	@mkdir -p $(dir $@)
	printf 'a 1\nb 2\r\n\nc\t007\n' > $@
$(FUZZ_DIR)/corpus-wire/seed:
	@mkdir -p $(dir $@)
	printf '\001\000\000\000\002\000\000\000\001\001\005\000\000\000a\002\000\000\000\000\000' > $@
$(FUZZ_DIR)/corpus-statsd/seed:
	@mkdir -p $(dir $@)
	printf 'a:1|c|@0.5\nt:2|ms:3|h|#k:v,b\ng:-1|g\ns:x|s\r\nq:0x1|c' > $@

# A report entry: a cma gauge "a" = 1.5 at ts 0 (little-endian).
$(FUZZ_DIR)/corpus-report_rec/seed:
	@mkdir -p $(dir $@)
	printf '\001\002\001\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\370\077acma' > $@

fuzz: $(FUZZ_DIR)/parse_fuzz $(FUZZ_DIR)/wire_fuzz $(FUZZ_DIR)/statsd_fuzz \
      $(FUZZ_DIR)/report_rec_fuzz \
      $(FUZZ_DIR)/corpus-parse/seed $(FUZZ_DIR)/corpus-wire/seed \
      $(FUZZ_DIR)/corpus-statsd/seed $(FUZZ_DIR)/corpus-report_rec/seed
	@for t in parse:65535 wire:16384 statsd:65535 report_rec:600; do \
	  name=$${t%%:*}; max=$${t#*:}; \
	  ./$(FUZZ_DIR)/$${name}_fuzz $(FUZZ_DIR)/corpus-$$name \
	    -max_total_time=$(FUZZ_TIME) -max_len=$$max -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/$$name- \
	    > $(FUZZ_DIR)/$$name.log 2>&1; rc=$$?; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$name.log); \
	  echo "$${name}_fuzz: $$runs executions in $(FUZZ_TIME) s, exit $$rc"; \
	  if [ $$rc -ne 0 ]; then tail -n 30 $(FUZZ_DIR)/$$name.log; exit 1; fi; \
	done

.PHONY: fuzz

# check-race: the shm ring driven by threads (tests/race/ring_threads.c)
# under ThreadSanitizer, built in its own folder from only the objects it
# needs; any report fails the target. race-demo: the seed's unsynchronised
# ring in threads under ThreadSanitizer; succeeds when the race IS reported.
RACE_CC  ?= clang
RACE_MK   = $(MAKE) --no-print-directory BUILD=build/tsan BIN=build/tsan/bin \
            CC=$(RACE_CC) SAN=-fsanitize=thread OPT="-O1 -g"
RACE_OBJ  = $(call obj,common/chan.c common/chan_mq.c common/chan_shm.c \
            common/clock.c)

$(BUILD)/race/%: $(call obj,tests/race/%.c) $(RACE_OBJ)
	@mkdir -p $(dir $@)
	$(LINK) -o $@ $^ $(TELEM_LDLIBS) $(LDLIBS)

check-race:
	@$(RACE_MK) build/tsan/race/ring_threads
	TSAN_OPTIONS="exitcode=66" ./build/tsan/race/ring_threads

race-demo:
	@$(RACE_MK) build/tsan/race/racy_ring
	@TSAN_OPTIONS="exitcode=0" ./build/tsan/race/racy_ring \
	  >build/tsan/race/racy_ring.log 2>&1; \
	sed -n '/WARNING: ThreadSanitizer/,/^SUMMARY/{p;/^SUMMARY/q;}' \
	  build/tsan/race/racy_ring.log; \
	grep '^racy_ring' build/tsan/race/racy_ring.log; \
	if grep -q 'WARNING: ThreadSanitizer: data race' build/tsan/race/racy_ring.log; \
	then echo "race-demo: ThreadSanitizer reported the data race, as it must"; \
	else echo "race-demo: no race reported" >&2; exit 1; fi

.PHONY: check-race race-demo
