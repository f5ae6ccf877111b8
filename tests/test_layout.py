"""The package's structure, as docs/architecture.md describes it: small modules and functions, imports that only
point down the layers, no cycles. A change that breaks the layout fails here, not in a later review."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "meta_neighborhoods"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
LONG_FUNCTIONS_ALLOWED = {("estimators.py", "__init__")}  # scikit-learn: one line per parameter
# Bottom to top; a module may import from its own layer and the ones below (docs/architecture.md).
LAYERS = [
    ["", "validation", "run_files", "signals", "io", "inner_loss", "callbacks", "launch", "distributed", "plots",
     "estimator_rows", "significance", "provenance", "estimator_docs", "estimator_method_docs"],
    ["config", "presets", "estimator_settings", "incremental"],
    ["similarity", "dictionary", "heads", "film", "backbones"],
    ["adaptation", "model", "factories", "maxl"],
    ["datasets"],
    ["checkpoint", "training_state", "training", "persistence", "image_methods", "runs", "run_record", "export"],
    ["estimators", "experiments"],
    ["commands", "cli", "__main__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
MODULES = sorted(ROOT.rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Package-relative names of the modules ``path`` imports (at the top or inside functions)."""
    package = _name(path).split(".") if path.name == "__init__.py" else _name(path).split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] + ([node.module] if node.module else [])
            for alias in node.names:
                candidate = [*base, alias.name]
                is_module = (ROOT.joinpath(*candidate).with_suffix(".py").exists()
                             or ROOT.joinpath(*candidate).is_dir())
                found.add(".".join(candidate if is_module else base))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("meta_neighborhoods"):
            found.add(node.module.removeprefix("meta_neighborhoods").lstrip("."))
    return found - {_name(path)}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    if top not in LAYER:
        raise AssertionError(f"{module} is in no layer of tests/test_layout.py; add it (and to docs/architecture.md)")
    return LAYER[top]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_are_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (path.name, node.name) not in \
                LONG_FUNCTIONS_ALLOWED:
            assert node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES, f"{node.name} is too long"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path):
    module = _name(path)
    upward = [other for other in _imports(path) if _layer(other) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports from a higher layer: {upward}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> the modules it imports), or None."""
    done, active = set(), []

    def visit(module):
        if module in active:
            return active[active.index(module):] + [module]
        if module in done:
            return None
        active.append(module)
        found = next((c for other in sorted(graph.get(module, ())) if (c := visit(other))), None)
        active.pop()
        done.add(module)
        return found

    return next((c for module in sorted(graph) if (c := visit(module))), None)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = _cycle({_name(path): _imports(path) for path in MODULES})
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_spiral_toy_imports_none_of_the_image_side():
    """spiral writes run.json as classify does; that record's module must not bring classify's run folders (and
    with them the backbones, iFiLM and MAXL) into a process that trains a two-dimensional toy."""
    graph = {_name(path): _imports(path) for path in MODULES}
    reached, todo = set(), ["experiments.spiral"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph.get(module, ()))
    assert "run_record" in reached and not reached & {"runs", "image_methods", "maxl", "film", "backbones"}


# yaml: safe_load (or a safe loader's own) builds objects, and only plain ones; parse only lists events (to refuse
# aliases), builds nothing
UNSAFE = re.compile(r"pickle\.loads?\(|torch\.load\(|yaml\.(?!safe_load\b|YAMLError\b|parse\(|SafeLoader\b"
                    r"|CSafeLoader\b|AliasEvent\b|MappingNode\b|ScalarNode\b)"
                    r"|(?<![.\w])eval\("
                    r"|(?<![.\w])exec\(|np\.load\((?![^)]*allow_pickle=False)")
UNPICKLERS = {"cifar_python.py"}  # CIFAR's official pickles, through an unpickler that admits numpy's arrays alone


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_read_from_disk_can_run_code(path):
    """No unpickling, no torch.load, YAML through yaml.safe_load only (--config files), no eval/exec, np.load only
    with allow_pickle=False (CIFAR's pickles go through datasets/cifar_python.py's unpickler, which admits numpy's
    array reconstruction only)."""
    text = path.read_text()
    assert not UNSAFE.findall(text) and (path.name in UNPICKLERS or "Unpickler" not in text)


def test_the_unsafe_pattern_admits_only_safe_yaml():
    assert UNSAFE.findall("yaml.load(text)") and UNSAFE.findall("yaml.unsafe_load(text)")
    assert not UNSAFE.findall("yaml.safe_load(data)") and not UNSAFE.findall("except yaml.YAMLError:")
    assert not UNSAFE.findall('getattr(yaml, "CSafeLoader", yaml.SafeLoader)') and UNSAFE.findall("yaml.Loader(data)")
