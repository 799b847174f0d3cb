#!/bin/sh
# check_symbols.sh: the library exports exactly the functions the header declares.
#
# usage: sh Tests/c/check_symbols.sh path/to/liblancbio.so include/lancbio.h
#
# Checks:
#   1. the library has global defined dynamic symbols (nm -D --defined-only works);
#   2. the header declares lancbio_* functions;
#   3. every function the header declares is exported;
#   4. every exported lancbio_* symbol is declared in the header;
#   5. every exported lancbio_* symbol is a function (type T), not data;
#   6. no other global symbol is exported, except the allow-list below.
# Global symbols are those nm lists with an uppercase type letter (T, D, B, R, and also
# W/V weak, A absolute, ...) or 'u' (GNU unique); lowercase letters are local and ignored.
# Prints one line per check and a closing "N passed, M failed"; exits 1 on any failure.

set -u
export LC_ALL=C

lib=${1:-}
header=${2:-}
if [ -z "$lib" ] || [ -z "$header" ] || [ ! -f "$lib" ] || [ ! -f "$header" ]; then
    echo "usage: sh Tests/c/check_symbols.sh path/to/liblancbio.so include/lancbio.h" >&2
    exit 2
fi
if ! command -v nm >/dev/null 2>&1; then
    echo "check_symbols.sh: nm not found (binutils)" >&2
    exit 2
fi

# Allowed global symbols that are not part of the API, and why:
#   _init, _fini          ELF initialisation / finalisation entry points (toolchain)
#   _edata, _end, _etext  linker-defined segment boundary markers
#   __bss_start           linker-defined start of .bss
# No Swift runtime symbol is allowed: Swift metadata registration goes through sections
# and local constructors, and include/lancbio.map makes every other symbol local, so a
# Swift-mangled export ($s...) means the version script stopped applying.
ALLOWED="_init _fini _edata _end _etext __bss_start"

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t check_symbols)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# "TYPE NAME" for every global defined dynamic symbol (version suffixes removed).
if ! nm -D --defined-only "$lib" >"$tmp/nm.out" 2>"$tmp/nm.err"; then
    cat "$tmp/nm.err" >&2
    fail "nm -D --defined-only $lib failed"
    echo "$passed passed, $failed failed"
    exit 1
fi
awk 'NF >= 3 && $2 ~ /^([A-Z]|u)$/ { name = $3; sub(/@.*/, "", name); print $2, name }' "$tmp/nm.out" |
    sort -u >"$tmp/global"
awk '{ print $2 }' "$tmp/global" | sort -u >"$tmp/global_names"
grep '^lancbio_' "$tmp/global_names" >"$tmp/exported" || : >"$tmp/exported"

# Function declarations: a line starting with a type (not typedef, not a comment or a
# preprocessor line) followed by lancbio_name( . Function-pointer typedefs never match.
sed -n \
    -e '/^[[:space:]]*typedef/d' \
    -e '/^[[:space:]]*#/d' \
    -e 's/^[A-Za-z_][A-Za-z0-9_[:space:]*]*[[:space:]*]\(lancbio_[A-Za-z0-9_]*\)[[:space:]]*(.*/\1/p' \
    "$header" | sort -u >"$tmp/declared"

echo "allowed non-API globals: $ALLOWED (ELF toolchain markers; no Swift symbols)"

if [ -s "$tmp/global" ]; then
    pass "the library exports $(wc -l <"$tmp/global" | tr -d ' ') global symbols"
else
    fail "no global defined dynamic symbols in $lib"
fi

if [ -s "$tmp/declared" ]; then
    pass "the header declares $(wc -l <"$tmp/declared" | tr -d ' ') lancbio_* functions"
else
    fail "no lancbio_* function declarations found in $header"
fi

comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing"
if [ -s "$tmp/missing" ]; then
    fail "declared in $header but not exported by $lib:"
    sed 's/^/       /' "$tmp/missing"
else
    pass "every declared function is exported"
fi

comm -13 "$tmp/declared" "$tmp/exported" >"$tmp/undeclared"
if [ -s "$tmp/undeclared" ]; then
    fail "exported by $lib but not declared in $header:"
    sed 's/^/       /' "$tmp/undeclared"
else
    pass "every exported lancbio_* symbol is declared"
fi

awk '$2 ~ /^lancbio_/ && $1 != "T" { print $1, $2 }' "$tmp/global" >"$tmp/notfunc"
if [ -s "$tmp/notfunc" ]; then
    fail "exported lancbio_* symbols that are not functions (type T):"
    sed 's/^/       /' "$tmp/notfunc"
else
    pass "every exported lancbio_* symbol is a function"
fi

printf '%s\n' $ALLOWED | sort -u >"$tmp/allowed"
grep -v '^lancbio_' "$tmp/global_names" | comm -23 - "$tmp/allowed" >"$tmp/other"
if [ -s "$tmp/other" ]; then
    fail "other global symbols exported (not lancbio_*, not allowed):"
    sed 's/^/       /' "$tmp/other"
else
    pass "no global symbol outside lancbio_* and the allow-list"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
