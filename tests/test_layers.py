"""Dependencies point down (issue 19; ../shared/design/configuration-layers.md): ``core/`` is the
ground floor, the Dataverse and Enreach clients stand on it, the jobs stand on those, and only the
composition root (``bridge/``) and the trigger glue know every job's settings section.

The walk reads every ``import`` statement (top-level and inside functions, TYPE_CHECKING included)
with ``ast``, so a lazy import inside a function body is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOBS = {"routing", "call_sync", "presence_sync", "callbacks", "health", "ops", "bridge", "function_app"}
CLIENTS = {"dataverse", "enreach"}
# The glue of each job: where the composition root's objects are handed in.
GLUE = {"runtime.py", "blueprint.py", "__main__.py"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, as dotted names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def files_under(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself can fail: a function-level import and a relative import are both found."""
    sample = ROOT / "core" / "config.py"
    assert "core.ids.is_guid" in imports_of(sample)
    assert any(top(name) == "phonenumbers" for name in imports_of(ROOT / "matching" / "config.py"))


@pytest.mark.parametrize("path", files_under("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_job_and_no_client(path):
    upward = {name for name in imports_of(path) if top(name) in JOBS | CLIENTS | {"matching"}}
    assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}: core/ must stand on nothing above it"


@pytest.mark.parametrize(
    "path", files_under("dataverse") + files_under("enreach"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_clients_take_no_settings_object_and_import_no_job(path):
    names = imports_of(path)
    assert not {n for n in names if n.startswith(("core.settings", "bridge"))}, "clients take keyword configuration"
    assert not {n for n in names if top(n) in JOBS | {"matching"}}, "a client imports no job"
    other = CLIENTS - {path.relative_to(ROOT).parts[0]}
    assert not {n for n in names if top(n) in other}, "the two clients do not import each other"


@pytest.mark.parametrize("path", files_under("matching"), ids=lambda p: str(p.relative_to(ROOT)))
def test_matching_is_shared_and_imports_no_job(path):
    assert not {n for n in imports_of(path) if top(n) in JOBS}


@pytest.mark.parametrize(
    "path",
    [
        p
        for package in ("routing", "call_sync", "presence_sync", "callbacks")
        for p in files_under(package)
        if p.name not in GLUE
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_job_logic_imports_no_composition_root(path):
    """Business logic imports without the settings aggregate: only a job's glue (runtime, blueprint,
    command line) takes objects from the composition root."""
    if path.name in GLUE:
        pytest.skip("glue")
    assert not {n for n in imports_of(path) if top(n) == "bridge"}


def test_core_settings_is_gone():
    assert not (ROOT / "core" / "settings.py").exists()
