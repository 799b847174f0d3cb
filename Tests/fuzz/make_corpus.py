#!/usr/bin/env python3
"""Writes the seed corpus of Tests/fuzz/fuzz_abi.c into Tests/fuzz/corpus/.

Each seed is a short program in the harness's byte language (see LLVMFuzzerTestOneInput and
the op_* functions of fuzz_abi.c): one byte selects the operation, the following bytes its
operands, in the order the harness reads them. The seeds start the fuzzer from meaningful
states: every method in both precisions stepped, reverse communication, failing callbacks,
nested calls, invalid handles and arguments, odd options and struct sizes, bilevel handles.

usage: python3 Tests/fuzz/make_corpus.py   (rewrites the directory's seed-*.bin files)
"""
import os
import struct

# Operation codes (op byte % 21 in the harness).
CREATE, DESTROY, STEP, BEGIN, RESUME, FINISH, CANCEL, GET_V, SET_V, RESET, INFO, STEP_MANY, \
    INVALID, BIL_CREATE, BIL_STEP, BIL_MISC, MISC = range(17)
CHECKPOINT, BIL_CHECKPOINT = 19, 20
# Damage done to a saved checkpoint before it is handed back (ckpt_damage).
DMG_NONE, DMG_FLIP, DMG_TRUNCATE, DMG_VERSION, DMG_TRAILING, DMG_RESEALED_FLIP, DMG_RESEALED_RUN, DMG_RAW = range(8)

LANCZOS, SUBBIO, CG, MINRES, GD, NEUMANN, RANDOM_NEUMANN = range(1, 8)
F64, F32 = 1, 2

# Special values (special() in the harness, index % 22).
NAN, INF, HUGE, TINY, DENORMAL, GARBAGE = 2, 3, 5, 7, 8, 17


class Program:
    def __init__(self):
        self.b = bytearray()

    def u8(self, *values):
        for v in values:
            self.b.append(v & 0xFF)
        return self

    def u16(self, v):
        self.b += struct.pack("<H", v & 0xFFFF)
        return self

    # Operands -----------------------------------------------------------------------
    def vector(self, scale=0, seed=1, overrides=(), integers=False):
        """gen_vector: flags (scale index, override count, small-integer mode), seed."""
        flags = (scale & 15) | (len(overrides) << 4) | (0x40 if integers else 0)
        self.u8(flags).u16(seed)
        for idx, special in overrides:
            self.u8(idx, special)
        return self

    def options(self, m_max=5, m0=1, iterations=5, growth_etc=0x00, step_sel=0x00, mutations=()):
        """gen_options: a (m_max, steps), b (m0 = 1 + b % m_max, max_iterations = b % 16),
        c (growth, grow_every, variant, reorthogonalize), d (theta0, step size, tolerance),
        then the mutations."""
        a = (m_max - 1) % 12
        fits = [x for x in range(256) if x % m_max == m0 - 1]
        b = min(fits, key=lambda x: abs(x % 16 - iterations))  # m0 exact, max_iterations closest
        self.u8(a, b, growth_etc, step_sel, len(mutations))
        for field, value in mutations:
            self.u8(field, value)
        return self

    def script(self, kind=None, at=1, *extra):
        """gen_script: < 96 is a well-behaved callback; otherwise kind = byte % 6."""
        if kind is None:
            return self.u8(0)
        first = 96 + ((kind - (96 % 6)) % 6)
        return self.u8(first, at - 1, *extra)

    # Operations -----------------------------------------------------------------------
    def create(self, slot, n, method, precision=F64, struct_sel=0, nulls=0, operator=0, op_seed=3, **opts):
        self.u8(CREATE, slot, n - 1 if 1 <= n <= 64 else n, method - 1, precision - 1, struct_sel, nulls)
        self.options(**opts)
        return self.u8(operator).u16(op_seed)

    def step(self, slot, argmut=0, info=5, vec=None, script=None):
        self.u8(STEP, slot, argmut, info)
        self.vector(**(vec or {}))
        if script is None:
            return self.script()
        return self.script(*script)

    def step_many(self, slot, reps, info=5, vec=None):
        self.u8(STEP_MANY, slot, 0, info)
        self.vector(**(vec or {}))
        return self.u8(reps - 1)

    def begin(self, slot, argmut=0, vec=None):
        self.u8(BEGIN, slot, argmut)
        return self.vector(**(vec or {}))

    def resume(self, slot, argmut=0, script=None):
        self.u8(RESUME, slot, argmut)
        return self.script(*(script or ()))

    def finish(self, slot, alias=0):
        return self.u8(FINISH, slot, alias)

    def bil_create(self, slot, dx, dy, method, lr_sel=0x15, struct_sel=0, hostile=None, problem=0, **opts):
        msel = (method - 1) if hostile is None else 200 + ((method - 1 - 200) % 7)
        self.u8(BIL_CREATE, slot, dx - 1, dy - 1, lr_sel, struct_sel, msel)
        if hostile is not None:
            self.u8(*hostile)
        self.options(**opts)
        self.u8(problem).u16(11)
        if problem & 7 == 7:
            self.u8(1, HUGE)
        elif problem & 7 == 6:
            self.u8(NAN)
        return self

    def bil_step(self, slot, mut=0, struct_sel=0, info=1, xsel=0, script=None):
        self.u8(BIL_STEP, slot, mut, struct_sel, info, xsel)
        return self.script(*(script or ()))

    def bil_misc(self, slot, fn, nul=0, vec=None):
        self.u8(BIL_MISC, slot, fn, nul)
        return self.vector(**(vec or {}))

    def checkpoint(self, slot, damage, target, small=False, where=0, with_=0, bilevel=False, payload=b""):
        """op_checkpoint / op_bil_checkpoint: save (a buffer too small first when `small`),
        damage the bytes, hand them to `target` (estimator: 0 itself, 1 + 4 k restore into
        slot k, 2 another handle, 3 the bilevel functions; bilevel: 0, 1 + 3 k, 2)."""
        self.u8(BIL_CHECKPOINT if bilevel else CHECKPOINT, slot, damage | (0x80 if small else 0), target)
        self.u16(where).u8(with_)
        if damage == DMG_RESEALED_RUN:
            self.u8(*payload[: 1 + with_ % 24].ljust(1 + with_ % 24, b"\x00"))
        elif damage == DMG_RAW:
            self.u8(*payload[: (56 if where & 1 else 0) + with_ % 244])
        if target % 4 == 3 and not bilevel:
            self.u8(0)
        return self


def seeds():
    out = {}

    for method in range(1, 8):
        p = Program()
        p.create(0, 12, method, F64, m_max=5, growth_etc=0x0B)
        p.create(1, 9, method, F32, m_max=3, iterations=3, growth_etc=0x41)
        for k in range(3):
            p.step(0, vec={"seed": k + 1}).step(1, vec={"seed": k + 7})
        p.u8(GET_V, 0, 0).u8(SET_V, 1, 0).vector(seed=5).step(1).u8(INFO, 0, 5, 0)
        p.step_many(0, 30)
        out[f"method-{method}"] = p

    p = Program()  # reverse communication in every order
    p.create(0, 20, LANCZOS, F64, m_max=4).create(1, 7, CG, F32)
    p.begin(0).resume(0).finish(0).begin(1).u8(CANCEL, 1)
    p.resume(1).begin(0).u8(BEGIN, 0, 0).vector().u8(SET_V, 0, 0).vector().u8(RESET, 0)
    p.begin(1).resume(1, argmut=160 + 1).resume(1, argmut=160 + 4).finish(1, alias=1)
    p.begin(0).resume(0, script=(1, 1, 3, NAN)).resume(0)
    out["reverse-communication"] = p

    p = Program()  # failing callbacks: codes, NaN, Inf, garbage, partial writes, scaling
    p.create(0, 16, LANCZOS, F64).create(1, 16, MINRES, F32).create(2, 5, NEUMANN, F64)
    p.step(0, script=(0, 1, 7)).step(0, script=(1, 2, 4, NAN)).step(0, script=(1, 1, 0, INF))
    p.step(1, script=(2, 2, 9)).step(1, script=(3, 1, 5)).step(2, script=(4, 3, HUGE))
    p.step(2, script=(4, 2, DENORMAL)).step(0).step(1).step(2)
    out["callback-failures"] = p

    p = Program()  # library calls from inside the product callback
    p.create(0, 10, CG, F64).create(1, 6, GD, F32).create(2, 8, LANCZOS, F64)
    for nested in range(10):
        p.step(nested % 3, script=(5, 2, nested, 1))
    out["nested-calls"] = p

    p = Program()  # bad arguments: wrong precision, NULL pointers, wrong n, info sizes
    p.create(0, 11, SUBBIO, F64).create(1, 11, RANDOM_NEUMANN, F32)
    for mut in range(160, 184, 2):
        p.step(0, argmut=mut, info=mut % 8).step(1, argmut=mut + 1, info=(mut + 3) % 8)
        p.u8(GET_V, 0, mut).u8(SET_V, 1, mut + 1).vector()
    p.u8(INFO, 0, 2, 7).u8(INFO, 1, 3, 1).u8(INFO, 0, 4, 2)
    out["bad-arguments"] = p

    p = Program()  # handles: NULL, destroyed, garbage, twice destroyed, the other kind
    p.create(0, 4, CG, F64).create(1, 4, GD, F64).bil_create(0, 3, 4, CG)
    p.u8(DESTROY, 0, 1)
    for which in range(4):
        for fn in range(0, 16, 3):
            p.u8(INVALID, which + 4 * (fn % 3), fn)
    p.bil_misc(0, 5).u8(DESTROY, 1, 0).u8(INVALID, 1, 3).u8(INVALID, 5, 14)
    out["invalid-handles"] = p

    p = Program()  # creation: struct sizes, invalid options, n out of range
    for sel in (9, 10, 11, 12, 13, 14, 15, 0x29):
        p.create(0, 8, CG, F64, struct_sel=sel)
    p.create(1, 232 + 1, GD, F64).create(1, 232 + 4, LANCZOS, F64).create(1, 232 + 5, CG, F32)
    p.create(2, 6, LANCZOS, F64, mutations=((1, 4), (2, 7), (0, 1)))
    p.create(2, 6, SUBBIO, F64, mutations=((6, 8),)).create(2, 6, GD, F64, mutations=((9, 2), (10, 0)))
    p.create(3, 6, CG, F64, mutations=((8, 2), (7, 1))).create(3, 6, LANCZOS, F64, mutations=((12, 0),))
    p.create(3, 6, LANCZOS, F64, nulls=254).create(3, 6, LANCZOS, F64, nulls=255)
    out["create-options"] = p

    p = Program()  # hostile vectors: NaN, Inf, 1e+-300, denormals, garbage
    p.create(0, 24, LANCZOS, F64).create(1, 24, CG, F32).create(2, 24, SUBBIO, F64)
    for slot in range(3):
        for scale in (8, 9, 10, 11, 12, 13, 14):
            p.step(slot, vec={"scale": scale, "seed": scale})
        p.u8(SET_V, slot, 0).vector(overrides=((3, NAN),))
        p.u8(SET_V, slot, 0).vector(scale=12, overrides=((0, DENORMAL), (5, GARBAGE)))
        p.step(slot, vec={"overrides": ((1, HUGE), (2, -1 & 0xFF))})
        p.step(slot, vec={"overrides": ((0, INF),)})
    out["hostile-vectors"] = p

    p = Program()  # hostile operators: indefinite, singular, scaled, special entries
    for kind, method in ((3, LANCZOS), (4, MINRES), (5 | (8 << 3), CG), (5 | (9 << 3), SUBBIO), (6, GD), (7, LANCZOS)):
        p.create(kind % 4, 30, method, F64 if kind % 2 else F32, operator=kind, op_seed=kind)
        p.step_many(kind % 4, 20).begin(kind % 4).finish(kind % 4)
    out["hostile-operators"] = p

    for method in (LANCZOS, SUBBIO, CG, GD, NEUMANN, RANDOM_NEUMANN, MINRES):
        p = Program()  # bilevel: steps, getters, failures, nested calls, reset
        p.bil_create(0, 4, 6, method).bil_create(1, 1, 1, method, lr_sel=0x25, problem=7)
        for k in range(4):
            p.bil_step(k % 2)
        p.bil_step(0, script=(0, 3, 5)).bil_step(0, script=(1, 2, 0, NAN)).bil_step(1, script=(4, 1, HUGE))
        p.bil_step(0, script=(5, 4, 0, 0)).bil_step(0, script=(5, 2, 2, 0)).bil_step(0, mut=192 + 5)
        p.bil_step(0, info=2).bil_step(0, xsel=201).bil_step(0, struct_sel=11)
        for fn in range(6):
            p.bil_misc(0, fn, fn % 3)
        p.bil_step(0, script=(5, 1, 5, 0))
        out[f"bilevel-{method}"] = p

    p = Program()  # hostile bilevel options
    p.bil_create(0, 3, 3, CG, hostile=(0, 6)).bil_create(0, 3, 3, GD, hostile=(6, 1))
    p.bil_create(1, 2, 2, LANCZOS, hostile=(2, 7)).bil_create(1, 2, 2, NEUMANN, struct_sel=12)
    p.bil_create(0, 242, 3, CG).bil_step(0).bil_step(1)
    out["bilevel-options"] = p

    p = Program()  # checkpoints: every damage, every target, both precisions
    p.create(0, 12, LANCZOS, F64, m_max=5, growth_etc=0x0B).create(1, 12, LANCZOS, F32, m_max=5)
    p.create(2, 7, RANDOM_NEUMANN, F64).bil_create(0, 3, 4, CG)
    for k in range(3):
        p.step(0, vec={"seed": k + 1}).step(1, vec={"seed": k + 1}).step(2)
    for damage in range(8):
        for target in (0, 1, 2, 3, 1 + 4 * 3):
            p.checkpoint(damage % 3, damage, target, small=damage % 2 == 1, where=37 * damage + 5, with_=3 * damage,
                         payload=bytes(range(40, 240)))
            p.step(damage % 3)
    p.begin(0).checkpoint(0, DMG_NONE, 0).finish(0).checkpoint(0, DMG_NONE, 1)
    p.step(0, script=(5, 1, 10, 0))  # save and load from inside the product callback
    out["checkpoint"] = p

    p = Program()  # bilevel checkpoints
    p.bil_create(0, 4, 6, LANCZOS).bil_create(1, 4, 6, LANCZOS)
    for k in range(3):
        p.bil_step(0).bil_step(1)
    for damage in range(8):
        for target in (0, 1, 2, 4):
            p.checkpoint(damage % 2, damage, target, small=damage % 2 == 0, where=29 * damage + 3, with_=5 * damage,
                         bilevel=True, payload=bytes(range(10, 250)))
            p.bil_step(0)
    p.bil_step(0, script=(5, 2, 6, 0))  # save and load from inside a problem callback
    out["bilevel-checkpoint"] = p

    p = Program()  # library-level functions
    for k in range(8):
        p.u8(MISC, k, (k * 37) & 0xFF, (k * 3 - 4) & 0xFF)
    out["library"] = p
    return out


def main():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    programs = seeds()
    os.makedirs(here, exist_ok=True)
    for name in os.listdir(here):
        if name.startswith("seed-") and name.endswith(".bin"):
            os.remove(os.path.join(here, name))
    total = 0
    for name, program in sorted(programs.items()):
        with open(os.path.join(here, f"seed-{name}.bin"), "wb") as f:
            f.write(program.b)
        total += len(program.b)
    print(f"{len(programs)} seeds, {total} bytes in {here}")


if __name__ == "__main__":
    main()
