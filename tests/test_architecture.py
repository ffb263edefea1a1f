"""The package order (docs/architecture.md): every project import points down it, none inside a function
(except the few listed), so there is no cycle and a package can be read knowing only those below it."""

import ast

from tests.conftest import ROOT

# lowest first; a package may import those before it in this list, never those after
ORDER = ["core", "storage", "rewards", "agents", "critics", "envs", "rollout", "autocritique", "evaluation", "trainers",
         "pipeline"]
MAX_INNER = 10


def _imports(root=ROOT):
    """(package, file, imported package, inside a function?) for every project import under ``root``."""
    for pkg in ORDER:
        for path in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            inner = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                     for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
                for name in names:
                    target = name.split(".")[0]
                    if target in ORDER and target != pkg:
                        yield pkg, path.relative_to(root), target, id(node) in inner


def _upward(root=ROOT):
    return [f"{file}: {pkg} imports {target}" for pkg, file, target, _ in _imports(root)
            if ORDER.index(target) > ORDER.index(pkg)]


def test_every_package_is_in_the_order():
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name not in ("tests", "benchmarks")}
    assert found == set(ORDER)


def test_imports_point_down_the_order_and_form_no_cycle():
    assert _upward() == []
    edges: dict[str, set[str]] = {p: set() for p in ORDER}
    for pkg, _, target, _ in _imports():
        edges[pkg].add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    assert [p for p in ORDER if reaches(p, p, {p})] == []


def test_project_imports_inside_functions_are_few():
    inner = [f"{file}: {target}" for _, file, target, in_function in _imports() if in_function]
    assert len(inner) <= MAX_INNER, inner


def test_the_walker_finds_an_upward_import_inside_a_function(tmp_path):
    for pkg in ("core", "pipeline"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "core" / "x.py").write_text("def f():\n    from pipeline.stages import STAGES\n    return STAGES\n")
    assert _upward(tmp_path) == ["core/x.py: core imports pipeline"]
    assert [inner for *_, inner in _imports(tmp_path)] == [True]
