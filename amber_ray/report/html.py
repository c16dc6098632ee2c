"""One self-contained ``report.html``: summary table, architecture diagram, figures, variants, interpretation.

Every image is embedded as a base64 PNG, so the file can be mailed or opened offline. The file is
written atomically and logged (with the figures as PNGs) to the MLflow parent runs of the search
and retrain commands it reports on.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from amber_ray.atomic import atomic_path
from amber_ray.png import to_png
from amber_ray.report.figures import Rendered, architecture_diagram, render_figures
from amber_ray.report.parts import InterpretPart, RunParts, VariantsPart
from amber_ray.report.summary import Summary, build_summary, tracked_runs
from amber_ray.tracking import RunTracker

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TABLE_ROWS = 20
INLINE_FIGURES = {"policy_vs_uniform"}  # drawn inside a section of their own, not in the part's list of figures
ARTIFACT_DIR = "report"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0.1em 0.3em; word-break: break-all; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } .note { color: #8a6d3b; } .muted { color: #777; font-size: 0.9em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def formatted(value: float | None, spec: str) -> str:
    """``value`` in the format ``spec``; "n/a" when it is missing or NaN."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def number(value: float | None, digits: int = 4) -> str:
    return formatted(value, f".{digits}f")


def p_value(value: float | None) -> str:
    """Three significant digits, so a small p reads 5.73e-12 rather than 0.000."""
    return formatted(value, ".3g")


def cell(value: Any) -> str:
    """A table cell: floats to 4 decimals, integers with thousands separators, anything else escaped."""
    if isinstance(value, float):
        return number(value)
    if isinstance(value, int):
        return f"{value:,}"
    return "n/a" if value is None else esc(value)


def png_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def table(header: list[str] | None, rows: list[list[str]]) -> str:
    """An HTML table from already-escaped cells; a cell starting with a digit or sign is right-aligned."""
    head = "<tr>" + "".join(f"<th>{cell}</th>" for cell in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if c[:1].isdigit() or c[:1] in "-+" else f"<td>{c}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


# --- sections -----------------------------------------------------------------------------------


def architecture_section(summary: Summary) -> str:
    if summary.best is None:
        return "<h2>Search</h2><h3>Best architecture</h3><p class='note'>No architectures sampled yet.</p>"
    best = summary.best
    rows = [["architecture", f"<code>{esc(best['arch'])}</code>"], ["chosen as", esc(summary.best_source)]]
    if summary.strategy:
        rows.insert(0, ["search strategy", esc(summary.strategy)])
    rescored = "search_reward" in best
    reward_labels = (
        (("reward", "reward re-scored on all validation data (supernet AUROC)"), ("search_reward", "reward during the search"))
        if rescored
        else (("reward", "reward (validation AUROC in the supernet)"),)
    )
    rows += [
        [label, cell(best[key])]
        for key, label in (*reward_labels, ("iteration", "found at iteration"), ("num_params", "parameters"))
        if key in best
    ]
    if summary.greedy:
        rows.append(["greedy (argmax) decode", f"<code>{esc(summary.greedy)}</code>"])
    for key, label in (
        ("iterations", "iterations"),
        ("sampled", "architectures sampled"),
        ("distinct", "distinct architectures"),
    ):
        if key in summary.search_counts:
            rows.append([label, f"{summary.search_counts[key]:,}"])
    figure = architecture_diagram(best["arch"], summary.layers_per_block)
    try:
        diagram = png_tag(to_png(figure), "diagram of the best architecture")
    finally:
        figure.clear()
    parts = ["<h2>Search</h2><h3>Best architecture</h3>", table(None, rows), "<figure>", diagram]
    parts.append(
        "<figcaption>Layers left to right, coloured by op family; red arcs: skip connections "
        "(added to the later layer's output); dotted lines: end of a block (max-pool).</figcaption></figure>"
    )
    parts.append(selection_block(summary))
    if summary.top_k:
        top = [
            [str(i + 1), f"<code>{esc(e['arch'])}</code>", *(cell(e.get(key)) for key in ("reward", "iteration", "num_params"))]
            for i, e in enumerate(summary.top_k)
        ]
        parts += [
            "<h3>Top architectures by reward</h3>",
            table(["rank", "architecture", "reward", "iteration", "parameters"], top),
        ]
    return "".join(parts)


def selection_block(summary: Summary) -> str:
    """The final-selection rule and its candidates (``selection`` of final_architectures.json), the chosen one marked."""
    selection = summary.selection
    if not selection:
        if summary.best_source.startswith("best of the last"):  # a finished search from before re-scored selection
            return (
                "<h3>Final selection</h3><p class='note'>Skipped: final_architectures.json has no selection "
                "(a search from before re-scored selection).</p>"
            )
        return ""
    parts = ["<h3>Final selection</h3>", f"<p>Rule: {esc(selection.get('rule', 'not recorded'))}.</p>"]
    candidates = selection.get("candidates") or []
    if candidates:
        chosen = summary.best["arch"] if summary.best else None
        rows = [
            [
                str(i + 1),
                f"<code>{esc(c.get('arch'))}</code>",
                *(cell(c.get(key)) for key in ("search_reward", "rescored_reward", "iteration", "num_params")),
                "chosen" if c.get("arch") == chosen else "",
            ]
            for i, c in enumerate(candidates)
        ]
        parts.append(table(["#", "architecture", "search reward", "re-scored reward", "iteration", "parameters", ""], rows))
    return "".join(parts)


def policy_section(summary: Summary, figures: list[Rendered]) -> str:
    """Rewards of the final controller policy's samples vs uniform samples (``policy_vs_uniform``), numbers and figure."""
    rendered = next((r for r in figures if r.key == "policy_vs_uniform"), None)
    if rendered is None:
        return ""
    parts = [f"<h3>{esc(rendered.title)}</h3>"]
    comparison = summary.policy_vs_uniform
    if comparison:
        rows = [
            [name, f"{len(comparison.get(key) or []):,}", number(comparison.get(f"{key}_mean"))]
            for key, name in (("policy", "controller policy"), ("uniform", "uniform"))
        ]
        parts.append(table(["architectures from", "n", "mean reward"], rows))
        parts.append(f"<p>Mann-Whitney p = {p_value(comparison.get('mannwhitney_p'))}.</p>")
    if rendered.png is None:
        parts.append(f"<p class='note'>Skipped: {esc(rendered.note)}.</p>")
    else:
        parts.append(f"<figure>{png_tag(rendered.png, rendered.title)}<figcaption>{esc(rendered.caption)}</figcaption></figure>")
    return "".join(parts)


def architecture_level_cells(entry: dict[str, Any] | None) -> list[str]:
    """Architecture means searched and sampled, their difference with its bootstrap interval, the median percentile
    and the U test."""
    if not entry:
        return ["n/a"] * 5
    cells = [f"{number(entry[role]['mean'])} (n={entry[role]['n']})" for role in ("searched", "sampled")]
    difference = entry["difference"]
    cells.append(f"{number(difference['mean'])} [{number(difference['low'])}, {number(difference['high'])}]")
    cells.append(number(entry["median_percentile"], 1))
    cells.append(p_value(entry["mannwhitney"]["p"]))
    return cells


def random_search_paragraph(chosen: dict[str, Any]) -> str:
    """Random search's choice beside the searched architecture(s): is the learned search worth its cost here?"""
    differences = ", ".join(f"{number(entry['difference'])} ({esc(entry['arch'])})" for entry in chosen["searched_minus_random"])
    return (
        f"<p>Random search (the same budget on its own supernet, the ablation of the learned search) chose "
        f"<code>{esc(chosen['arch'])}</code>: test AUROC {number(chosen['mean'])} (mean of {chosen['replicates']} "
        f"replicates), percentile {number(chosen['percentile'], 1)} among the sampled architectures. Searched minus "
        f"random search: {differences}. One search of each is one unit: a difference here is not yet a finding "
        '(README: "Does the search beat random sampling?").</p>'
    )


def metrics_section(summary: Summary) -> str:
    if summary.roles is None:
        return "<h2>Retraining</h2><h3>Retrained models (test set)</h3><p class='note'>No retraining results.</p>"
    rows = [
        [esc(role), str(r["trials"]), str(r["architectures"]), f"{r['parameters (median)']:,}", esc(r["parameters (min-max)"])]
        for role, r in summary.roles.iterrows()
    ]
    parts = ["<h2>Retraining</h2><h3>Retrained models (test set)</h3>"]
    if summary.provisional:
        parts.append("<p class='note'>Provisional: the retraining has not finished; these are the trials finished so far.</p>")
    parts.append(table(["role", "trials", "architectures", "parameters (median)", "parameters (min-max)"], rows))
    if summary.overall:
        metric_rows = []
        for metric, entry in summary.overall.items():
            cells = [
                f"{number(entry[role]['mean'])} ± {number(entry[role]['std'])} (n={entry[role]['n']})"
                for role in ("searched", "sampled")
            ]
            metric_rows.append(
                [
                    esc(metric),
                    *cells,
                    p_value(entry["t_test"]["p"]),
                    *architecture_level_cells(summary.architecture_level.get(metric)),
                ]
            )
        parts += [
            (
                "<p>Trials: mean ± sd over trials (replicate seeds), p: two-sided Welch t-test. Replicates of one "
                "architecture are not independent samples, so the architecture columns first average each architecture's "
                "replicates: mean of the architecture means (n = architectures), searched minus sampled with a 95 % "
                "bootstrap interval (architectures resampled within each group), the median percentile of the searched "
                "architectures among the sampled ones (percent of sampled means below, ties half) and a one-sided "
                "Mann-Whitney U test (searched greater).</p>"
            ),
            table(
                [
                    "test metric",
                    "searched (trials)",
                    "sampled (trials)",
                    "p (trials, Welch)",
                    "searched (architectures)",
                    "sampled (architectures)",
                    "difference [95 % CI]",
                    "percentile",
                    "p (architectures, U)",
                ],
                metric_rows,
            ),
        ]
    if summary.random_search:
        parts.append(random_search_paragraph(summary.random_search))
    if summary.params_vs_auroc:
        rho = summary.params_vs_auroc
        parts.append(
            f"<p>Parameters vs test AUROC over all trials: Spearman rho = {number(rho['spearman_rho'], 2)} "
            f"(p = {p_value(rho['p'])}, n = {rho['n']}).</p>"
        )
    return "".join(parts)


def cost_section(summary: Summary) -> str:
    if not summary.costs:
        return "<h2>Compute cost</h2><p class='note'>Unknown: no MLflow run or trial times found.</p>"
    rows = [
        [
            esc(c.stage),
            f"{c.hours:.3g}",
            f"{c.cpus:g} CPU, {c.gpus:g} GPU",
            f"{c.cpu_hours:.3g}",
            f"{c.gpu_hours:.3g}",
            esc(c.basis),
        ]
        for c in summary.costs
    ]
    rows.append(
        ["total", "", "", f"{sum(c.cpu_hours for c in summary.costs):.3g}", f"{sum(c.gpu_hours for c in summary.costs):.3g}", ""]
    )
    return "<h2>Compute cost</h2>" + table(["stage", "hours", "resources", "CPU hours", "GPU hours", "basis"], rows)


def figures_of(part: str, figures: list[Rendered]) -> str:
    return "".join(figure_block(rendered) for rendered in figures if rendered.part == part and rendered.key not in INLINE_FIGURES)


def figure_block(rendered: Rendered) -> str:
    if rendered.png is None:
        return f"<h3>{esc(rendered.title)}</h3><p class='note'>Skipped: {esc(rendered.note)}.</p>"
    figure = f"<figure>{png_tag(rendered.png, rendered.title)}<figcaption>{esc(rendered.caption)}</figcaption></figure>"
    return f"<h3>{esc(rendered.title)}</h3>{figure}"


def variants_section(variants: VariantsPart) -> str:
    if variants.summary is None:
        return "<h2>Variant effects</h2><p class='note'>No allele-specific evaluation (eval.json).</p>"
    s = variants.summary
    model, pwm = s.get("model", {}), s.get("pwm", {})
    rows = [
        ["model", number(model.get("auroc")), number(model.get("aupr")), number(model.get("accuracy"))],
        [
            f"JASPAR PWM baseline ({esc(' '.join(str(pwm[k]) for k in ('motif', 'motif_name') if pwm.get(k)) or '?')})",
            number(pwm.get("auroc")),
            number(pwm.get("aupr")),
            number(pwm.get("accuracy")),
        ],
    ]
    label, pairs = esc(s.get("label", "?")), esc(s.get("n", "?"))
    intro = f"<p>Allele-specific evaluation of label <code>{label}</code> on {pairs} variant pairs.</p>"
    return "<h2>Variant effects</h2>" + intro + table(["predictor", "AUROC", "AUPR", "accuracy"], rows)


def interpret_section(interpret: InterpretPart, notes: list[str]) -> str:
    parts = ["<h2>Interpretation</h2>"]
    for path in interpret.figures:
        data = path.read_bytes()
        if not data.startswith(PNG_SIGNATURE):
            notes.append(f"{path} is not a PNG; left out")
            continue
        parts.append(f"<figure>{png_tag(data, path.stem)}<figcaption>{esc(path.name)}</figcaption></figure>")
    if interpret.seqlets is not None:
        shown = interpret.seqlets.head(MAX_TABLE_ROWS)
        parts.append(f"<h3>Seqlets</h3><p class='muted'>{len(shown)} of {len(interpret.seqlets)} rows of seqlets.tsv.</p>")
        parts.append(shown.to_html(index=False, escape=True, border=0, float_format=lambda v: f"{v:.4g}"))
    return "".join(parts)


def sources(run: RunParts) -> str:
    items = [(name, getattr(run, name)) for name in ("search", "retrain", "variants", "interpret")]
    rows = [[name, f"<code>{esc(part.directory)}</code>"] for name, part in items if part is not None]
    return table(["part", "directory"], rows) if rows else ""


def build_html(run: RunParts, summary: Summary, figures: list[Rendered]) -> str:
    notes = list(run.notes)
    title = f"amber_ray report{': ' + summary.name if summary.name else ''}"
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p class='muted'>Written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</p>",
        sources(run),
    ]
    if run.search is not None:
        body += [architecture_section(summary), policy_section(summary, figures), figures_of("search", figures)]
    if run.retrain is not None:
        body += [metrics_section(summary), figures_of("retrain", figures)]
    if run.search is not None or run.retrain is not None:
        body.append(cost_section(summary))
    if run.variants is not None:
        body += [variants_section(run.variants), figures_of("variants", figures)]
    if run.interpret is not None:
        body.append(interpret_section(run.interpret, notes))
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li class='note'>{esc(note)}</li>" for note in notes) + "</ul>")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def log_to_mlflow(trackers: dict[str, RunTracker], report: Path, figures: list[Rendered]) -> None:
    """The report and each figure as PNG, under ``report/`` of every parent run found."""
    with tempfile.TemporaryDirectory() as directory:
        pngs = []
        for rendered in figures:
            if rendered.png is not None:
                path = Path(directory) / f"{rendered.key}.png"
                path.write_bytes(rendered.png)
                pngs.append(path)
        for name, tracker in trackers.items():
            tracker.log_artifact(report, ARTIFACT_DIR)
            for path in pngs:
                tracker.log_artifact(path, f"{ARTIFACT_DIR}/figures")
            logger.debug("report logged to the MLflow run of the %s (%s)", name, tracker.run_id)


def write_report(run: RunParts, out: Path, track: bool = True) -> Path:
    """Render ``run`` into the self-contained HTML file ``out``; with ``track``, log it to the run's MLflow parent runs."""
    trackers = tracked_runs(run)
    summary = build_summary(run, trackers)
    figures = render_figures(run)
    with atomic_path(out) as tmp:
        tmp.write_text(build_html(run, summary, figures), encoding="utf-8")
        tmp.chmod(0o644)  # a page to share, not a private temp file
    if track:
        log_to_mlflow(trackers, out, figures)
    return out
