"""The fast development tier (issue 23): the ``slow`` marker is registered, and every test that
spawns distributed processes carries it, so ``pytest -m "not slow"`` leaves them out while CI,
which deselects nothing, runs them."""

import ast
import importlib
import os
import re

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
# What a distributed test calls: the gloo helper, torchrun, or torch.multiprocessing directly.
DISTRIBUTED = ("run_gloo_ranks", "torchrun", "mp.spawn", "init_process_group")


def test_slow_marker_is_registered(pytestconfig):
    assert [m for m in pytestconfig.getini("markers") if m.startswith("slow:")]


def distributed_tests() -> dict[str, set[str] | None]:
    """{test file: names of its test functions whose code spawns distributed processes, or None for
    a file of distributed tests (named *distributed* or *ddp*: every test in it)}."""
    found: dict[str, set[str] | None] = {}
    for name in sorted(os.listdir(TESTS)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        if "distributed" in name or "ddp" in name:
            found[name] = None
            continue
        with open(os.path.join(TESTS, name), encoding="utf-8") as f:
            source = f.read()
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                code = ast.get_source_segment(source, node)
                if any(word in code for word in DISTRIBUTED):
                    found.setdefault(name, set()).add(node.name)
    return found


def marks(module, test: str) -> set[str]:
    """The names of the marks on a test function: its own decorators' and its module's pytestmark."""
    module_marks = getattr(module, "pytestmark", [])
    module_marks = module_marks if isinstance(module_marks, list) else [module_marks]
    return {m.name for m in module_marks + list(getattr(getattr(module, test), "pytestmark", []))}


def test_distributed_tests_are_marked_slow():
    found = distributed_tests()
    assert {"test_train_distributed.py", "test_select_distributed.py", "test_spectral_ddp.py"} <= set(found)
    assert {"test_ada.py", "test_lecam.py"} <= set(found)  # one gloo test each, among others
    unmarked, fast = [], []
    for name, tests in found.items():
        module = importlib.import_module(name.removesuffix(".py"))  # tests/ is on sys.path, as for helpers
        every = [t for t in vars(module) if t.startswith("test_") and callable(getattr(module, t))]
        unmarked += [f"{name}::{t}" for t in every if (tests is None or t in tests) and "slow" not in marks(module, t)]
        fast += [t for t in every if "slow" not in marks(module, t)]
    assert not unmarked, f"tests that spawn processes without @pytest.mark.slow: {unmarked}"
    assert fast  # the other tests of test_ada.py and test_lecam.py stay in the fast tier


def test_ci_deselects_nothing():
    """CI runs the README's ci:test block and .ci/run's own lines: no pytest there leaves slow out."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = readme.split("<!-- ci:test -->", 1)[1].split("```", 2)[1]
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    runs = [line.split("pytest", 1)[1] for line in (block + ci).splitlines()
            if "pytest" in line and re.search(r"\btests\b", line) and not line.lstrip().startswith("#")]
    assert len(runs) >= 2  # phase 1's suites and phase 3's
    assert not [args for args in runs if re.search(r"(^|\s)(-m|-k|--deselect)\s", args)], runs
