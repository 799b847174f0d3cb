"""The ctypes layer against include/lancbio.h: every constant, every function, every
callback type and every struct mirror says what the header says.

The layouts are measured by the C compiler (sizeof and offsetof); without one that part
is skipped, except under CI=true, where a missing compiler is a failure."""

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lancbio import _ffi, errors, info

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "include" / "lancbio.h"

pytestmark = pytest.mark.skipif(not HEADER.exists(), reason="not a source checkout (no include/lancbio.h)")

# Struct typedef of the header -> its ctypes mirror.
MIRRORS = {
    "lancbio_estimator_options_t": _ffi.EstimatorOptions,
    "lancbio_step_info_t": _ffi.StepInfoStruct,
    "lancbio_bilevel_options_t": _ffi.BilevelOptions,
    "lancbio_bilevel_info_t": _ffi.BilevelInfoStruct,
    "lancbio_problem_f64_t": _ffi.ProblemStruct,
    "lancbio_solve_result_t": _ffi.SolveResultStruct,
}
# Callback typedef of the header -> its ctypes prototype (one prototype serves both
# precisions: the vectors are passed as addresses).
CALLBACKS = {
    "lancbio_hvp_f64_t": _ffi.HVP_CALLBACK,
    "lancbio_hvp_f32_t": _ffi.HVP_CALLBACK,
    "lancbio_gradient_f64_t": _ffi.GRADIENT_CALLBACK,
    "lancbio_product_f64_t": _ffi.PRODUCT_CALLBACK,
    "lancbio_reduce_t": _ffi.REDUCE_CALLBACK,
}
HANDLES = ("lancbio_estimator_t", "lancbio_bilevel_t")
SCALARS = {"int64_t": ctypes.c_int64, "int32_t": ctypes.c_int32, "uint64_t": ctypes.c_uint64,
           "double": ctypes.c_double, "float": ctypes.c_float}


def header_text() -> str:
    """The header without comments."""
    return re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)


def defines() -> dict:
    """{NAME: value} of every integer #define LANCBIO_NAME of the header."""
    found = {}
    for name, value in re.findall(r"^\s*#define\s+LANCBIO_(\w+)\s+\(?(-?\d+)\)?\s*$", header_text(), re.M):
        found[name] = int(value)
    return found


def functions() -> dict:
    """{name: (return type, [parameter types])} of every function the header declares."""
    text = " ".join(header_text().split())
    found = {}
    for ret, name, params in re.findall(r"((?:const\s+)?\w+\s*\**)\s*\b(lancbio_\w+)\s*\(([^()]*)\)\s*;", text):
        if ret.strip() == "typedef":
            continue
        found[name] = (_type_of(ret), [] if params.strip() == "void" else
                       [_type_of(_without_name(p)) for p in params.split(",")])
    return found


def callback_typedefs() -> dict:
    """{typedef name: (return type, [parameter types])} of the function-pointer typedefs."""
    text = " ".join(header_text().split())
    return {name: (_type_of(ret), [_type_of(_without_name(p)) for p in params.split(",")])
            for ret, name, params in re.findall(r"typedef\s+(\w+)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^()]*)\)\s*;", text)}


def struct_fields() -> dict:
    """{typedef name: [field names in order]} of every struct the header defines."""
    found = {}
    for body, name in re.findall(r"typedef\s+struct\s+\w+\s*\{(.*?)\}\s*(\w+)\s*;", header_text(), re.S):
        found[name] = [re.findall(r"(\w+)\s*$", decl.strip())[0] for decl in body.split(";") if decl.strip()]
    return found


def _without_name(parameter: str) -> str:
    """The type of a named parameter ("const double *in" -> "const double *")."""
    return re.sub(r"\w+\s*$", "", parameter.strip())


def _type_of(c_type: str) -> str:
    """A normalised C type: without const and spaces, e.g. "double*", "lancbio_estimator_t**"."""
    return re.sub(r"\bconst\b|\s+", "", c_type)


def ctypes_type(c_type: str):
    """The ctypes type the wrapper must declare for a normalised C type."""
    base, stars = c_type.rstrip("*"), len(c_type) - len(c_type.rstrip("*"))
    if c_type == "void":
        return None
    if c_type == "char*":
        return ctypes.c_char_p
    if base in HANDLES or base == "void":
        kind, stars = ctypes.c_void_p, stars - 1
    elif base in SCALARS:
        kind = SCALARS[base]
    elif base in MIRRORS:
        kind = MIRRORS[base]
    elif base in CALLBACKS:
        kind = CALLBACKS[base]
    else:
        raise AssertionError(f"the test does not know the C type {c_type!r}")
    for _ in range(stars):
        kind = ctypes.POINTER(kind)
    return kind


# -- constants -------------------------------------------------------------------------------

def test_every_constant_of_the_header_is_the_wrappers_and_vice_versa():
    header = {name: value for name, value in defines().items() if name != "H"}
    assert header, "no #define found: the parser is out of date with the header"
    python = {name: getattr(_ffi, name) for name in dir(_ffi)
              if name.isupper() and type(getattr(_ffi, name)) is int}
    assert python == header


def test_status_names_and_exception_classes_cover_exactly_the_header_codes():
    header = defines()
    outcomes = {header[name] for name in ("OK", "BUDGET_REACHED", "BREAKDOWN", "INDEFINITE", "SINGULAR")}
    assert set(info.OUTCOMES) == outcomes
    errors_ = {value for name, value in header.items() if name.startswith("ERR_")}
    assert set(errors._BY_STATUS) == errors_
    for status in errors_:
        cls = errors.error_class(status)
        assert cls.status == status and cls.__doc__.startswith(f"LANCBIO_{_name_of(header, status)} ({status})")
    residuals = {value for name, value in header.items() if name.startswith("RESIDUAL_")}
    assert set(info.RESIDUAL_KINDS) == residuals


def _name_of(header: dict, value: int) -> str:
    return next(name for name, v in header.items() if v == value and name.startswith("ERR_"))


# -- functions -------------------------------------------------------------------------------

def test_the_table_declares_exactly_the_header_functions():
    assert set(functions()) == set(_ffi.FUNCTIONS)


@pytest.mark.parametrize("name", sorted(_ffi.FUNCTIONS))
def test_each_function_is_declared_with_the_header_types(name):
    declared = functions()
    if name not in declared:
        pytest.fail(f"{name} is in the ctypes table but not in the header")
    ret, params = declared[name]
    restype, argtypes = _ffi.FUNCTIONS[name]
    expected_ret = ctypes.c_char_p if ret == "char*" else ctypes_type(ret)
    assert restype is expected_ret, (name, ret)
    assert list(argtypes) == [ctypes_type(p) for p in params], (name, params)


def test_callback_prototypes_match_the_header_typedefs():
    typedefs = callback_typedefs()
    assert set(typedefs) == set(CALLBACKS)
    for name, (ret, params) in typedefs.items():
        prototype = CALLBACKS[name]
        # Pointers travel as addresses (c_void_p): cheaper in the trampoline than POINTER objects.
        expected = [ctypes.c_void_p if p.endswith("*") else ctypes_type(p) for p in params]
        assert list(prototype._argtypes_) == expected, name
        assert prototype._restype_ is ctypes_type(ret), name


# -- structs ---------------------------------------------------------------------------------

def test_struct_mirrors_have_the_header_fields_in_order():
    fields = struct_fields()
    assert set(fields) == set(MIRRORS)
    for name, mirror in MIRRORS.items():
        assert [field for field, _ in mirror._fields_] == fields[name], name


def c_compiler():
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no C compiler (cc, gcc or clang) to measure the header's struct layouts")
        pytest.skip("no C compiler to measure the header's struct layouts")
    return cc


def test_struct_mirrors_match_the_compiled_layout(tmp_path):
    cc = c_compiler()
    lines = []
    for c_name, mirror in MIRRORS.items():
        lines.append(f'printf("{c_name} size %zu\\n", sizeof({c_name}));')
        for field, _ in mirror._fields_:
            lines.append(f'printf("{c_name} {field} %zu %zu\\n", offsetof({c_name}, {field}), '
                         f"sizeof((({c_name} *)0)->{field}));")
    source = tmp_path / "layout.c"
    source.write_text("#include <stdio.h>\n#include <stddef.h>\n#include \"lancbio.h\"\nint main(void) {\n"
                      + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, f"-I{REPO / 'include'}", str(source), "-o", str(exe)], check=True)
    report = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(report) == len(lines)
    for line in report:
        words = line.split()
        mirror = MIRRORS[words[0]]
        if words[1] == "size":
            assert ctypes.sizeof(mirror) == int(words[2]), line
        else:
            field = getattr(mirror, words[1])
            assert (field.offset, field.size) == (int(words[2]), int(words[3])), line


# -- the defaults the header documents are the ones the library sets ---------------------

def documented_defaults(struct: str) -> dict:
    """{field: the first "(default X)" of its comment} for the fields of ``struct`` whose
    comment gives a number or a constant name."""
    text = HEADER.read_text()
    end = text.index("} " + struct + ";")
    body = text[text.rindex("typedef struct", 0, end):end]
    found = {}
    for field, comment in re.findall(r"(\w+)\s*;\s*/\*\*<(.*?)\*/", body, re.S):
        match = re.search(r"default ([A-Z_]+|[-+0-9.e]+)", comment)
        if match:
            found[field] = match.group(1)
    return found


def test_the_estimator_defaults_in_the_header_are_what_options_init_writes():
    from lancbio._options import estimator_options

    documented = documented_defaults("lancbio_estimator_options_t")
    assert {"m0", "m_max", "growth", "grow_every", "max_iterations", "tolerance", "seed",
            "orthogonality_tolerance", "exact_residual"} <= set(documented)
    written = estimator_options(_ffi.METHOD_LANCZOS)
    for field, text in documented.items():
        if field == "steps":
            continue  # per method, below
        expected = {"RESIDUAL": _ffi.VARIANT_RESIDUAL}.get(text)
        expected = float(text) if expected is None else expected
        assert getattr(written, field) == expected, f"{field}: the header says {text}"
    body = HEADER.read_text()
    for method, label in ((_ffi.METHOD_GD, "GD"), (_ffi.METHOD_NEUMANN, "Neumann"),
                          (_ffi.METHOD_RANDOM_NEUMANN, "random Neumann")):
        said = re.search(r"\b" + label + r":[^;()]*\(default (\d+)\)", body)
        assert said, f"the header documents no steps default for {label}"
        assert estimator_options(method).steps == int(said.group(1)), label


def test_the_bilevel_defaults_in_the_header_are_what_options_init_writes():
    from lancbio._options import bilevel_options

    documented = documented_defaults("lancbio_bilevel_options_t")
    assert {"lr_x_decay", "inner_steps"} <= set(documented)
    written = bilevel_options()
    for field, text in documented.items():
        assert getattr(written, field) == float(text), f"{field}: the header says {text}"
