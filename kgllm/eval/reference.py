"""Published reference numbers, kept beside their sources so reports can put ours next to them.

Values are on the benchmarks' *test* splits as published (fractions, not percentages); our numbers
on the validation split are indicative only. Add a row with its citation; never edit one silently.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Reference", "REFERENCES", "references_for"]


@dataclass(frozen=True)
class Reference:
    benchmark: str
    method: str
    metric: str
    value: float
    source: str


_MINERVA = "Das et al. 2018, MINERVA (ICLR), Tables 2-3"
_NTP = "Rocktäschel & Riedel 2017, End-to-end Differentiable Proving (NeurIPS), Table 1"
_CONVE_VIA_MINERVA = "ConvE (Dettmers et al. 2018) as reported by Das et al. 2018, MINERVA, Table 3"
_METAQA = "Sun et al. 2019 (GraftNet/PullNet tables); Saxena et al. 2020, EmbedKGQA (ACL), Table 2"
_NSM = "He et al. 2021, NSM (WSDM), Table 2"
_TRANSFERNET = "Shi et al. 2021, TransferNet (EMNLP), Table 2"
_CSQA = "Yasunaga et al. 2021, QA-GNN (NAACL), Table 2 (in-house test); Zhang et al. 2022, GreaseLM (ICLR)"
_OBQA = "Yasunaga et al. 2021, QA-GNN (NAACL), Table 4; Zhang et al. 2022, GreaseLM (ICLR)"

REFERENCES: tuple[Reference, ...] = (
    # Countries (AUC-PR)
    Reference("countries-s1", "MINERVA", "auc_pr", 1.000, _MINERVA),
    Reference("countries-s2", "MINERVA", "auc_pr", 0.924, _MINERVA),
    Reference("countries-s3", "MINERVA", "auc_pr", 0.951, _MINERVA),
    Reference("countries-s1", "NTP-λ", "auc_pr", 1.000, _NTP),
    Reference("countries-s2", "NTP-λ", "auc_pr", 0.930, _NTP),
    Reference("countries-s3", "NTP-λ", "auc_pr", 0.773, _NTP),
    # Link prediction (filtered MRR)
    Reference("umls", "ConvE", "mrr", 0.957, _CONVE_VIA_MINERVA),
    Reference("kinships", "ConvE", "mrr", 0.797, _CONVE_VIA_MINERVA),
    Reference("umls", "MINERVA", "mrr", 0.825, _MINERVA),
    Reference("kinships", "MINERVA", "mrr", 0.720, _MINERVA),
    # MetaQA (Hits@1)
    Reference("metaqa-1hop", "KV-Mem", "hits@1", 0.963, _METAQA),
    Reference("metaqa-2hop", "KV-Mem", "hits@1", 0.827, _METAQA),
    Reference("metaqa-3hop", "KV-Mem", "hits@1", 0.489, _METAQA),
    Reference("metaqa-1hop", "GraftNet", "hits@1", 0.970, _METAQA),
    Reference("metaqa-2hop", "GraftNet", "hits@1", 0.948, _METAQA),
    Reference("metaqa-3hop", "GraftNet", "hits@1", 0.778, _METAQA),
    Reference("metaqa-1hop", "EmbedKGQA", "hits@1", 0.975, _METAQA),
    Reference("metaqa-2hop", "EmbedKGQA", "hits@1", 0.988, _METAQA),
    Reference("metaqa-3hop", "EmbedKGQA", "hits@1", 0.948, _METAQA),
    Reference("metaqa-1hop", "NSM", "hits@1", 0.971, _NSM),
    Reference("metaqa-2hop", "NSM", "hits@1", 0.999, _NSM),
    Reference("metaqa-3hop", "NSM", "hits@1", 0.989, _NSM),
    Reference("metaqa-1hop", "TransferNet", "hits@1", 0.975, _TRANSFERNET),
    Reference("metaqa-2hop", "TransferNet", "hits@1", 1.000, _TRANSFERNET),
    Reference("metaqa-3hop", "TransferNet", "hits@1", 1.000, _TRANSFERNET),
    # Multiple choice (accuracy)
    Reference("csqa", "RoBERTa-large", "accuracy", 0.687, _CSQA),
    Reference("csqa", "QA-GNN", "accuracy", 0.734, _CSQA),
    Reference("csqa", "GreaseLM", "accuracy", 0.742, _CSQA),
    Reference("obqa", "RoBERTa-large", "accuracy", 0.648, _OBQA),
    Reference("obqa", "QA-GNN", "accuracy", 0.678, _OBQA),
    Reference("obqa", "GreaseLM", "accuracy", 0.668, _OBQA),
)


def references_for(benchmark: str, metric: str | None = None) -> list[Reference]:
    """Published numbers for ``benchmark`` (optionally one metric), in table order."""
    return [r for r in REFERENCES if r.benchmark == benchmark and (metric is None or r.metric == metric)]
