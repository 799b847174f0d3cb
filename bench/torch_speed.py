"""Section 9: lancbio.torch.HyperGradient against the plain-PyTorch LancBiO estimator
(bench/torch_reference.py) on the hyper-cleaning model, per outer iteration.

The model is the linear softmax classifier of lancbio.torch.hypercleaning on 5,000
training and 5,000 validation samples of 784 features and 10 classes (MNIST's shape:
n = 10 x 785 = 7,850 parameters, one sample weight per training sample), random data
(no MNIST ships with the environment; the cost does not depend on the values), float64
as the command line runs it, one torch thread. Both estimators work on the same (x, y):
each outer iteration builds the two losses (the forward) and computes the hyper-gradient
with each of them, in alternating order, then moves x by lancbio's hyper-gradient and y by
one inner gradient step, so that each step meets another Hessian as in a bilevel run.
Every torch.autograd.grad call of both goes through a timer: "autograd" is the time inside
them, "own" the rest of the hyper-gradient call (the estimator's step, the flattening and
the checks), and the outer iteration is the forward plus the hyper-gradient call (the
inner steps, the same for every estimator, are left out, which makes the share larger).
"""

from __future__ import annotations

import os
import time

__all__ = ["section_torch"]

FEATURES, CLASSES, SAMPLES = 784, 10, 5000
SHARE = 0.05          # the target: lancbio's own cost at most 5% of the iteration
LR_X, LR_Y = 500.0, 0.1  # the hyper-cleaning command line's default steps
SCHEDULES = {
    "hyper-cleaning schedule (m0 1, growth 1.3 every 50, m_max 10)": dict(m0=1, growth=1.3, grow_every=50, m_max=10),
    "m0 = m_max = 10 (the schedule's late cycles)": dict(m0=10, growth=1.0, grow_every=1, m_max=10),
}
TARGET_SHARE = f"lancbio.torch's own cost <= {100 * SHARE:.0f}% of the outer iteration (hyper-cleaning, linear)"
TARGET_PLAIN = "lancbio.torch's own cost below the plain-PyTorch estimator's (hyper-cleaning, linear)"


def _problem(torch):
    import numpy as np

    from lancbio.problems import HyperCleaning
    from lancbio.torch.hypercleaning import HyperCleaningModel

    rng = np.random.default_rng(0)
    features = rng.standard_normal((2 * SAMPLES, FEATURES)) / np.sqrt(FEATURES)
    labels = rng.integers(0, CLASSES, 2 * SAMPLES)
    noisy, _ = HyperCleaning.corrupt_labels(labels[:SAMPLES], 0.5, CLASSES, rng)
    # HyperCleaningModel needs a test set; the benchmark never evaluates it.
    problem = HyperCleaning(features[:SAMPLES], noisy, features[SAMPLES:], labels[SAMPLES:], features[:10],
                            labels[:10], num_classes=CLASSES)
    return HyperCleaningModel(problem, "linear", dtype=torch.float64)


def _measure(torch, model, schedule: dict, iterations: int, warmup: int = 3) -> dict:
    """Per-iteration times of both estimators on one run from (x, y) = 0; returns lists of
    seconds."""
    import lancbio.torch.hypergradient as adapter
    from lancbio.torch import HyperGradient

    from . import torch_reference
    from .measure import rel_diff

    params, x = model.params, model.x
    with torch.no_grad():
        for t in params + [x]:
            t.zero_()
    estimators = {"lancbio.torch": HyperGradient(params, [x], method="lancbio", **schedule),
                  "plain PyTorch": torch_reference.TorchLanczosHyperGradient(params, [x], **schedule)}
    inside = [0.0]
    real = torch.autograd.grad

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - start

    times = {name: {"forward": [], "autograd": [], "own": []} for name in estimators}
    worst = 0.0
    adapter._grad = torch_reference._grad = timed
    try:
        for k in range(warmup + iterations):
            order = list(estimators) if k % 2 == 0 else list(estimators)[::-1]
            grads = {}
            for name in order:
                start = time.perf_counter()
                g, f = model.inner_loss(), model.outer_loss()
                forward = time.perf_counter()
                inside[0] = 0.0
                (grads[name],) = estimators[name].compute(g, f)
                end = time.perf_counter()
                x.grad = None
                if k >= warmup:
                    times[name]["forward"].append(forward - start)
                    times[name]["autograd"].append(inside[0])
                    times[name]["own"].append(end - forward - inside[0])
            worst = max(worst, rel_diff(grads["plain PyTorch"].numpy(), grads["lancbio.torch"].numpy()))
            with torch.no_grad():
                x -= LR_X * grads["lancbio.torch"]
            (gy,) = real(model.inner_loss(), params)
            with torch.no_grad():
                params[0] -= LR_Y * gy
    finally:
        adapter._grad = real
        torch_reference._grad = real
    return {"times": times, "agreement": worst,
            "products": {name: e.hvp_count for name, e in estimators.items()}}


def section_torch(report, cfg, results: dict) -> None:
    from .measure import fmt_time, load_note, stats

    iterations, warmup = (4, 2) if cfg.quick else (60, 3)
    report.heading(f"9. lancbio.torch against plain PyTorch: hyper-cleaning, linear (n = {CLASSES * (FEATURES + 1)})")
    try:
        import torch
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        report.add("torch is not installed (`pip install ./python[torch]`): section skipped.")
        report.target(TARGET_SHARE, "not measured (no torch)", None)
        report.target(TARGET_PLAIN, "not measured (no torch)", None)
        return
    report.add(__doc__.split("\n\n", 1)[1].replace("\n", " ").strip())
    report.add("")
    report.add(f"torch {torch.__version__}; {iterations} outer iterations per schedule after {warmup} of warm-up; "
               f"median [min, max] over the iterations. Load average before: {load_note()}.")
    report.add("")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows, verdicts = [], []
    try:
        model = _problem(torch)
        for label, schedule in SCHEDULES.items():
            run = _measure(torch, model, schedule, iterations, warmup)
            own = {}
            for name, t in run["times"].items():
                total = [a + b + c for a, b, c in zip(t["forward"], t["autograd"], t["own"])]
                o, it = stats(t["own"]), stats(total)
                share = sum(t["own"]) / sum(total)
                own[name] = (o.median, share)
                rows.append([label, name, it.fmt(), stats(t["forward"]).fmt(), stats(t["autograd"]).fmt(),
                             o.fmt(), f"{100 * share:.1f}%", str(run["products"][name])])
            agree = run["agreement"]
            rows.append([label, "agreement", "", "", "", "", "", f"{agree:.1e} " + ("ok" if agree < 1e-8 else "DIFFERENT")])
            verdicts.append((label, own, agree))
            results.setdefault("torch", {})[label] = dict(own=own, agreement=agree)
    finally:
        torch.set_num_threads(threads)
    report.table(["schedule", "estimator", "outer iteration", "forward", "autograd", "own", "own share",
                  "HVPs"], rows)
    share_ok = all(own["lancbio.torch"][1] <= SHARE for _, own, _ in verdicts)
    below_ok = all(own["lancbio.torch"][0] < own["plain PyTorch"][0] for _, own, _ in verdicts)
    worst_share = max(own["lancbio.torch"][1] for _, own, _ in verdicts)
    report.target(TARGET_SHARE, f"worst {100 * worst_share:.1f}%", share_ok, "own time over the iteration's, summed")
    report.target(TARGET_PLAIN, "; ".join(
        f"{fmt_time(own['lancbio.torch'][0])} against {fmt_time(own['plain PyTorch'][0])}" for _, own, _ in verdicts),
        below_ok, "median own time per iteration, one pair per schedule")
