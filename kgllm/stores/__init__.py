"""Graph stores: the :class:`GraphStore` protocol and its backends, chosen by name.

Example::

    store = open_store("local", path="kb/graph")          # embedded, a directory
    store = open_store("neo4j", uri="bolt://127.0.0.1:7687", user="neo4j", password="...")

Backends are imported only when opened, so naming ``local`` never loads the Neo4j driver.
"""

from __future__ import annotations

import importlib
from typing import Any

from kgllm.exceptions import ConfigError
from kgllm.stores.base import BulkWriter, Direction, GraphStore, RawTriple, subgraph_to_networkx

__all__ = ["STORES", "open_store", "store_class", "GraphStore", "BulkWriter", "RawTriple", "Direction",
           "subgraph_to_networkx"]

# Backend name → "module:Class"; the one registry `kgllm.open(store=...)` and `--store` resolve against.
STORES: dict[str, str] = {
    "local": "kgllm.stores.local:LocalGraphStore",
    "neo4j": "kgllm.stores.neo4j:Neo4jGraphStore",
}


def store_class(backend: str) -> type[GraphStore]:
    """The class registered for ``backend``.

    Raises:
        ConfigError: ``backend`` is not a known name (the message lists the known ones).
    """
    target = STORES.get(backend) if isinstance(backend, str) else None
    if target is None:
        raise ConfigError(f"unknown graph store backend {backend!r}; known backends: {', '.join(sorted(STORES))}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)  # type: ignore[no-any-return]


def open_store(backend: str, **kwargs: Any) -> GraphStore:
    """Open a graph store by backend name, passing ``kwargs`` to its constructor.

    Args:
        backend: a key of :data:`STORES` (``"local"`` or ``"neo4j"``).
        **kwargs: the backend's constructor arguments (``path=`` for local; connection settings for neo4j).

    Raises:
        ConfigError: unknown backend name.
    """
    return store_class(backend)(**kwargs)
