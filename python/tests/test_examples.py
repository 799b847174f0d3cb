"""The examples in examples/ run and do what they say."""

import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def test_custom_problem_example_reduces_the_exact_hypergradient():
    spec = importlib.util.spec_from_file_location("custom_problem", EXAMPLES / "custom_problem.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start, end = module.main(iterations=300, verbose=False)
    assert end < 0.05 * start
