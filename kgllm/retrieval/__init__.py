"""Retrievers behind one protocol: k-hop subgraph, personalized PageRank, FAISS vectors, hybrid (RRF)."""

from kgllm.retrieval.base import BaseRetriever, Retrieved, Retriever
from kgllm.retrieval.hybrid import HybridRetriever, reciprocal_rank_fusion
from kgllm.retrieval.ppr import PersonalizedPageRank, PPRRetriever
from kgllm.retrieval.subgraph import SubgraphRetriever, k_hop_nodes
from kgllm.retrieval.vector import FactResolver, VectorRetriever, fact_id

__all__ = ["Retriever", "BaseRetriever", "Retrieved", "SubgraphRetriever", "k_hop_nodes", "PersonalizedPageRank",
           "PPRRetriever", "VectorRetriever", "FactResolver", "fact_id", "HybridRetriever", "reciprocal_rank_fusion"]
