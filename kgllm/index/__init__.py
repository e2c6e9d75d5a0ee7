"""Vector indexes over FAISS: string ids, flat / HNSW / IVF-PQ factories, persistence with a manifest, GPU."""

from kgllm.index.faiss_index import METRICS, VectorIndex
from kgllm.index.manifest import IndexManifest

__all__ = ["VectorIndex", "IndexManifest", "METRICS"]
