"""The project's import graph, read from the source (ast), not by importing anything: every file imports
the project's modules at its top, where a reader sees what it depends on, and no module needs itself
through others (engine and checkpoint build on model, data.tokenizer on data.mathgen on common, ...).
Imports of other packages inside functions stay allowed: optional ones (transformers) must be."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = {".git", ".venv", "runs", "__pycache__"}


def python_files(root):
    """{module name: path} of every .py file under root ("data/mathgen.py" -> "data.mathgen")."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.startswith("."))
        for f in sorted(files):
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), root)[:-3]
                name = rel.replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = os.path.join(folder, f)
    return out


def project_imports(path, name, modules):
    """[(imported project module, line, whether at module level)] of one file. `from data import mathgen`
    counts as data.mathgen; a relative import is resolved against the file's package."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = name.rsplit(".", 1)[0] if "." in name else ""
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".") if package else []
                    parts = parts[:len(parts) - (child.level - 1)] if child.level > 1 else parts
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in child.names]
            else:
                visit(child, inner)
                continue
            hits = []
            for t in targets:
                # the longest project module the name starts with ("data.mathgen" of "data.mathgen.x")
                parts = t.split(".")
                hits.append(next((".".join(parts[:i]) for i in range(len(parts), 0, -1)
                                  if ".".join(parts[:i]) in modules), None))
            found.extend((hit, child.lineno, top) for hit in dict.fromkeys(hits) if hit and hit != name)
    visit(tree, True)
    return found


def graph(root):
    modules = python_files(root)
    return modules, {name: project_imports(path, name, modules) for name, path in modules.items()}


def find_cycle(edges):
    """One cycle of the graph {module: {module it imports}} as [a, b, ..., a], or None."""
    state, stack = {}, []

    def dfs(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := dfs(n)):
                return cycle
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state and (cycle := dfs(m)):
            return cycle
    return None


def test_project_imports_are_at_the_top_of_each_file():
    modules, imports = graph(ROOT)
    nested = [f"{os.path.relpath(modules[name], ROOT)}:{line} imports {target} inside a function or class"
              for name, found in sorted(imports.items()) for target, line, top in found if not top]
    assert not nested, "\n".join(nested)


def test_no_import_cycles():
    _, imports = graph(ROOT)
    cycle = find_cycle({name: {target for target, _, _ in found} for name, found in imports.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_see_what_they_look_for(tmp_path):
    """The two checks on a made-up project: a cycle hidden in a function (a -> b at the top, b -> a inside
    one), a relative import and a `from package import module` are all found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text('"""a"""\nimport os\n\nfrom pkg import b\n')
    (tmp_path / "pkg" / "b.py").write_text("from . import c\n\n\ndef f():\n    import a\n    import json\n")
    (tmp_path / "pkg" / "c.py").write_text("import torch\n")
    modules, imports = graph(str(tmp_path))
    assert sorted(modules) == ["a", "pkg", "pkg.b", "pkg.c"]
    assert imports["a"] == [("pkg.b", 4, True)]
    assert imports["pkg.b"] == [("pkg.c", 1, True), ("a", 5, False)]
    assert imports["pkg.c"] == []
    edges = {name: {t for t, _, _ in found} for name, found in imports.items()}
    assert find_cycle(edges) == ["a", "pkg.b", "a"]
    del edges["pkg.b"]
    assert find_cycle(edges) is None
