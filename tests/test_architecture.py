"""The layout rules of ``src/detoxrl``, checked on the source (its AST), so that the map stays true.

- No import cycle between the top-level parts of detoxrl (its subpackages and modules: ``config``,
  ``models``, ``rl``, ``rewards``, ``stages``, ``cli``, ...). Imports inside functions count too: a
  lazy import hides a cycle from Python, not from a reader.
- ``rl/`` (the PPO algorithm) builds only on ``config``, ``errors``, ``utils``, ``optim``, ``stats``
  and ``models``: never on a stage-level package (data, curriculum, rewards, constitution, evaluation,
  testbed, stages, run, cli). ``models/`` does not import ``rl``.
- ``data/`` (file formats: tables, the rankings format, labeller agreement) builds only on ``config``,
  ``errors`` and ``utils``, so every part may read its formats.
- ``feedback/`` (candidates, the labelling page, the Label Studio and Argilla converters) builds on data,
  models, rewards and evaluation, never on stages, the pipeline or ``rl``; no lower part (config, data,
  models, rl, rewards) imports it.
- ``redteam/`` (the attack methods) builds on config, errors, utils, stats, data, models, rewards,
  evaluation, curriculum and ``rl``; none of those (nor feedback or the testbed) imports it.
- No function longer than 60 lines (``def`` to its last line) and no module longer than 450 lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "detoxrl"
if not SRC.is_dir():  # an installed package: check the code that is imported
    import detoxrl

    SRC = Path(detoxrl.__file__).resolve().parent

ROOT = "detoxrl"  # the node of src/detoxrl/__init__.py itself
RL_MAY_IMPORT = {"config", "errors", "utils", "optim", "stats", "models"}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. detoxrl.models.policy
    target: str  # the imported module (or the name imported from it), e.g. detoxrl.rl.core
    where: str  # file:line

    @property
    def source_part(self) -> str:
        return part_of(self.source)

    @property
    def target_part(self) -> str:
        return part_of(self.target)


def part_of(module: str) -> str:
    """The top-level part of detoxrl a dotted name belongs to: ``detoxrl.rl.core`` → ``rl``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def imports_of(path: Path) -> list[Import]:
    """Every import of a detoxrl module in ``path``, at any depth (functions and classes included)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    rel = path.relative_to(SRC.parent)
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from detoxrl import config` imports the part `config`; `from detoxrl.rl import core` stays in rl
            targets = [f"{base}.{a.name}" for a in node.names] if base == ROOT else [base]
        else:
            continue
        out += [Import(name, t, f"{rel}:{node.lineno}") for t in targets if t.split(".")[0] == ROOT]
    return out


def all_imports() -> list[Import]:
    return [imp for path in source_files() for imp in imports_of(path)]


def part_graph(imports: list[Import]) -> dict[str, dict[str, list[Import]]]:
    """``graph[a][b]``: the imports by which part ``a`` uses part ``b`` (``a != b``)."""
    graph: dict[str, dict[str, list[Import]]] = {}
    for imp in imports:
        a, b = imp.source_part, imp.target_part
        if a != b:
            graph.setdefault(a, {}).setdefault(b, []).append(imp)
    return graph


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Cycles (``[a, b, ..., a]``): in each strongly connected group of more than one node, a shortest
    cycle through each of its nodes, every distinct one once."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    cycles: list[list[str]] = []
    for group in sorted(groups):
        for start in group:
            cycle = _cycle_through(start, set(group), edges)
            i = cycle.index(min(cycle[:-1]))
            cycle = cycle[i:-1] + cycle[:i] + [cycle[i]]  # start at the smallest name: one spelling each
            if cycle not in cycles:
                cycles.append(cycle)
    return cycles


def _cycle_through(start: str, members: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through ``start`` within ``members`` (breadth-first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w == start:
                    return paths[v] + [start]
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(members)}")  # pragma: no cover


def _edge_note(graph: dict[str, dict[str, list[Import]]], a: str, b: str) -> str:
    imps = graph[a][b]
    shown = ", ".join(f"{i.where} imports {i.target}" for i in imps[:3])
    return f"{a} -> {b}: {shown}" + (f" (+{len(imps) - 3} more)" if len(imps) > 3 else "")


# --------------------------------------------------------------------------------------------- tests
def test_the_checker_sees_the_source_and_finds_cycles():
    imports = all_imports()
    assert len(source_files()) > 30 and len(imports) > 100, SRC
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert find_cycles({"m": {"r"}, "r": {"m", "w"}, "w": {"r"}}) == [["m", "r", "m"], ["r", "w", "r"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_packages():
    graph = part_graph(all_imports())
    cycles = find_cycles({a: set(bs) for a, bs in graph.items()})
    lines = []
    for cycle in cycles:
        lines.append("  " + " -> ".join(cycle))
        lines += [f"      {_edge_note(graph, a, b)}" for a, b in zip(cycle, cycle[1:])]
    assert not cycles, "import cycles between the parts of detoxrl:\n" + "\n".join(lines)


@pytest.mark.parametrize("part, allowed", [
    ("rl", RL_MAY_IMPORT),
    ("models", {"config", "errors", "utils", "stats"}),
    ("data", {"config", "errors", "utils"}),
    # human feedback builds on the data, models and judges, and reuses the eval's generation and judging;
    # no stage, the pipeline or the PPO algorithm (the CLI calls it; train-rm reads what it writes)
    ("feedback", {"config", "errors", "utils", "stats", "data", "models", "rewards", "evaluation"}),
    # red teaming attacks a policy with the judges and feeds training: above rewards and evaluation,
    # below the stages
    ("redteam", {"config", "errors", "utils", "stats", "data", "models", "rewards", "evaluation", "curriculum",
                 "rl"}),
])
def test_lower_layers_do_not_import_upper_ones(part, allowed):
    bad = [imp for imp in all_imports() if imp.source_part == part and imp.target_part not in allowed | {part}]
    listing = "\n".join(f"  {i.where}: {i.source} imports {i.target}" for i in bad)
    assert not bad, f"{part}/ may import only detoxrl.{{{', '.join(sorted(allowed))}}}; it imports:\n{listing}"


@pytest.mark.parametrize("part", ["config", "data", "models", "rl", "rewards"])
def test_feedback_sits_above_the_rewards(part):
    bad = [imp for imp in all_imports() if imp.source_part == part and imp.target_part == "feedback"]
    listing = "\n".join(f"  {i.where}: {i.source} imports {i.target}" for i in bad)
    assert not bad, f"{part}/ may not import detoxrl.feedback (it builds on the judges):\n{listing}"


@pytest.mark.parametrize("part", ["config", "data", "models", "rl", "rewards", "evaluation", "curriculum",
                                  "feedback", "testbed"])
def test_redteam_sits_above_the_judges_and_the_evaluation(part):
    bad = [imp for imp in all_imports() if imp.source_part == part and imp.target_part == "redteam"]
    listing = "\n".join(f"  {i.where}: {i.source} imports {i.target}" for i in bad)
    assert not bad, f"{part}/ may not import detoxrl.redteam (it builds on the judges and the evaluation):\n{listing}"


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, lines)`` of every function and method in ``path``."""
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + child.name, child.lineno, child.end_lineno - child.lineno + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), "")
    return out


def test_no_function_over_60_lines():
    long = sorted(((n, f"{p.relative_to(SRC.parent)}:{line} {name}")
                   for p in source_files() for name, line, n in _functions(p) if n > MAX_FUNCTION_LINES),
                  reverse=True)
    listing = "\n".join(f"  {where} ({n} lines)" for n, where in long)
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n{listing}"


def test_no_module_over_450_lines():
    sizes = [(len(p.read_text(encoding="utf-8").splitlines()), p.relative_to(SRC.parent)) for p in source_files()]
    long = sorted(((n, str(p)) for n, p in sizes if n > MAX_MODULE_LINES), reverse=True)
    listing = "\n".join(f"  {p} ({n} lines)" for n, p in long)
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n{listing}"


def test_readme_stays_short():
    """The README is the first page a user reads; details go to docs/ and benchmarks/README.md."""
    readme = SRC.parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not beside the source (installed package)")
    n = len(readme.read_text(encoding="utf-8").splitlines())
    assert n <= 230, f"README.md has {n} lines (at most 230)"
