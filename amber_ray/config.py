"""Typed experiment config: YAML in (``safe_load``), validated with pydantic, clear errors.

Every section forbids unknown keys, so a misspelled option is an error that names it instead of
being silently ignored. Space profiles (``small``, ``deepsea``) fill in the defaults the user did
not set; values the user set are never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from amber_ray.errors import AmberInputError, first_line

# The candidate ops, in the order of ops.OPS (which checks it on import); kept here so that
# configs are validated without importing torch.
OP_NAMES = ("conv8", "conv4", "dconv8", "dconv4", "maxpool", "avgpool", "identity")

SPACE_PROFILES: dict[str, dict[str, Any]] = {
    # The AMBER paper's DeepSEA space: 1000 bp, 919 labels, 12 layers in 4 blocks of 3.
    "deepsea": {
        "num_layers": 12,
        "layers_per_block": 3,
        "first_filters": 32,
        "filter_growth": 2,
        "reduction": 4,
        "stem_channels": 64,
        "dense_units": 925,
        "ops": list(OP_NAMES),
        "dilation": 10,
        "dropout": 0.1,
    },
    # Promoter-sized inputs (200-300 bp): two blocks, so the length is reduced x16 in all.
    "small": {
        "num_layers": 4,
        "layers_per_block": 2,
        "first_filters": 32,
        "filter_growth": 2,
        "reduction": 4,
        "stem_channels": 32,
        "dense_units": 64,
        "ops": list(OP_NAMES),
        "dilation": 10,
        "dropout": 0.1,
    },
}


class _Strict(BaseModel):
    # No .inf or .nan anywhere: a value the schema accepts must be one a run can use.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# What the data split (scikit-learn's ``random_state``) and NumPy's seeding accept.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
# Finite values a run still cannot use (a learning rate of 1e300 overflows the first step): step sizes
# above 1, loss weights above 1,000, and sizes beyond any genomic model that no memory holds.
LearningRate = Annotated[float, Field(gt=0, le=1)]
LossWeight = Annotated[float, Field(ge=0, le=1000)]
Channels = Annotated[int, Field(gt=0, le=65_536)]
BatchSize = Annotated[int, Field(gt=0, le=1_000_000)]


class SimulatorConfig(_Strict):
    """``task: presence`` plants each motif independently (one label per motif); ``task: grammar``
    labels a pair of motifs by their spacing and relative orientation (one label; see
    :mod:`amber_ray.data.simulate`). The ``spacing`` ... ``wrong_orientation_fraction`` keys are
    the grammar's; ``instances_per_sequence`` is the presence task's.
    """

    num_sequences: int = Field(2000, gt=0, le=100_000_000)
    length: int = Field(200, gt=0, le=1_000_000)
    motifs: list[str] = Field(default_factory=lambda: ["MA0139.1", "MA0099.3", "MA0079.5"])
    prevalence: float = Field(0.3, gt=0, lt=1)
    instances_per_sequence: PositiveInt = 1
    task: Literal["presence", "grammar"] = "presence"
    # Start-to-start distance of motif B after motif A, read on A's strand; positives within +-tolerance.
    spacing: PositiveInt = 30
    spacing_tolerance: int = Field(2, ge=0)
    # Wrong-spacing decoys sit at spacing +- a shift drawn uniformly from [decoy_min_shift, decoy_max_shift].
    decoy_min_shift: PositiveInt = 5
    decoy_max_shift: PositiveInt = 10
    # Shares of the negatives: wrong spacing, wrong orientation; the rest hold one motif or none.
    wrong_spacing_fraction: float = Field(0.5, ge=0, le=1)
    wrong_orientation_fraction: float = Field(0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _grammar_fits(self) -> SimulatorConfig:
        if self.task != "grammar":
            return self
        if len(self.motifs) != 2:
            raise ValueError(f"task 'grammar' needs exactly two motifs (A then B), got {len(self.motifs)} in motifs")
        if self.decoy_min_shift <= self.spacing_tolerance:
            raise ValueError("decoy_min_shift must exceed spacing_tolerance, or a wrong-spacing decoy could be a positive")
        if self.decoy_max_shift < self.decoy_min_shift:
            raise ValueError("decoy_max_shift must be at least decoy_min_shift")
        if self.decoy_max_shift >= self.spacing:
            raise ValueError("decoy_max_shift must be below spacing (motif B must stay after motif A)")
        if self.length <= self.spacing + self.decoy_max_shift:
            raise ValueError("length must exceed spacing + decoy_max_shift, the longest planted pair")
        if self.wrong_spacing_fraction + self.wrong_orientation_fraction > 1:
            raise ValueError("wrong_spacing_fraction + wrong_orientation_fraction must be at most 1")
        return self


class SplitConfig(_Strict):
    """Random, stratified fractions ``valid`` and ``test``; or, for genomic windows, whole chromosomes held out
    (DeepSEA: ``valid_chromosomes: [chr7]``, ``test_chromosomes: [chr8, chr9]``), which replace the fractions."""

    valid: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)
    valid_chromosomes: list[str] | None = Field(None, min_length=1)
    test_chromosomes: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _leave_training_data(self) -> SplitConfig:
        if self.valid + self.test >= 1:
            raise ValueError("valid + test must be below 1")
        if (self.valid_chromosomes is None) != (self.test_chromosomes is None):
            raise ValueError("give both valid_chromosomes and test_chromosomes, or neither")
        both = set(self.valid_chromosomes or ()) & set(self.test_chromosomes or ())
        if both:
            raise ValueError(f"chromosome {min(both)!r} is in both valid_chromosomes and test_chromosomes")
        return self

    @property
    def by_chromosome(self) -> bool:
        return self.valid_chromosomes is not None


def _path_or_uri(value: Any) -> Any:
    """A URI (``s3://bucket/prefix``) stays a string; anything else is a local path."""
    if isinstance(value, str) and "://" in value and not value.startswith("file://"):
        return value
    return Path(value) if isinstance(value, str) else value


# A local path, or a URI of any filesystem pyarrow reads, staged once per node (amber_ray.data.remote).
PathOrUri = Annotated[Path | str, BeforeValidator(_path_or_uri)]


class DataConfig(_Strict):
    """Where sequences come from. ``kind`` picks the reader; only its paths are used."""

    kind: Literal["simulate", "fasta_binary", "fasta_labels", "deepsea", "hdf5", "nb360_deepsea"] = "simulate"
    simulate: SimulatorConfig = SimulatorConfig()
    positive_fasta: PathOrUri | None = None
    negative_fasta: PathOrUri | None = None
    fasta: PathOrUri | None = None
    labels_tsv: PathOrUri | None = None
    deepsea_dir: Path | None = None
    hdf5_dir: PathOrUri | None = None
    # NAS-Bench-360's deepsea_filtered.npz (kind nb360_deepsea; amber_ray.data.nb360)
    nb360_npz: PathOrUri | None = None
    label_annotation: Path | None = None
    split: SplitConfig = SplitConfig()

    @model_validator(mode="after")
    def _paths_for_kind(self) -> DataConfig:
        required = {
            "fasta_binary": ("positive_fasta", "negative_fasta"),
            "fasta_labels": ("fasta", "labels_tsv"),
            "deepsea": ("deepsea_dir",),
            "hdf5": ("hdf5_dir",),
            "nb360_deepsea": ("nb360_npz",),
        }.get(self.kind, ())
        missing = [key for key in required if getattr(self, key) is None]
        if missing:
            raise ValueError(f"kind {self.kind!r} needs {', '.join('data.' + m for m in missing)}")
        return self


class SpaceConfig(_Strict):
    """The model space; ``profile`` fills every key the user left out."""

    profile: Literal["small", "deepsea"] = "small"
    num_layers: int = Field(gt=0, le=1000)
    layers_per_block: PositiveInt
    first_filters: Channels
    filter_growth: PositiveInt
    reduction: PositiveInt
    stem_channels: Channels
    dense_units: Channels
    ops: list[Literal[OP_NAMES]]  # type: ignore[valid-type]
    dilation: int = Field(gt=0, le=10_000)
    dropout: float = Field(ge=0, lt=1)
    # Batch norm between the dense layer and its ReLU. Without it the dense units die within an epoch
    # (Adam moves all the weights of a unit together, and its inputs are all >= 0): on the own-peaks
    # windows 0 of 32 units were left with pos_weight auto (test AUROC 0.50), 6-8 unweighted.
    head_norm: bool = True

    @model_validator(mode="before")
    @classmethod
    def _fill_from_profile(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        profile = values.get("profile", "small")
        if profile not in SPACE_PROFILES:
            return values  # the Literal check reports the bad profile
        return {**SPACE_PROFILES[profile], **values}

    @model_validator(mode="after")
    def _ops_unique(self) -> SpaceConfig:
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ValueError("ops must be a non-empty list without repeats")
        return self

    @model_validator(mode="after")
    def _widest_block_fits(self) -> SpaceConfig:
        blocks = max(self.num_layers // self.layers_per_block, 1)
        widest = self.first_filters * self.filter_growth ** (blocks - 1)
        if widest > 65_536:
            raise ValueError(
                f"the last of {blocks} blocks would have {widest} filters (first_filters x filter_growth^{blocks - 1}), over 65536"
            )
        return self


class TrainConfig(_Strict):
    """Training of one standalone architecture (``amber-ray train`` and retraining trials)."""

    batch_size: BatchSize = 128
    learning_rate: LearningRate = 1e-3
    weight_decay: float = Field(0.0, ge=0, le=1)
    max_epochs: PositiveInt = 30
    patience: PositiveInt = 10
    # Multiplies every layer's filters.
    width: float = Field(1.0, gt=0, le=64)
    threads: int | None = Field(None, gt=0, le=4096)
    # auto: CUDA when present, else CPU (amber_ray.device). Ray workers and trials follow it on the
    # GPUs Ray gave them (search.gpus_per_worker, retrain.gpus_per_trial) and use the CPU without one.
    device: str = "auto"
    # bfloat16 autocast of the forward pass (weights stay float32); pays on GPUs with bf16 units.
    precision: Literal["float32", "bfloat16"] = "float32"
    # Each training batch (supernet, retraining, train) on a random strand; default: on for genomic
    # windows (DeepSEA files, a directory built by amber-ray dataset, a split by chromosome), else off.
    reverse_complement: bool | None = None
    # Per-label weight of the positives in the loss (supernet, retraining, train): auto = negatives /
    # positives of the training split, capped at 100; none = 1; a number = that weight for every label.
    pos_weight: Literal["auto", "none"] | PositiveFloat = "none"


class ControllerConfig(_Strict):
    """The controller and its policy update (README: "The controller").

    Defaults learn from rewards whose differences are a few times their noise: several clipped
    policy steps per iteration on the iteration's architectures, stopped by the KL to the
    sampling policy, a drift-free baseline and normalised advantages. Two older updates stay
    reachable for comparison (see :data:`LEGACY_UPDATE` and :data:`AMBER_UPDATE`).
    """

    hidden_size: Channels = 64
    learning_rate: LearningRate = 2e-3
    update: Literal["ppo", "reinforce"] = "ppo"
    policy_epochs: PositiveInt = 10
    policy_minibatches: PositiveInt = 4
    # Policy steps stop once the approximate KL(sampling policy || current) on the iteration exceeds this.
    max_kl: PositiveFloat | None = 0.02
    clip_ratio: PositiveFloat = 0.2
    baseline: Literal["leave_one_out", "mean", "previous", "ema"] = "leave_one_out"
    baseline_decay: float = Field(0.95, gt=0, lt=1)
    normalize_advantages: bool = True
    loss_reduction: Literal["mean", "sum"] = "mean"
    # With normalised (unit-scale) advantages these keep a flat, noisy reward from collapsing the
    # policy (entropy >= 90 % of its start over 30 iterations) and the skip fraction near its target.
    entropy_weight: LossWeight = 0.05
    skip_target: float = Field(0.4, gt=0, lt=1)
    skip_weight: LossWeight = 2.0
    skip_kl_reduction: Literal["mean", "sum"] = "mean"
    # Logits are tanh_constant * tanh(.) / temperature: beyond these bounds the softmax overflows or is one-hot.
    tanh_constant: float | None = Field(1.5, gt=0, le=100)
    temperature: float = Field(1.0, ge=1e-3, le=1000)


# This project's update before the search learned: one step per iteration, EMA baseline, summed skip KL.
LEGACY_UPDATE: dict[str, Any] = {
    "update": "reinforce",
    "policy_epochs": 1,
    "policy_minibatches": 1,
    "max_kl": None,
    "baseline": "ema",
    "normalize_advantages": False,
    "skip_kl_reduction": "sum",
    "skip_weight": 0.8,
    "entropy_weight": 1e-3,
    "learning_rate": 1e-3,
}
# The original AMBER update (zj-zhang/AMBER generalController): up to 10 epochs x 5 minibatches, KL stop 0.01.
AMBER_UPDATE: dict[str, Any] = {
    "update": "reinforce",
    "policy_epochs": 10,
    "policy_minibatches": 5,
    "max_kl": 0.01,
    "baseline": "previous",
    "normalize_advantages": False,
    "loss_reduction": "sum",
    "skip_weight": 1.0,
    "entropy_weight": 1e-3,
    "learning_rate": 1e-3,
}


class EvolutionConfig(_Strict):
    """Regularized evolution (Real et al. 2019): an aging population, tournament selection, one mutation."""

    # Scored architectures kept; the oldest leaves when a new one arrives (aging, not the worst).
    population: PositiveInt = 50
    # Parents are the best of this many population members drawn at random.
    tournament: PositiveInt = 10

    @model_validator(mode="after")
    def _tournament_within_population(self) -> EvolutionConfig:
        if self.tournament > self.population:
            raise ValueError(f"tournament ({self.tournament}) must not exceed population ({self.population})")
        return self


class ObjectiveConfig(_Strict):
    """What the search maximises: validation AUROC alone, or with a cost on the model's size or speed.

    ``params``: AUROC - weight * log10(parameters / reference); ``latency``: AUROC - weight *
    log10(seconds per batch / reference seconds), measured by the scoring worker; ``budget``:
    AUROC for models of at most ``max_params`` parameters, 0 (never chosen) for larger ones.
    """

    kind: Literal["auroc", "params", "latency", "budget"] = "auroc"
    weight: float = Field(0.01, ge=0)
    reference_params: PositiveInt = 100_000
    reference_seconds: PositiveFloat = 0.01
    max_params: PositiveInt | None = None

    @model_validator(mode="after")
    def _budget_needs_max_params(self) -> ObjectiveConfig:
        if self.kind == "budget" and self.max_params is None:
            raise ValueError("objective kind 'budget' needs max_params")
        return self


class SearchConfig(_Strict):
    # enas: the LSTM controller; random: uniform sampling on the same supernet and budget (the ablation);
    # evolution: regularized evolution (search.evolution) on the same supernet and budget.
    strategy: Literal["enas", "random", "evolution"] = "enas"
    # Seeds the controller, the supernet and their sampling; the data split keeps the top-level seed,
    # so independent searches (different search.seed) share one split. Defaults to the top-level seed.
    seed: Seed | None = None
    iterations: PositiveInt = 300
    archs_per_iteration: PositiveInt = 100
    warmup_batch_size: BatchSize = 1000
    batch_size: BatchSize = 128
    train_batches_per_iteration: PositiveInt | None = None
    valid_max_sequences: PositiveInt | None = None
    supernet_learning_rate: LearningRate = 1e-3
    top_k: PositiveInt = 5
    # Final choice: the best `final_candidates` distinct architectures of the last `final_iterations`
    # iterations (by search reward) are re-scored on all validation data; the highest is chosen.
    final_iterations: PositiveInt = 5
    final_candidates: PositiveInt = 10
    # Before the choice each candidate trains this many epochs on its own from the supernet's weights
    # (train.batch_size, learning rate, ...); its validation AUROC then stands for the re-scored one
    # (README "Ranking the candidates": it ranked closer to retrained AUROC in small spaces). 0: none.
    final_finetune_epochs: int = Field(0, ge=0)
    # Controller samples vs uniform samples scored on the final supernet (0 skips the comparison).
    final_samples: int = Field(100, ge=0)
    workers: PositiveInt = 1
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: float = Field(0.0, ge=0)
    # auto: bfloat16 where the device runs it natively (AVX-512 BF16 or AMX CPUs, recent GPUs), else float32.
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    # Actor deaths survived per search: each replaces every actor and reloads the last checkpoint.
    max_failures: int = Field(3, ge=0)
    controller: ControllerConfig = ControllerConfig()
    evolution: EvolutionConfig = EvolutionConfig()
    objective: ObjectiveConfig = ObjectiveConfig()


class RetrainConfig(_Strict):
    """Retraining grid: the searched architecture(s) and uniformly sampled ones, with replicates."""

    replicates: PositiveInt = 6
    sampled: int = Field(10, ge=0)
    skip_probability: float = Field(0.4, ge=0, le=1)
    include_greedy: bool = False
    # Also retrain every architecture of the search's reward-vs-size Pareto front (`retrain --arch front`).
    include_front: bool = False
    # `pipeline`/`demo`: also run random search (search.strategy random, the same budget, seed and data) into
    # OUT/search-random and retrain its choice, role `random_search`: the ablation that says whether the
    # learned search was worth its cost on this task.
    random_search: bool = False
    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: float = Field(0.0, ge=0)
    max_failures: int = Field(1, ge=0)
    # Model Registry name of the final model (``OUT/final/``); default: the experiment's ``name``.
    register_as: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ExperimentConfig(_Strict):
    # The MLflow experiment; letters, digits and ``._-`` only, so it can never act as a path.
    name: str = Field("amber", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    seed: Seed = 0
    data: DataConfig = DataConfig()
    space: SpaceConfig = Field(default_factory=lambda: SpaceConfig(profile="small"))
    train: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()
    retrain: RetrainConfig = RetrainConfig()
    # Shared storage of a cluster run (amber_ray.storage): Tune trials, search checkpoint copies and
    # MLflow artifacts; an absolute path every node mounts or a URI such as s3://bucket/prefix.
    # Default: everything under --out (one machine).
    storage: str | None = Field(None, pattern=r"^(/|[a-z][a-z0-9+.-]*://).+")

    @property
    def search_seed(self) -> int:
        """Seed of the controller, supernet and sampling; ``seed`` alone fixes the data split."""
        return self.seed if self.search.seed is None else self.search.seed

    @property
    def registered_model_name(self) -> str:
        """The Model Registry name of the retraining's final model."""
        return self.retrain.register_as or self.name


def demo_config() -> ExperimentConfig:
    """The embedded default: a simulated task where the architecture matters, minutes on a laptop CPU.

    The motif grammar of ``jobs/configs/grammar.yaml`` (SP1 then HNF4A, 30 +- 2 bp apart on one
    strand): architectures without a receptive field across the pair stay near test AUROC 0.7,
    those with one reach 0.95-0.99, so searched vs sampled can differ. The supernet needs about 30
    iterations to learn the pair. A random search of the same budget runs beside the learned one.
    """
    return ExperimentConfig(
        name="demo",
        seed=0,
        data=DataConfig(
            kind="simulate",
            simulate=SimulatorConfig(
                task="grammar", num_sequences=8000, length=100, motifs=["MA0079.5", "MA0114.4"], prevalence=0.4
            ),
        ),
        space=SpaceConfig(profile="small"),
        train=TrainConfig(batch_size=100, max_epochs=20, patience=5),
        search=SearchConfig(
            iterations=40,
            archs_per_iteration=10,
            warmup_batch_size=50,
            batch_size=50,
            top_k=3,
            valid_max_sequences=400,
            final_samples=50,
        ),
        retrain=RetrainConfig(replicates=2, sampled=4, random_search=True),
    )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    extra = f" ({len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"config key '{key}': {message}{extra}"


def parse_config(raw: Any, source: str = "config") -> ExperimentConfig:
    """Validate an already-parsed mapping; errors name the offending key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise AmberInputError("a config must be a YAML mapping", source)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise AmberInputError(_describe(error), source) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML config with ``safe_load``; relative data paths resolve against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("config file not found", path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise AmberInputError(f"byte at offset {error.start} is not UTF-8: not a YAML config", path) from None
    raw = _parse_yaml(text, path)
    raw = _deep_merge(raw or {}, overrides or {})
    config = parse_config(raw, str(path))
    return resolve_data_paths(config, path.parent)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``safe_load`` that refuses a key given twice in one mapping (plain YAML lets the last one win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *anchor' may be given more than once and overridden by design
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # SafeLoader itself refuses keys that cannot be dict keys
            if key in seen:
                problem = f"key {key!r} given twice (line {key_node.start_mark.line + 1})"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str | Path) -> Any:
    """``text`` parsed like ``yaml.safe_load`` (plain data only), except that a repeated key is an error."""
    try:
        return _safe_load(text)
    except yaml.YAMLError as error:
        raise AmberInputError(f"not valid YAML ({_yaml_problem(error)})", source) from None


def _safe_load(text: str) -> Any:
    """``yaml.safe_load`` with :class:`_UniqueKeyLoader` (what ``yaml.load`` does with a loader class)."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The first line of a YAML error, or for a repeated key the key and its line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem and "given twice" in error.problem:
        return error.problem
    return first_line(error)


def override_config(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """``config`` with ``--set`` overrides (:func:`parse_overrides`) applied, validated as a config file is."""
    if not overrides:
        return config
    return parse_config(_deep_merge(config.model_dump(mode="json"), overrides), "--set")


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """``["search.workers=2", "train.patience=5"]`` -> nested dict (values parsed as YAML scalars)."""
    nested: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise AmberInputError(f"override {assignment!r} is not KEY=VALUE (e.g. search.workers=2)", "--set")
        _check_override_key(parts)
        *parents, leaf = parts
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise AmberInputError(f"override {assignment!r} goes inside {part!r}, which another --set gave a value", "--set")
        try:
            target[leaf] = _safe_load(value)
        except yaml.YAMLError as error:
            problem = f"override {assignment!r}: value is not valid YAML ({_yaml_problem(error)})"
            raise AmberInputError(problem, "--set") from None
    return nested


def _check_override_key(parts: list[str]) -> None:
    """Refuse an override whose path is not a key of :class:`ExperimentConfig` (``search.wokers``, or one
    below a value such as ``seed.x``), naming it: merged into the config, it would be dropped or misread."""
    section: Any = ExperimentConfig
    for depth, part in enumerate(parts):
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            value = ".".join(parts[:depth])
            raise AmberInputError(f"config key '{'.'.join(parts)}': unknown key ({value} is a value, not a section)", "--set")
        if part not in section.model_fields:
            raise AmberInputError(f"config key '{'.'.join(parts)}': unknown key", "--set")
        section = section.model_fields[part].annotation


def _deep_merge(base: Any, update: dict[str, Any]) -> Any:
    if not isinstance(base, dict):
        return base
    merged = dict(base)
    for key, value in update.items():
        inner = merged.get(key, {})
        # A mapping where the config holds a value replaces it, so that validation names the key.
        merged[key] = _deep_merge(inner, value) if isinstance(value, dict) and isinstance(inner, dict) else value
    return merged


def resolve_data_paths(config: ExperimentConfig, root: Path) -> ExperimentConfig:
    """Make data paths absolute (Ray jobs run in a temporary copy of the working dir)."""
    updates = {}
    for key in (
        "positive_fasta",
        "negative_fasta",
        "fasta",
        "labels_tsv",
        "deepsea_dir",
        "hdf5_dir",
        "nb360_npz",
        "label_annotation",
    ):
        value = getattr(config.data, key)
        if isinstance(value, Path) and not value.is_absolute():
            updates[key] = (root / value).resolve()
    if not updates:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update=updates)})


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, inner in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(inner, Mapping):
            flat.update(_flatten(inner, name))
        else:
            flat[name] = str(inner)
    return flat


def config_as_flat_dict(config: ExperimentConfig) -> dict[str, str]:
    """``section.key -> value`` strings, the form MLflow params take."""
    return _flatten(config.model_dump(mode="json"))


# What a resumed search may change: how long it runs, on which resources, how the end is chosen.
RESUME_SAFE_KEYS = frozenset(
    {
        "search.iterations",
        "search.workers",
        "search.cpus_per_worker",
        "search.gpus_per_worker",
        "search.max_failures",
        "search.top_k",
        "search.final_iterations",
        "search.final_candidates",
        "search.final_samples",
    }
)
# What the search does not read: the training of single architectures (its supernet reads only
# train.reverse_complement and train.pos_weight, and runs where train.device says), the retraining grid.
SEARCH_IGNORES = (
    *(f"train.{key}" for key in ("batch_size", "learning_rate", "weight_decay", "max_epochs", "patience", "width")),
    *(f"train.{key}" for key in ("threads", "precision", "device")),
    "retrain.",
    "data.label_annotation",
    "search.final_finetune_epochs",  # the final choice only, made after the last iteration
)
# What a resumed retraining grid may change: where and how often trials run, not what they train.
RETRAIN_RESUME_SAFE_KEYS = frozenset({"retrain.max_failures", "retrain.cpus_per_trial", "retrain.gpus_per_trial", "train.device"})
# Sections the retraining does not read (it takes the search's choice from final_architectures.json).
RETRAIN_IGNORES = ("search.", "data.label_annotation")


# Keys whose default is not how a run stored before the key existed ran (its models have no head norm).
BEFORE_THE_KEY_EXISTED = {"space.head_norm": False}


def resume_conflicts(
    stored: Mapping[str, Any], config: ExperimentConfig, safe: frozenset[str], ignores: tuple[str, ...]
) -> list[str]:
    """Every key (``key old -> new``) in which ``config`` differs from the ``stored`` config of a run
    in a way its resume cannot take: anything but the ``safe`` keys and keys under ``ignores``.

    A key the stored config lacks counts as its default: the run was written before the key existed
    and ran as its default does (e.g. ``search.objective`` added after a search began), or as
    :data:`BEFORE_THE_KEY_EXISTED` says where the default changed the model."""
    old = {**config_as_flat_dict(ExperimentConfig()), **BEFORE_THE_KEY_EXISTED, **_flatten(stored)}
    new = config_as_flat_dict(config)
    return [
        f"{key} {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and key not in safe and not key.startswith(ignores)
    ]


def check_resume(
    stored: Mapping[str, Any], config: ExperimentConfig, safe: frozenset[str], ignores: tuple[str, ...], source: str | Path
) -> None:
    """Refuse to resume with a config that differs from the ``stored`` one in any key but the safe ones, naming them all."""
    conflicts = resume_conflicts(stored, config, safe, ignores)
    if conflicts:
        differences, allowed = "; ".join(conflicts), ", ".join(sorted(safe))
        raise AmberInputError(
            f"--resume with a config that differs from the stored one in {differences} (only {allowed} may change)", source
        )
