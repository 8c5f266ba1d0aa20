"""The package is a stack of layers: every import goes down, and no modules import each other.

cli -> service -> batch -> (message, smtp) -> job -> errors. message and smtp are side by side
and import neither each other nor anything above them. The package root (``mailbatch/__init__``,
the public API, and ``__main__``) stands on top. Imports inside functions count as well: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mailbatch"

LAYERS = {"_version": 0, "errors": 0, "job": 1, "message": 2, "smtp": 2, "batch": 3, "service": 4,
          "cli": 5}
TOP = 6  # mailbatch/__init__.py and __main__.py


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root`` by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's own modules that ``name`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from mailbatch.smtp import session" imports the module mailbatch.smtp.session
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layer(name: str) -> tuple[int, str]:
    """(rank, package) of a module: ``mailbatch.job.model`` is in job, rank 1."""
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return TOP, "mailbatch"
    return LAYERS[parts[1]], parts[1]


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import that does not go down (or stay inside its own package)."""
    wrong = []
    for source, targets in graph.items():
        rank, package = layer(source)
        for target in sorted(targets):
            target_rank, target_package = layer(target)
            if target_package != package and target_rank >= rank:
                wrong.append(f"{source} imports {target}")
    return wrong


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_belongs_to_a_known_layer():
    for name in modules(PACKAGE):
        assert layer(name)[0] in (*LAYERS.values(), TOP), name


def test_no_module_imports_a_layer_above_its_own_or_beside_it():
    assert upward(import_graph(PACKAGE)) == []


def test_no_modules_import_each_other_in_a_cycle():
    assert cycles(import_graph(PACKAGE)) == []


def test_the_package_root_is_imported_only_by_its_entry_point():
    graph = import_graph(PACKAGE)
    assert sorted(m for m, targets in graph.items() if "mailbatch" in targets) == []


# -- the checks themselves catch what they are for -------------------------------------------


def fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mailbatch"
    for name, text in {"__init__.py": "", "errors.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"job/model.py": "def f():\n    from mailbatch.batch import runner\n",
      "batch/runner.py": ""}, ["mailbatch.job.model imports mailbatch.batch.runner"]),
    ({"message/render.py": "from mailbatch.smtp.transport import Outcome\n",
      "smtp/transport.py": ""}, ["mailbatch.message.render imports mailbatch.smtp.transport"]),
    ({"job/model.py": "from ..service import scheduler\n", "service/scheduler.py": ""},
     ["mailbatch.job.model imports mailbatch.service.scheduler"]),
    ({"batch/runner.py": "import mailbatch\n"}, ["mailbatch.batch.runner imports mailbatch"]),
    ({"cli/main.py": "from mailbatch.batch import runner\n", "batch/runner.py": ""}, []),
])
def test_an_import_that_goes_up_or_sideways_is_found(tmp_path, files, expected):
    assert upward(import_graph(fake_package(tmp_path, files))) == expected


def test_modules_that_import_each_other_are_found(tmp_path):
    root = fake_package(tmp_path, {
        "job/model.py": "def f():\n    from mailbatch.job.recipients import x\n",
        "job/recipients.py": "from mailbatch.job.model import Job\n",
    })
    assert cycles(import_graph(root)) == [["mailbatch.job.model", "mailbatch.job.recipients"]]
