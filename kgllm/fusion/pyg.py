"""The ``torch_geometric`` names the fusion modules use, imported without the FutureWarning that the
package's import-time ``torch.jit.script`` calls raise on recent torch (nothing a user can act on)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import GATv2Conv
    from torch_geometric.utils import scatter, softmax

__all__ = ["Batch", "Data", "GATv2Conv", "scatter", "softmax"]
