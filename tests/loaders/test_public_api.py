"""The loaders' public names, and that importing them stays light (rdflib only when RDF is read)."""

from __future__ import annotations

import subprocess
import sys

import kgllm.loaders


def test_all_exports_exist() -> None:
    assert sorted(kgllm.loaders.__all__) == sorted(set(kgllm.loaders.__all__))
    for name in kgllm.loaders.__all__:
        assert getattr(kgllm.loaders, name) is not None, name


def test_import_does_not_load_rdflib_or_torch() -> None:
    code = "import sys, kgllm.loaders; print(sorted(m for m in ('rdflib', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
