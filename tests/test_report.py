"""The HTML report of a small real run (search + retrain on the simulator), opened in headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from amber_ray.checkpoint import LEGACY_OPS_KEY, OPS_KEY, check_search_checkpoint, checkpoint_ops
from amber_ray.cli import app
from amber_ray.compare import split_half_reliability
from amber_ray.config import SimulatorConfig, parse_config
from amber_ray.data.simulate import simulate_dataset
from amber_ray.pipeline import compare_retrain
from amber_ray.report import report_run
from amber_ray.report.figures import REPORT_FIGURES, render_figures
from amber_ray.report.parts import load_run
from amber_ray.retrain import run_retrain
from amber_ray.search.loop import run_search
from amber_ray.training import train_architecture

CTCF = "MA0139.1_CTCF"
RAW = {
    "name": "report-test",
    "seed": 2,
    "data": {
        "kind": "simulate",
        "simulate": {"num_sequences": 300, "length": 100, "motifs": ["MA0139.1", "MA0079.5"], "prevalence": 0.4},
        "split": {"valid": 0.25, "test": 0.25},
    },
    "space": {"profile": "small", "first_filters": 8, "stem_channels": 8, "dense_units": 16},
    "train": {"batch_size": 50, "max_epochs": 1, "patience": 5},
    "search": {"iterations": 3, "archs_per_iteration": 5, "warmup_batch_size": 100, "batch_size": 100, "top_k": 3},
    "retrain": {"replicates": 2, "sampled": 1, "cpus_per_trial": 0.5},  # all four trials at once on two CPUs
}
IMG_SRC = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"')
PROBE = """<script>addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
});</script>"""


@pytest.fixture(scope="module")
def small_run(ray_session, tmp_path_factory) -> Path:
    """A demo-shaped run directory: search/ and retrain/ (each with its MLflow store), then variants/
    and interpret/ written by `amber-ray variants eval` and `amber-ray interpret` with a model
    trained on the same data."""
    out = tmp_path_factory.mktemp("run")
    config = parse_config(RAW)
    final = run_search(config, out / "search")
    run_retrain(config, out / "search", out / "retrain")
    compare_retrain(out / "retrain")
    trained = config.model_copy(update={"train": config.train.model_copy(update={"max_epochs": 4})})
    train_architecture(trained, final["best"]["arch"], out / "model")
    ref, alt = write_ctcf_pairs(out / "pairs")
    model = str(out / "model" / "model.pt")
    for args in (
        [
            "variants",
            "eval",
            model,
            "--ref-fasta",
            str(ref),
            "--alt-fasta",
            str(alt),
            "--out",
            str(out / "variants"),
            "--label",
            CTCF,
        ],
        [
            "interpret",
            model,
            "--fasta",
            str(ref),
            "--label",
            CTCF,
            "--out",
            str(out / "interpret"),
            "--top",
            "2",
            "--shuffles",
            "4",
        ],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    return out


def write_ctcf_pairs(directory: Path) -> tuple[Path, Path]:
    """40 simulated sequences with one CTCF site (first allele) and the same with the site's bases redrawn (second allele)."""
    dataset, truth = simulate_dataset(
        SimulatorConfig(num_sequences=40, length=100, motifs=["MA0139.1"], prevalence=0.999), seed=5
    )
    codes = dataset.x.argmax(axis=1)
    rng = np.random.default_rng(5)
    mutated = codes.copy()
    for row in truth.itertuples():
        mutated[row.sequence, row.start : row.end] = rng.integers(0, 4, row.end - row.start)
    directory.mkdir()
    paths = directory / "ref.fa", directory / "alt.fa"
    for path, sequences in zip(paths, (codes, mutated)):
        path.write_text("".join(f">{name}\n{''.join('ACGT'[c] for c in seq)}\n" for name, seq in zip(dataset.names, sequences)))
    return paths


def write_variant_outputs(directory: Path, probs_in_eval: bool = True, all_ref_preferred: bool = False) -> None:
    """Files in the layouts `amber-ray variants eval` / `score` write, with random scores: for the layout test below."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(60)]
    preferred = np.ones(60, dtype=int) if all_ref_preferred else rng.integers(0, 2, 60)
    ref = rng.uniform(0, 1, 60)
    alt = np.clip(ref - (preferred - 0.5) * rng.uniform(0, 0.4, 60), 0, 1)
    evaluation = pd.DataFrame(
        {"variant_id": ids, "preferred": preferred, "model_score": ref - alt, "pwm_score": rng.normal(0, 1, 60)}
    )
    probs = pd.DataFrame({"ref_prob": ref, "alt_prob": alt})
    if probs_in_eval:
        pd.concat([evaluation, probs], axis=1).to_parquet(directory / "eval.parquet")
    else:
        evaluation.to_parquet(directory / "eval.parquet")
        pd.concat([evaluation[["variant_id"]].assign(label="MA0139.1_CTCF"), probs], axis=1).to_csv(
            directory / "scores.tsv", sep="\t", index=False
        )
    summary = {
        "label": "MA0139.1_CTCF",
        "n": 60,
        "model": {"auroc": 0.8123, "aupr": 0.7791, "accuracy": 0.7},
        "pwm": {"motif": "MA0139.1", "motif_name": "CTCF", "auroc": 0.5234, "aupr": 0.5112, "accuracy": 0.5},
    }
    (directory / "eval.json").write_text(json.dumps(summary))


def decoded_images(page: str) -> dict[str, Image.Image]:
    images = {}
    for alt, data in IMG_SRC.findall(page):
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.verify()  # a truncated or corrupt PNG raises
        images[alt] = image
    return images


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    return binary


def browse(page: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_report_of_a_small_run_loads_every_figure_in_chromium(small_run, tmp_path):
    result = CliRunner().invoke(app, ["report", str(small_run)])
    assert result.exit_code == 0, result.output
    report = small_run / "report.html"
    assert f"wrote {report}" in result.output.replace("\n", "")
    page = report.read_text()

    images = decoded_images(page)
    interpretation_figures = list((small_run / "interpret" / "figures").glob("*.png"))
    assert interpretation_figures
    assert len(images) == len(REPORT_FIGURES) + 1 + len(
        interpretation_figures
    )  # every figure, the architecture diagram, interpretation
    assert all(image.format == "PNG" and min(image.size) > 50 for image in images.values())
    assert "Skipped" not in page

    final = json.loads((small_run / "search" / "final_architectures.json").read_text())
    results = pd.read_parquet(small_run / "retrain" / "results.parquet")
    comparison = json.loads((small_run / "retrain" / "compare.json").read_text())
    searched = results[results.role == "searched"]
    level = comparison["architecture_level"]["auroc"]
    policy = final["policy_vs_uniform"]
    evaluation = json.loads((small_run / "variants" / "eval.json").read_text())
    seqlets = pd.read_csv(small_run / "interpret" / "seqlets.tsv", sep="\t")
    for expected in (
        final["best"]["arch"],
        f"{final['best']['reward']:.4f}",
        f"{final['best']['search_reward']:.4f}",
        f"{final['best']['num_params']:,}",
        f"search strategy</td><td>{final['strategy']}",
        f"chosen as</td><td>{html.escape(final['selection']['rule'])}",
        *(
            f"<code>{html.escape(c['arch'])}</code></td>"
            f'<td class="num">{c["search_reward"]:.4f}</td><td class="num">{c["rescored_reward"]:.4f}'
            for c in final["selection"]["candidates"]
        ),
        f'<td>controller policy</td><td class="num">{len(policy["policy"]):,}</td><td class="num">{policy["policy_mean"]:.4f}',
        f'<td>uniform</td><td class="num">{len(policy["uniform"]):,}</td><td class="num">{policy["uniform_mean"]:.4f}',
        f"Mann-Whitney p = {policy['mannwhitney_p']:.3g}",
        f"{searched.test_auroc.mean():.4f} ± {searched.test_auroc.std():.4f} (n=2)",
        f"{comparison['overall']['auroc']['t_test']['p']:.3g}",
        # architecture level beside it: one searched and one sampled architecture, each the mean of its two replicates
        f"{searched.test_auroc.mean():.4f} (n=1)",
        f"{level['difference']['mean']:.4f} [{level['difference']['low']:.4f}, {level['difference']['high']:.4f}]",
        f'<td class="num">{level["median_percentile"]:.1f}</td><td class="num">{level["mannwhitney"]["p"]:.3g}</td>',
        f"Spearman rho = {comparison['params_vs_auroc']['spearman_rho']:.2f}",
        f"{evaluation['model']['auroc']:.4f}",  # variant evaluation: model and PWM AUROC
        f"{evaluation['pwm']['auroc']:.4f}",
        f"{evaluation['model']['aupr']:.4f}",  # and AUPR beside AUROC
        f"{evaluation['pwm']['aupr']:.4f}",
        f"{min(len(seqlets), 20)} of {len(seqlets)} rows of seqlets.tsv",
        "CPU hours",
    ):
        assert expected in page, expected

    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = browse(probe, "--dump-dom").stdout
    assert f'data-images="{len(images)}"' in dom and 'data-broken="0"' in dom, dom[:300]
    screenshot = tmp_path / "report.png"
    browse(report, "--window-size=1300,5000", f"--screenshot={screenshot}")
    with Image.open(screenshot) as shot:
        assert shot.size == (1300, 5000)
        assert len(set(shot.convert("L").resize((65, 250)).getdata())) > 20  # drawn, not blank

    for directory in ("search", "retrain"):  # logged to both parent runs
        client = MlflowClient(f"sqlite:///{small_run / directory}/mlflow.db")
        (run,) = [
            r
            for r in client.search_runs([client.get_experiment_by_name("report-test").experiment_id])
            if "role" not in r.data.tags
        ]
        logged = {info.path for info in client.list_artifacts(run.info.run_id, "report")}
        assert {"report/report.html", "report/figures"} <= logged
        if directory == "retrain":  # compare's headline architecture-level numbers
            assert run.data.metrics["compare.arch.auroc.median_percentile"] == level["median_percentile"]
            assert run.data.metrics["compare.arch.auroc.mannwhitney_p"] == pytest.approx(level["mannwhitney"]["p"])


def test_the_architecture_level_statistics_and_split_half_reliability_of_the_real_run(small_run):
    results = pd.read_parquet(small_run / "retrain" / "results.parquet")
    level = json.loads((small_run / "retrain" / "compare.json").read_text())["architecture_level"]["auroc"]
    means = results.groupby(["role", "arch"]).test_auroc.mean()
    searched, sampled = means["searched"].to_numpy(), means["sampled"].to_numpy()
    assert (len(searched), len(sampled)) == (1, 1)  # two replicates each: one value per architecture
    assert level["percentiles"][0]["percentile"] == (
        100.0 if searched[0] > sampled[0] else 0.0 if searched[0] < sampled[0] else 50.0
    )
    assert level["mannwhitney"]["p"] == pytest.approx(stats.mannwhitneyu(searched, sampled, alternative="greater").pvalue)
    assert (
        level["difference"]["low"] == pytest.approx(searched[0] - sampled[0]) == level["difference"]["high"]
    )  # one architecture each
    history = pd.read_parquet(small_run / "search" / "history.parquet")
    reliability = split_half_reliability(history)
    assert list(reliability.iteration) == sorted(history.iteration.unique())
    assert reliability.spearman_r.notna().any()
    first = history[history.iteration == 0].drop_duplicates("arch")
    r = stats.spearmanr(first.reward_half1, first.reward_half2).statistic
    assert reliability.spearman_r[0] == pytest.approx(r) and reliability.spearman_brown[0] == pytest.approx(
        2 * max(r, 0) / (1 + max(r, 0))
    )


@pytest.mark.parametrize("era", ["before_strategies", "random"])
def test_older_and_random_search_outputs_still_render(small_run, tmp_path, era):
    """A search from before strategies, selection and split halves (or a random search, which has no greedy decode)."""
    search = tmp_path / "search"
    shutil.copytree(small_run / "search", search, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    final = json.loads((search / "final_architectures.json").read_text())
    if era == "before_strategies":
        for key in ("strategy", "selection", "policy_vs_uniform"):
            del final[key]
        final["best"] = {key: final["best"][key] for key in ("arch", "reward", "iteration", "num_params")}
        final["greedy"] = {"arch": final["best"]["arch"]}
        history = pd.read_parquet(search / "history.parquet")
        history.drop(columns=["reward_half1", "reward_half2"]).to_parquet(search / "history.parquet")
    else:
        final["strategy"] = "random"
        final.pop("greedy", None)
    (search / "final_architectures.json").write_text(json.dumps(final))
    page = report_run(search, out=tmp_path / "report.html", track=False).read_text()
    assert final["best"]["arch"] in page
    if era == "before_strategies":
        assert "chosen as</td><td>best of the last controller step" in page and "search strategy" not in page
        assert "greedy (argmax) decode" in page
        for note in (
            "final_architectures.json has no selection",
            "final_architectures.json has no policy_vs_uniform",
            "the search history has no reward_half1/reward_half2 rewards",
        ):
            assert f"Skipped: {note}" in page, note
        assert len(decoded_images(page)) == 4  # diagram, op probabilities, embeddings, search progress
    else:
        assert "search strategy</td><td>random" in page and "greedy (argmax) decode" not in page and "Skipped" not in page
        assert len(decoded_images(page)) == 7


def test_figures_from_a_search_dir_alone_skip_the_rest_with_notes(small_run, tmp_path):
    run = load_run(search=small_run / "search")
    rendered = {figure.key: figure for figure in render_figures(run)}
    drawn = {key for key, figure in rendered.items() if figure.png is not None}
    assert drawn == {"op_probabilities", "embedding_pca", "controller_curves", "split_half", "policy_vs_uniform", "pareto_front"}
    assert all(figure.note for key, figure in rendered.items() if key not in drawn)
    out = report_run(small_run / "search", out=tmp_path / "search.html", track=False)
    page = out.read_text()
    assert "no retrain outputs" in page and "Retraining" not in page and "Variant effects" not in page
    assert len(decoded_images(page)) == 7


def test_an_unfinished_run_reports_the_search_checkpoint_and_the_trials_so_far(small_run, tmp_path):
    shutil.copytree(small_run / "search" / "checkpoints", tmp_path / "search" / "checkpoints")
    shutil.copytree(small_run / "retrain" / "tune", tmp_path / "retrain" / "tune")
    page = report_run(tmp_path, out=tmp_path / "report.html", track=False).read_text()
    assert "search in" in page and "has not finished: figures show its last checkpoint" in page and "best reward so far" in page
    assert "retraining in" in page and "has not finished: 4 of 4 trials done" in page and "Provisional" in page
    searched = pd.read_parquet(small_run / "retrain" / "results.parquet").query("role == 'searched'")
    assert f"{searched.test_auroc.mean():.4f} ± {searched.test_auroc.std():.4f} (n=2)" in page  # from the trials' own reports
    assert "Skipped: no final_architectures.json (the search has not finished)" in page  # controller vs uniform samples
    unfinished_figures = (
        spec.title
        for spec in REPORT_FIGURES
        if not spec.key.startswith("variant") and spec.key not in ("policy_vs_uniform", "pareto_front")
    )
    assert set(decoded_images(page)) == {"diagram of the best architecture", *unfinished_figures}


def test_a_damaged_checkpoint_costs_only_the_embedding_figure(small_run, tmp_path):
    search = tmp_path / "search"
    shutil.copytree(small_run / "search", search, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    (search / "checkpoints" / "search.pt").write_bytes(b"not a checkpoint")
    run = load_run(search=search)  # the report reads checkpoints as a resume does: the previous one stands in
    assert run.search.embeddings is not None and not any("unreadable" in note for note in run.notes)
    (search / "checkpoints" / "search.prev.pt").write_bytes(b"not a checkpoint either")
    run = load_run(search=search)
    drawn = {figure.key for figure in render_figures(run) if figure.png is not None}
    assert drawn == {"op_probabilities", "controller_curves", "split_half", "policy_vs_uniform", "pareto_front"}
    assert any("search.pt is unreadable" in note for note in run.notes)


def test_search_checkpoints_name_their_ops_and_older_ones_still_read():
    ops = ("conv8", "maxpool")
    payload = {"iteration": 0, "history": [], "stats": [], "op_probs": [], "controller": {}}
    check_search_checkpoint({**payload, OPS_KEY: ops})
    check_search_checkpoint({**payload, LEGACY_OPS_KEY: list(ops)})  # written before the key was renamed
    assert checkpoint_ops({OPS_KEY: ops}) == checkpoint_ops({LEGACY_OPS_KEY: list(ops)}) == ops
    with pytest.raises(KeyError, match="ops"):
        check_search_checkpoint(payload)


def test_report_of_nothing_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "no run outputs here" in result.output
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("probs_in_eval, all_ref_preferred", [(True, True), (False, False)])
def test_variant_figures_from_eval_or_score_table(tmp_path, probs_in_eval, all_ref_preferred):
    """Each variant's ref and alt probabilities, grouped by its preferred allele, and the ROC of model and PWM
    scores over both orientations of each pair, whether the probabilities sit in eval.parquet or scores.tsv."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from amber_ray.report.figures import variant_ref_alt, variant_roc

    directory = tmp_path / "variants"
    write_variant_outputs(directory, probs_in_eval, all_ref_preferred)
    run = load_run(variants=directory)
    rendered = {figure.key: figure for figure in render_figures(run)}
    assert rendered["variant_ref_alt"].png is not None and rendered["variant_roc"].png is not None

    evaluation = pd.read_parquet(directory / "eval.parquet")
    probs = evaluation if probs_in_eval else pd.read_csv(directory / "scores.tsv", sep="\t")
    assert list(probs.variant_id) == list(evaluation.variant_id)
    (ax,) = variant_ref_alt(run).axes
    points = [collection.get_offsets() for collection in ax.collections]
    if probs_in_eval:  # grouped by the preferred allele, as the evaluation knows it
        groups = [evaluation.preferred.to_numpy() == value for value in (1, 0)]
        expected = [np.column_stack([probs.ref_prob[rows], probs.alt_prob[rows]]) for rows in groups if rows.any()]
        labels = [f"{name} ({rows.sum()})" for name, rows in zip(("ref preferred", "alt preferred"), groups) if rows.any()]
        assert [collection.get_label() for collection in ax.collections] == labels
    else:  # a score table has no preferred allele: one group
        expected = [np.column_stack([probs.ref_prob, probs.alt_prob])]
    assert len(points) == len(expected)
    for offsets, known in zip(points, expected):
        np.testing.assert_allclose(offsets, known)

    (ax,) = variant_roc(run).axes
    preferred = evaluation.preferred.to_numpy()
    truth = np.concatenate([preferred, 1 - preferred])
    curves = {line.get_label().split(":")[0]: line for line in ax.lines if "AUROC" in line.get_label()}
    assert sorted(curves) == ["PWM MA0139.1 CTCF", "model"]
    for name, column in (("model", "model_score"), ("PWM MA0139.1 CTCF", "pwm_score")):
        score = np.concatenate([evaluation[column], -evaluation[column]])
        fpr, tpr, _ = roc_curve(truth, score)
        np.testing.assert_allclose(curves[name].get_xydata(), np.column_stack([fpr, tpr]))
        assert curves[name].get_label() == f"{name}: AUROC {roc_auc_score(truth, score):.3f}"


def test_find_run_looks_in_the_tracking_uri_then_beside_the_outputs_and_creates_no_store(tmp_path, monkeypatch):
    from amber_ray.tracking import RunTracker, find_run

    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_id = RunTracker.start(store, "find-test", "search").run_id
    assert find_run(run_id, [elsewhere, store]).run_id == run_id
    assert find_run("0" * 32, [elsewhere, store]) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    assert find_run(run_id, [elsewhere]).run_id == run_id
    assert not (elsewhere / "mlflow.db").exists()
