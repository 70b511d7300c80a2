"""Every public function and class of ``ppm_tf/serving`` is used somewhere: in the package, its
tests, benchmarks or pipelines (an unused helper is dead code that readers must still read)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "ppm_tf" / "serving"


def _referenced_names() -> set[str]:
    """Identifiers read anywhere in the repository's Python code (definitions excluded)."""
    names: set[str] = set()
    for folder in ("ppm_tf", "tests", "benchmarks", "beam_jobs"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Name):
                    names.add(node.id)
                elif isinstance(node, ast.Attribute):
                    names.add(node.attr)
                elif isinstance(node, ast.alias):
                    names.add(node.name.rsplit(".", 1)[-1])
    return names


def test_every_public_serving_function_and_class_is_used():
    used = _referenced_names()
    unused = []
    for path in sorted(SERVING.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
                    and node.name not in used):
                unused.append(f"{path.name}: {node.name}")
    assert unused == []
