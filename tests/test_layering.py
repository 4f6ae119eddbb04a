"""The package's dependency direction (DESIGN.md): ops <- layers <- models <- applications <- the rest, with the
generic checkpoint readers and the weights library below models; no model module imports another architecture's
module (shared pieces live in layers/ or a private `models/_*.py`). Imports inside functions count: a lazy import
is still a circle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_hyper"

# Lower rank = lower in the stack; a module may import only modules of rank <= its own.
RANKS = (
    ("keras_hyper.ops", 0),
    ("keras_hyper.convert.checkpoint", 0),
    ("keras_hyper.convert.mapping", 0),
    ("keras_hyper.layers", 1),
    ("keras_hyper.regularizers", 1),
    ("keras_hyper.weights", 1),
    ("keras_hyper.models", 2),
    ("keras_hyper.applications", 3),
)


def _rank(module):
    for prefix, rank in RANKS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return 4


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _imports(module, path):
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from a.b import c` imports the module a.b.c where there is one, else a name of a.b
            names = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("keras_hyper"):
                yield name, node.lineno


def _is_module(name):
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").is_file() or (PACKAGE.parent / relative).is_dir()


def test_imports_flow_one_way():
    wrong = []
    for module, path in _modules():
        for name, line in _imports(module, path):
            if _is_module(name) and _rank(name) > _rank(module):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not wrong, "imports against the dependency direction:\n" + "\n".join(sorted(set(wrong)))


def test_no_model_imports_another_architecture():
    wrong = []
    for module, path in _modules():
        if not module.startswith("keras_hyper.models.") or module.rsplit(".", 1)[1].startswith("_"):
            continue
        for name, line in _imports(module, path):
            parts = name.split(".")
            other = ".".join(parts[:3])
            if len(parts) >= 3 and parts[1] == "models" and not parts[2].startswith("_") and _is_module(other):
                if other != module:
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not wrong, "model modules importing other architectures:\n" + "\n".join(sorted(set(wrong)))
