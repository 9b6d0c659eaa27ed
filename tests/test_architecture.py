"""Import rules that keep the SDK light and its modules layered (docs/dev/ARCHITECTURE.md).

1. The SDK's HTTP path (every ``podstack.client`` module but ``embedded.py``, which runs the
   server in-process on purpose) imports nothing from ``podstack.server``: a training script
   talking to a remote server must not pay for (or depend on) the server's stack. Rules both
   sides need live in shared pure modules (``podstack.errors``, ``podstack.schemas``).
2. No import circle inside ``podstack.client``: shared helpers live in ``client/base.py``, and
   mixins type their collaborators with protocols rather than importing the composed client.
3. A capability's ``repository.py`` is imported by that capability only: others reach its
   data through its service, where the rules are. ``web/`` (the UI) calls services only and
   imports no repository at all.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import podstack.client
import podstack.server

CLIENT_DIR = Path(podstack.client.__file__).parent
PACKAGE = "podstack.client"
# The one SDK module allowed to import the server: it runs the app in-process.
EMBEDDED = f"{PACKAGE}.embedded"


def _client_modules() -> dict[str, Path]:
    return {
        f"{PACKAGE}.{p.stem}" if p.stem != "__init__" else PACKAGE: p
        for p in sorted(CLIENT_DIR.glob("*.py"))
    }


def _imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """Every module an import statement anywhere in ``tree`` names (module level, inside
    functions and under ``if TYPE_CHECKING:`` alike), with the statement."""
    out: list[tuple[str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, node))
            # ``from podstack.client import base`` imports the submodule ``base``.
            out.extend((f"{node.module}.{alias.name}", node) for alias in node.names)
    return out


def _module_level(tree: ast.Module) -> set[ast.AST]:
    """Import statements executed when the module is imported: at top level, including
    inside top-level ``try``/``if`` blocks, excluding ``if TYPE_CHECKING:`` bodies."""
    found: set[ast.AST] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                found.add(stmt)
            elif isinstance(stmt, ast.If):
                if not (isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING"):
                    visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body)
                for handler in stmt.handlers:
                    visit(handler.body)
                visit(stmt.orelse)
                visit(stmt.finalbody)

    visit(tree.body)
    return found


def test_sdk_http_path_does_not_import_the_server() -> None:
    modules = sorted(m for m in _client_modules() if m != EMBEDDED)
    script = f"""
import importlib, json, sys
import podstack
from podstack import MLOpsClient
for name in {modules!r}:
    importlib.import_module(name)
# Building an HTTP client (no request is sent) must not pull the server in either.
MLOpsClient(api_token="t", url="http://127.0.0.1:9").close()
print(json.dumps(sorted(m for m in sys.modules if m.startswith("podstack.server"))))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the SDK's HTTP path imported server modules: {loaded}"


def test_sdk_modules_import_the_server_only_lazily() -> None:
    """Static twin of the test above, naming the line to fix: outside embedded.py, a client
    module may reach ``podstack.server`` only inside a function (embedded mode's set-up)."""
    offenders: list[str] = []
    for name, path in _client_modules().items():
        if name == EMBEDDED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        top = _module_level(tree)
        lines = {
            node.lineno
            for target, node in _imports(tree)
            if node in top and target.split(".")[:2] == ["podstack", "server"]
        }
        offenders.extend(f"{path.name}:{line} imports podstack.server" for line in sorted(lines))
    assert not offenders, "\n".join(offenders)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_circle_within_the_sdk() -> None:
    modules = _client_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        # Every import counts, lazy and type-only ones too: a circle hidden behind a
        # function-level or TYPE_CHECKING import is still a circle in the design.
        graph[name] = {t for t, _ in _imports(tree) if t in modules and t not in (name, PACKAGE)}
    circle = _cycle(graph)
    assert circle is None, "import circle in podstack.client: " + " -> ".join(circle or [])


def test_cycle_finder_finds_a_circle() -> None:
    # The checker itself: a circle must be reported, a tree must not.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# ---------------------------------------------------------------- server boundaries

SERVER_DIR = Path(podstack.server.__file__).parent
SERVER = "podstack.server"


def _server_modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(SERVER_DIR.rglob("*.py")):
        rel = p.relative_to(SERVER_DIR).with_suffix("")
        if "migrations" in rel.parts:
            continue
        parts = [SERVER, *rel.parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def _absolute_imports(name: str, path: Path, tree: ast.AST) -> set[str]:
    """Every module ``tree`` imports, relative imports resolved against module ``name``."""
    found = {target for target, _ in _imports(tree)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _capability(module: str) -> str | None:
    """``podstack.server.<capability>...`` -> capability (None for top-level server modules)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 3 else None


def _repository_imports() -> set[tuple[str, str]]:
    """(module, repository) for every server module importing a repository that is not its
    own capability's; every ``web`` module importing any repository."""
    modules = _server_modules()
    repositories = {m for m in modules if m.endswith(".repository")}
    out: set[tuple[str, str]] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        mine = _capability(name)
        for target in _absolute_imports(name, path, tree) & repositories:
            if _capability(target) != mine or mine == "web":
                out.add((name, target))
    return out


def test_no_capability_imports_another_capabilitys_repository() -> None:
    new = sorted(_repository_imports())
    assert not new, "go through the owning capability's service instead:\n" + "\n".join(
        f"{module} imports {repo}" for module, repo in new
    )


def test_web_imports_no_repository() -> None:
    found = {(m, r) for m, r in _repository_imports() if m.startswith(f"{SERVER}.web.")}
    new = sorted(found)
    assert not new, "web/ calls services only:\n" + "\n".join(
        f"{module} imports {repo}" for module, repo in new
    )


def test_repository_import_finder_sees_every_form(tmp_path: Path) -> None:
    # The checker itself: absolute, aliased and relative imports of a repository all count.
    src = (
        "from podstack.server.registry import repository as r\n"
        "import podstack.server.tracking.repository\n"
        "def f():\n"
        "    from ..artifacts import repository\n"
        "    from .repository import x\n"
    )
    path = tmp_path / "mod.py"
    found = _absolute_imports(f"{SERVER}.approvals.mod", path, ast.parse(src))
    assert {
        f"{SERVER}.registry.repository",
        f"{SERVER}.tracking.repository",
        f"{SERVER}.artifacts.repository",
        f"{SERVER}.approvals.repository",
    } <= found
    assert _capability(f"{SERVER}.web.registry") == "web"
    assert _capability(f"{SERVER}.app") is None
