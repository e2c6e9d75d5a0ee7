"""kgllm: knowledge-graph-augmented reasoning over domain experts.

    import kgllm
    kb = kgllm.open("path/to/kb")
    kb.load("graphs/movies")
    answer = kb.ask("Who directed [Kismet]?")
"""

from __future__ import annotations

from kgllm.exceptions import KGLLMError
from kgllm.kb import KnowledgeBase
from kgllm.kb import open_kb as open
from kgllm.types import Answer

__version__ = "0.1.0"

__all__ = ["open", "KnowledgeBase", "Answer", "KGLLMError", "__version__"]
