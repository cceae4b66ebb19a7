"""The cross-backend contract: every backend implements every registered op with its schema's signature.

The op list comes from the schemas that ``csrc/ops.cpp`` registers (``torch.ops.fastgp.*``), not
from a list kept here: an op added to the library and forgotten by a backend (or by
``fastgp.backend.OPS``, the one table the dispatch uses) fails these tests. The checks themselves
are tested on copies of the table and of a provider with one op removed.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import types

import pytest
import torch

import fastgp  # noqa: F401  (loads fastgp._C, which registers the schemas)
from fastgp import backend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE = "fastgp"


# ------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------


def registered_schemas(namespace: str = NAMESPACE) -> dict:
    """op name -> FunctionSchema of every op registered in ``namespace`` (csrc/ops.cpp for fastgp)."""
    return {
        schema.name.split("::", 1)[1]: schema
        for schema in torch._C._jit_get_all_schemas()
        if schema.name.startswith(namespace + "::")
    }


def schema_signature(schema) -> list:
    """[[argument name, its default or None], ...]: what a Python implementation must match."""
    return [[arg.name, repr(arg.default_value) if arg.has_default_value() else None] for arg in schema.arguments]


def python_signature(fn) -> list:
    """The same for a Python function, or for a ``torch.library.triton_op`` from the schema it
    registered. ``*args``/``**kwargs`` appear under their own spelling, so they never match a schema."""
    if hasattr(fn, "_opoverload"):
        return schema_signature(fn._opoverload._schema)
    out = []
    for param in inspect.signature(fn).parameters.values():
        name = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(param.kind, "") + param.name
        out.append([name, None if param.default is inspect.Parameter.empty else repr(param.default)])
    return out


def registered_triton_schemas(ops: dict, provider_of) -> dict:
    """op -> its schema, without namespace, for the launchers registered with ``triton_op``."""
    found = {}
    for op, family in ops.items():
        fn = getattr(provider_of(family), op, None)
        if hasattr(fn, "_opoverload"):
            found[op] = str(fn._opoverload._schema).split("::", 1)[1]
    return found


def provider_signatures(ops: dict, provider_of) -> dict:
    """op -> signature (None when missing) of the implementations ``provider_of(family)`` holds."""
    found = {}
    for op, family in ops.items():
        fn = getattr(provider_of(family), op, None)
        found[op] = None if fn is None else python_signature(fn)
    return found


def contract_violations(ops: dict, schemas: dict, backends: dict) -> list[str]:
    """Every way ``ops`` (op -> family) and each backend's {op: signature} disagree with ``schemas``."""
    problems = [f"op {op!r} is registered but missing from the backend table" for op in sorted(set(schemas) - set(ops))]
    problems += [f"the backend table names {op!r}, which no schema registers" for op in sorted(set(ops) - set(schemas))]
    for name, signatures in backends.items():
        for op in sorted(schemas):
            expected = schema_signature(schemas[op])
            got = signatures.get(op)
            if got is None:
                problems.append(f"backend {name!r} does not implement {op!r}")
            elif got != expected:
                problems.append(f"backend {name!r} implements {op!r} as {got}, the schema says {expected}")
    return problems


def ops_without_kernel(ops, dispatch_key: str, namespace: str = NAMESPACE) -> list[str]:
    return [op for op in sorted(ops) if not torch._C._dispatch_has_kernel_for_dispatch_key(f"{namespace}::{op}", dispatch_key)]


# A subprocess imports the Triton family modules: without a GPU their kernels may only be defined
# with TRITON_INTERPRET=1 set before import, which this process must not switch on for itself.
_TRITON_SIGNATURES = """
import json, sys
sys.path.insert(0, {tests!r})
from fastgp import backend
from test_contract import provider_signatures, registered_triton_schemas
def provider_of(family):
    return backend.provider("triton", family)
print(json.dumps([provider_signatures(backend.OPS, provider_of), registered_triton_schemas(backend.OPS, provider_of)]))
"""


def triton_signatures() -> tuple[dict, dict]:
    """(op -> signature, op -> schema of the launchers registered as torch.ops.fastgp_triton.*)."""
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    code = _TRITON_SIGNATURES.format(tests=os.path.join(REPO, "tests"))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------
# The contract, checked
# ------------------------------------------------------------------------------------------


def test_schemas_are_registered():
    schemas = registered_schemas()
    assert "translate" in schemas and len(schemas) >= 10, sorted(schemas)
    # One overload per op: the backends are looked up by op name.
    assert all(schema.overload_name == "" for schema in schemas.values())


def test_backend_table_lists_exactly_the_registered_ops():
    assert contract_violations(backend.OPS, registered_schemas(), {}) == []
    assert set(backend.FAMILIES) == set(backend.OPS.values())


def test_reference_implements_every_op():
    signatures = provider_signatures(backend.OPS, lambda family: backend.provider("reference", family))
    assert contract_violations(backend.OPS, registered_schemas(), {"reference": signatures}) == []


def test_triton_implements_every_op():
    if backend._check_triton() is not None:
        pytest.skip(backend._check_triton())
    signatures, triton_schemas = triton_signatures()
    schemas = registered_schemas()
    assert contract_violations(backend.OPS, schemas, {"triton": signatures}) == []
    # Launchers registered as custom ops (for torch.compile) declare the same types as well
    # (an ``int`` annotation registers as SymInt: the same Python value).
    assert triton_schemas, "no Triton launcher is registered as a custom op"
    for op, schema in triton_schemas.items():
        assert schema.replace("SymInt", "int") == str(schemas[op]).split("::", 1)[1], op


def test_extension_implements_every_op_on_cpu_with_a_fake_kernel():
    signatures = {op: schema_signature(backend.implementation("extension", op).default._schema) for op in backend.OPS}
    assert contract_violations(backend.OPS, registered_schemas(), {"extension": signatures}) == []
    assert ops_without_kernel(backend.OPS, "CPU") == []
    assert ops_without_kernel(backend.OPS, "Meta") == []  # torch.library.register_fake in fastgp/<family>.py


def test_extension_cuda_implements_every_op():
    if not backend.extension_has_cuda():
        pytest.skip("fastgp._C was built without its CUDA kernels")
    assert ops_without_kernel(backend.OPS, "CUDA") == []


# ------------------------------------------------------------------------------------------
# The checks catch what they are for
# ------------------------------------------------------------------------------------------


def _reference_without(op: str):
    """A copy of the reference provider of ``op``'s family, lacking ``op``."""
    module = backend.provider("reference", backend.OPS[op])
    return types.SimpleNamespace(**{name: getattr(module, name) for name in backend.OPS if hasattr(module, name) and name != op})


def test_check_fails_when_a_backend_misses_an_op():
    schemas = registered_schemas()
    for op in ("translate", "grad_norm_penalty_sum"):
        partial = _reference_without(op)
        signatures = provider_signatures(
            backend.OPS, lambda family: partial if family == backend.OPS[op] else backend.provider("reference", family)
        )
        assert contract_violations(backend.OPS, schemas, {"copy": signatures}) == [f"backend 'copy' does not implement {op!r}"]


def test_check_fails_when_the_table_misses_an_op():
    table = {op: family for op, family in backend.OPS.items() if op != "nearest_distance"}
    assert contract_violations(table, registered_schemas(), {}) == [
        "op 'nearest_distance' is registered but missing from the backend table"
    ]


def test_check_fails_on_a_different_signature():
    schemas = {"translate": registered_schemas()["translate"]}

    def renamed(x, shifts, boxes, pad):
        raise AssertionError("never called")

    def defaulted(x, shifts, boxes, padding="zeros"):
        raise AssertionError("never called")

    def variadic(*args, **kwargs):
        raise AssertionError("never called")

    for fn in (renamed, defaulted, variadic):
        problems = contract_violations({"translate": "augment"}, schemas, {"copy": {"translate": python_signature(fn)}})
        assert len(problems) == 1 and "the schema says [['x', None], ['shifts', None]" in problems[0], problems


def test_kernel_check_reports_an_op_without_a_kernel():
    library = torch.library.Library("fastgp_contract_probe", "DEF")
    library.define("cpu_only(Tensor x) -> Tensor")
    library.impl("cpu_only", lambda x: x.clone(), "CPU")
    assert ops_without_kernel(["cpu_only"], "CPU", "fastgp_contract_probe") == []
    assert ops_without_kernel(["cpu_only"], "CUDA", "fastgp_contract_probe") == ["cpu_only"]
