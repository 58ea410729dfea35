"""The modules of hakd/ import each other in no circle (imports inside functions included)."""

import ast
from pathlib import Path

import hakd

ROOT = Path(hakd.__file__).parent


def import_graph():
    """module -> the hakd modules it imports (a name imported from a package counts as its
    submodule when it is one, else as the package)."""
    files = {".".join(f.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in ROOT.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hakd") and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in files]
                deps.update(subs if len(subs) == len(node.names) else [node.module])
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("hakd"))
        graph[name] = deps & set(files) - {name}
    return graph


def circles(graph):
    """Every import circle found by a depth-first walk, as 'a -> b -> a'."""
    found, done, stack = [], set(), []

    def visit(m):
        if m in stack:
            found.append(" -> ".join(stack[stack.index(m):] + [m]))
            return
        if m in done:
            return
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    return found


def test_the_import_graph_of_hakd_has_no_circle():
    graph = import_graph()
    assert {"hakd.cli.app", "hakd.cli.inputs", "hakd.cost.layout"} <= set(graph)  # the walk sees the packages
    assert circles(graph) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
