"""The repository keeps the design's top-level folders; installed, they live under the one
`turnlog` namespace (`turnlog/` links each of them), so code imports them only as
`turnlog.<folder>`: a bare `import schemas` would load a second copy of the module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
INSTALLED = {"schemas", "agent_gateway", "streams", "projections", "api", "infra"}
SKIP = {".venv", ".git", "node_modules", "build", ".turnlog", "turnlog"}


def test_turnlog_links_each_installed_folder_and_holds_the_public_module() -> None:
    links = {p.name: p for p in (REPO / "turnlog").iterdir() if p.is_symlink()}

    assert set(links) == INSTALLED
    for name, link in links.items():
        assert link.resolve() == REPO / name
        assert (REPO / name / "__init__.py").is_file()
    assert (REPO / "turnlog" / "__init__.py").is_file()


def test_no_module_imports_an_installed_folder_by_its_bare_name() -> None:
    offenders = []
    for path in REPO.rglob("*.py"):
        if SKIP & set(path.relative_to(REPO).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names
                          if n.split(".")[0] in INSTALLED]  # fmt: skip
    assert offenders == []
