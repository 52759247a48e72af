"""DistilHuBERT's per-layer objective, masked over padded frames:
L_k = mean |ĥ_k - h_k| + λ · mean(-log σ(cos(ĥ_k, h_k))), means over valid frames (and channels for L1).

The cosine term never falls below -log σ(1) = 0.313 per layer (reached at cos = 1); `loss_floor` gives it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.nn.components import valid_mask


@dataclass
class DistillLoss:
    total: Tensor  # sum over target layers
    per_layer: list[Tensor]  # L_k
    l1: list[Tensor]  # mean L1 per layer (detached)
    cosine: list[Tensor]  # mean cosine similarity per layer (detached)


def loss_floor(num_layers: int, cosine_weight: float = 1.0) -> float:
    """The smallest possible total loss: L1 = 0 and cos = 1 on every layer."""
    return num_layers * cosine_weight * math.log1p(math.exp(-1.0))


def compute_loss(
    predictions: Sequence[Tensor],
    targets: Sequence[Tensor],
    lengths: Tensor,
    cosine_weight: float = 1.0,
    total_frames: Optional[Tensor] = None,
    layer_weights: Optional[Sequence[float]] = None,
) -> DistillLoss:
    """`total_frames` overrides the local count of valid frames as the normaliser: data-parallel ranks pass the
    global count divided by the world size (DDP averages gradients), so the result equals one big batch.
    `layer_weights`: the total is Σ w_k·L_k (default all 1); per_layer stays unweighted."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} target layers")
    mask = valid_mask(lengths, predictions[0].shape[1]).float()
    frames = mask.sum() if total_frames is None else total_frames
    per_layer, l1_terms, cosines = [], [], []
    for prediction, target in zip(predictions, targets):
        prediction, target = prediction.float(), target.float()
        l1 = ((prediction - target).abs().mean(-1) * mask).sum() / frames
        cosine = F.cosine_similarity(prediction, target, dim=-1)
        cos_term = (-F.logsigmoid(cosine) * mask).sum() / frames
        per_layer.append(l1 + cosine_weight * cos_term)
        l1_terms.append(l1.detach())
        cosines.append(((cosine * mask).sum() / frames).detach())
    weights = torch.tensor(layer_weights if layer_weights is not None else [1.0] * len(per_layer), device=mask.device)
    return DistillLoss((torch.stack(per_layer) * weights).sum(), per_layer, l1_terms, cosines)
