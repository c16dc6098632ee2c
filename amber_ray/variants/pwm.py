"""The PWM baseline of the allele-specific evaluation: best JASPAR log-odds of each allele around the variant."""

from __future__ import annotations

import numpy as np

from amber_ray.data.dataset import COMPLEMENT_CODES
from amber_ray.errors import AmberInputError
from amber_ray.jaspar import pwm_log_odds

__all__ = ["pwm_allele_scores", "pwm_log_odds"]


def _window_scores(codes: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
    """Best-strand log-odds ``(N, L - width + 1)`` of every window of codes ``(N, L)``."""
    width = len(log_odds)
    windows = np.lib.stride_tricks.sliding_window_view(codes, width, axis=1)
    positions = np.arange(width)
    reverse = log_odds[::-1][:, COMPLEMENT_CODES[: log_odds.shape[1]]]  # the reverse-complement strand's matrix
    return np.maximum(log_odds[positions, windows].sum(-1), reverse[positions, windows].sum(-1))


def pwm_allele_scores(first: np.ndarray, second: np.ndarray, log_odds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best PWM log-odds of each allele over the windows (either strand) that overlap the variant.

    The variant is where the two sequences differ; for identical pairs, the centre.
    """
    width, length = len(log_odds), first.shape[1]
    if width > length:
        raise AmberInputError(f"motif is {width} bp, longer than the {length}-bp sequences", "--motif")
    differs = first != second
    differs[~differs.any(axis=1), length // 2] = True
    cumulative = np.concatenate([np.zeros((len(first), 1), dtype=np.int64), np.cumsum(differs, axis=1)], axis=1)
    overlaps = (cumulative[:, width:] - cumulative[:, :-width]) > 0
    best = [np.where(overlaps, _window_scores(codes, log_odds), -np.inf).max(axis=1) for codes in (first, second)]
    return best[0], best[1]
