"""The report's figures (after AMBER, Zhang et al. 2021, Fig. 3), drawn headless with matplotlib.

Figures are built on :class:`matplotlib.figure.Figure` directly (the Agg canvas, no pyplot and no
global state), rendered to PNG bytes and closed. Each figure function takes the loaded
:class:`~amber_ray.report.parts.RunParts` and raises :class:`Skip` when the parts it draws from are
missing; :func:`render_figures` turns that into a note instead of an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.path import Path as MplPath
from matplotlib.ticker import MaxNLocator
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve

from amber_ray.png import to_png
from amber_ray.report.parts import RunParts, SearchPart
from amber_ray.space import Architecture
from amber_ray.variants.evaluate import both_orientations

logger = logging.getLogger(__name__)

ROLE_COLORS = {"searched": "#d62728", "sampled": "#1f77b4"}
OP_FAMILIES = {"conv": "#1f77b4", "dconv": "#9467bd", "maxpool": "#2ca02c", "avgpool": "#17becf", "identity": "#7f7f7f"}


class Skip(Exception):
    """The parts of a run a figure draws from are missing; the message says which."""


@dataclass(frozen=True)
class Rendered:
    key: str
    part: str  # the part of a run it draws: search, retrain or variants
    title: str
    caption: str
    png: bytes | None  # None when skipped
    note: str | None = None


def op_family(op: str) -> str:
    return next((family for family in ("dconv", "conv", "maxpool", "avgpool") if op.startswith(family)), "identity")


def need_search(run: RunParts) -> SearchPart:
    if run.search is None:
        raise Skip("no search outputs")
    return run.search


def grid_shape(panels: int, max_columns: int = 4) -> tuple[int, int]:
    columns = min(panels, max_columns)
    return -(-panels // columns), columns


# --- search -------------------------------------------------------------------------------------


def op_probabilities(run: RunParts) -> Figure:
    """Paper Fig. 3A: per layer, the controller's probability of each op (rows) over iterations (columns).

    The colour scale is centred (white) on the uniform probability 1/ops, so the ops a controller
    favours or avoids stand out even while its probabilities are still close to uniform.
    """
    probs = need_search(run).op_probs
    if probs is None or probs.empty:
        raise Skip("no op probabilities (op_probs.parquet)")
    ops = list(dict.fromkeys(probs.op))
    layers = sorted(probs.layer.unique())
    rows, columns = grid_shape(len(layers))
    figure = Figure(figsize=(3.2 * columns + 1, 2.2 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    uniform = 1 / len(ops)
    norm = TwoSlopeNorm(
        uniform, min(float(probs.probability.min()), uniform * 0.9), max(float(probs.probability.max()), uniform * 1.1)
    )
    image = None
    for ax, layer in zip(axes.flat, layers):
        matrix = probs[probs.layer == layer].pivot(index="op", columns="iteration", values="probability").reindex(ops)
        image = ax.imshow(
            matrix.to_numpy(),
            aspect="auto",
            cmap="RdBu_r",
            norm=norm,
            interpolation="nearest",
            extent=(matrix.columns.min() - 0.5, matrix.columns.max() + 0.5, len(ops) - 0.5, -0.5),
        )
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_yticks(range(len(ops)), ops, fontsize=8)
    for ax in axes.flat[len(layers) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.colorbar(image, ax=axes, label=f"selection probability (white: uniform 1/{len(ops)})", shrink=0.8)
    return figure


def embedding_pca(run: RunParts) -> Figure:
    """Paper Fig. 3B: the controller's learned op embeddings projected on their first two principal components."""
    search = need_search(run)
    if search.embeddings is None or search.ops is None:
        raise Skip("no controller checkpoint (checkpoints/search.pt)")
    pca = PCA(n_components=2)
    points = pca.fit_transform(search.embeddings)
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    for (x, y), op in zip(points, search.ops):
        ax.scatter(x, y, s=80, color=OP_FAMILIES[op_family(op)], edgecolor="black", zorder=2)
        ax.annotate(op, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    share = pca.explained_variance_ratio_ * 100
    ax.set_xlabel(f"PC1 ({share[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0f}% of variance)")
    ax.axhline(0, color="0.85", lw=0.8, zorder=1)
    ax.axvline(0, color="0.85", lw=0.8, zorder=1)
    return figure


def iteration_rewards(search: SearchPart) -> pd.DataFrame:
    """Per iteration: mean and max reward (from the controller statistics, else from the history)."""
    if search.stats is not None and not search.stats.empty:
        return search.stats.set_index("iteration")
    if search.history is not None and not search.history.empty:
        grouped = search.history.groupby("iteration").reward
        return pd.DataFrame({"mean_reward": grouped.mean(), "max_reward": grouped.max()})
    raise Skip("no controller statistics or search history")


def controller_curves(run: RunParts) -> Figure:
    """Reward (every sampled architecture, mean, max, baseline), entropy, skip fraction and supernet loss."""
    search = need_search(run)
    table = iteration_rewards(search)
    panels = [("entropy", "policy entropy"), ("skip_fraction", "skip fraction"), ("supernet_loss", "supernet training loss")]
    panels = [(column, label) for column, label in panels if column in table]
    rows, columns = grid_shape(len(panels) + 1, max_columns=2)
    figure = Figure(figsize=(5.5 * columns, 3.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    ax = axes[0]
    if search.history is not None and not search.history.empty:
        ax.scatter(search.history.iteration, search.history.reward, s=6, color="0.7", label="sampled architecture")
    ax.plot(table.index, table.mean_reward, color="black", label="mean")
    ax.plot(table.index, table.max_reward, color=ROLE_COLORS["searched"], label="max")
    if "baseline" in table:
        ax.plot(table.index, table.baseline, color=ROLE_COLORS["sampled"], ls="--", label="baseline")
    ax.set_ylabel("reward (validation AUROC)")
    ax.legend(fontsize=8, loc="lower right")
    for ax, (column, label) in zip(axes[1:], panels):
        ax.plot(table.index, table[column], color="black")
        ax.set_ylabel(label)
    for ax in axes[len(panels) + 1 :]:
        ax.set_visible(False)
    for ax in axes[: len(panels) + 1]:
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def split_half(run: RunParts) -> Figure:
    """Per iteration, Spearman r between the rewards on the two validation halves and the Spearman-Brown reliability."""
    from amber_ray.compare import HALF_COLUMNS, split_half_reliability

    history = need_search(run).history
    if history is None or history.empty:
        raise Skip("no search history (history.parquet)")
    if not set(HALF_COLUMNS) <= set(history.columns) or history[list(HALF_COLUMNS)].isna().all().all():
        raise Skip("the search history has no reward_half1/reward_half2 rewards (a search from before split-half scoring)")
    table = split_half_reliability(history)
    if table.spearman_r.isna().all():
        raise Skip("no iteration has 3 or more architectures with non-constant rewards on both halves")
    figure = Figure(figsize=(7, 3.8), layout="constrained")
    ax = figure.subplots()
    ax.plot(table.iteration, table.spearman_r, marker="o", ms=3, color=ROLE_COLORS["sampled"], label="Spearman r between halves")
    ax.plot(table.iteration, table.spearman_brown, marker="o", ms=3, color="black", label="Spearman-Brown reliability 2r/(1+r)")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_ylim(min(-0.1, float(np.nanmin(table[["spearman_r", "spearman_brown"]].to_numpy())) - 0.05), 1.02)
    ax.set_title(
        f"median reliability {np.nanmedian(table.spearman_brown):.2f} over {int(table.spearman_brown.notna().sum())} iterations; "
        f"median {np.median(table.architectures):g} architectures per iteration",
        fontsize=10,
    )
    ax.set_xlabel("iteration")
    ax.set_ylabel("rank agreement")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="lower right")
    return figure


def policy_rewards(search: SearchPart) -> dict:
    final = search.final
    if final is None:
        raise Skip("no final_architectures.json (the search has not finished)")
    comparison = final.get("policy_vs_uniform")
    if not comparison:
        raise Skip(
            "final_architectures.json has no policy_vs_uniform (a search from before this comparison, or search.final_samples 0)"
        )
    return comparison


def policy_vs_uniform(run: RunParts) -> Figure:
    """Rewards of architectures from the final controller policy vs uniformly sampled ones, scored by the same supernet."""
    comparison = policy_rewards(need_search(run))
    figure = Figure(figsize=(5, 4.2), layout="constrained")
    ax = figure.subplots()
    rng = np.random.default_rng(0)
    for position, (key, label, color) in enumerate(
        (("policy", "controller policy", ROLE_COLORS["searched"]), ("uniform", "uniform", ROLE_COLORS["sampled"]))
    ):
        values = np.asarray(comparison.get(key) or [], dtype=float)
        values = values[np.isfinite(values)]
        if len(values):
            ax.boxplot(
                [values],
                positions=[position],
                widths=0.6,
                patch_artist=True,
                showfliers=False,
                boxprops={"facecolor": color, "alpha": 0.35},
                medianprops={"color": "black"},
            )
            ax.scatter(position + rng.uniform(-0.15, 0.15, len(values)), values, s=12, color=color, zorder=3)
    labels = [
        f"{name}\n(n = {len(comparison.get(key) or [])}, mean {comparison.get(f'{key}_mean', float('nan')):.4f})"
        for key, name in (("policy", "controller policy"), ("uniform", "uniform"))
    ]
    ax.set_xticks([0, 1], labels, fontsize=9)
    p = comparison.get("mannwhitney_p")
    ax.set_title(
        f"Mann-Whitney p = {p:.3g}" if isinstance(p, (int, float)) and np.isfinite(p) else "Mann-Whitney p n/a", fontsize=10
    )
    ax.set_ylabel("reward (validation AUROC in the supernet)")
    return figure


def pareto_front(run: RunParts) -> Figure:
    """Re-scored final candidates: validation AUROC against parameters, the Pareto front joined, the choice starred."""
    final = need_search(run).final
    if final is None:
        raise Skip("no final_architectures.json (the search has not finished)")
    if "pareto_front" not in final or "selection" not in final:
        raise Skip("final_architectures.json has no pareto_front (a search from before the front was written)")
    candidates = pd.DataFrame(final["selection"]["candidates"])
    front = pd.DataFrame(final["pareto_front"])
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = figure.subplots()
    ax.scatter(candidates.num_params, candidates.rescored_auroc, s=18, color=ROLE_COLORS["sampled"], label="candidate")
    ax.step(front.num_params, front.rescored_auroc, where="post", color=ROLE_COLORS["searched"], label="Pareto front")
    ax.scatter(front.num_params, front.rescored_auroc, s=30, color=ROLE_COLORS["searched"], zorder=3)
    best = final["best"]
    chosen = candidates[candidates.arch == best["arch"]]
    ax.scatter(chosen.num_params, chosen.rescored_auroc, marker="*", s=160, color="black", zorder=4, label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation AUROC (re-scored in the supernet)")
    kind = final["selection"].get("objective", {}).get("kind", "auroc")
    ax.set_title(f"{len(front)} of {len(candidates)} candidates on the front; objective: {kind}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return figure


def skip_arc(source: int, target: int, top: float) -> tuple[MplPath, float]:
    """A quadratic Bezier from layer ``source`` to ``target`` above the boxes, higher for longer skips; and its peak."""
    height = 0.25 + 0.12 * (target - source)
    path = MplPath(
        [(source, top), ((source + target) / 2, top + 2 * height), (target, top)],
        [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3],
    )
    return path, top + height


def architecture_diagram(arch_text: str, layers_per_block: int | None = None) -> Figure:
    """Layers left to right, coloured by op family; skips as arcs above; block ends marked by the pooling."""
    arch = Architecture.from_text(arch_text)
    figure = Figure(layout="constrained")
    ax = figure.subplots()
    for layer, op in enumerate(arch.ops):
        ax.add_patch(
            Rectangle((layer - 0.4, -0.35), 0.8, 0.7, facecolor=OP_FAMILIES[op_family(op)], edgecolor="black", alpha=0.85)
        )
        ax.text(layer, 0, op, ha="center", va="center", fontsize=8, color="white", weight="bold")
        ax.text(layer, -0.55, f"L{layer}", ha="center", va="top", fontsize=7)
        if layer:
            ax.annotate("", (layer - 0.4, 0), (layer - 0.6, 0), arrowprops={"arrowstyle": "->", "lw": 0.8})
    if layers_per_block:
        for end in range(layers_per_block, arch.num_layers, layers_per_block):
            ax.axvline(end - 0.5, color="0.5", ls=":", lw=1)
            ax.text(end - 0.5, -0.9, "pool", ha="center", fontsize=7, color="0.4")
    top = 0.6
    for layer, sources in enumerate(arch.skips):
        for source in sources:
            path, peak = skip_arc(source, layer, 0.35)
            ax.add_patch(FancyArrowPatch(path=path, arrowstyle="->", mutation_scale=8, color=ROLE_COLORS["searched"], lw=0.9))
            top = max(top, peak + 0.15)
    ax.set_xlim(-0.6, arch.num_layers - 0.4)
    ax.set_ylim(-1.05, top)
    ax.set_aspect("equal")
    ax.axis("off")
    figure.set_size_inches(max(4.0, 0.85 * arch.num_layers + 0.4), 0.85 * (top + 1.05) + 0.3)
    return figure


# --- retraining ---------------------------------------------------------------------------------


def searched_vs_sampled(run: RunParts) -> Figure:
    """Test AUROC and AUPR per category (each trial's mean over the category's labels), with Welch t-test p values."""
    retrain = run.retrain
    if retrain is None or retrain.comparison is None:
        raise Skip("no retraining results with both searched and sampled trials")
    metrics = list(retrain.category_scores)
    figure = Figure(figsize=(5 + 2.2 * len(retrain.comparison["categories"]), 4.2), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    rng = np.random.default_rng(0)
    roles = retrain.results.role.to_numpy()
    for ax, metric in zip(axes, metrics):
        scores = retrain.category_scores[metric]
        for c, category in enumerate(scores.columns):
            for r, role in enumerate(("searched", "sampled")):
                values = scores.loc[roles == role, category].dropna().to_numpy()
                position = c * 3 + r
                ax.boxplot(
                    [values],
                    positions=[position],
                    widths=0.7,
                    patch_artist=True,
                    boxprops={"facecolor": ROLE_COLORS[role], "alpha": 0.35},
                    medianprops={"color": "black"},
                    showfliers=False,
                )
                ax.scatter(position + rng.uniform(-0.15, 0.15, len(values)), values, s=14, color=ROLE_COLORS[role], zorder=3)
            p = retrain.comparison["categories"][category][metric]["t_test"]["p"]
            ax.text(
                c * 3 + 0.5,
                1.01,
                f"p = {p:.2g}" if np.isfinite(p) else "p n/a",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=9,
            )
        ax.set_xticks([c * 3 + 0.5 for c in range(len(scores.columns))], list(scores.columns))
        ax.set_ylabel(f"test {metric.upper()}")
    figure.legend(
        handles=[Rectangle((0, 0), 1, 1, color=color, alpha=0.5) for color in ROLE_COLORS.values()],
        labels=list(ROLE_COLORS),
        fontsize=8,
        loc="outside lower center",
        ncols=len(ROLE_COLORS),
    )
    return figure


def params_vs_auroc(run: RunParts) -> Figure:
    """Parameter count vs test AUROC of every retrained trial, with Spearman's rho over all trials."""
    retrain = run.retrain
    if retrain is None or retrain.results is None or retrain.results.empty:
        raise Skip("no retraining results (results.parquet)")
    results = retrain.results
    figure = Figure(figsize=(6, 4.2), layout="constrained")
    ax = figure.subplots()
    for role, color in ROLE_COLORS.items():
        rows = results[results.role == role]
        ax.scatter(rows.num_params, rows.test_auroc, s=28, color=color, label=f"{role} ({len(rows)})", alpha=0.8)
    if results.num_params.max() > 10 * results.num_params.min():
        ax.set_xscale("log")
    rho, p = stats.spearmanr(results.num_params, results.test_auroc) if len(results) > 2 else (np.nan, np.nan)
    ax.set_title(f"Spearman rho = {rho:.2f} (p = {p:.2g}, n = {len(results)})", fontsize=10)
    ax.set_xlabel("parameters")
    ax.set_ylabel("test AUROC")
    ax.legend(fontsize=8)
    return figure


def retrain_curves(run: RunParts) -> Figure:
    """Validation AUROC per epoch of every retraining trial (finished ones end in a dot), while or after the grid runs."""
    retrain = run.retrain
    if retrain is None or retrain.curves is None:
        raise Skip("no retraining trial results (tune/*/*/result.json)")
    curves = retrain.curves
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    for _, rows in curves.groupby("trial_id"):
        color = ROLE_COLORS.get(rows.role.iloc[0], "black")
        ax.plot(rows.epoch, rows.valid_auroc, color=color, alpha=0.7, lw=1)
        if rows.done.any():
            ax.scatter(rows.epoch.iloc[-1], rows.valid_auroc.iloc[-1], color=color, s=18, zorder=3)
    finished = curves.groupby("trial_id").done.any()
    planned = max(retrain.planned_trials, len(finished))
    ax.set_title(f"{int(finished.sum())} of {planned} trials finished, {len(finished)} started", fontsize=10)
    ax.legend(handles=[Rectangle((0, 0), 1, 1, color=c) for c in ROLE_COLORS.values()], labels=list(ROLE_COLORS), fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AUROC")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


# --- variants -----------------------------------------------------------------------------------


def variant_ref_alt(run: RunParts) -> Figure:
    """Predicted probability of the reference vs the alternative allele, one point per variant (and label)."""
    variants = run.variants
    if variants is None or variants.scores is None:
        raise Skip("no variant score table with ref_prob and alt_prob")
    scores = variants.scores
    label = (variants.summary or {}).get("label")
    if label is not None and "label" in scores and (scores.label == label).any():
        scores = scores[scores.label == label]
    figure = Figure(figsize=(5, 5), layout="constrained")
    ax = figure.subplots()
    if "preferred" in scores:
        for value, name, color in ((1, "ref preferred", ROLE_COLORS["sampled"]), (0, "alt preferred", ROLE_COLORS["searched"])):
            rows = scores[scores.preferred == value]
            if len(rows):
                ax.scatter(rows.ref_prob, rows.alt_prob, s=6, alpha=0.5, color=color, label=f"{name} ({len(rows)})")
        ax.legend(fontsize=8)
    else:
        ax.scatter(scores.ref_prob, scores.alt_prob, s=6, alpha=0.5, color="black")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("reference allele probability")
    ax.set_ylabel("alternative allele probability")
    ax.set_title(f"{len(scores)} scores" + (f", label {label}" if label else ""), fontsize=10)
    return figure


def variant_roc(run: RunParts) -> Figure:
    """ROC of the predicted preferred allele: the model's score vs the PWM log-odds baseline."""
    variants = run.variants
    if variants is None or variants.evaluation is None:
        raise Skip("no allele-specific evaluation (eval.parquet)")
    evaluation = variants.evaluation
    figure = Figure(figsize=(5, 5), layout="constrained")
    ax = figure.subplots()
    pwm = (variants.summary or {}).get("pwm") or {}
    pwm_name = " ".join(str(pwm[key]) for key in ("motif", "motif_name") if pwm.get(key))
    for column, name, color in (
        ("model_score", "model", ROLE_COLORS["searched"]),
        ("pwm_score", f"PWM {pwm_name}".strip(), ROLE_COLORS["sampled"]),
    ):
        rows = evaluation[evaluation[column].notna()]
        if rows.empty:
            continue
        truth, score = both_orientations(rows.preferred.to_numpy(dtype=int), rows[column].to_numpy(dtype=float))
        fpr, tpr, _ = roc_curve(truth, score)
        ax.plot(fpr, tpr, color=color, label=f"{name}: AUROC {roc_auc_score(truth, score):.3f}")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{len(evaluation)} variant pairs, each in both orientations", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return figure


@dataclass(frozen=True)
class FigureSpec:
    key: str
    part: str
    title: str
    caption: str
    draw: Callable[[RunParts], Figure]


REPORT_FIGURES = (
    FigureSpec(
        "op_probabilities",
        "search",
        "Op selection probability per layer",
        "The controller's probability of choosing each op, per layer, over search iterations "
        "(mean over the iteration's samples); red: favoured over a uniform choice, blue: avoided.",
        op_probabilities,
    ),
    FigureSpec(
        "embedding_pca",
        "search",
        "Controller op embeddings (PCA)",
        "The LSTM controller's learned embedding of each op, on its first two principal components: "
        "ops the controller treats alike lie close.",
        embedding_pca,
    ),
    FigureSpec(
        "controller_curves",
        "search",
        "Search progress",
        "Reward (validation AUROC of the supernet path) of every sampled architecture with the iteration's mean and max "
        "and the controller's baseline (the iteration's mean reward by default); policy entropy; fraction of skip "
        "connections; supernet loss.",
        controller_curves,
    ),
    FigureSpec(
        "split_half",
        "search",
        "Split-half reliability of the rewards",
        "Per iteration, over its distinct architectures: Spearman rank correlation between each architecture's reward "
        "on two fixed halves of the validation sequences, and the Spearman-Brown reliability 2r/(1+r) of the full-length "
        "reward. "
        "Missing points: fewer than 3 architectures or constant rewards.",
        split_half,
    ),
    FigureSpec(
        "policy_vs_uniform",
        "search",
        "Controller vs uniform samples",
        "Rewards of architectures sampled from the final controller policy and of uniformly sampled architectures, "
        "scored by the same supernet on the same validation data; p: one-sided Mann-Whitney U test (policy greater), "
        "as recorded by the search.",
        policy_vs_uniform,
    ),
    FigureSpec(
        "pareto_front",
        "search",
        "Accuracy vs size of the final candidates",
        "The candidates of the final choice, re-scored on all validation data: validation AUROC against parameter count. "
        "The front joins those no other candidate beats on both; `amber-ray retrain --arch front` retrains them all.",
        pareto_front,
    ),
    FigureSpec(
        "searched_vs_sampled",
        "retrain",
        "Searched vs sampled architectures",
        "Test AUROC and AUPR of retrained trials (replicate seeds) per label category; p: two-sided Welch t-test.",
        searched_vs_sampled,
    ),
    FigureSpec(
        "params_vs_auroc",
        "retrain",
        "Parameters vs test AUROC",
        "Every retrained trial; Spearman rank correlation over all trials.",
        params_vs_auroc,
    ),
    FigureSpec(
        "retrain_curves",
        "retrain",
        "Retraining progress",
        "Validation AUROC per epoch of every trial (architecture x replicate seed); training stops when it has not improved for "
        "the configured patience, and the best epoch's weights are tested.",
        retrain_curves,
    ),
    FigureSpec(
        "variant_ref_alt",
        "variants",
        "Variant effects: reference vs alternative allele",
        "Predicted probability of the evaluated label for the reference and the alternative allele of each variant.",
        variant_ref_alt,
    ),
    FigureSpec(
        "variant_roc",
        "variants",
        "Allele-specific evaluation",
        "ROC of the predicted preferred allele: the model's score vs the JASPAR PWM log-odds baseline on the same pairs.",
        variant_roc,
    ),
)


def render(spec: FigureSpec, run: RunParts) -> Rendered:
    try:
        figure = spec.draw(run)
    except Skip as skipped:
        logger.debug("figure %s skipped: %s", spec.key, skipped)
        return Rendered(spec.key, spec.part, spec.title, spec.caption, None, str(skipped))
    try:
        return Rendered(spec.key, spec.part, spec.title, spec.caption, to_png(figure))
    finally:
        figure.clear()


def render_figures(run: RunParts) -> list[Rendered]:
    """Every figure of :data:`REPORT_FIGURES` as PNG bytes, or a note saying why it was skipped."""
    return [render(spec, run) for spec in REPORT_FIGURES]
