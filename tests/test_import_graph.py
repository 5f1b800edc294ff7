"""The packages import top-down: the graph of every import in their sources
(module level and inside functions) has no cycle.  Read with ``ast``: nothing
is imported, so the test also guards modules that only some commands load."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("cten_common", "cten_jt", "cten_torch_ref", "weights_convert", "benchmarks")


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


def import_graph():
    modules = _modules()
    graph = {}
    for module, (path, is_package) in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                start = _resolve(module, is_package, node)
                names = [f"{start}.{alias.name}" if f"{start}.{alias.name}" in modules else start
                         for alias in node.names]
            else:
                continue
            targets.update(t for t in (_known(n, modules) for n in names) if t and t != module)
        graph[module] = targets
    return graph


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
