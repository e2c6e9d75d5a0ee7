"""``kgllm demo``: load the bundled domain packs into a KB and ask each pack's example questions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kgllm.exceptions import ConfigError
from kgllm.formatting import format_answer

__all__ = ["bundled_graphs_dir", "run_demo", "CROSS_EXPERT_EXAMPLES"]

# Questions whose chain crosses experts, asked when both experts are loaded.
CROSS_EXPERT_EXAMPLES = [
    (("geography", "movies"), "Which films are tagged with the countries that border [Germany]?"),
]


def bundled_graphs_dir() -> Path:
    """The ``graphs/`` folder shipped beside the package (source checkout) or in the working directory."""
    for candidate in (Path(__file__).resolve().parents[1] / "graphs", Path.cwd() / "graphs"):
        if candidate.is_dir() and any(candidate.glob("*/manifest.yaml")):
            return candidate
    raise ConfigError("bundled domain packs not found; pass --graphs DIR (a folder of pack directories)")


def run_demo(kb: Any, graphs: Path | None = None, *, progress: bool = False,
             echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load every pack under ``graphs`` (skipping ones already loaded), then ask their examples.

    The questions go through routing (no ``domain=``), so the demo also shows which expert answered.
    """
    from kgllm.loaders import load_pack

    say = echo or (lambda _text: None)
    root = graphs or bundled_graphs_dir()
    packs = sorted(path.parent for path in root.glob("*/manifest.yaml"))
    manifests = [load_pack(d) for d in packs]  # every manifest checked before anything is loaded
    loaded: list[dict[str, Any]] = []
    try:
        for pack_dir, pack in zip(packs, manifests, strict=True):
            if pack.name in kb.domains:
                say(f"= {pack.name}: already loaded")
                continue
            start = time.perf_counter()
            report = kb.load(pack_dir, progress=progress)
            report["seconds"] = round(time.perf_counter() - start, 2)
            loaded.append(report)
            say(f"+ {pack.name}: {report.get('entities', 0)} entities, {report.get('triples', 0)} triples, "
                f"{report.get('chunks_added', 0)} chunks ({report['seconds']} s)")
    except BaseException:  # a bad file in a later pack: the packs loaded before it go too, the KB stays as it was
        for report in reversed(loaded):
            kb.delete_domain(report["domain"])
        raise
    questions = [(pack.name, q) for pack in manifests for q in pack.examples]
    questions += [("+".join(needs), q) for needs, q in CROSS_EXPERT_EXAMPLES if set(needs) <= set(kb.domains)]
    asked: list[dict[str, Any]] = []
    for expected, question in questions:
        answer = kb.ask(question)
        routed = answer.experts[0].name if answer.experts else None
        asked.append({"question": question, "expected_domain": expected, "routed_to": routed,
                      "answers": [a.name for a in answer.answers[:5]], "text": answer.text,
                      "paths": [p.text() for p in answer.paths[:3]],
                      "experts_on_top_path": sorted({h.domain or "" for h in answer.paths[0].hops})
                      if answer.paths else []})
        say("")
        say(format_answer(answer))
    return {"loaded": loaded, "asked": asked}
