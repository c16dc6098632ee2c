from pathlib import Path

import pytest
import yaml

from amber_ray.config import demo_config, load_config, parse_config
from amber_ray.errors import AmberInputError

JOBS = Path(__file__).resolve().parents[1] / "jobs" / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("serach: {iterations: 3}\n", "config key 'serach': unknown key"),
        ("search: {iterations: 3, archs: 4}\n", "config key 'search.archs': unknown key"),
        ("search: {iterations: -3}\n", "config key 'search.iterations'"),
        ("space: {profile: huge}\n", "config key 'space.profile'"),
        ("space: {ops: [conv8, conv9]}\n", "config key 'space.ops.1'"),
        ("train: {batch_size: many}\n", "config key 'train.batch_size'"),
        ("data: {kind: fasta_binary}\n", "needs data.positive_fasta, data.negative_fasta"),
        ("- a\n- b\n", "a config must be a YAML mapping"),
        ("search: {iterations: [\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, message):
    with pytest.raises(AmberInputError, match=message.replace("[", r"\[").replace(".", r"\.")) as error:
        load_config(write(tmp_path, text))
    assert str(tmp_path / "config.yaml") in str(error.value)
    assert "\n" not in str(error.value)


def test_profile_fills_defaults_but_never_overrides_user_values(tmp_path):
    config = load_config(write(tmp_path, "space: {profile: deepsea, num_layers: 6, dense_units: 100}\n"))
    assert (config.space.num_layers, config.space.dense_units) == (6, 100)
    assert (config.space.layers_per_block, config.space.stem_channels, config.space.first_filters) == (3, 64, 32)


def test_paper_values_are_defaults():
    config = parse_config({})
    assert config.search.iterations == 300 and config.search.archs_per_iteration == 100
    assert config.search.warmup_batch_size == 1000
    controller = config.search.controller
    assert (controller.hidden_size, controller.skip_target) == (64, 0.4)


def test_the_original_amber_update_is_one_override_away():
    from amber_ray.config import AMBER_UPDATE

    controller = parse_config({"search": {"controller": AMBER_UPDATE}}).search.controller
    assert (controller.update, controller.policy_epochs, controller.policy_minibatches, controller.max_kl) == (
        "reinforce",
        10,
        5,
        0.01,
    )
    assert (controller.baseline, controller.normalize_advantages, controller.loss_reduction) == ("previous", False, "sum")
    assert controller.learning_rate == 1e-3


def test_relative_data_paths_resolve_against_the_config_file(tmp_path):
    config = load_config(write(tmp_path, "data: {kind: fasta_binary, positive_fasta: p.fa, negative_fasta: /abs/n.fa}\n"))
    assert config.data.positive_fasta == tmp_path / "p.fa"
    assert str(config.data.negative_fasta) == "/abs/n.fa"


def test_demo_job_config_is_the_embedded_demo():
    raw = yaml.safe_load((JOBS / "demo.yaml").read_text())
    assert parse_config(raw) == demo_config()


@pytest.mark.parametrize("name", ["demo", "promoters", "deepsea"])
def test_every_job_config_is_valid(name):
    config = load_config(JOBS / f"{name}.yaml")
    assert config.name == name
    for key in ("positive_fasta", "negative_fasta", "deepsea_dir"):
        value = getattr(config.data, key)
        assert value is None or value.is_absolute()


def test_set_overrides_are_typed_and_checked(tmp_path):
    from amber_ray.config import parse_overrides

    config = load_config(write(tmp_path, "seed: 1\n"), parse_overrides(["search.workers=2", "train.patience=3"]))
    assert (config.search.workers, config.train.patience) == (2, 3)
    with pytest.raises(AmberInputError, match="search.wokers"):
        load_config(write(tmp_path, "seed: 1\n"), parse_overrides(["search.wokers=2"]))
    with pytest.raises(AmberInputError, match="not KEY=VALUE"):
        parse_overrides(["search.workers"])


UNUSABLE_VALUES = [
    ("train: {learning_rate: 1.0e300}\n", "train.learning_rate", "less than or equal to 1"),
    ("train: {learning_rate: 2}\n", "train.learning_rate", "less than or equal to 1"),
    ("search: {supernet_learning_rate: 1.0e10}\n", "search.supernet_learning_rate", "less than or equal to 1"),
    ("search: {controller: {learning_rate: 5}}\n", "search.controller.learning_rate", "less than or equal to 1"),
    ("search: {controller: {entropy_weight: 1.0e300}}\n", "search.controller.entropy_weight", "less than or equal to 1000"),
    ("search: {controller: {skip_weight: 1.0e300}}\n", "search.controller.skip_weight", "less than or equal to 1000"),
    ("search: {controller: {tanh_constant: 1.0e300}}\n", "search.controller.tanh_constant", "less than or equal to 100"),
    ("search: {controller: {temperature: 1.0e-300}}\n", "search.controller.temperature", "greater than or equal to 0.001"),
    ("train: {weight_decay: 1.0e300}\n", "train.weight_decay", "less than or equal to 1"),
    ("train: {width: 1.0e300}\n", "train.width", "less than or equal to 64"),
    ("train: {batch_size: 1000000000000}\n", "train.batch_size", "less than or equal to 1000000"),
    ("space: {dense_units: 1000000000000}\n", "space.dense_units", "less than or equal to 65536"),
    ("data: {simulate: {num_sequences: 1000000000000}}\n", "data.simulate.num_sequences", "less than or equal to"),
    ("space: {first_filters: 1024, filter_growth: 128, num_layers: 4, layers_per_block: 2}\n", "space", "131072 filters"),
]


@pytest.mark.parametrize("text,key,message", UNUSABLE_VALUES, ids=[case[1] for case in UNUSABLE_VALUES])
def test_values_a_run_cannot_use_are_refused_naming_the_key(tmp_path, text, key, message):
    with pytest.raises(AmberInputError) as error:
        load_config(write(tmp_path, text))
    assert f"config key '{key}'" in str(error.value) and message in str(error.value), str(error.value)


def test_the_largest_usable_values_pass():
    config = parse_config(
        {
            "train": {"learning_rate": 1, "weight_decay": 1, "width": 64},
            "search": {"controller": {"entropy_weight": 1000, "tanh_constant": 100, "temperature": 0.001}},
            "space": {"first_filters": 256, "filter_growth": 16, "num_layers": 4, "layers_per_block": 2},
        }
    )
    assert (config.train.learning_rate, config.search.controller.entropy_weight, config.space.filter_growth) == (1, 1000, 16)


@pytest.mark.parametrize(
    "assignment,key",
    [
        ("seed.x=1", "seed.x"),
        ("train.max_epochs.x=5", "train.max_epochs.x"),
        ("train.threads.cores=2", "train.threads.cores"),
        ("data.simulate.motifs.first=MA0139.1", "data.simulate.motifs.first"),
        ("search.controler.hidden_size=8", "search.controler.hidden_size"),
    ],
)
def test_set_refuses_paths_outside_the_schema(assignment, key):
    from amber_ray.config import parse_overrides

    with pytest.raises(AmberInputError) as error:
        parse_overrides([assignment])
    assert str(error.value).startswith(f"--set: config key '{key}': unknown key"), str(error.value)


def test_set_of_a_mapping_where_the_config_holds_a_value_names_the_key(tmp_path):
    from amber_ray.config import parse_overrides

    with pytest.raises(AmberInputError, match="config key 'seed': Input should be a valid integer"):
        load_config(write(tmp_path, "seed: 1\n"), parse_overrides(["seed={x: 1}"]))
    config = load_config(write(tmp_path, "seed: 1\n"), parse_overrides(["search.controller={hidden_size: 8}"]))
    assert (config.seed, config.search.controller.hidden_size) == (1, 8)
