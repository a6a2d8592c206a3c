"""The package's layering, read from its source: every import of a robbook module (at the top or inside a function)
goes down the list `LAYERS`, so there are no cycles, and the package's own modules are imported at the top of each
module. Function-local imports are kept for optional or heavy third-party packages only."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "robbook"
# bottom to top: a module may import only modules of an earlier entry (the package root holds __version__ only)
LAYERS = [["robbook"], ["robbook.theory", "robbook.theory.tsipras", "robbook.theory.ilyas", "robbook.theory.kamath",
                        "robbook.theory.moayeri"],
          ["robbook.profiles"], ["robbook.config"], ["robbook.transforms"], ["robbook.data"], ["robbook.models"],
          ["robbook.attacks"], ["robbook.evaluate"], ["robbook.metrics"],
          ["robbook.train.config"], ["robbook.train.key", "robbook.train.objectives", "robbook.train.store",
                                     "robbook.train.dist", "robbook.train.probes"], ["robbook.train.loop"],
          ["robbook.train"], ["robbook.launch"],
          ["robbook.ilyas", "robbook.distshift", "robbook.linear"], ["robbook.report", "robbook.plots"],
          ["robbook.claims", "robbook.claims.tsipras", "robbook.claims.ilyas", "robbook.claims.kamath",
           "robbook.claims.moayeri"], ["robbook.widgets"],
          ["robbook.bench"], ["robbook.run"], ["robbook.__main__"]]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def _modules():
    out = {}
    for p in PKG.rglob("*.py"):
        if p.name == "_modidx.py":
            continue
        out[".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")] = p
    return out


def _imports(mod, path, mods):
    "(imported package module, line, inside a function?) for every import statement of `mod`."
    tree, out = ast.parse(path.read_text()), []
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = mod.split(".")
                keep = len(parts) - node.level + (1 if path.name == "__init__.py" else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [base + "." + a.name for a in node.names if base + "." + a.name in mods] or [base]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(n, node.lineno, id(node) in local) for n in names if n in mods and n != mod]
    return out


def test_every_module_has_a_layer():
    assert set(_modules()) <= set(RANK), f"add to LAYERS: {sorted(set(_modules()) - set(RANK))}"


@pytest.mark.parametrize("mod", sorted(_modules()))
def test_imports_go_down_the_layers_and_sit_at_the_top(mod):
    mods = _modules()
    for target, line, inside in _imports(mod, mods[mod], mods):
        assert RANK[target] < RANK[mod], f"{mod} (line {line}) imports {target}, which is not below it in LAYERS"
        assert not inside, f"{mod} (line {line}) imports {target} inside a function: import it at the top"
