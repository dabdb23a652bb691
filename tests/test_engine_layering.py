"""The import direction of docs/design.md sec. 1 and the engine's boundaries: no import cycle in
the package, the engine imports no eval/diagnostics/export/cli code, reads no recipe settings and
prints nothing; the recipe, not the engine, decides which member is the online teacher."""

import ast
from pathlib import Path

import torch

from slimssl.engine.config import Config
from slimssl.engine.trainer import Trainer
from slimssl.methods.base import SubnetOutput
from slimssl.recipes.base import Recipe
from slimssl.nn.spec import SubnetSpec

from tinyrun import tiny_config, write_image_folder

PKG = Path(__file__).resolve().parents[1] / "slimssl"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the slimssl modules it imports anywhere (top level or inside functions)."""
    mods = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            deps |= {t for t in targets if t in mods and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycle_between_modules():
    graph = _imports()
    # strip the package __init__ re-exports (a package importing its own modules is no cycle)
    graph = {m: {d for d in deps if not m.startswith(d + ".") and not d.startswith(m + ".")}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle.extend(path[path.index(d):] + [m, d] if d in path else [m, d])
                return True
            if d not in state and visit(d, path + [m]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if m not in state:
            assert not visit(m, []), f"import cycle: {' -> '.join(cycle)}"
    assert "slimssl.data.folder" not in graph["slimssl.data.cache"]


def _layer(module: str) -> str:
    return (module.split(".") + [""])[1]


def test_engine_imports_only_what_the_direction_allows():
    graph = _imports()
    for m, deps in graph.items():
        if _layer(m) == "engine":
            bad = {d for d in deps if _layer(d) in ("eval", "diagnostics", "export", "cli")}
            assert not bad, f"{m} imports {sorted(bad)}"
        if _layer(m) in ("eval", "export", "diagnostics", "data", "nn", "models", "methods",
                         "recipes"):
            bad = {d for d in deps if _layer(d) in ("engine", "cli")}
            assert not bad, f"{m} imports {sorted(bad)}"


def test_loop_reads_no_recipe_settings_and_prints_nothing():
    src = (PKG / "engine" / "trainer.py").read_text()
    tree = ast.parse(src)
    calls = [n.func.id for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    assert "print" not in calls
    attrs = {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not [a for a in attrs if a.startswith("cfg.recipe")], "the loop reads cfg.recipe"


class _LastIsTeacher(Recipe):
    """Two members; the SMALLER one (last) is the teacher: the loop must run it first and hand
    its detached output to the other's term."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def sample(self, epoch):
        return [SubnetSpec(1.0), SubnetSpec(0.5)]

    def teacher_index(self, specs):
        return 1

    def subnet_loss(self, index, specs, out: SubnetOutput, teacher):
        self.calls.append((index, teacher is not None))
        if teacher is not None:
            assert not teacher.embedding.requires_grad
        return out.loss


def test_the_recipe_decides_the_teacher(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=8)
    cfg: Config = tiny_config(data, tmp_path / "run", "model.widths=[1.0, 0.5]")
    trainer = Trainer(cfg, tmp_path / "run", progress="off")
    trainer.recipe = recipe = _LastIsTeacher()
    recipe.update_mode = "sum"
    images, labels = next(iter(trainer.loader))
    logs = trainer.train_step(images, 0.0, labels)
    assert recipe.calls == [(1, False), (0, True)]
    assert torch.isfinite(torch.tensor(logs["loss"]))
