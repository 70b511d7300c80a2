"""The layout shows the architecture: imports run one way, down the pipeline, with no cycle.

Every ``import`` in the package is read with ``ast`` (those inside functions too, since a lazy
import is still a dependency), each module is placed on its stage, and a module may import
only from its own stage or from stages before it. ``serving`` is self-contained.
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The pipeline's stages, in order; a stage may import from itself and from those before it.
STAGES = ("ground", "data", "preprocessing", "encoders", "caching", "models", "training",
          "evaluation", "export", "serving", "ab", "demo", "cli")
GROUND_FLOOR = {"ppm_tf", "ppm_tf.features", "ppm_tf.work_layout", "ppm_tf.metrics",
                "ppm_tf.errors", "ppm_tf.atomic", "ppm_tf.filesystem", "ppm_tf.fitting",
                "ppm_tf.beam_runner", "ppm_tf.distribute"}
DEPRECATED_SHIMS = {"ppm_tf.demo_report"}  # old entry points kept one release


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str:
    if module in GROUND_FLOOR:
        return "ground"
    if module in DEPRECATED_SHIMS:
        return "cli"
    parts = module.split(".")
    if parts[0] == "beam_jobs":
        return "cli"  # entry points, like the CLI
    return parts[1]


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from a.b import c`` counts ``a.b.c`` when that
    is a module, else ``a.b``)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in known else node.module for name in names]
        else:
            continue
        imported.update(name for name in names if name.split(".")[0] in ("ppm_tf", "beam_jobs"))
    return imported


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    paths = sorted((REPO / "ppm_tf").rglob("*.py")) + sorted((REPO / "beam_jobs").glob("*.py"))
    modules = {module_name(path): path for path in paths}
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def test_every_module_sits_on_a_known_stage(import_graph):
    unknown = sorted(name for name in import_graph if stage_of(name) not in STAGES)
    assert not unknown, f"modules outside the stages {STAGES}: {unknown}"


def test_imports_run_down_the_pipeline(import_graph):
    upward = []
    for module, imports in import_graph.items():
        stage = stage_of(module)
        for target in imports:
            target_stage = stage_of(target)
            if stage == "serving":  # self-contained: a stand-in for TF Serving
                allowed = target_stage == "serving"
            else:
                allowed = STAGES.index(target_stage) <= STAGES.index(stage)
            if not allowed:
                upward.append(f"{module} ({stage}) -> {target} ({target_stage})")
    assert not upward, "imports against the pipeline's direction:\n" + "\n".join(sorted(upward))


def test_there_is_no_import_cycle(import_graph):
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(import_graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(import_graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
