"""Scores of variants from the model's ref and alt probabilities, and the score table.

Scores per variant and label, from probabilities clipped to ``[1e-6, 1 - 1e-6]`` for the logs:
``diff = alt - ref``, ``log2fc = log2(alt / ref)``, ``logit_diff = logit(alt) - logit(ref)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from amber_ray.data.dataset import codes_to_one_hot
from amber_ray.errors import AmberInputError
from amber_ray.predict import OnBatch, StrandProbabilities, predict
from amber_ray.variants.windows import Windows

EPS = 1e-6
SCORE_COLUMNS = ["variant_id", "chrom", "pos", "ref", "alt", "label", "ref_prob", "alt_prob", "diff", "log2fc", "logit_diff"]


def _clipped(probs: np.ndarray) -> np.ndarray:
    return np.clip(probs, EPS, 1 - EPS)


def _logit(probs: np.ndarray) -> np.ndarray:
    return np.log(probs / (1 - probs))


# Effect of a variant from ref and alt probabilities, per label.
EFFECT_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "diff": lambda ref, alt: alt - ref,
    "log2fc": lambda ref, alt: np.log2(_clipped(alt) / _clipped(ref)),
    "logit_diff": lambda ref, alt: _logit(_clipped(alt)) - _logit(_clipped(ref)),
}


@dataclass
class VariantEffects:
    """Predictions ``(N, labels)`` for the ref and alt windows of each variant."""

    windows: Windows
    label_names: list[str]
    ref_probs: np.ndarray
    alt_probs: np.ndarray

    def score(self, name: str) -> np.ndarray:
        """``(N, labels)`` matrix of one of :data:`EFFECT_SCORES`."""
        if name not in EFFECT_SCORES:
            raise AmberInputError(f"unknown score {name!r}; one of {list(EFFECT_SCORES)}", "score")
        return EFFECT_SCORES[name](self.ref_probs.astype(np.float64), self.alt_probs.astype(np.float64))

    def table(self) -> pd.DataFrame:
        """Long format: one row per variant and label, variant-major, columns :data:`SCORE_COLUMNS`."""
        w, labels = self.windows, len(self.label_names)

        def per_variant(values: Sequence[object], dtype: str) -> pd.Series:
            return pd.Series(np.repeat(np.asarray(values, dtype=object), labels)).astype(dtype)

        columns = {
            "variant_id": per_variant(w.variant_id, "string"),
            "chrom": per_variant(w.chrom, "string"),
            "pos": per_variant([pd.NA if p is None else p for p in w.pos], "Int64"),
            "ref": per_variant(w.ref, "string"),
            "alt": per_variant(w.alt, "string"),
            "label": pd.Series(np.tile(np.asarray(self.label_names, dtype=object), len(w))).astype("string"),
            "ref_prob": self.ref_probs.ravel(),
            "alt_prob": self.alt_probs.ravel(),
        }
        columns.update({name: self.score(name).ravel() for name in EFFECT_SCORES})
        return pd.DataFrame(columns, columns=SCORE_COLUMNS)


def score_windows(
    model: nn.Module,
    windows: Windows,
    label_names: list[str],
    batch_size: int = 64,
    both_strands: bool = False,
    on_batch: OnBatch | None = None,
) -> VariantEffects:
    """Predict ref and alt windows in batches of ``batch_size`` variants; the model's mode is restored.

    Each batch holds the ref and the alt window of ``batch_size`` variants, one-hot encoded only
    then; ``on_batch`` gets the number of variants after each batch.
    """
    length = windows.ref_codes.shape[1]
    pairs = np.stack([windows.ref_codes, windows.alt_codes], axis=1)  # (N, 2, L): ref, alt of each variant

    def one_hot(codes: np.ndarray) -> np.ndarray:
        return codes_to_one_hot(codes.reshape(-1, length))

    probs = predict(StrandProbabilities(model, both_strands), pairs, batch_size, prepare=one_hot, on_batch=on_batch)
    probs = probs.reshape(len(windows), 2, probs.shape[-1])
    return VariantEffects(windows, label_names, probs[:, 0], probs[:, 1])
