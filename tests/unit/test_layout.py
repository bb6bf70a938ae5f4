"""The package's shape, as docs/architecture.md states it: no import cycle; the worker side
(``trial/``, ``training/``, ``workloads/``) imports nothing from the driver side (``run/``,
``study/``, ``tracking/``); no private name of Optuna or Ray outside ``orchestrator/_compat/``; one
exception root; one home for the shared strings; no module over 400 lines."""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"
WORKER_SIDE = ("orchestrator.trial", "orchestrator.training", "orchestrator.workloads", "orchestrator.integrations")
DRIVER_SIDE = ("orchestrator.run", "orchestrator.study", "orchestrator.tracking")
ADAPTERS = "orchestrator._compat"
FOREIGN = ("optuna", "ray")
MAX_LINES = 400


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: set[str] = field(default_factory=set)  # every import at run time, function-local ones too


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the statements inside ``if TYPE_CHECKING:`` blocks (not imported at run time)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for inner in node.body:
                skipped.update(id(n) for n in ast.walk(inner))
    return skipped


def _load_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        modules[_module_name(path)] = Module(_module_name(path), path, tree)
    for module in modules.values():
        skipped = _type_checking_blocks(module.tree)
        for node in ast.walk(module.tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                module.imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative import
                    package = module.name if module.path.name == "__init__.py" else module.name.rsplit(".", 1)[0]
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [node.module])
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    module.imports.add(target if target in modules else base)
    return modules


MODULES = _load_modules()


def _internal_edges(module: Module) -> set[str]:
    return {name for name in module.imports if name in MODULES and name != module.name}


def _in(name: str, packages: tuple[str, ...] | str) -> bool:
    packages = (packages,) if isinstance(packages, str) else packages
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_package_has_no_import_cycle():
    graph = {name: _internal_edges(module) for name, module in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_worker_side_imports_nothing_from_the_driver_side():
    offenders = []
    for name, module in MODULES.items():
        if not _in(name, WORKER_SIDE):
            continue
        seen, todo = set(), [name]
        while todo:  # everything it imports, directly or through other stepsize modules
            current = todo.pop()
            for target in _internal_edges(MODULES[current]):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        offenders += [f"{name} -> {target}" for target in sorted(seen) if _in(target, DRIVER_SIDE)]
    assert not offenders, "worker-side modules reach the driver side:\n" + "\n".join(offenders)


def _is_private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def _foreign_private_imports(module: Module) -> list[str]:
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in FOREIGN and any(_is_private(part) for part in parts[1:]):
                found.append(f"{module.name}:{node.lineno} imports {name}")
    return found


DOCUMENTED_STDLIB = {"os._exit"}  # underscored, but public and documented by Python


def _private_attribute_uses(module: Module) -> list[str]:
    """``x._name`` on anything but ``self`` and ``cls`` (another object's private name)."""
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
                continue
            if ast.unparse(node) in DOCUMENTED_STDLIB:
                continue
            found.append(f"{module.name}:{node.lineno} uses .{node.attr} of {ast.unparse(receiver)}")
    return found


def _foreign_bases(cls: type) -> list[type]:
    return [base for base in cls.__mro__[1:] if base.__module__.split(".")[0] in FOREIGN]


def _inherited_private_uses(module: Module) -> list[str]:
    """In a class built on an Optuna or Ray class: a private method that overrides one of the
    base's, a write to one of the base's private class attributes, or a read of a private
    ``self._name`` the class itself never defines (so it is the base's)."""
    found = []
    imported = importlib.import_module(module.name)
    for class_node in [n for n in ast.walk(module.tree) if isinstance(n, ast.ClassDef)]:
        cls = getattr(imported, class_node.name, None)
        if not inspect.isclass(cls) or cls.__module__ != module.name:
            continue
        bases = _foreign_bases(cls)
        if not bases:
            continue
        own = {n.name for n in class_node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        own |= {t.id for n in class_node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        for node in ast.walk(class_node):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
        for name in sorted(n for n in own if _is_private(n)):
            if any(hasattr(base, name) for base in bases):
                found.append(f"{module.name}.{cls.__name__} overrides or writes {name} of {bases[0].__qualname__}")
        for node in ast.walk(class_node):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and _is_private(node.attr) and node.attr not in own:
                found.append(f"{module.name}:{node.lineno} reads self.{node.attr}, which {cls.__name__} inherits")
    return found


def test_no_private_name_of_optuna_or_ray_outside_the_adapters():
    found = []
    for name, module in MODULES.items():
        if _in(name, ADAPTERS):
            continue
        found += _foreign_private_imports(module) + _private_attribute_uses(module) + _inherited_private_uses(module)
    assert not found, "private names of Optuna or Ray outside orchestrator/_compat/:\n" + "\n".join(found)


def test_the_checker_sees_what_it_must_refuse(tmp_path):
    """The three private-name checks flag a module that does what the rule forbids."""
    source = (
        "from optuna.samplers._tpe import sampler\n"
        "import optuna\n"
        "class Sampler(optuna.samplers.TPESampler):\n"
        "    def _sample(self, study, trial, space):\n"
        "        return self._rng\n"
        "def split(study):\n"
        "    return study._storage\n"
    )
    module = Module("orchestrator._layout_probe", tmp_path / "probe.py", ast.parse(source))
    assert _foreign_private_imports(module) and _private_attribute_uses(module)
    namespace: dict = {}
    exec(compile(source, "probe", "exec"), namespace)
    assert any(hasattr(base, "_sample") for base in _foreign_bases(namespace["Sampler"]))


def test_every_stepsize_error_derives_from_one_root():
    from orchestrator.errors import StepsizeError

    loose = []
    for name in list(MODULES) + ["search_spaces.space", "search_spaces.presets", "cluster.local.cluster"]:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                if not issubclass(value, StepsizeError):
                    loose.append(f"{name}.{value.__name__}")
    assert not loose, "errors that do not derive from StepsizeError: " + ", ".join(loose)
    errors_module = importlib.import_module("orchestrator.errors")
    homes = {value.__module__ for value in vars(errors_module).values()
             if inspect.isclass(value) and issubclass(value, StepsizeError)}
    assert homes == {"orchestrator.errors"}


def test_shared_strings_have_one_home():
    from orchestrator import keys

    distinctive = {
        value for holder in (keys.Config, keys.StudyAttr, keys.Tag, keys.Env)
        for attr, value in vars(holder).items() if attr.isupper() and isinstance(value, str) and len(value) > 1
    }
    copies = []
    for name, module in MODULES.items():
        if name == "orchestrator.keys":
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Constant) and node.value in distinctive:
                copies.append(f"{name}:{node.lineno} repeats {node.value!r}")
    assert not copies, "strings that belong in orchestrator.keys:\n" + "\n".join(copies)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name):
    lines = len(MODULES[name].path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it (one module, one job)"


def test_no_package_exports_a_name_that_is_also_one_of_its_modules():
    """``from package import name`` must mean one thing, whether or not the module is loaded."""
    clashes = []
    for name, module in MODULES.items():
        if module.path.name != "__init__.py":
            continue
        exported = set(getattr(importlib.import_module(name), "__all__", ()))
        submodules = {p.stem for p in module.path.parent.glob("*.py")} | {
            p.name for p in module.path.parent.iterdir() if (p / "__init__.py").is_file()}
        clashes += [f"{name}.{n}" for n in sorted(exported & submodules)]
    assert not clashes, "exported names that are also module names: " + ", ".join(clashes)
