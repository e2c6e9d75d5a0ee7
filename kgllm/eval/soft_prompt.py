"""``kgllm train softprompt``: a graph soft prompt for a local causal LM, trained on a knowledge base.

    kgllm train softprompt --data QA_FILE --out MODEL_DIR -o kb=KB_DIR -o llm=hf:NAME_OR_PATH [-o domain=D]

``QA_FILE``: JSON lines ``{"question": ..., "answers": [...]}`` or MetaQA lines ``question<TAB>a1|a2``.
Options: ``kb`` (the knowledge base the questions are asked of; required), ``llm`` (required),
``domain`` (ask one expert instead of routing), ``epochs``, ``lr``, ``seed``, ``batch_size``,
``num_tokens`` (graph tokens), ``hidden``, ``layers``, ``heads``, ``device`` (``cpu``, ``cuda``; default
the LM's). Then ``kgllm ask "..." --llm softprompt:MODEL_DIR`` answers with it.
"""

from __future__ import annotations

from typing import Any

from kgllm.eval.registry import SEED_MAX, Trainer, TrainRequest, numeric_options, trainer
from kgllm.exceptions import ConfigError

_NUMBERS: dict[str, Any] = {
    "epochs": (int, 1, None), "lr": (float, [0], None), "seed": (int, 0, SEED_MAX), "batch_size": (int, 1, None),
    "num_tokens": (int, 1, 256), "hidden": (int, 4, None), "layers": (int, 1, 16), "heads": (int, 1, 64),
}
#: The ``-o`` keys ``kgllm train softprompt`` accepts.
OPTIONS = frozenset({*_NUMBERS, "kb", "llm", "domain", "device"})


def _train(request: TrainRequest) -> dict[str, Any]:
    import kgllm
    from kgllm.fusion.soft_prompt import SoftPromptConfig
    from kgllm.fusion.soft_prompt_training import read_qa_pairs, train_soft_prompt

    options = dict(request.options)
    numbers = numeric_options(options, _NUMBERS)
    for needed, example in (("kb", "-o kb=KB_DIR"), ("llm", "-o llm=hf:NAME_OR_PATH")):
        if not options.get(needed):
            raise ConfigError(f"kgllm train softprompt needs {example}")
    cfg = SoftPromptConfig(**numbers)
    if cfg.hidden % cfg.heads:
        raise ConfigError(f"hidden ({cfg.hidden}) must be divisible by heads ({cfg.heads})")
    rows = read_qa_pairs(request.data)
    with kgllm.open(options["kb"], create=False) as kb:
        domain = options.get("domain") or None
        if domain is not None and domain not in kb.domains:
            raise ConfigError(f"-o domain={domain!r}: the knowledge base has no such domain "
                              f"(it has {', '.join(kb.domains) or 'none'})")
        return train_soft_prompt(kb, rows, str(options["llm"]), request.out, cfg, domain=domain,
                                 device=options.get("device") or None, progress=request.progress)


trainer(Trainer(name="softprompt", description="graph soft prompt for a local causal LM (-o kb=DIR -o llm=hf:...)",
                run=_train, options=OPTIONS))
