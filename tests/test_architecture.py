"""The layout shows the architecture: imports run one way, down the pipeline, with no cycle,
and the README's layout table names what is in the tree.

Every ``import`` in the package is read with ``ast`` (those inside functions too, since a lazy
import is still a dependency), each module is placed on its stage, and a module may import
only from its own stage or from stages before it. ``serving`` is self-contained.
"""
import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The pipeline's stages, in order; a stage may import from itself and from those before it.
STAGES = ("ground", "data", "preprocessing", "encoders", "caching", "models", "training",
          "evaluation", "export", "serving", "ab", "demo", "cli")
# Shared by several stages: ``fitting`` and ``distribute`` (encoders, training) and
# ``transformer`` (encoders, models) sit here so that neither stage imports the other.
GROUND_FLOOR = {"ppm_tf", "ppm_tf.features", "ppm_tf.work_layout", "ppm_tf.metrics",
                "ppm_tf.errors", "ppm_tf.atomic", "ppm_tf.filesystem", "ppm_tf.fitting",
                "ppm_tf.transformer", "ppm_tf.beam_runner", "ppm_tf.distribute",
                "ppm_tf.saved_models"}
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


def layout_table_paths() -> set[str]:
    """The paths in the first column of the README's layout table; a cell's later names are
    in the folder of its first (`ppm_tf/metrics.py`, `fitting.py`)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    paths = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names = re.findall(r"`([^`]+)`", line.split("|")[1])
            folder = names[0].rpartition("/")[0]
            paths.update([names[0], *(f"{folder}/{name}" for name in names[1:])])
    return paths


def top_level_folders() -> set[str]:
    """The repository's folders, without hidden and git-ignored ones (.venv/, runs/, ...)."""
    ignored = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()
               if line.strip().endswith("/")]
    return {f"{path.name}/" for path in REPO.iterdir()
            if path.is_dir() and not path.name.startswith(".")
            and not any(fnmatch.fnmatch(f"{path.name}/", pattern) for pattern in ignored)}


def test_the_readme_layout_table_matches_the_tree():
    listed = layout_table_paths()
    absent = sorted(path for path in listed if not (REPO / path).exists())
    assert not absent, f"the README's layout table names paths that do not exist: {absent}"
    packages = {f"{path.parent.relative_to(REPO)}/"
                for path in (REPO / "ppm_tf").glob("*/__init__.py")}
    modules = {str(path.relative_to(REPO)) for path in (REPO / "ppm_tf").glob("*.py")
               if path.name != "__init__.py" and module_name(path) not in DEPRECATED_SHIMS}
    folders = top_level_folders() - {"ppm_tf/"}
    unlisted = sorted((packages | modules | folders) - listed)
    assert not unlisted, f"missing from the README's layout table: {unlisted}"
