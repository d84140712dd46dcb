"""The library's layers: every module of hrm/ imports only modules below it (earlier layers, or
earlier in its own layer), imports inside functions counted, so the import graph has no
cycle. A new module must be placed here; an import that goes up fails with its line."""

from __future__ import annotations

import ast
from pathlib import Path

HRM = Path(__file__).resolve().parents[1] / "hrm"

# Bottom to top. Within a layer, a module may import the ones listed before it.
LAYERS = [
    ("foundation", ["hrm", "hrm.errors", "hrm.storage"]),
    ("config", ["hrm.config.bounds", "hrm.config.coerce", "hrm.config.schema", "hrm.config.keys", "hrm.config.files",
                "hrm.config"]),
    ("model", ["hrm.model.layers", "hrm.model.losses", "hrm.model.act", "hrm.model.hrm", "hrm.model.trm", "hrm.model.urm",
               "hrm.model.transformer", "hrm.model"]),
    ("data", ["hrm.data", "hrm.data.augment", "hrm.data.splits", "hrm.data.arrow", "hrm.data.loader",
              "hrm.data.sudoku_grid", "hrm.data.sudoku_solver", "hrm.data.sudoku_rating", "hrm.data.sudoku_csv",
              "hrm.data.sudoku", "hrm.data.maze_grid", "hrm.data.maze", "hrm.data.arc_tasks", "hrm.data.arc",
              "hrm.render"]),
    ("tasks", ["hrm.tasks.base", "hrm.tasks.sudoku", "hrm.tasks.maze", "hrm.tasks.arc", "hrm.tasks", "hrm.dataset"]),
    ("runtime", ["hrm.runtime", "hrm.compiled", "hrm.compile_plan", "hrm.compute", "hrm.optim", "hrm.checkpoint", "hrm.runlog"]),
    ("training and evaluation", ["hrm.evaluate", "hrm.inference", "hrm.train_state", "hrm.train", "hrm.seeds",
                                 "hrm.importer"]),
    ("search and store", ["hrm.search.space", "hrm.search.spacefile", "hrm.search.trials", "hrm.search.study", "hrm.search",
                          "hrm.artifact_index", "hrm.artifact_rows", "hrm.artifacts", "hrm.report_figures", "hrm.report"]),
    ("entry points", ["hrm.cli_artifacts", "hrm.cli_data", "hrm.cli_eval", "hrm.cli_import", "hrm.cli", "hrm.jobs"]),
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(HRM.rglob("*.py")):
        parts = f.relative_to(HRM.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, hrm module) of every import in the file, in functions too, but not under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for sub in node.body for n in ast.walk(sub)}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from hrm.config import coerce` is the package; `from hrm.data import arc` the submodule
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                     if f"{node.module}.{a.name}" in modules]
        else:
            continue
        found += [(node.lineno, m) for m in map(resolve, names) if m and m.startswith("hrm")]
    return found


def test_every_module_imports_only_modules_below_it():
    modules = _modules()
    rank = {m: i for i, m in enumerate(m for _, layer in LAYERS for m in layer)}
    assert sorted(rank) == sorted(modules), "place each module of hrm/ in LAYERS (and only those)"
    upward = []
    for module, path in modules.items():
        for line, target in _imports(path, modules):
            if target != module and rank[target] >= rank[module]:
                upward.append(f"{path.relative_to(HRM.parent)}:{line} {module} imports {target}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    """The rule counts what a function imports late, and not what only a type checker reads."""
    (tmp_path / "m.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hrm.cli\n"
                                   "def f():\n    from hrm.train import train\n")
    found = _imports(tmp_path / "m.py", _modules())
    assert found == [(5, "hrm.train")]
