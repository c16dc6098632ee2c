"""Allele-specific binding: does the model (and a PWM baseline) prefer the allele that is really preferred?"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from amber_ray.atomic import atomic_write_json, atomic_write_table
from amber_ray.data.tsv import read_tsv
from amber_ray.errors import AmberInputError
from amber_ray.predict import label_index
from amber_ray.variants.pwm import pwm_allele_scores, pwm_log_odds
from amber_ray.variants.score import VariantEffects

_JASPAR_ID = re.compile(r"^(MA\d{4}\.\d+)")


def signed_rank(values: np.ndarray) -> np.ndarray:
    """Rank transform to [-1, 1] that keeps sign and order: ``sign(x) * rank(|x|) / n`` (ties averaged)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return values
    ranks = pd.Series(np.abs(values)).rank(method="average").to_numpy()
    return np.sign(values) * ranks / len(values)


def both_orientations(preferred: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair with its label and, flipped, with the other allele's (``preferred`` 1: first allele): the
    truth and score that the allele-specific AUROC and ROC curve count, so they do not depend on which
    allele is listed first and exist even when every pair prefers the first allele."""
    preferred = np.asarray(preferred, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    return np.concatenate([preferred, 1 - preferred]), np.concatenate([score, -score])


def direction_metrics(preferred: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR and accuracy of ``score > 0`` (first allele up) against ``preferred`` (1: first allele).

    The AUROC counts every pair in both orientations (:func:`both_orientations`), so it does not
    depend on which allele is listed first and is defined even when every pair prefers the first
    allele (dsQTL high/low files). A zero score counts half right.
    """
    preferred = np.asarray(preferred, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    truth, oriented = both_orientations(preferred, score)
    right = np.where(score == 0, 0.5, (score > 0) == (preferred == 1))
    return {
        "auroc": float(roc_auc_score(truth, oriented)),
        "aupr": float(average_precision_score(truth, oriented)),
        "accuracy": float(right.mean()),
    }


def motif_for_label(label: str, motif: str | None) -> str:
    """The JASPAR id to use: ``motif`` if given, else the id a simulator label starts with."""
    if motif:
        return motif
    match = _JASPAR_ID.match(label)
    if not match:
        raise AmberInputError(f"label {label!r} names no JASPAR matrix: give --motif (e.g. MA0139.1)", "--motif")
    return match.group(1)


def read_preferred(path: Path | None, variant_ids: list[str]) -> np.ndarray:
    """1 where the first (ref / ``--ref-fasta``) allele is preferred; from a TSV (``variant_id``, ``preferred``)
    or, without one, 1 for every pair (e.g. dsQTL high-sensitivity allele first)."""
    if path is None:
        return np.ones(len(variant_ids), dtype=np.int64)
    table = read_tsv(path, required=("variant_id", "preferred"))
    bad = table.index[~table["preferred"].isin(["0", "1"])]
    if len(bad):
        raise AmberInputError(f"preferred {table.at[bad[0], 'preferred']!r} is not 0 or 1", path, table.at[bad[0], "variant_id"])
    values = dict(zip(table["variant_id"], table["preferred"].astype(int)))
    absent = next((v for v in variant_ids if v not in values), None)
    if absent is not None:
        raise AmberInputError("has no row for this scored variant", path, absent)
    return np.array([values[v] for v in variant_ids], dtype=np.int64)


def evaluate_pairs(
    effects: VariantEffects, label: str | None, motif: str | None, preferred: np.ndarray
) -> tuple[dict[str, object], pd.DataFrame]:
    """Allele-specific binding: model (first - second probability of ``label``) vs PWM log-odds, side by side.

    Both scores are rank-transformed to [-1, 1] with :func:`signed_rank` (sign and order kept), so
    the AUROCs are those of the raw scores and the accuracies those of their signs.
    """
    column = label_index(effects.label_names, label)
    motif_id = motif_for_label(effects.label_names[column], motif)
    motif_name, log_odds = pwm_log_odds(motif_id)
    w = effects.windows
    pwm_ref, pwm_alt = pwm_allele_scores(w.ref_codes, w.alt_codes, log_odds)
    ref_prob, alt_prob = effects.ref_probs[:, column], effects.alt_probs[:, column]
    model_score = signed_rank(ref_prob.astype(np.float64) - alt_prob)
    pwm_score = signed_rank(pwm_ref - pwm_alt)
    summary = {
        "label": effects.label_names[column],
        "n": len(w),
        "model": direction_metrics(preferred, model_score),
        "pwm": {"motif": motif_id, "motif_name": motif_name, **direction_metrics(preferred, pwm_score)},
    }
    table = pd.DataFrame(
        {
            "variant_id": pd.Series(w.variant_id, dtype="string"),
            "preferred": preferred,
            "model_score": model_score,
            "pwm_score": pwm_score,
            "ref_prob": ref_prob,
            "alt_prob": alt_prob,
            "pwm_ref": pwm_ref,
            "pwm_alt": pwm_alt,
        }
    )
    return summary, table


def write_eval(summary: dict[str, object], table: pd.DataFrame, out: str | Path) -> list[Path]:
    """``OUT/eval.parquet`` then ``OUT/eval.json`` (each atomic)."""
    out = Path(out)
    atomic_write_table(table, out / "eval.parquet")
    atomic_write_json(summary, out / "eval.json")
    return [out / "eval.parquet", out / "eval.json"]
