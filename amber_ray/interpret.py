"""Why a trained model predicts what it does: DeepLIFT/SHAP attributions, saturation mutagenesis, seqlets matched to JASPAR.

Built on tangermeme (DeepLIFT/SHAP, in-silico saturation mutagenesis, recursive seqlet calling) and
memelite's TOMTOM; plain torch, no Ray. Every score is on the *logit* of one chosen label (the child
net outputs logits; a sigmoid would squash the differences DeepLIFT distributes).

DeepLIFT needs a rule at every nonlinear module. Of the ops a :class:`~amber_ray.child.DagNet` holds,
convolutions, batch norm (eval mode, so affine), dense layers, dropout (eval), padding and skip
additions are linear and need none; ReLU and the length reduction (``nn.MaxPool1d``, non-overlapping)
get tangermeme's built-in rescale and max-pool rules; the stride-1 ``SamePool`` of the op library has
no built-in rule, so :func:`same_pool_rule` supplies an exact one (max mode; average mode is linear).
With these rules the attributions of each sequence sum to its logit minus the mean reference logit up
to float rounding: :attr:`Attributions.convergence_delta` records the residual per sequence.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from amber_ray.data.dataset import minibatch_indices
from amber_ray.device import resolve_device
from amber_ray.errors import AmberInputError
from amber_ray.jaspar import jaspar_collection
from amber_ray.ops import SamePool
from amber_ray.png import to_png
from amber_ray.predict import OnBatch, ProgressFactory, eval_mode_on, label_index, predict
from amber_ray.registry import load_model

log = logging.getLogger(__name__)

# Under ``figures/`` of the output directory; the HTML report embeds every ``figures/*.png``.
FIGURES = ("attribution_logos.png", "ism_heatmap.png", "motifs.png", "attribution_profile.png")
SEQLET_COLUMNS = ["seqlet", "sequence", "start", "end", "attribution", "count", "jaspar_id", "jaspar_name", "p_value"]


class LabelLogit(nn.Module):
    """The logit of one label as a ``(N, 1)`` output, the shape tangermeme's methods expect.

    The wrapper starts in the wrapped model's mode: tangermeme puts a model back in the mode it
    found it in, and a fresh module's default (train) would switch the wrapped model to training.
    """

    def __init__(self, model: nn.Module, index: int):
        super().__init__()
        self.model = model
        self.index = index
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.index : self.index + 1]


def same_pool_rule(
    module: SamePool, grad_input: tuple[torch.Tensor, ...], grad_output: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor]:
    """Exact DeepLIFT multipliers for :class:`~amber_ray.ops.SamePool` (tangermeme's rule signature).

    Average pooling is linear: the ordinary gradient is already its multiplier. For max pooling each
    output's change is split as in tangermeme's (Captum's) max-pool rule: ``max(o, o_ref) - o_ref``
    goes to the argmax of the input, ``o - max(o, o_ref)`` to the argmax of the reference. The shares
    are scatter-added (stride-1 windows overlap) and divided by the input's change, so the
    multipliers times the input change sum exactly to the output change. ``module.input`` and
    ``module.output`` hold the observed batch followed by the reference batch.
    """
    if module.mode != "max":
        return (grad_input[0],)
    left = (module.kernel - 1) // 2
    length = module.input.shape[-1]
    with torch.no_grad():
        padded = F.pad(module.input, (left, module.kernel - 1 - left), value=float("-inf"))
        _, winners = F.max_pool1d(padded, module.kernel, stride=1, return_indices=True)
        observed, reference = module.output.chunk(2)
        upper = torch.maximum(observed, reference)
        shares = grad_output[0] * torch.cat([upper - reference, observed - upper])
        routed = torch.zeros_like(padded).scatter_add_(-1, winners, shares)[..., left : left + length]
        delta_in = torch.sub(*module.input.chunk(2))
        unchanged = delta_in == 0
        half = torch.where(unchanged, grad_input[0].chunk(2)[0], sum(routed.chunk(2)) / delta_in.masked_fill(unchanged, 1))
    return (torch.cat([half, half]),)


DEEPLIFT_RULES: dict[type[nn.Module], Callable[..., tuple[torch.Tensor]]] = {SamePool: same_pool_rule}


def check_one_hot(x: np.ndarray, names: Sequence[str], source: str | Path) -> None:
    """Attribution methods perturb one-hot bases: an unknown base (a 0.25 column) is an input error naming its record."""
    bad = np.flatnonzero(~(x.max(axis=1) == 1).all(axis=1))
    if len(bad):
        raise AmberInputError(
            "has a base other than A, C, G, T; interpretation needs fully known sequences", source, names[bad[0]]
        )


@dataclass
class Attributions:
    """DeepLIFT/SHAP on one label's logit for ``N`` sequences of length ``L``.

    ``scores`` are projected on the observed bases ``(N, 4, L)`` (zero at the other three);
    ``convergence_delta`` is ``|sum(scores) - (logit - mean reference logit)|`` per sequence.
    """

    scores: np.ndarray
    logits: np.ndarray
    reference_logits: np.ndarray
    convergence_delta: np.ndarray


def deeplift_shap(
    model: nn.Module,
    x: np.ndarray,
    index: int,
    n_shuffles: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device | None = None,
    on_batch: OnBatch | None = None,
) -> Attributions:
    """DeepLIFT/SHAP against ``n_shuffles`` dinucleotide shuffles per sequence.

    ``batch_size`` sequences (with all their references, ``batch_size * n_shuffles`` pairs) go
    through the model at a time.
    Reference ``k`` of every sequence is drawn with seed ``seed + k``, so results do not depend on
    the batching. ``on_batch`` gets the number of sequences finished after each batch.
    """
    from tangermeme.deep_lift_shap import deep_lift_shap

    device = resolve_device(device)
    scores, logits, reference_logits = [], [], []
    with eval_mode_on(model, device):
        target = LabelLogit(model, index)
        for part in minibatch_indices(len(x), batch_size, None):
            batch = torch.from_numpy(np.ascontiguousarray(x[part]))
            with warnings.catch_warnings():  # tangermeme warns per batch; the deltas are checked and logged below
                warnings.simplefilter("ignore", RuntimeWarning)
                result = deep_lift_shap(
                    target,
                    batch,
                    target=0,
                    n_shuffles=n_shuffles,
                    batch_size=len(batch) * n_shuffles,
                    return_references=True,
                    additional_nonlinear_ops=DEEPLIFT_RULES,
                    random_state=seed,
                    device=device,
                )
            references = result.references.reshape(-1, *batch.shape[1:]).float()
            scores.append(result.attributions.numpy())
            logits.append(predict(target, batch, device=device)[:, 0])
            reference_logits.append(predict(target, references, device=device)[:, 0].reshape(len(batch), n_shuffles).mean(axis=1))
            if on_batch:
                on_batch(len(part))
    all_scores, all_logits, all_reference_logits = map(np.concatenate, (scores, logits, reference_logits))
    delta = np.abs(all_scores.sum(axis=(1, 2)) - (all_logits - all_reference_logits))
    attributions = Attributions(all_scores, all_logits, all_reference_logits, delta)
    log_convergence(attributions)
    return attributions


def log_convergence(attributions: Attributions) -> None:
    """Warn when the attributions do not add up to the logit differences (a module without a DeepLIFT rule)."""
    delta = attributions.convergence_delta
    scale = np.abs(attributions.logits - attributions.reference_logits).mean()
    relative = delta.mean() / max(scale, 1e-12)
    message = "DeepLIFT/SHAP convergence: max |delta| %.2g, mean |delta| / mean |logit - reference logit| = %.2g"
    (log.warning if relative > 0.01 else log.info)(message, delta.max(), relative)


def saturation_mutagenesis(
    model: nn.Module,
    x: np.ndarray,
    index: int,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    on_sequence: OnBatch | None = None,
) -> np.ndarray:
    """In-silico saturation mutagenesis: ``(N, 4, L)`` change of the label's logit for every single-base substitution.

    Zero at the observed base. ``on_sequence`` gets 1 after each sequence (each costs ``3 L`` predictions).
    """
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis as tangermeme_ism

    device = resolve_device(device)
    effects = []
    with eval_mode_on(model, device), warnings.catch_warnings():
        target = LabelLogit(model, index)
        warnings.simplefilter("ignore")  # tangermeme notes when its fast path does not apply and falls back
        for i in range(len(x)):
            raw = tangermeme_ism(target, torch.from_numpy(x[i : i + 1]), batch_size=batch_size, raw_outputs=True, device=device)
            effects.append((raw.y_hat[..., 0] - raw.y0[:, None, None, 0]).numpy())
            if on_sequence:
                on_sequence(1)
    return np.concatenate(effects) if effects else np.zeros((0, *x.shape[1:]), dtype=np.float32)


def call_seqlets(
    scores: np.ndarray, threshold: float = 0.01, min_length: int = 4, max_length: int = 25, flank: int = 2
) -> pd.DataFrame:
    """Spans of high positive attribution (tangermeme's recursive seqlets): ``example_idx, start, end, attribution, p-value``.

    ``flank`` bases are added on both sides (clipped to the sequence), since recursive seqlets tend to
    miss a motif's weaker edge positions.
    """
    from tangermeme.seqlet import recursive_seqlets

    seqlets = recursive_seqlets(
        scores.sum(axis=1), threshold=threshold, min_seqlet_len=min_length, max_seqlet_len=max_length, additional_flanks=flank
    )
    seqlets["start"] = seqlets["start"].clip(lower=0)
    seqlets["end"] = seqlets["end"].clip(upper=scores.shape[-1])
    return seqlets


@functools.lru_cache(maxsize=4)
def jaspar_motifs(tax_group: str) -> tuple[list[str], list[str], list[np.ndarray]]:
    """IDs, names and ``(4, width)`` probability matrices (TOMTOM's layout) of the JASPAR CORE collection of ``tax_group``."""
    ids, names, matrices = jaspar_collection(tax_group)
    return ids, names, [np.ascontiguousarray(ppm.T) for ppm in matrices]


def match_seqlets(x: np.ndarray, seqlets: pd.DataFrame, tax_group: str, n_nearest: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """TOMTOM of each seqlet's bases against JASPAR: indices and p-values of the ``n_nearest`` best matches, best first."""
    from tangermeme.annotate import annotate_seqlets

    ids, _, matrices = jaspar_motifs(tax_group)
    if not len(seqlets):
        return np.zeros((0, n_nearest), dtype=np.int64), np.zeros((0, n_nearest))
    motifs = dict(zip(ids, matrices, strict=True))
    indices, p_values = annotate_seqlets(torch.from_numpy(x), seqlets, motifs, n_nearest=n_nearest, n_jobs=1)
    return indices.numpy().astype(np.int64), p_values.numpy()


def seqlet_table(
    x: np.ndarray, names: Sequence[str], seqlets: pd.DataFrame, indices: np.ndarray, p_values: np.ndarray, tax_group: str
) -> pd.DataFrame:
    """One row per seqlet (``SEQLET_COLUMNS``): its bases, sequence, span, attribution, best JASPAR match.

    ``count`` is the number of seqlets whose best match is the same JASPAR matrix; rows are sorted
    by it, then by p-value, so the recurring motifs come first.
    """
    ids, motif_names, _ = jaspar_motifs(tax_group)
    rows = []
    for (example, start, end, attribution), best, p in zip(
        seqlets[["example_idx", "start", "end", "attribution"]].itertuples(index=False),
        indices[:, 0],
        p_values[:, 0],
        strict=True,
    ):
        bases = "".join("ACGT"[b] for b in x[example, :, start:end].argmax(axis=0))
        rows.append((bases, names[example], int(start), int(end), float(attribution), ids[best], motif_names[best], float(p)))
    columns = [c for c in SEQLET_COLUMNS if c != "count"]
    table = pd.DataFrame(rows, columns=columns)
    table.insert(SEQLET_COLUMNS.index("count"), "count", table.groupby("jaspar_id")["jaspar_id"].transform("size"))
    return table.sort_values(["count", "p_value"], ascending=[False, True], kind="stable").reset_index(drop=True)


def recovered_motifs(table: pd.DataFrame, max_p: float = 0.05) -> pd.DataFrame:
    """Per JASPAR matrix: seqlets whose best match it is (at TOMTOM ``p <= max_p``), median p, median seqlet centre."""
    significant = table[table["p_value"] <= max_p].assign(centre=lambda t: (t["start"] + t["end"]) / 2)
    summary = significant.groupby(["jaspar_id", "jaspar_name"], as_index=False).agg(
        seqlets=("seqlet", "size"),
        median_p=("p_value", "median"),
        median_centre=("centre", "median"),
        example=("seqlet", "first"),
    )
    return summary.sort_values(["seqlets", "median_p"], ascending=[False, True]).reset_index(drop=True)


# ---- figures (Agg canvas, no pyplot state) ----


def _save_figure(figure: Figure, path: Path) -> None:
    from amber_ray.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(to_png(figure))


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def attribution_logos(scores: np.ndarray, names: Sequence[str], logits: np.ndarray, seqlets: pd.DataFrame, label: str) -> Figure:
    """One DeepLIFT/SHAP logo per sequence; called seqlets shaded and named by their best JASPAR match."""
    import logomaker

    length = scores.shape[-1]
    figure = _new_figure(max(8.0, length / 14), 1.7 * len(scores) + 0.4)
    axes = figure.subplots(len(scores), 1, squeeze=False)[:, 0]
    for i, ax in enumerate(axes):
        logomaker.Logo(pd.DataFrame(scores[i].T, columns=list("ACGT")), ax=ax, color_scheme="classic")
        for row in seqlets[seqlets["sequence"] == names[i]].itertuples():
            ax.axvspan(row.start - 0.5, row.end - 0.5, color="#ffd92f", alpha=0.3, lw=0)
            ax.text((row.start + row.end) / 2, ax.get_ylim()[1], row.jaspar_name, ha="center", va="top", fontsize=7)
        ax.set_title(f"{names[i]} (logit {logits[i]:.2f})", fontsize=9, loc="left")
        ax.set_ylabel("attribution")
        ax.set_xlim(-0.5, length - 0.5)
    axes[-1].set_xlabel(f"position (bp); DeepLIFT/SHAP on the logit of {label}")
    figure.tight_layout()
    return figure


def ism_heatmap(effects: np.ndarray, x: np.ndarray, names: Sequence[str], label: str) -> Figure:
    """Change of the label's logit for every substitution (rows A, C, G, T); the observed base is 0."""
    figure = _new_figure(max(8.0, effects.shape[-1] / 14), 1.5 * len(effects) + 0.8)
    axes = figure.subplots(len(effects), 1, squeeze=False, gridspec_kw={"hspace": 0.6})[:, 0]
    bound = float(np.abs(effects).max()) or 1.0
    for i, ax in enumerate(axes):
        image = ax.imshow(effects[i], aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        observed = x[i].argmax(axis=0)
        ax.scatter(np.arange(len(observed)), observed, s=1.5, c="black", marker="s", lw=0)
        ax.set_yticks(range(4), list("ACGT"))
        ax.set_title(names[i], fontsize=9, loc="left")
    axes[-1].set_xlabel("position (bp); black: observed base")
    figure.colorbar(image, ax=list(axes), label=f"Δ logit {label}", fraction=0.02)
    return figure


def motif_table(motifs: pd.DataFrame, max_rows: int = 20) -> Figure:
    """The recovered JASPAR motifs as a table figure."""
    shown = motifs.head(max_rows)
    figure = _new_figure(9.0, 0.3 * (len(shown) + 2))
    ax = figure.add_subplot()
    ax.axis("off")
    if not len(shown):
        ax.text(0.5, 0.5, "no seqlet matched a JASPAR motif at p <= 0.05", ha="center", va="center")
        return figure
    cells = [
        [row.jaspar_id, row.jaspar_name, str(row.seqlets), f"{row.median_p:.2g}", f"{row.median_centre:.0f}", row.example]
        for row in shown.itertuples()
    ]
    columns = ["JASPAR", "name", "seqlets", "median p", "median centre (bp)", "example seqlet"]
    table = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(columns))))
    return figure


def attribution_profile(scores: np.ndarray, table: pd.DataFrame, label: str) -> Figure:
    """Mean attribution per position over all sequences, and where the seqlets lie."""
    figure = _new_figure(8.0, 4.0)
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(scores.sum(axis=1).mean(axis=0), lw=1)
    top.set_ylabel("mean attribution")
    top.set_title(f"{len(scores)} sequences, logit of {label}", fontsize=9, loc="left")
    centres = (table["start"] + table["end"]) / 2
    bottom.hist(centres, bins=np.arange(0, scores.shape[-1] + 5, 5))
    bottom.set_ylabel("seqlets")
    bottom.set_xlabel("position (bp)")
    figure.tight_layout()
    return figure


# ---- the `amber-ray interpret` pipeline ----


@dataclass
class Interpretation:
    """Everything ``amber-ray interpret`` computes; :func:`write_outputs` stores it."""

    label: str
    names: list[str]
    x: np.ndarray
    attributions: Attributions
    top: np.ndarray  # indices of the top sequences by logit, highest first
    ism: np.ndarray  # (len(top), 4, L) change of the logit per substitution
    seqlets: pd.DataFrame  # SEQLET_COLUMNS
    motifs: pd.DataFrame  # recovered_motifs(seqlets)


def load_inputs(model_path: Path, fasta: Path, label: str) -> tuple[nn.Module, int, list[str], np.ndarray]:
    """Model, label index, names and one-hot sequences; everything is checked before any work starts."""
    from amber_ray.data import one_hot_encode
    from amber_ray.data.fasta import read_fasta

    model, label_names = load_model(model_path)
    index = label_index(label_names, label, model_path)
    names, seqs = read_fasta(fasta, length=model.space.input_length, unique_names=False)
    x = one_hot_encode(seqs)
    check_one_hot(x, names, fasta)
    return model, index, names, x


def interpret(
    model: nn.Module,
    index: int,
    label: str,
    names: list[str],
    x: np.ndarray,
    top: int = 5,
    n_shuffles: int = 20,
    tax_group: str = "vertebrates",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: ProgressFactory | None = None,
) -> Interpretation:
    """Attributions for all sequences, ISM for the ``top`` highest-scoring ones, seqlets matched to JASPAR ``tax_group``."""
    jaspar_motifs(tax_group)  # an unknown group fails before the long steps
    attributions = deeplift_shap(
        model, x, index, n_shuffles, seed=seed, device=device, on_batch=progress("DeepLIFT/SHAP", len(x)) if progress else None
    )
    best = np.argsort(-attributions.logits, kind="stable")[:top]
    ism = saturation_mutagenesis(
        model, x[best], index, device=device, on_sequence=progress("mutagenesis", len(best)) if progress else None
    )
    seqlets = call_seqlets(attributions.scores)
    indices, p_values = match_seqlets(x, seqlets, tax_group)
    table = seqlet_table(x, names, seqlets, indices, p_values, tax_group)
    log.info(
        "%d seqlets in %d sequences; %d with a JASPAR match at p <= 0.05",
        len(table),
        len(x),
        int((table["p_value"] <= 0.05).sum()),
    )
    return Interpretation(label, names, x, attributions, best, ism, table, recovered_motifs(table))


def write_outputs(result: Interpretation, out: Path) -> None:
    """``attributions.npz``, ``seqlets.tsv``, ``motifs.tsv`` and ``figures/*.png`` under ``out``, each written atomically."""
    from amber_ray.atomic import atomic_path, atomic_write_table

    out.mkdir(parents=True, exist_ok=True)
    a, best = result.attributions, result.top
    with atomic_path(out / "attributions.npz") as tmp, tmp.open("wb") as handle:
        np.savez_compressed(
            handle,
            names=np.array(result.names),
            label=result.label,
            x=result.x.astype(np.uint8),
            attributions=a.scores,
            logits=a.logits,
            reference_logits=a.reference_logits,
            convergence_delta=a.convergence_delta,
            top=best,
            ism=result.ism,
        )
    atomic_write_table(result.seqlets, out / "seqlets.tsv")
    atomic_write_table(result.motifs, out / "motifs.tsv")
    top_names = [result.names[i] for i in best]
    figures = {
        "attribution_logos.png": lambda: attribution_logos(
            a.scores[best], top_names, a.logits[best], result.seqlets, result.label
        ),
        "ism_heatmap.png": lambda: ism_heatmap(result.ism[:3], result.x[best[:3]], top_names[:3], result.label),
        "motifs.png": lambda: motif_table(result.motifs),
        "attribution_profile.png": lambda: attribution_profile(a.scores, result.seqlets, result.label),
    }
    for name, draw in figures.items():
        _save_figure(draw(), out / "figures" / name)
