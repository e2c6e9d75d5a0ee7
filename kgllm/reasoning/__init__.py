"""Multi-hop reasoning: relation-path beam search, path scorers (zero-shot / learned), aggregation."""

from kgllm.reasoning.aggregate import AggregatedAnswers, aggregate, explain
from kgllm.reasoning.learned import LearnedScorer
from kgllm.reasoning.paths import ChainResult, ChainSearch, RelationGraph, decode_step, step_code
from kgllm.reasoning.reasoner import MASK, PathReasoner, Reasoning
from kgllm.reasoning.scorer import PathScorer, QuestionState, ZeroShotScorer, kb_fingerprint

__all__ = ["RelationGraph", "ChainSearch", "ChainResult", "step_code", "decode_step", "PathScorer", "QuestionState",
           "ZeroShotScorer", "LearnedScorer", "kb_fingerprint", "PathReasoner", "Reasoning", "MASK", "aggregate",
           "explain", "AggregatedAnswers"]
