"""Variant effect prediction: VCF or allele pairs -> ref/alt windows -> scores; ASB evaluation; LDSC export.

One module per step, all public names re-exported here:

- :mod:`~amber_ray.variants.vcf`: VCF records as :class:`Variant` s (one per ALT) and side-file rows;
- :mod:`~amber_ray.variants.genome`: the indexed reference FASTA;
- :mod:`~amber_ray.variants.windows`: ref and alt windows from a VCF or from sequence pairs (how
  windows are cut is documented there);
- :mod:`~amber_ray.variants.score`: model probabilities, effect scores and the score table;
- :mod:`~amber_ray.variants.ldsc`: LDSC annotation rows;
- :mod:`~amber_ray.variants.output`: the score table, its side file and the LDSC files, written;
- :mod:`~amber_ray.variants.pwm`: the JASPAR PWM baseline;
- :mod:`~amber_ray.variants.evaluate`: allele-specific binding evaluation.
"""

from amber_ray.variants.evaluate import (
    both_orientations,
    direction_metrics,
    evaluate_pairs,
    motif_for_label,
    read_preferred,
    signed_rank,
    write_eval,
)
from amber_ray.variants.genome import ReferenceGenome
from amber_ray.variants.ldsc import ldsc_annotations, ldsc_path
from amber_ray.variants.output import check_score_output, side_file, write_scores
from amber_ray.variants.pwm import pwm_allele_scores, pwm_log_odds
from amber_ray.variants.score import EFFECT_SCORES, EPS, SCORE_COLUMNS, VariantEffects, score_windows
from amber_ray.variants.vcf import SKIPPED_COLUMNS, VCF_COLUMNS, Variant, read_vcf
from amber_ray.variants.windows import Windows, fit_length, load_windows, pair_windows, vcf_windows

__all__ = [
    "EFFECT_SCORES",
    "EPS",
    "SCORE_COLUMNS",
    "SKIPPED_COLUMNS",
    "VCF_COLUMNS",
    "ReferenceGenome",
    "Variant",
    "VariantEffects",
    "Windows",
    "both_orientations",
    "check_score_output",
    "direction_metrics",
    "evaluate_pairs",
    "fit_length",
    "ldsc_annotations",
    "ldsc_path",
    "load_windows",
    "motif_for_label",
    "pair_windows",
    "pwm_allele_scores",
    "pwm_log_odds",
    "read_preferred",
    "read_vcf",
    "score_windows",
    "side_file",
    "signed_rank",
    "vcf_windows",
    "write_eval",
    "write_scores",
]
