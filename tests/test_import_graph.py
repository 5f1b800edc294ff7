"""The packages import top-down: every import in their sources (module level and
inside functions) goes to the package's own floor or one below (``FLOORS``), and
the graph of imports has no cycle.  Read with ``ast``: nothing is imported, so the
test also guards modules that only some commands load."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# bottom first; a package may import its own modules and the packages of lower floors,
# never a package beside it on its floor or above it
FLOORS = (
    ("cten_common",),                       # framework-free numpy
    ("cten_jt", "cten_torch_ref"),          # the port and its reference twin, name for name
    ("weights_convert", "cten_deploy"),     # checkpoints between the frameworks; ONNX and its runtimes
    ("cten_compare", "benchmarks"),         # what runs both frameworks side by side
)
PACKAGES = tuple(package for floor in FLOORS for package in floor)
# modules that must not import these (a prefix matches the module and those below it)
FORBIDDEN = {
    "cten_jt.models": ("cten_jt.checkpoint",),                 # the model's state, not file I/O
    "cten_torch_ref.models": ("cten_torch_ref.checkpoint",),
}


def _modules():
    """``{dotted name: (path, is_package)}`` of every source file of PACKAGES."""
    found = {}
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            if "__init__.py" not in files:
                dirs[:] = []
                continue
            base = os.path.relpath(folder, ROOT).replace(os.sep, ".")
            for name in files:
                if name.endswith(".py"):
                    is_package = name == "__init__.py"
                    dotted = base if is_package else f"{base}.{name[:-3]}"
                    found[dotted] = (os.path.join(folder, name), is_package)
    return found


def _resolve(module, is_package, node):
    """The absolute module an ``ImportFrom`` starts from."""
    if not node.level:
        return node.module
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name, modules):
    """``name`` or its nearest enclosing module that is one of ours; None outside them."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports():
    """``{module: [(imported module of ours, line), ...]}`` for every source file of PACKAGES."""
    modules = _modules()
    found = {}
    for module, (path, is_package) in modules.items():
        targets = []
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                start = _resolve(module, is_package, node)
                names = [f"{start}.{alias.name}" if f"{start}.{alias.name}" in modules else start
                         for alias in node.names]
            else:
                continue
            targets += [(t, node.lineno) for t in (_known(n, modules) for n in names) if t and t != module]
        found[module] = targets
    return found


def import_graph():
    return {module: {t for t, _ in targets} for module, targets in imports().items()}


def _floor(package):
    return next(i for i, floor in enumerate(FLOORS) if package in floor)


def layer_violations():
    """``["path:line: a imports b (why)", ...]`` for every import that breaks FLOORS or FORBIDDEN."""
    modules = _modules()
    out = []
    for module, targets in sorted(imports().items()):
        package = module.split(".")[0]
        path = os.path.relpath(modules[module][0], ROOT)
        for target, line in targets:
            other = target.split(".")[0]
            if other != package and _floor(other) >= _floor(package):
                where = "beside" if _floor(other) == _floor(package) else "above"
                out.append(f"{path}:{line}: {module} imports {target} ({other} is {where} {package}; "
                           f"{package} may import {', '.join(p for f in FLOORS[:_floor(package)] for p in f) or 'none of ours'})")
            for prefix, banned in FORBIDDEN.items():
                if (module == prefix or module.startswith(prefix + ".")) and any(
                        target == b or target.startswith(b + ".") for b in banned):
                    out.append(f"{path}:{line}: {module} imports {target} (forbidden below {prefix})")
    return out


def find_cycle(graph):
    """One cycle as ``[a, b, ..., a]``, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_the_packages_and_their_imports():
    graph = import_graph()
    assert "cten_common.data.annotations" in graph["cten_common.data.datasets"]
    assert "cten_jt.kernels.batchnorm" in graph["cten_jt.models.norm"]
    assert "cten_jt.kernels" in graph["cten_jt.kernels.conv"]            # from . import kernel_source
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_import_stays_on_its_floor_or_goes_down():
    violations = layer_violations()
    assert not violations, "imports that break the floors:\n" + "\n".join(violations)


def test_a_broken_floor_is_named_with_file_and_line(monkeypatch):
    """Were the parity report's package beside the twins, its imports of cten_torch_ref (beside)
    and of weights_convert (above) would be named with their file and line."""
    monkeypatch.setitem(globals(), "FLOORS", (("cten_common",), ("cten_jt", "cten_torch_ref", "cten_compare"),
                                              ("weights_convert", "cten_deploy"), ("benchmarks",)))
    violations = [v for v in layer_violations() if v.startswith("cten_compare/parity_report.py:")]
    assert any(" imports cten_torch_ref" in v and "beside" in v for v in violations), violations
    assert any(" imports weights_convert" in v and "above" in v for v in violations), violations
    line = int(violations[0].split(":")[1])
    assert "import" in open(os.path.join(ROOT, "cten_compare", "parity_report.py")).read().splitlines()[line - 1]


def test_no_private_name_crosses_modules():
    """``from x import _name`` only within a file's own module: what two files share is public."""
    modules = _modules()
    offenders = []
    for module, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.ImportFrom):
                start = _resolve(module, is_package, node)
                if start.split(".")[0] not in PACKAGES:
                    continue
                offenders += [f"{os.path.relpath(path, ROOT)}:{node.lineno}: {start}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")
                              and f"{start}.{a.name}" not in modules]
    assert not offenders, offenders


def test_benchmarks_share_helpers_through_common_only():
    """A benchmark takes nothing private from another benchmark (shared helpers: benchmarks/common.py)."""
    modules = _modules()
    offenders = []
    for module, (path, is_package) in modules.items():
        if not module.startswith("benchmarks."):
            continue
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.ImportFrom):
                start = _resolve(module, is_package, node)
                if start.startswith("benchmarks.") and start != "benchmarks.common":
                    offenders += [f"{module}: {start}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders, offenders
