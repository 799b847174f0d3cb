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

.PHONY: all lib test test-swift test-c test-python demo hyperclean bench check python-install clean

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
	sh Tests/c/check_symbols.sh $(LIB) include/lancbio.h
	@if [ -f examples/synthetic_lancbio.c ]; then \
	  $(CC) $(CFLAGS_STRICT) examples/synthetic_lancbio.c -o $(C_OUT)/synthetic_lancbio $(C_LINK) && \
	  $(C_OUT)/synthetic_lancbio --check; fi

test-python: lib
	@if [ -d python/tests ]; then cd python && LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m pytest -q tests; fi

## Installs the Python package (builds the library inside pip).
python-install:
	$(PYTHON) -m pip install -q ./python

demo: lib
	cd python && LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m lancbio demo

hyperclean: lib
	cd python && LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m lancbio hyperclean

bench: lib
	cd python && LANCBIO_LIBRARY=$(abspath $(LIB)) $(PYTHON) -m lancbio bench

clean:
	rm -rf .build $(C_OUT)
