"""The ``amber-ray`` command: parses arguments, then calls the modules. Bad input exits with 2."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from amber_ray.config import ExperimentConfig, demo_config, load_config, override_config, parse_overrides
from amber_ray.data.remote import as_given
from amber_ray.errors import AmberInputError
from amber_ray.jaspar import TAX_GROUPS, check_tax_group
from amber_ray.outputs import METRICS, MLFLOW_STORE, MODEL, REPORT
from amber_ray.rundir import output_dir, output_file
from amber_ray.uri_arguments import local_arguments, takes_uris

if TYPE_CHECKING:
    from amber_ray.predict import OnBatch, ProgressFactory

app = typer.Typer(add_completion=False, no_args_is_help=True, help="AMBER neural architecture search for genomic CNNs, on Ray.")
console = Console(stderr=True)
logger = logging.getLogger("amber_ray")

F = TypeVar("F", bound=Callable[..., Any])


def output_path(value: str | Path) -> Path:
    """``--out ""`` is refused while parsing: as a ``Path`` it would already be the current directory."""
    if not str(value).strip():
        raise typer.BadParameter("must not be empty")
    return Path(value)


ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (YAML).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output directory.", parser=output_path)]
ReportOutOption = Annotated[
    Path | None, typer.Option("--out-file", help="Report file (default: RUN_DIR/report.html).", parser=output_path)
]
ScoresOutOption = Annotated[
    Path, typer.Option("--out-file", help="Score table, .parquet or .tsv: one row per variant and label.", parser=output_path)
]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config value, e.g. --set search.workers=2.")]


VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Debug messages of amber_ray (not of the libraries it uses).")
]


def configure_logging(verbose: bool) -> None:
    """amber_ray's messages at INFO (DEBUG with ``-v``); other libraries' only from WARNING up."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow is first imported
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)], force=True
    )
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def user_errors(command: F) -> F:
    """Every command's shared behaviour: ``-v`` after the command name, and :class:`AmberInputError`
    turned into one line on stderr and exit code 2.

    An error that names no file (a resource the cluster lacks) comes from a config value, so the
    command's config file is named.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, verbose: bool = False, **kwargs: Any) -> Any:
        if verbose:
            configure_logging(verbose)
        try:
            return command(*args, **kwargs)
        except AmberInputError as error:
            if error.source is None and isinstance(kwargs.get("config"), Path):
                error = AmberInputError(error.problem, kwargs["config"], error.record)
            print_input_error(as_given(error))
            raise typer.Exit(2) from None

    signature = inspect.signature(command, eval_str=True)
    verbose = inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VerboseOption)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), verbose])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**command.__annotations__, "verbose": VerboseOption}
    return wrapper  # type: ignore[return-value]


def print_input_error(error: AmberInputError) -> None:
    console.print(f"[red]error:[/red] {error}", soft_wrap=True, highlight=False)


def print_version(value: bool) -> None:
    if value:
        from amber_ray import __version__

        console.print(f"amber-ray {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: VerboseOption = False,
    show_version: Annotated[
        bool, typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    configure_logging(verbose)


def progress_bar() -> Progress:
    """One live display for a command; each task shows its own ``status`` text."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, TextColumn("{task.fields[status]}"), console=console)


def add_task(progress: Progress, name: str, total: int | None) -> Callable[..., None]:
    """A task on ``progress``; returns its ``update(**fields)`` (``status=...``, ``advance=...``)."""
    task = progress.add_task(name, total=total, status="")
    return functools.partial(progress.update, task)


def progress_stages(progress: Progress) -> ProgressFactory:
    """A factory of bars on ``progress``: ``stage(name, total)`` adds one and returns its ``advance(n)``."""

    def stage(name: str, total: int) -> OnBatch:
        update = add_task(progress, name, total)
        return lambda n: update(advance=n)

    return stage


def check_tracking_store(directory: Path) -> None:
    """Refuse, before any work, the MLflow store that a command writing into ``directory`` will log to when
    MLflow cannot use it (one line, exit 2): a damaged store would fail the command after all its work."""
    from amber_ray.tracking import check_store, tracking_uri

    check_store(tracking_uri(directory))


def train_model(config: ExperimentConfig, arch_text: str, out: Path) -> dict[str, Any]:
    from amber_ray.training import FitState, train_architecture

    with progress_bar() as progress:
        update = add_task(progress, "train", config.train.max_epochs)

        def on_epoch(state: FitState) -> None:
            update(advance=1, status=f"valid AUROC {state.record['valid_auroc']:.4f}")

        return train_architecture(config, arch_text, out, on_epoch)


@app.command()
@user_errors
def train(
    config: ConfigArg,
    arch: Annotated[str, typer.Option("--arch", help="Architecture in text form, e.g. 'conv8,skip:;conv4,skip:0'.")],
    out: OutOption,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Torch device (sets train.device): auto (CUDA when present), cpu, cuda or cuda:N."),
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Train one architecture with early stopping; write model.pt and metrics.json."""
    from amber_ray.command_runs import track_train

    values = parse_overrides(overrides or [])
    if device is not None:
        values.setdefault("train", {})["device"] = device
    experiment = load_config(config, values)
    check_tracking_store(out)
    with output_dir(out, (MODEL, METRICS)):
        metrics = train_model(experiment, arch, out)
    track_train(experiment, out, metrics)
    test = metrics["test"]
    summary = ", ".join(f"{key} {test[key]:.4f}" for key in ("auroc", "aupr", "accuracy", "mcc") if key in test)
    console.print(f"test {summary} (trained on {metrics['device']}); wrote {out / METRICS}")


def search_hook(progress: Progress, config: ExperimentConfig, name: str = "search") -> Callable[[dict[str, float]], None]:
    """A task ``name`` of a search's iterations on ``progress``; returns the ``on_iteration`` hook that advances it."""
    update = add_task(progress, name, config.search.iterations)

    def on_iteration(stats: dict[str, float]) -> None:
        entropy = f"entropy {stats['entropy']:.1f} " if "entropy" in stats else ""  # a policy's; uniform sampling has none
        update(
            completed=stats["iteration"] + 1,
            status=(
                f"reward {stats['mean_reward']:.3f} (max {stats['max_reward']:.3f}) {entropy}skips {stats['skip_fraction']:.2f}"
            ),
        )

    return on_iteration


def trial_hook(progress: Progress) -> Callable[[int, int, float], None]:
    """A task of the retraining's trials on ``progress``; returns the ``on_trial`` hook that advances it."""
    update = add_task(progress, "retrain", None)

    def on_trial(done: int, total: int, best_test_auroc: float) -> None:
        update(total=total, completed=done, status=f"best test AUROC {best_test_auroc:.4f}")

    return on_trial


@app.command()
@user_errors
def search(
    config: ConfigArg,
    out: OutOption,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")] = False,
    overrides: SetOption = None,
) -> None:
    """ENAS search: controller + shared-weight supernet on Ray, tracked in MLflow."""
    from amber_ray import cluster, outputs
    from amber_ray.search.loop import run_search
    from amber_ray.tracking import follow_pipeline_store

    experiment = load_config(config, parse_overrides(overrides or []))
    if resume:
        follow_pipeline_store(out)
    check_tracking_store(out)
    outputs_here = (*outputs.SEARCH_OUTPUTS, MLFLOW_STORE)
    with output_dir(out, outputs_here), progress_bar() as progress, cluster.ray_session():
        final = run_search(experiment, out, resume, search_hook(progress, experiment))
    console.print(f"best architecture (reward {final['best']['reward']:.4f}): {final['best']['arch']}")
    console.print(f"wrote {out / outputs.HISTORY} and {out / outputs.FINAL_ARCHITECTURES}")


@app.command()
@user_errors
def retrain(
    config: ConfigArg,
    search_dir: Annotated[Path, typer.Option("--search", help="Output directory of `amber-ray search`.")],
    out: OutOption,
    replicates: Annotated[int | None, typer.Option(help="Replicate seeds per architecture (paper: 6).")] = None,
    sampled: Annotated[int | None, typer.Option(help="Uniformly sampled architectures to compare with.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted grid.")] = False,
    arch: Annotated[
        Literal["best", "front"],
        typer.Option(
            "--arch", help="best: the search's choice; front: also every architecture of its reward-vs-size Pareto front."
        ),
    ] = "best",
    overrides: SetOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Retrain although the search ran with other data or space settings (tagged in MLflow)."),
    ] = False,
) -> None:
    """Retrain the searched architecture(s) and sampled ones with replicates (Ray Tune)."""
    from amber_ray import cluster, outputs
    from amber_ray.retrain import run_retrain
    from amber_ray.tracking import follow_pipeline_store

    values = parse_overrides(overrides or [])
    values.setdefault("retrain", {}).update(
        {k: v for k, v in {"replicates": replicates, "sampled": sampled}.items() if v is not None}
    )
    if arch == "front":
        values["retrain"]["include_front"] = True

    experiment = load_config(config, values)
    if resume:
        follow_pipeline_store(out)
    check_tracking_store(out)
    with output_dir(out, (outputs.RESULTS, MLFLOW_STORE)), progress_bar() as progress, cluster.ray_session():
        results = run_retrain(experiment, search_dir, out, resume, on_trial=trial_hook(progress), force=force)
    console.print(results.groupby("role")[["test_auroc", "test_aupr"]].agg(["mean", "std", "count"]).to_string())
    console.print(f"wrote {out / outputs.RESULTS}")


def comparison_table(comparison: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="searched vs sampled (test set; mean ± sd over trials; Welch t-test)")
    for column in ("category", "metric", "searched", "sampled", "p"):
        table.add_column(column)
    for category, entry in comparison["categories"].items():
        for metric, values in entry.items():
            cells = [
                f"{values[role]['mean']:.4f} ± {values[role]['std']:.4f} (n={values[role]['n']})"
                for role in ("searched", "sampled")
            ]
            table.add_row(category, metric, *cells, f"{values['t_test']['p']:.3g}")
    rho = comparison["params_vs_auroc"]
    caption = [f"parameters vs test AUROC: Spearman rho {rho['spearman_rho']:.3f} (p {rho['p']:.3g}, n={rho['n']})"]
    per_arch = comparison.get("architecture_level", {}).get("auroc")
    if per_arch:
        difference = per_arch["difference"]
        caption.insert(
            0,
            (
                f"per architecture (replicates averaged; {per_arch['searched']['n']} searched, "
                f"{per_arch['sampled']['n']} sampled): test AUROC difference {difference['mean']:+.4f} "
                f"(95% CI {difference['low']:+.4f} to {difference['high']:+.4f}), "
                f"median percentile {per_arch['median_percentile']:.0f}, "
                f"one-sided Mann-Whitney p {per_arch['mannwhitney']['p']:.3g}"
            ),
        )
    chosen = comparison.get("random_search")
    if chosen:
        differences = ", ".join(f"{entry['difference']:+.4f}" for entry in chosen["searched_minus_random"])
        caption.insert(
            1 if per_arch else 0,
            (
                f"random search's choice (same budget; {chosen['replicates']} replicates): test AUROC {chosen['mean']:.4f}, "
                f"percentile {chosen['percentile']:.0f} among sampled; searched minus random search: {differences}"
            ),
        )
    table.caption = "\n".join(caption)
    return table


@app.command()
@user_errors
def compare(
    run_dir: Annotated[Path, typer.Argument(help="Output directory of `amber-ray retrain`.")],
    annotation: Annotated[
        Path | None, typer.Option(help="TSV with columns label, category (e.g. TF, Pol, DNase, Histone).")
    ] = None,
) -> None:
    """Per-label and per-category statistics of searched vs sampled; writes compare.json."""
    from amber_ray import outputs
    from amber_ray.pipeline import compare_retrain

    with output_file(run_dir / outputs.COMPARISON):
        comparison = compare_retrain(run_dir, annotation)
    console.print(comparison_table(comparison))
    console.print(f"wrote {run_dir / outputs.COMPARISON}")


@app.command()
@user_errors
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="Run directory (with search/ and retrain/, as the demo writes), or one of them.")
    ],
    search_dir: Annotated[Path | None, typer.Option("--search", help="Search output (default: RUN_DIR/search).")] = None,
    retrain_dir: Annotated[Path | None, typer.Option("--retrain", help="Retrain output (default: RUN_DIR/retrain).")] = None,
    variants_dir: Annotated[
        Path | None, typer.Option("--variants", help="Variant evaluation output (default: RUN_DIR/variants).")
    ] = None,
    interpret_dir: Annotated[
        Path | None, typer.Option("--interpret", help="Interpretation output (default: RUN_DIR/interpret).")
    ] = None,
    annotation: Annotated[Path | None, typer.Option(help="TSV with columns label, category, as for `compare`.")] = None,
    out: ReportOutOption = None,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Also log the report to the run's MLflow parent runs.")
    ] = True,
) -> None:
    """Write a self-contained HTML report (the paper's figures) from whatever parts of a run exist."""
    from amber_ray.report import report_run

    if out is not None:
        with output_file(out):
            path = report_run(run_dir, search_dir, retrain_dir, variants_dir, interpret_dir, annotation, out, track)
    else:
        path = report_run(run_dir, search_dir, retrain_dir, variants_dir, interpret_dir, annotation, out, track)
    console.print(f"wrote {path}")


def run_whole_pipeline(config: ExperimentConfig, out: Path, annotation: Path | None = None) -> None:
    from amber_ray.pipeline import random_search_config, run_pipeline

    check_tracking_store(out)
    with output_dir(out, (REPORT, MLFLOW_STORE)), progress_bar() as progress:
        random_hook = search_hook(progress, config, "random search") if random_search_config(config) is not None else None
        hooks = (search_hook(progress, config), annotation, trial_hook(progress), random_hook)
        result = run_pipeline(config, out, True, *hooks)
    console.print(comparison_table(result.comparison))
    console.print(f"outputs in {out}; report: {result.report}")


@app.command()
@user_errors
def pipeline(
    config: ConfigArg,
    out: OutOption,
    annotation: Annotated[Path | None, typer.Option(help="TSV with columns label, category, as for `compare`.")] = None,
    overrides: SetOption = None,
) -> None:
    """Search -> retrain (searched vs sampled) -> compare -> report for CONFIG, into --out.

    A step whose outputs are already in --out continues from them.
    """
    run_whole_pipeline(load_config(config, parse_overrides(overrides or [])), out, annotation)


@app.command()
@user_errors
def demo(out: OutOption = Path("amber-demo"), overrides: SetOption = None) -> None:
    """`pipeline` on the embedded config: simulated sequences with planted JASPAR motifs.

    A step whose outputs are already in --out continues from them.
    """
    run_whole_pipeline(override_config(demo_config(), parse_overrides(overrides or [])), out)


@app.command()
@user_errors
def ui(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding mlflow.db.")],
    host: Annotated[str, typer.Option(help="Interface to bind; only loopback unless you ask.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
) -> None:
    """Start the MLflow UI for a run's tracking store and print the address of its searched-vs-sampled view."""
    from amber_ray.tracking import check_store, comparison_page
    from amber_ray.ui import serve_ui

    store = run_dir / MLFLOW_STORE
    if not store.is_file():
        raise AmberInputError("no MLflow store (mlflow.db) here", run_dir)
    check_store(f"sqlite:///{store.resolve()}")
    page = comparison_page(store)
    server = serve_ui(store, host, port)
    console.print(f"MLflow UI at http://{host}:{port}{page} (searched vs sampled trials; Ctrl-C stops it)", soft_wrap=True)
    try:
        code = server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()
        return
    if code:
        raise typer.Exit(code)  # the server failed on its own


variants_app = typer.Typer(no_args_is_help=True, help="Variant effects per label; allele-specific binding evaluation.")
app.add_typer(variants_app, name="variants")

MODEL_HELP = "A model.pt (train, retrain), a directory holding one (retrain's final/) or models:/NAME/VERSION."
ModelArg = Annotated[Path, typer.Argument(help=MODEL_HELP)]
VcfOption = Annotated[Path | None, typer.Option("--vcf", help="VCF (plain, gzip or bgzip); multi-allelic records split per ALT.")]
GenomeOption = Annotated[Path | None, typer.Option("--fasta", help="Reference FASTA for --vcf (indexed with pyfaidx).")]
RefFastaOption = Annotated[Path | None, typer.Option("--ref-fasta", help="First allele of each pair; records paired by name.")]
AltFastaOption = Annotated[Path | None, typer.Option("--alt-fasta", help="Second allele of each pair.")]
StrandsOption = Annotated[bool, typer.Option("--both-strands", help="Average forward and reverse-complement predictions.")]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Variants per prediction batch.")]
DeviceOption = Annotated[
    str, typer.Option("--device", help="Torch device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")
]


def score_with_progress(model: Any, windows: Any, labels: list[str], both_strands: bool, batch_size: int) -> Any:
    from amber_ray.variants import score_windows

    with progress_bar() as progress:
        return score_windows(
            model, windows, labels, batch_size, both_strands, progress_stages(progress)("variants", len(windows))
        )


@variants_app.command("score")
@user_errors
def variants_score(
    model: ModelArg,
    out: ScoresOutOption,
    vcf: VcfOption = None,
    fasta: GenomeOption = None,
    ref_fasta: RefFastaOption = None,
    alt_fasta: AltFastaOption = None,
    both_strands: StrandsOption = False,
    batch_size: BatchOption = 64,
    device: DeviceOption = "auto",
    ldsc_annot: Annotated[Path | None, typer.Option("--ldsc-annot", help="Also write PREFIX.<chr>.annot.gz for LDSC.")] = None,
    ldsc_score: Annotated[
        str,
        typer.Option(
            "--ldsc-score", help="Effect score whose absolute value fills the LDSC columns: diff, log2fc or logit_diff."
        ),
    ] = "diff",
) -> None:
    """Ref and alt probability, difference, log2 fold change and logit difference per variant and label."""
    from amber_ray.command_runs import track_variants_score
    from amber_ray.registry import load_model
    from amber_ray.variants import check_score_output, load_windows, write_scores

    check_score_output(out, ldsc_score)
    check_tracking_store(out.parent)
    with output_file(out), output_file(ldsc_annot) if ldsc_annot else nullcontext():
        net, labels = load_model(model, device)
        windows, skipped = load_windows(net.space.input_length, vcf, fasta, ref_fasta, alt_fasta)
        effects = score_with_progress(net, windows, labels, both_strands, batch_size)
        written = write_scores(effects, skipped, out, ldsc_annot, ldsc_score)
    options = {
        "model": model,
        "vcf": vcf,
        "fasta": fasta,
        "ref_fasta": ref_fasta,
        "alt_fasta": alt_fasta,
        "both_strands": both_strands,
    }
    track_variants_score(out, options, len(effects.windows), len(skipped))
    ldsc = f" and {len(written) - 2} LDSC files {ldsc_annot}.*.annot.gz" if ldsc_annot else ""
    counts = f"scored {len(effects.windows)} variants x {len(labels)} labels, {len(skipped)} not scored"
    console.print(f"{counts}; wrote {out}, {written[1]}{ldsc}")


@variants_app.command("eval")
@user_errors
def variants_eval(
    model: ModelArg,
    out: OutOption,
    vcf: VcfOption = None,
    fasta: GenomeOption = None,
    ref_fasta: RefFastaOption = None,
    alt_fasta: AltFastaOption = None,
    label: Annotated[str | None, typer.Option("--label", help="Model label to evaluate (needed when it has several).")] = None,
    motif: Annotated[str | None, typer.Option("--motif", help="JASPAR id of the PWM baseline (default: the label's).")] = None,
    preferred: Annotated[Path | None, typer.Option("--preferred", help="TSV variant_id, preferred (1: first allele).")] = None,
    both_strands: StrandsOption = False,
    batch_size: BatchOption = 64,
    device: DeviceOption = "auto",
) -> None:
    """Allele-specific binding: AUROC and accuracy of the predicted direction, beside a JASPAR PWM baseline."""
    from amber_ray.command_runs import track_variants_eval
    from amber_ray.predict import label_index
    from amber_ray.registry import load_model
    from amber_ray.variants import evaluate_pairs, load_windows, motif_for_label, pwm_log_odds, read_preferred, write_eval

    check_tracking_store(out)
    with output_dir(out):
        net, labels = load_model(model, device)
        pwm_log_odds(motif_for_label(labels[label_index(labels, label)], motif))
        windows, _ = load_windows(net.space.input_length, vcf, fasta, ref_fasta, alt_fasta)
        wanted = read_preferred(preferred, windows.variant_id)
        effects = score_with_progress(net, windows, labels, both_strands, batch_size)
        summary, table = evaluate_pairs(effects, label, motif, wanted)
        write_eval(summary, table, out)
    options = {
        "model": model,
        "vcf": vcf,
        "fasta": fasta,
        "ref_fasta": ref_fasta,
        "alt_fasta": alt_fasta,
        "label": label,
        "motif": motif,
    }
    track_variants_eval(out, options, summary)
    model_m, pwm_m = summary["model"], summary["pwm"]
    console.print(
        f"{summary['label']}, n={summary['n']}: model AUROC {model_m['auroc']:.4f} AUPR {model_m['aupr']:.4f} accuracy {model_m['accuracy']:.4f}; "
        f"PWM {pwm_m['motif']} AUROC {pwm_m['auroc']:.4f} AUPR {pwm_m['aupr']:.4f} accuracy {pwm_m['accuracy']:.4f}; wrote {out / 'eval.json'}"
    )


@app.command("interpret")
@user_errors
def interpret_model(
    model: Annotated[Path, typer.Argument(help=MODEL_HELP)],
    fasta: Annotated[Path, typer.Option("--fasta", help="Sequences to explain, of the model's input length (A, C, G, T only).")],
    label: Annotated[str, typer.Option("--label", help="Model label whose logit is explained.")],
    out: OutOption,
    top: Annotated[
        int, typer.Option("--top", min=1, help="Highest-scoring sequences drawn as logos and mutated base by base (ISM).")
    ] = 5,
    shuffles: Annotated[int, typer.Option("--shuffles", min=1, help="Dinucleotide-shuffled references per sequence.")] = 20,
    jaspar: Annotated[
        str, typer.Option("--jaspar", help="JASPAR CORE taxonomic group to match seqlets against: " + ", ".join(TAX_GROUPS) + ".")
    ] = "vertebrates",
    seed: Annotated[int, typer.Option(help="Seed of the shuffled references.")] = 0,
    device: DeviceOption = "auto",
) -> None:
    """DeepLIFT/SHAP attributions, saturation mutagenesis and seqlets matched to JASPAR.

    Writes seqlets.tsv, attributions.npz and figures/.
    """
    from amber_ray.command_runs import track_interpret
    from amber_ray.interpret import interpret, load_inputs, write_outputs

    check_tax_group(jaspar)
    check_tracking_store(out)
    with output_dir(out):
        net, index, names, x = load_inputs(model, fasta, label)
        with progress_bar() as progress:
            result = interpret(net, index, label, names, x, top, shuffles, jaspar, seed, device, progress_stages(progress))
        write_outputs(result, out)
    options = {"model": model, "fasta": fasta, "label": label, "top": top, "shuffles": shuffles, "jaspar": jaspar, "seed": seed}
    track_interpret(out, options, len(result.seqlets), int((result.seqlets["p_value"] <= 0.05).sum()))
    recovered = ", ".join(f"{row.jaspar_name} ({row.seqlets})" for row in result.motifs.head(5).itertuples()) or "none"
    console.print(f"{len(result.seqlets)} seqlets; most frequent JASPAR matches: {recovered}; wrote {out}")


ModelSourceArg = Annotated[str, typer.Argument(help=MODEL_HELP)]


@app.command("predict")
@user_errors
def predict_command(
    model: ModelSourceArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output directory: predictions.parquet (FASTA, BED) or <label>.bw (--tile), and summary.json.",
            parser=output_path,
        ),
    ],
    fasta: Annotated[Path | None, typer.Option("--fasta", help="Sequences of the model's input length (A, C, G, T, N).")] = None,
    bed: Annotated[
        Path | None, typer.Option("--bed", help="Regions (with --genome); each predicted on the window centred on it.")
    ] = None,
    genome: Annotated[
        Path | None, typer.Option("--genome", help="Reference FASTA (indexed with pyfaidx) for --bed or --tile.")
    ] = None,
    tile: Annotated[
        int | None, typer.Option("--tile", min=1, help="Tile the genome in bins of STEP bp; one bigWig track per label.")
    ] = None,
    regions: Annotated[
        Path | None, typer.Option("--regions", help="BED of the stretches to tile (default: whole chromosomes).")
    ] = None,
    both_strands: StrandsOption = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per prediction batch.")] = 256,
    device: DeviceOption = "auto",
    tsv: Annotated[bool, typer.Option("--tsv", help="Write predictions.tsv instead of predictions.parquet.")] = False,
    allow_duplicate_names: Annotated[
        bool, typer.Option("--allow-duplicate-names", help="Predict FASTA records that repeat a name (refused by default).")
    ] = False,
) -> None:
    """Probability per label of sequences (FASTA), regions (BED + genome) or genome tiles (bigWig tracks)."""
    from amber_ray.command_runs import track_predict
    from amber_ray.inference import PredictInputs, run_predict

    inputs = PredictInputs(fasta, bed, genome, tile, regions)
    check_tracking_store(out)
    with progress_bar() as progress, output_dir(out):
        summary = run_predict(
            model, out, inputs, both_strands, batch_size, device, tsv, progress_stages(progress), allow_duplicate_names
        )
    track_predict(out, summary)
    console.print(
        f"predicted {summary['predicted']} {'bins' if tile else 'sequences'} x {len(summary['labels'])} labels; wrote {out}"
    )


@app.command("export")
@user_errors
def export_command(
    model: ModelSourceArg,
    export_format: Annotated[str, typer.Option("--format", help="torchscript or onnx.")],
    out: Annotated[Path, typer.Option("--out-file", help="File to write (e.g. model.ts or model.onnx).", parser=output_path)],
) -> None:
    """Write the model as TorchScript or ONNX: one-hot (N, 4, L) in, probability per label out."""
    from amber_ray.export import export_model

    with output_file(out):
        written = export_model(model, export_format, out)
    console.print(f"wrote {written}")


@app.command()
@user_errors
def convert(
    out: Annotated[
        Path, typer.Argument(help="HDF5 file to write (compact: 1 byte per base, labels as bits), e.g. DIR/train.h5.")
    ],
    mat: Annotated[
        Path | None, typer.Option("--mat", help="DeepSEA train.mat, valid.mat or test.mat (v7.3 read block by block).")
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Variable prefix in --mat: train, valid or test (default: the file name).")
    ] = None,
    fasta: Annotated[Path | None, typer.Option("--fasta", help="Sequences of one length, with --labels.")] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="TSV: header row, sequence name, one 0/1 column per label.")
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="Sequences per HDF5 chunk (the unit of streamed reads).")
    ] = 1024,
) -> None:
    """Write the chunked HDF5 format that `data.kind: hdf5` streams, from DeepSEA .mat or FASTA + labels TSV."""
    from amber_ray.data.convert import convert as convert_data

    with output_file(out):
        count = convert_data(out, mat, split, fasta, labels, chunk_rows)
    console.print(f"wrote {count} sequences to {out}")


@app.command()
@user_errors
def dataset(
    out: Annotated[Path, typer.Argument(help="Directory to write: train.h5, valid.h5, test.h5 and dataset.json.")],
    genome: Annotated[Path, typer.Option("--genome", help="Reference FASTA, plain or bgzipped (indexed, or indexable).")],
    peaks: Annotated[
        list[str] | None,
        typer.Option("--peaks", help="[LABEL=]PATH of a BED/narrowPeak file (gzipped or not), one per label; repeatable."),
    ] = None,
    sample_sheet: Annotated[
        Path | None, typer.Option("--sample-sheet", help="TSV with a header row and columns label, path (relative to the sheet).")
    ] = None,
    blacklist: Annotated[Path | None, typer.Option("--blacklist", help="BED of regions whose windows are dropped.")] = None,
    valid_chromosomes: Annotated[
        list[str] | None, typer.Option("--valid-chromosome", help="Validation chromosome; repeatable (default: chr7).")
    ] = None,
    test_chromosomes: Annotated[
        list[str] | None, typer.Option("--test-chromosome", help="Test chromosome; repeatable (default: chr8, chr9).")
    ] = None,
    bin_size: Annotated[int, typer.Option("--bin-size", help="Bin labelled by peak overlap (bp).")] = 200,
    window: Annotated[int, typer.Option("--window", help="Input window centred on the bin (bp).")] = 1000,
    min_overlap: Annotated[float, typer.Option("--min-overlap", help="Fraction of the bin inside one peak.")] = 0.5,
    background_ratio: Annotated[
        float, typer.Option("--background-ratio", help="Background windows (no label positive) per positive window.")
    ] = 1.0,
    background: Annotated[str, typer.Option("--background", help="random, or gc (matched to the positives' GC).")] = "random",
    max_n: Annotated[float, typer.Option("--max-n", help="Largest fraction of N in a kept window.")] = 0.01,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the background draw.")] = 0,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1, help="Windows per HDF5 chunk.")] = 1024,
) -> None:
    """Peaks + genome -> labelled windows (DeepSEA's rule), split by chromosome, in the HDF5 that `data.kind: hdf5` streams."""
    from amber_ray.data.peaks import DEEPSEA_TEST, DEEPSEA_VALID, WindowRule, build_dataset, peak_sources

    rule = WindowRule(bin_size, window, min_overlap, background_ratio, background, max_n, seed)
    sources = peak_sources(peaks or [], sample_sheet)
    held_out = (valid_chromosomes or DEEPSEA_VALID, test_chromosomes or DEEPSEA_TEST)
    with progress_bar() as progress:
        update = add_task(progress, "chromosomes", None)

        def on_chromosome(name: str, windows: int) -> None:
            update(advance=1, status=f"{name}: {windows} windows")

        sidecar = build_dataset(genome, sources, out, rule, blacklist, *held_out, chunk_rows, on_chromosome)
    windows = sidecar["counts"]["windows"]
    dropped = sidecar["counts"]["dropped_positive"]
    console.print(
        f"wrote {windows['train']} train, {windows['valid']} valid, {windows['test']} test windows of "
        f"{len(sources)} labels to {out} (positive windows dropped: {dropped})"
    )


def run(args: Sequence[str] | None = None) -> None:
    """The console script and the Ray jobs (``args``: the command line, default ``sys.argv``). SIGTERM
    (``kill``, a batch scheduler, ``ray job stop``) stops a command as Ctrl-C does (checkpoints kept,
    MLflow runs closed, no stack dump) and exits 143 (128 + 15), as the shell reports a kill."""
    terminated = False

    def on_sigterm(signum: int, frame: Any) -> None:
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    args = list(sys.argv[1:] if args is None else args)
    try:
        if takes_uris(args):
            run_with_uris(args)
        else:
            app(args, prog_name="amber-ray")
    except SystemExit:
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise


def run_with_uris(args: list[str]) -> None:
    """:func:`run` for a command with URIs among its file arguments: inputs staged on this node, outputs copied to
    their URIs once the command has succeeded (none when it fails)."""
    try:
        with local_arguments(args) as local:
            try:
                app(local.args, prog_name="amber-ray")
            except SystemExit as done:
                if done.code not in (0, None):
                    raise
            local.publish()
    except AmberInputError as error:
        print_input_error(as_given(error))
        raise SystemExit(2) from None
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(run())
