"""The ``amber-ray`` command: parses arguments, then calls the modules. Bad input exits with 2."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from amber_ray.config import ExperimentConfig, demo_config, load_config, override_config, parse_overrides
from amber_ray.errors import AmberInputError
from amber_ray.outputs import METRICS, MLFLOW_STORE, MODEL
from amber_ray.rundir import output_dir, output_file

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
    Path | None, typer.Option("--out", help="Report file (default: RUN_DIR/report.html).", parser=output_path)
]
ScoresOutOption = Annotated[
    Path, typer.Option("--out", help="Score table, .parquet or .tsv: one row per variant and label.", parser=output_path)
]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a config value, e.g. --set search.workers=2.")]


def user_errors(command: F) -> F:
    """Turn :class:`AmberInputError` into one line on stderr and exit code 2.

    An error that names no file (a resource the cluster lacks) comes from a config value, so the
    command's config file is named.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AmberInputError as error:
            if error.source is None and isinstance(kwargs.get("config"), Path):
                error = AmberInputError(error.problem, kwargs["config"], error.record)
            console.print(f"[red]error:[/red] {error}", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def print_version(value: bool) -> None:
    if value:
        from amber_ray import __version__

        console.print(f"amber-ray {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    show_version: Annotated[
        bool, typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


def progress_bar(*fields: str) -> Progress:
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields]
    return Progress(*columns, console=console)


def train_model(config: ExperimentConfig, arch_text: str, out: Path) -> dict[str, Any]:
    from amber_ray.training import FitState, train_architecture

    with progress_bar("valid_auroc") as progress:
        task = progress.add_task("train", total=config.train.max_epochs, valid_auroc="-")

        def on_epoch(state: FitState) -> None:
            progress.update(task, advance=1, valid_auroc=f"{state.record['valid_auroc']:.4f}")

        return train_architecture(config, arch_text, out, on_epoch)


@app.command()
@user_errors
def train(
    config: ConfigArg,
    arch: Annotated[str, typer.Option("--arch", help="Architecture in text form, e.g. 'conv8,skip:;conv4,skip:0'.")],
    out: OutOption,
    overrides: SetOption = None,
) -> None:
    """Train one architecture with early stopping; write model.pt and metrics.json."""
    experiment = load_config(config, parse_overrides(overrides or []))
    with output_dir(out, (MODEL, METRICS)):
        metrics = train_model(experiment, arch, out)
    test = metrics["test"]
    summary = ", ".join(f"{key} {test[key]:.4f}" for key in ("auroc", "aupr", "accuracy", "mcc") if key in test)
    console.print(f"test {summary}; wrote {out / METRICS}")


@contextmanager
def search_progress(config: ExperimentConfig) -> Iterator[Callable[[dict[str, float]], None]]:
    """A progress bar of the search's iterations; yields the ``on_iteration`` hook that advances it."""
    with progress_bar("mean", "max", "entropy", "skip") as progress:
        task = progress.add_task("search", total=config.search.iterations, mean="-", max="-", entropy="-", skip="-")

        def on_iteration(stats: dict[str, float]) -> None:
            progress.update(
                task,
                completed=stats["iteration"] + 1,
                mean=f"{stats['mean_reward']:.4f}",
                max=f"{stats['max_reward']:.4f}",
                entropy=f"{stats['entropy']:.2f}",
                skip=f"{stats['skip_fraction']:.2f}",
            )

        yield on_iteration


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

    experiment = load_config(config, parse_overrides(overrides or []))
    outputs_here = (*outputs.SEARCH_OUTPUTS, MLFLOW_STORE)
    with output_dir(out, outputs_here), search_progress(experiment) as on_iteration, cluster.ray_session():
        final = run_search(experiment, out, resume, on_iteration)
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
    overrides: SetOption = None,
) -> None:
    """Retrain the searched architecture and sampled ones with replicates (Ray Tune)."""
    from amber_ray import cluster, outputs
    from amber_ray.retrain import run_retrain

    values = parse_overrides(overrides or [])
    values.setdefault("retrain", {}).update({k: v for k, v in {"replicates": replicates, "sampled": sampled}.items() if v is not None})

    experiment = load_config(config, values)
    with output_dir(out, (outputs.RESULTS, MLFLOW_STORE)), cluster.ray_session():
        results = run_retrain(experiment, search_dir, out, resume)
    console.print(results.groupby("role")[["test_auroc", "test_aupr"]].agg(["mean", "std", "count"]).to_string())
    console.print(f"wrote {out / outputs.RESULTS}")


def comparison_table(comparison: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="searched vs sampled (test set; mean ± sd over trials; Welch t-test)")
    for column in ("category", "metric", "searched", "sampled", "p"):
        table.add_column(column)
    for category, entry in comparison["categories"].items():
        for metric, values in entry.items():
            cells = [f"{values[role]['mean']:.4f} ± {values[role]['std']:.4f} (n={values[role]['n']})" for role in ("searched", "sampled")]
            table.add_row(category, metric, *cells, f"{values['t_test']['p']:.3g}")
    rho = comparison["params_vs_auroc"]
    caption = [f"parameters vs test AUROC: Spearman rho {rho['spearman_rho']:.3f} (p {rho['p']:.3g}, n={rho['n']})"]
    per_arch = comparison.get("architecture_level", {}).get("auroc")
    if per_arch:
        difference = per_arch["difference"]
        caption.insert(0, (
            f"per architecture (replicates averaged; {per_arch['searched']['n']} searched, {per_arch['sampled']['n']} sampled): "
            f"test AUROC difference {difference['mean']:+.4f} (95% CI {difference['low']:+.4f} to {difference['high']:+.4f}), "
            f"median percentile {per_arch['median_percentile']:.0f}, one-sided Mann-Whitney p {per_arch['mannwhitney']['p']:.3g}"
        ))
    table.caption = "\n".join(caption)
    return table


@app.command()
@user_errors
def compare(
    run_dir: Annotated[Path, typer.Argument(help="Output directory of `amber-ray retrain`.")],
    annotation: Annotated[Path | None, typer.Option(help="TSV with columns label, category (e.g. TF, Pol, DNase, Histone).")] = None,
) -> None:
    """Per-label and per-category statistics of searched vs sampled; writes compare.json."""
    from amber_ray import outputs
    from amber_ray.pipeline import compare_retrain

    console.print(comparison_table(compare_retrain(run_dir, annotation)))
    console.print(f"wrote {run_dir / outputs.COMPARISON}")


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (with search/ and retrain/, as the demo writes), or one of them.")],
    search_dir: Annotated[Path | None, typer.Option("--search", help="Search output (default: RUN_DIR/search).")] = None,
    retrain_dir: Annotated[Path | None, typer.Option("--retrain", help="Retrain output (default: RUN_DIR/retrain).")] = None,
    variants_dir: Annotated[Path | None, typer.Option("--variants", help="Variant evaluation output (default: RUN_DIR/variants).")] = None,
    interpret_dir: Annotated[Path | None, typer.Option("--interpret", help="Interpretation output (default: RUN_DIR/interpret).")] = None,
    annotation: Annotated[Path | None, typer.Option(help="TSV with columns label, category, as for `compare`.")] = None,
    out: ReportOutOption = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Also log the report to the run's MLflow parent runs.")] = True,
) -> None:
    """Write a self-contained HTML report (the paper's figures) from whatever parts of a run exist."""
    from amber_ray.report import report_run

    if out is not None:
        with output_file(out):
            path = report_run(run_dir, search_dir, retrain_dir, variants_dir, interpret_dir, annotation, out, track)
    else:
        path = report_run(run_dir, search_dir, retrain_dir, variants_dir, interpret_dir, annotation, out, track)
    console.print(f"wrote {path}")


@app.command()
@user_errors
def demo(out: OutOption = Path("amber-demo"), overrides: SetOption = None) -> None:
    """Search -> retrain (searched vs sampled) -> compare -> report, on simulated sequences with planted JASPAR motifs.

    A step whose outputs are already in --out continues from them.
    """
    from amber_ray.pipeline import run_pipeline

    from amber_ray.outputs import REPORT

    config = override_config(demo_config(), parse_overrides(overrides or []))
    with output_dir(out, (REPORT, MLFLOW_STORE)), search_progress(config) as on_iteration:
        result = run_pipeline(config, out, resume=True, on_iteration=on_iteration)
    console.print(f"searched architecture (reward {result.final['best']['reward']:.4f}): {result.final['best']['arch']}")
    console.print(comparison_table(result.comparison))
    console.print(f"outputs in {out}; report: {result.report}")


@app.command()
@user_errors
def ui(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding mlflow.db.")],
    host: Annotated[str, typer.Option(help="Interface to bind; only loopback unless you ask.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
) -> None:
    """Start the MLflow UI for a run's tracking store and print its address."""
    from amber_ray.tracking import serve_ui

    store = run_dir / MLFLOW_STORE
    if not store.is_file():
        raise AmberInputError("no MLflow store (mlflow.db) here", run_dir)
    server = serve_ui(store, host, port)
    console.print(f"MLflow UI at http://{host}:{port} (Ctrl-C stops it)")
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

ModelArg = Annotated[Path, typer.Argument(help="model.pt written by `amber-ray train`.")]
VcfOption = Annotated[Path | None, typer.Option("--vcf", help="VCF (plain, gzip or bgzip); multi-allelic records split per ALT.")]
GenomeOption = Annotated[Path | None, typer.Option("--fasta", help="Reference FASTA for --vcf (indexed with pyfaidx).")]
RefFastaOption = Annotated[Path | None, typer.Option("--ref-fasta", help="First allele of each pair; records paired by name.")]
AltFastaOption = Annotated[Path | None, typer.Option("--alt-fasta", help="Second allele of each pair.")]
StrandsOption = Annotated[bool, typer.Option("--both-strands", help="Average forward and reverse-complement predictions.")]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Variants per prediction batch.")]
DeviceOption = Annotated[str, typer.Option("--device", help="Torch device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")]


def score_with_progress(model: Any, windows: Any, labels: list[str], both_strands: bool, batch_size: int) -> Any:
    from amber_ray.variants import score_windows

    with progress_bar() as progress:
        task = progress.add_task("variants", total=len(windows))
        return score_windows(model, windows, labels, batch_size, both_strands, lambda n: progress.advance(task, n))


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
    ldsc_score: Annotated[str, typer.Option("--ldsc-score", help="Effect score whose absolute value fills the LDSC columns: diff, log2fc or logit_diff.")] = "diff",
) -> None:
    """Ref and alt probability, difference, log2 fold change and logit difference per variant and label."""
    from amber_ray.predict import load_model
    from amber_ray.variants import check_score_output, load_windows, write_scores

    check_score_output(out, ldsc_score)
    with output_file(out), output_file(ldsc_annot) if ldsc_annot else nullcontext():
        net, labels = load_model(model, device)
        windows, skipped = load_windows(net.space.input_length, vcf, fasta, ref_fasta, alt_fasta)
        effects = score_with_progress(net, windows, labels, both_strands, batch_size)
        written = write_scores(effects, skipped, out, ldsc_annot, ldsc_score)
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
    from amber_ray.predict import label_index, load_model
    from amber_ray.variants import evaluate_pairs, load_windows, motif_for_label, pwm_log_odds, read_preferred, write_eval

    with output_dir(out):
        net, labels = load_model(model, device)
        pwm_log_odds(motif_for_label(labels[label_index(labels, label)], motif))
        windows, _ = load_windows(net.space.input_length, vcf, fasta, ref_fasta, alt_fasta)
        wanted = read_preferred(preferred, windows.variant_id)
        effects = score_with_progress(net, windows, labels, both_strands, batch_size)
        summary, table = evaluate_pairs(effects, label, motif, wanted)
        write_eval(summary, table, out)
    model_m, pwm_m = summary["model"], summary["pwm"]
    console.print(
        f"{summary['label']}, n={summary['n']}: model AUROC {model_m['auroc']:.4f} accuracy {model_m['accuracy']:.4f}; "
        f"PWM {pwm_m['motif']} AUROC {pwm_m['auroc']:.4f} accuracy {pwm_m['accuracy']:.4f}; wrote {out / 'eval.json'}"
    )


@app.command("interpret")
@user_errors
def interpret_model(
    model: Annotated[Path, typer.Argument(help="model.pt written by `amber-ray train`.")],
    fasta: Annotated[Path, typer.Option("--fasta", help="Sequences to explain, of the model's input length (A, C, G, T only).")],
    label: Annotated[str, typer.Option("--label", help="Model label whose logit is explained.")],
    out: OutOption,
    top: Annotated[int, typer.Option("--top", min=1, help="Highest-scoring sequences drawn as logos and mutated base by base (ISM).")] = 5,
    shuffles: Annotated[int, typer.Option("--shuffles", min=1, help="Dinucleotide-shuffled references per sequence.")] = 20,
    jaspar: Annotated[str, typer.Option("--jaspar", help="JASPAR CORE taxonomic group to match seqlets against (vertebrates, plants, insects, ...).")] = "vertebrates",
    seed: Annotated[int, typer.Option(help="Seed of the shuffled references.")] = 0,
    device: DeviceOption = "auto",
) -> None:
    """DeepLIFT/SHAP attributions, saturation mutagenesis and seqlets matched to JASPAR; writes seqlets.tsv, attributions.npz, figures/."""
    from amber_ray.interpret import interpret, load_inputs, write_outputs

    with output_dir(out):
        net, index, names, x = load_inputs(model, fasta, label)
        with progress_bar() as progress:

            def stage(name: str, total: int) -> Callable[[int], None]:
                task = progress.add_task(name, total=total)
                return lambda n: progress.advance(task, n)

            result = interpret(net, index, label, names, x, top, shuffles, jaspar, seed, device, stage)
        write_outputs(result, out)
    recovered = ", ".join(f"{row.jaspar_name} ({row.seqlets})" for row in result.motifs.head(5).itertuples()) or "none"
    console.print(f"{len(result.seqlets)} seqlets; most frequent JASPAR matches: {recovered}; wrote {out}")


def run() -> None:
    """The console script. SIGTERM (``kill``, a batch scheduler) stops a command as Ctrl-C does
    (checkpoints kept, no stack dump) and exits 143 (128 + 15), as the shell reports a kill."""
    terminated = False

    def on_sigterm(signum: int, frame: Any) -> None:
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app(prog_name="amber-ray")
    except SystemExit:
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise


if __name__ == "__main__":
    sys.exit(run())
