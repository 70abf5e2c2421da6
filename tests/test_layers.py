"""Dependencies point one way: arena <- ratings <- judging <- ops.

arena reaches the apps above it only through the hooks they register (arena/hooks.py);
imports sit at the top of their files, except a service's import of its own app's tasks
(services <-> tasks) and heavy optional libraries loaded where they are used.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = {"arena": 0, "ratings": 1, "judging": 2, "ops": 3}
HEAVY = {"torch", "torchvision", "open_clip", "transformers", "onnxruntime", "rapidocr_onnxruntime", "nudenet",
         "sklearn", "pyarrow", "matplotlib"}


def _imports():
    for app in LAYER:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        module = app + ("." + node.module if node.module else "")
                    else:
                        module = node.module or ""
                elif isinstance(node, ast.Import):
                    module = node.names[0].name
                else:
                    continue
                inner, p = False, parents.get(node)
                while p is not None:
                    if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        inner = p.name
                        break
                    p = parents.get(p)
                yield app, path.relative_to(ROOT).as_posix(), node.lineno, module, inner


def test_no_app_imports_an_app_above_it():
    upward = [
        f"{where}:{line} imports {module}"
        for app, where, line, module, _ in _imports()
        if module.split(".")[0] in LAYER and LAYER[module.split(".")[0]] > LAYER[app]
    ]
    assert upward == []


def test_imports_sit_at_the_top_of_their_files():
    hidden = []
    for app, where, line, module, inner in _imports():
        if not inner or module.split(".")[0] in HEAVY:
            continue
        top = module.split(".")[0]
        if top not in LAYER:
            continue  # standard library and third-party helpers used in one place
        if module.endswith(".tasks") and where.endswith("services.py"):
            continue  # services <-> tasks
        if where.endswith("apps.py") and inner == "ready":
            continue  # the app registry must be ready before models and hooks are imported
        hidden.append(f"{where}:{line} {module} (in {inner})")
    assert hidden == []
