"""Benchmark case families: one module per op family, each exposing ``cases() -> list[Case]``.

``python -m bench`` discovers the modules of this package; the module name is the family name
(the same as ``fastgp/<family>.py`` and ``tests/test_<family>.py``).
"""
