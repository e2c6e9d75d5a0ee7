"""The KB directory's manifest and its atomic writes."""

from __future__ import annotations

import os
import stat

import pytest

import kgllm
from kgllm.kb_manifest import atomic_write_text


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_get_the_mode_of_the_umask(tmp_path, umask_022):
    # tempfile.mkstemp made every kgllm.json and docs/*.jsonl 0600, unlike the KB's other files
    atomic_write_text(tmp_path / "a" / "file.json", "{}")
    assert _mode(tmp_path / "a" / "file.json") == 0o644
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["file.json"]  # no temporary file left
    doc = tmp_path / "notes.txt"
    doc.write_text("Milk is kept in a fridge.\n", encoding="utf-8")
    with kgllm.open(tmp_path / "kb") as kb:
        kb.load_documents("kitchen", [doc], description="Where things are kept.")
    written = [tmp_path / "kb" / "kgllm.json", *(tmp_path / "kb" / "docs").glob("*.jsonl")]
    assert len(written) == 2 and all(_mode(path) == 0o644 for path in written), written
