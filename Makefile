# lancbio: build, test, demo and benchmark entry points. `make test` is the one command
# that runs every test; `make demo` runs the main job.

SWIFT      ?= swift
PYTHON     ?= python3
CC         ?= cc
BUILD_DIR  := .build/release
LIB        := $(BUILD_DIR)/liblancbio.so
CFLAGS_STRICT := -std=c99 -Wall -Wextra -Werror -pedantic -O2 -Iinclude
C_LINK     := -L$(BUILD_DIR) -llancbio -Wl,-rpath,$(abspath $(BUILD_DIR)) -lm
C_OUT      := .build/c

.PHONY: all lib test test-swift test-c test-python test-deps demo demo-deps hyperclean bench check python-install clean

all: lib

## The release library liblancbio.so.
lib:
	$(SWIFT) build -c release --product lancbio

## Every test: Swift core, the compiled C programs against the header, and Python.
test: lib test-swift test-c test-python

test-swift:
	$(SWIFT) test

$(C_OUT):
	mkdir -p $(C_OUT)

## The header compiles under strict C99, the C programs pass, exports match the header.
test-c: lib | $(C_OUT)
	$(CC) $(CFLAGS_STRICT) -fsyntax-only -x c include/lancbio.h
	$(CC) $(CFLAGS_STRICT) Tests/c/test_abi.c -o $(C_OUT)/test_abi $(C_LINK)
	$(C_OUT)/test_abi
	$(CC) $(CFLAGS_STRICT) Tests/c/test_no_alloc.c -o $(C_OUT)/test_no_alloc $(C_LINK) -ldl
	$(C_OUT)/test_no_alloc
	$(CC) $(CFLAGS_STRICT) Tests/c/test_solve.c -o $(C_OUT)/test_solve $(C_LINK)
	$(C_OUT)/test_solve
	$(CC) $(CFLAGS_STRICT) Tests/c/test_checkpoint.c -o $(C_OUT)/test_checkpoint $(C_LINK)
	$(C_OUT)/test_checkpoint
	$(CC) $(CFLAGS_STRICT) Tests/c/test_stale_handles.c -o $(C_OUT)/test_stale_handles $(C_LINK)
	$(C_OUT)/test_stale_handles
	$(CC) $(CFLAGS_STRICT) Tests/c/test_fork.c -o $(C_OUT)/test_fork $(C_LINK) -pthread
	$(C_OUT)/test_fork
	$(CC) $(CFLAGS_STRICT) Tests/c/test_memory_limit.c -o $(C_OUT)/test_memory_limit $(C_LINK)
	$(C_OUT)/test_memory_limit
	$(CC) $(CFLAGS_STRICT) Tests/c/test_unwritten_output.c -o $(C_OUT)/test_unwritten_output $(C_LINK)
	$(C_OUT)/test_unwritten_output
	$(CC) $(CFLAGS_STRICT) Tests/c/test_reduction.c -o $(C_OUT)/test_reduction $(C_LINK) -pthread
	$(C_OUT)/test_reduction
	$(CC) $(CFLAGS_STRICT) Tests/c/test_bilevel_reduction.c -o $(C_OUT)/test_bilevel_reduction $(C_LINK) -pthread
	$(C_OUT)/test_bilevel_reduction
	$(CC) $(CFLAGS_STRICT) Tests/c/test_reverse_reduction.c -o $(C_OUT)/test_reverse_reduction $(C_LINK) -pthread
	$(C_OUT)/test_reverse_reduction
	$(CC) $(CFLAGS_STRICT) Tests/c/test_helper_polling.c -o $(C_OUT)/test_helper_polling $(C_LINK)
	$(C_OUT)/test_helper_polling
	sh Tests/c/check_symbols.sh $(LIB) include/lancbio.h
	@if [ -f examples/synthetic_lancbio.c ]; then \
	  $(CC) $(CFLAGS_STRICT) examples/synthetic_lancbio.c -o $(C_OUT)/synthetic_lancbio $(C_LINK) && \
	  $(C_OUT)/synthetic_lancbio --check; fi

## What the Python tests import besides the standard library (module names are pip's):
## installed with pip when missing, as demo-deps does for the demo. Tests of optional
## features (matplotlib, scikit-learn) skip without them.
TEST_DEPS := numpy pytest hypothesis scipy threadpoolctl

test-deps:
	@for module in $(TEST_DEPS); do \
	  $(PYTHON) -c "import $$module" 2>/dev/null || $(PYTHON) -m pip install --quiet $$module || \
	    { echo "make test needs $$module: pip install $$module"; exit 1; }; \
	done

## The wrapper's tests (python/tests), then the benchmark's own (bench/tests: its numpy
## references against the library, a --quick run).
test-python: lib test-deps
	@if [ -d python/tests ]; then cd python && LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m pytest -q tests; fi
	LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m pytest -q bench/tests

## Installs the Python package (builds the library inside pip).
python-install:
	$(PYTHON) -m pip install -q ./python

## The main job: every method on the paper's synthetic problem; figure in lancbio-demo.png.
## Installs what the figure and the digits need (matplotlib, scikit-learn) when missing.
demo: lib demo-deps
	cd python && LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m lancbio demo --output $(abspath lancbio-demo.png) $(DEMO_ARGS)

## Data hyper-cleaning on the digits at the paper's corruption (--corruption's default, 0.5;
## DEMO_ARGS="--corruption 0.8" for another); figure in lancbio-hyperclean.png.
hyperclean: lib demo-deps
	cd python && LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m lancbio hyperclean --output $(abspath lancbio-hyperclean.png) $(DEMO_ARGS)

demo-deps:
	@$(PYTHON) -c "import numpy" 2>/dev/null || $(PYTHON) -m pip install --quiet numpy
	@$(PYTHON) -c "import threadpoolctl" 2>/dev/null || $(PYTHON) -m pip install --quiet threadpoolctl || echo "threadpoolctl could not be installed: the demo restarts itself to set its BLAS threads"
	@$(PYTHON) -c "import matplotlib" 2>/dev/null || $(PYTHON) -m pip install --quiet matplotlib || echo "matplotlib could not be installed: the figure will be skipped"
	@$(PYTHON) -c "import sklearn" 2>/dev/null || $(PYTHON) -m pip install --quiet scikit-learn || echo "scikit-learn could not be installed: hyperclean needs it"

## The performance benchmark (bench/, not part of the installed package); options in
## BENCH_ARGS, e.g. make bench BENCH_ARGS="--quick --output report.md".
## What the benchmark imports: threadpoolctl runs its one-BLAS-thread references and names
## the BLAS numpy loaded.
BENCH_DEPS := numpy scipy threadpoolctl

bench: lib
	@for module in $(BENCH_DEPS); do \
	  $(PYTHON) -c "import $$module" 2>/dev/null || $(PYTHON) -m pip install --quiet $$module || \
	    { echo "make bench needs $$module: pip install $$module"; exit 1; }; \
	done
	LANCBIO_LIBRARY=$(abspath $(LIB)) PYTHONPATH=$(abspath python) $(PYTHON) -m bench $(BENCH_ARGS)

# ---------------------------------------------------------------------------------------
# Reliability checks: `make check` runs every step below (each timed, all of them even when
# one fails) and fails if any failed. Scratch builds: .build-asan (AddressSanitizer),
# .build-ubsan (UndefinedBehaviorSanitizer), .build-fuzz (AddressSanitizer + libFuzzer
# coverage), .build-valgrind (the release library without AVX-512, which valgrind cannot
# execute: LANCBIO_AVX512=0, see Package.swift), .build-avx2 (the Swift tests on that level).
CLANG        ?= /opt/swift/usr/bin/clang
FUZZ_SECONDS ?= 60
# Steps of test_long_run under valgrind (about 50 times slower there); natively it runs 10^5.
VALGRIND_LONG_STEPS ?= 5000
# Forks of test_fork under valgrind (each child is a valgrind process) and on the
# AddressSanitizer build (its debug steps are slow); natively it forks 200 times.
VALGRIND_FORKS ?= 20
SANITIZE_FORKS ?= 40
CHECK_STEPS  := sanitize-swift sanitize-c valgrind test-avx2 test-threads test-long fuzz
SAN_ENV      := SWIFT_BACKTRACE=enable=no LSAN_OPTIONS=suppressions=$(abspath Tests/sanitizers/lsan.supp) \
                ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
SAN_CFLAGS   := -std=c99 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -Iinclude
VALGRIND     := valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
                --error-exitcode=1 --suppressions=Tests/c/valgrind.supp
FUZZ_BIN     := .build-fuzz/c/fuzz_abi

.PHONY: fuzz test-threads test-long sanitize-swift sanitize-c valgrind test-avx2

check:
	@failed=""; summary=""; begin=$$(date +%s); \
	for step in $(CHECK_STEPS); do \
	  start=$$(date +%s); \
	  if $(MAKE) --no-print-directory $$step; then result=ok; else result=FAILED; failed="$$failed $$step"; fi; \
	  summary="$$summary$$(printf '  %-15s %-6s %4d s' $$step $$result $$(( $$(date +%s) - start )))\n"; \
	done; \
	printf "check:\n$$summary  %-22s %4d s\n" total $$(( $$(date +%s) - begin )); \
	if [ -n "$$failed" ]; then echo "check FAILED:$$failed"; exit 1; fi

## Threads: independent handles stepped concurrently equal the sequential run bitwise.
test-threads: lib | $(C_OUT)
	$(CC) $(CFLAGS_STRICT) Tests/c/test_threads.c -o $(C_OUT)/test_threads $(C_LINK) -pthread
	$(C_OUT)/test_threads

## 10^5 LancBiO steps (memory flat, no NaN) and extreme input scales for every method.
test-long: lib | $(C_OUT)
	$(CC) $(CFLAGS_STRICT) Tests/c/test_long_run.c -o $(C_OUT)/test_long_run $(C_LINK)
	$(C_OUT)/test_long_run

## Swift tests under AddressSanitizer (+ LeakSanitizer), then UndefinedBehaviorSanitizer
## where the toolchain has it: Swift 6.3's swiftc rejects -sanitize=undefined for
## x86_64-unknown-linux-gnu ("unsupported option"), so there the step says so and goes on
## (Swift's own overflow, bounds and exclusivity checks are on in these debug builds, and the
## C side of the ABI runs under UBSan in sanitize-c and fuzz).
sanitize-swift:
	$(SAN_ENV) $(SWIFT) test --sanitize=address --scratch-path .build-asan
	@if echo 'let x = 1' | $(SWIFT)c -sanitize=undefined -parse - >/dev/null 2>&1; then \
	  echo "$(SAN_ENV) $(SWIFT) test --sanitize=undefined --scratch-path .build-ubsan"; \
	  $(SAN_ENV) $(SWIFT) test --sanitize=undefined --scratch-path .build-ubsan; \
	else echo "sanitize-swift: swiftc has no -sanitize=undefined for this target; UBSan covers the C side only"; fi

## The C programs with -fsanitize=address,undefined against the AddressSanitizer library.
## (Not test_memory_limit, here or under valgrind: both map far more address space than
## its limits leave; nor test_helper_polling, which checks core time, not memory.)
sanitize-c:
	$(SWIFT) build -c debug --product lancbio --scratch-path .build-asan --sanitize=address
	mkdir -p .build-asan/c
	for prog in Tests/c/test_abi.c Tests/c/test_solve.c Tests/c/test_checkpoint.c Tests/c/test_unwritten_output.c \
	    Tests/c/test_threads.c Tests/c/test_stale_handles.c Tests/c/test_fork.c Tests/c/test_reduction.c \
	    Tests/c/test_bilevel_reduction.c Tests/c/test_reverse_reduction.c examples/synthetic_lancbio.c; do \
	  $(CLANG) $(SAN_CFLAGS) $$prog -o .build-asan/c/$$(basename $$prog .c) -L.build-asan/debug -llancbio \
	    -Wl,-rpath,$(abspath .build-asan/debug) -lm -pthread || exit 1; \
	done
	$(SAN_ENV) .build-asan/c/test_abi
	$(SAN_ENV) .build-asan/c/test_solve
	$(SAN_ENV) .build-asan/c/test_checkpoint
	$(SAN_ENV) .build-asan/c/test_unwritten_output
	$(SAN_ENV) .build-asan/c/test_threads
	$(SAN_ENV) .build-asan/c/test_stale_handles
	$(SAN_ENV) .build-asan/c/test_reduction
	$(SAN_ENV) .build-asan/c/test_bilevel_reduction
	$(SAN_ENV) .build-asan/c/test_reverse_reduction
	LANCBIO_TEST_FORKS=$(SANITIZE_FORKS) $(SAN_ENV) .build-asan/c/test_fork
	$(SAN_ENV) .build-asan/c/synthetic_lancbio --check

## The C programs under valgrind memcheck against a release library built without AVX-512
## (leaks are errors; not in test_fork's children, which inherit the allocations its worker
## threads had in flight at the fork, with no thread left in them to free those).
VALGRIND_LIB := .build-valgrind/release
valgrind:
	LANCBIO_AVX512=0 $(SWIFT) build -c release --product lancbio --scratch-path .build-valgrind
	mkdir -p .build-valgrind/c
	for prog in Tests/c/test_abi.c Tests/c/test_solve.c Tests/c/test_checkpoint.c Tests/c/test_unwritten_output.c \
	    Tests/c/test_threads.c Tests/c/test_long_run.c Tests/c/test_stale_handles.c Tests/c/test_fork.c \
	    Tests/c/test_reduction.c Tests/c/test_bilevel_reduction.c Tests/c/test_reverse_reduction.c \
	    examples/synthetic_lancbio.c; do \
	  $(CC) $(CFLAGS_STRICT) -g $$prog -o .build-valgrind/c/$$(basename $$prog .c) -L$(VALGRIND_LIB) -llancbio \
	    -Wl,-rpath,$(abspath $(VALGRIND_LIB)) -lm -pthread || exit 1; \
	done
	$(VALGRIND) .build-valgrind/c/test_abi
	$(VALGRIND) .build-valgrind/c/test_solve
	$(VALGRIND) .build-valgrind/c/test_checkpoint
	$(VALGRIND) .build-valgrind/c/test_unwritten_output
	$(VALGRIND) .build-valgrind/c/test_threads
	$(VALGRIND) .build-valgrind/c/test_stale_handles
	$(VALGRIND) .build-valgrind/c/test_reduction
	$(VALGRIND) .build-valgrind/c/test_bilevel_reduction
	$(VALGRIND) .build-valgrind/c/test_reverse_reduction
	LANCBIO_TEST_FORKS=$(VALGRIND_FORKS) $(VALGRIND) --leak-check=no .build-valgrind/c/test_fork
	LONG_RUN_STEPS=$(VALGRIND_LONG_STEPS) $(VALGRIND) .build-valgrind/c/test_long_run
	$(VALGRIND) .build-valgrind/c/synthetic_lancbio --check

## The Swift tests on the AVX2 build (4-wide vectors, LANCBIO_AVX512=0), whose kernel paths
## an AVX-512 machine's own build does not run.
test-avx2:
	LANCBIO_AVX512=0 $(SWIFT) test --scratch-path .build-avx2

## libFuzzer on the C ABI for FUZZ_SECONDS (default 60); seeds in Tests/fuzz/corpus, new
## inputs in .build-fuzz/corpus, crashes in .build-fuzz/artifacts. The library is built with
## AddressSanitizer and libFuzzer's coverage instrumentation (-sanitize=fuzzer).
# FUZZ_RUNS=N (with a fixed seed) makes the run reproducible, as CI wants: a timed run with
# a random seed explores more but could fail a submission by luck of the draw.
ifdef FUZZ_RUNS
FUZZ_BUDGET := -runs=$(FUZZ_RUNS) -seed=1
else
FUZZ_BUDGET := -max_total_time=$(FUZZ_SECONDS)
endif

fuzz:
	$(SWIFT) build -c debug --product lancbio --scratch-path .build-fuzz --sanitize=address -Xswiftc -sanitize=fuzzer
	mkdir -p .build-fuzz/c .build-fuzz/corpus .build-fuzz/artifacts
	$(CLANG) $(SAN_CFLAGS) -D_POSIX_C_SOURCE=200809L -fuse-ld=lld -fsanitize=fuzzer Tests/fuzz/fuzz_abi.c -o $(FUZZ_BIN) \
	  -L.build-fuzz/debug -llancbio -Wl,-rpath,$(abspath .build-fuzz/debug) -lm
	SWIFT_BACKTRACE=enable=no $(FUZZ_BIN) $(FUZZ_BUDGET) -rss_limit_mb=2048 -timeout=30 \
	  -print_final_stats=1 -artifact_prefix=.build-fuzz/artifacts/ .build-fuzz/corpus Tests/fuzz/corpus

clean:
	rm -rf .build .build-asan .build-ubsan .build-fuzz .build-valgrind .build-avx2
