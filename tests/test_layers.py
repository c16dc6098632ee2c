"""The package's imports go down the layers of the design (ground -> data -> model -> science -> tracking -> use ->
search -> retrain -> report -> pipeline -> cli), without circles.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: each is a dependency a
reader must know about, and a circle of them is one module in several files.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "amber_ray"

# Bottom to top; a module may import its own layer and those below it. The design's order, made exact
# where it is loose: ``metrics`` and ``predict`` are the model layer's (training validates through
# them), ``jaspar`` the data layer's (the simulator plants its motifs), ``tracking`` (the MLflow store)
# lies under the commands that log to it, ``interpret`` is a command of the use layer, and the pipeline
# runs above the report, which it writes last.
LAYERS: list[tuple[str, set[str]]] = [
    ("ground", {"errors", "config", "outputs", "atomic", "storage", "rundir", "cluster", "device", "checkpoint", "png"}),
    ("data", {"data", "jaspar"}),
    (
        "model",
        {
            "space",
            "ops",
            "child",
            "distributed",
            "metrics",
            "predict",
            "supernet",
            "controller",
            "policy",
            "objective",
            "training",
        },
    ),
    ("science", {"compare", "variants"}),
    ("tracking", {"tracking"}),
    (
        "use",
        {"regions", "registry", "inference", "export", "final_model", "interpret", "command_runs", "ui", "uri_arguments"},
    ),
    ("search", {"search"}),
    ("retrain", {"retrain"}),
    ("report", {"report"}),
    ("pipeline", {"pipeline"}),
    ("cli", {"cli"}),
]
LAYER_OF = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from amber_ray import outputs`` is ``amber_ray.outputs``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("amber_ray.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("amber_ray"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return found - {"amber_ray"}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def layer(module: str) -> int:
    """The layer of a module: that of its top-level name below ``amber_ray`` (``amber_ray.data.fasta`` -> data)."""
    top = module.split(".")[1]
    assert top in LAYER_OF, f"{module} is in no layer: add it to LAYERS"
    return LAYER_OF[top]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circle():
    assert cycles(import_graph()) == []


def test_imports_only_go_down_the_layers():
    upward = sorted(
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in import_graph().items()
        if module != "amber_ray"
        for target in targets
        if layer(target) > layer(module)
    )
    assert upward == []


def test_the_report_and_model_code_stay_free_of_ray_and_mlflow():
    """The report reads outputs on disk (importable without Ray); model code is plain torch."""
    free = {
        "report": {"ray", "mlflow", "amber_ray.search"},
        "checkpoint": {"ray", "mlflow", "amber_ray.search"},
        "child": {"ray", "mlflow"},
        "ops": {"ray", "mlflow"},
        "space": {"ray", "mlflow"},
        "supernet": {"ray", "mlflow"},
        "controller": {"ray", "mlflow"},
        "training": {"ray", "mlflow"},
        "predict": {"ray", "mlflow"},
    }
    offending = []
    for name, path in modules().items():
        forbidden = free.get(name.split(".")[1]) if name != "amber_ray" else None
        if not forbidden:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offending += [f"{name} imports {n}" for n in names if any(n == f or n.startswith(f"{f}.") for f in forbidden)]
    assert offending == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The checks above can fail: a made-up graph with both faults is caught."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("amber_ray.cli") > layer("amber_ray.predict") > layer("amber_ray.errors")


def test_the_report_imports_without_ray():
    """A report is made where Ray is not installed: blocking ``ray`` must not stop ``amber_ray.report`` importing."""
    code = "import sys; sys.modules['ray'] = None; import amber_ray.report, amber_ray.checkpoint; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
