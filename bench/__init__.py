"""fastgp benchmarks: ``python -m bench [FAMILY ...] [--quick] [--out DIR]`` (see bench/__main__.py)."""
