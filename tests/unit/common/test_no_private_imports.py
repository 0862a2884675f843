"""The product uses only the public API of the libraries it builds on.

A private module (``faststream._internal...``), a private name imported from a library, or a
library object's private attribute can change or vanish in any patch release of that library;
the code must not depend on one. This test reads (``ast``) every module under ``libs/*/src``,
``services/*/src`` and ``src/`` and names the file and line of each such use.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SOURCE_GLOBS = ("libs/*/src/**/*.py", "services/*/src/**/*.py", "src/**/*.py")

# The third-party libraries whose private parts are off limits.
LIBRARIES = frozenset(
    {
        "faststream",
        "nats",
        "httpcore",
        "httpx",
        "httpx2",  # httpx's maintained fork (the provider client), same rule
        "storage3",
        "supabase",
        "starlette",
        "fastapi",
        "sqlalchemy",
        "pydantic",
    }
)

# Private attributes of those libraries' objects. Whose object ``x._pool`` is cannot be told
# from the source alone, so these names -- the ones this code base has reached for, or is likely
# to: the JetStream message's ack flag, the NATS client behind a message, httpcore's and httpx's
# connection-pool internals, FastStream's ``_internal`` package -- are reported wherever they
# are read, unless a class of ours sets the attribute on itself (``self._client = ...``).
# Extend the list when a new private attribute of a library shows up in a review.
PRIVATE_ATTRIBUTES = frozenset(
    {
        "_ackd",
        "_client",
        "_assign_requests_to_connections",
        "_pool",
        "_connections",
        "_requests",
        "_internal",
    }
)

_REFLECTION = frozenset({"getattr", "setattr", "hasattr", "delattr"})
_IMPORTERS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _is_private(name: str) -> bool:
    """``_x`` is private; ``__x__`` (``__version__``, ``__init__``) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module_path(dotted: str) -> bool:
    """``faststream._internal.context`` (a listed library, a private segment below it)."""
    top, *rest = dotted.split(".")
    return top in LIBRARIES and any(_is_private(part) for part in rest)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    if isinstance(node, ast.Call):
        return _root_name(node.func)
    return node.id if isinstance(node, ast.Name) else None


@dataclass
class _ClassInfo:
    from_library: bool  # a base class comes from one of the listed libraries
    own: set[str]  # attributes and methods the class defines itself


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []
        # Local name -> what it stands for ("httpcore", "faststream.nats.NatsMessage").
        self.aliases: dict[str, str] = {}
        self.classes: list[_ClassInfo] = []

    def report(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    def _library_object(self, name: str | None) -> bool:
        target = self.aliases.get(name or "")
        return target is not None and target.split(".")[0] in LIBRARIES

    # --- imports ------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _private_module_path(alias.name):
                self.report(node, f"imports private module {alias.name}")
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else local

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return  # a relative import: our own package
        if _private_module_path(node.module):
            self.report(node, f"imports from private module {node.module}")
        in_library = node.module.split(".")[0] in LIBRARIES
        for alias in node.names:
            if in_library and _is_private(alias.name):
                self.report(node, f"imports private name {alias.name} from {node.module}")
            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    # --- classes --------------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        own: set[str] = set()
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                own.add(item.name)
            elif isinstance(item, ast.Assign | ast.AnnAssign):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                own.update(t.id for t in targets if isinstance(t, ast.Name))
        for sub in ast.walk(node):
            targets: list[ast.expr] = []
            if isinstance(sub, ast.Assign):
                targets = list(sub.targets)
            elif isinstance(sub, ast.AnnAssign | ast.AugAssign):
                targets = [sub.target]
            own.update(
                t.attr
                for t in targets
                if isinstance(t, ast.Attribute)
                and isinstance(t.value, ast.Name)
                and t.value.id in ("self", "cls")
            )
        from_library = any(self._library_object(_root_name(base)) for base in node.bases)
        for base in node.bases:
            self.visit(base)
        self.classes.append(_ClassInfo(from_library, own))
        try:
            for item in node.body:
                if (
                    from_library
                    and isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and item.name in PRIVATE_ATTRIBUTES
                ):
                    self.report(item, f"overrides private method {item.name} of a library class")
                self.visit(item)
        finally:
            self.classes.pop()

    # --- attribute access -----------------------------------------------------------------
    def _our_own(self, node: ast.Attribute) -> bool:
        """``self._x`` in a class of ours (no library base) that sets ``_x`` itself."""
        if not self.classes or not isinstance(node.value, ast.Name):
            return False
        info = self.classes[-1]
        return node.value.id in ("self", "cls") and not info.from_library and node.attr in info.own

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in PRIVATE_ATTRIBUTES and not self._our_own(node):
            self.report(node, f"uses private attribute {node.attr}")
        elif _is_private(node.attr) and self._library_object(_root_name(node.value)):
            self.report(node, f"uses private attribute {node.attr} of a library module or class")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
            node.func, "id", None
        )
        first = node.args[1] if name in _REFLECTION and len(node.args) > 1 else (
            node.args[0] if name in _IMPORTERS and node.args else None
        )
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if name in _REFLECTION and first.value in PRIVATE_ATTRIBUTES:
                self.report(node, f"uses private attribute {first.value} via {name}()")
            if name in _IMPORTERS and _private_module_path(first.value):
                self.report(node, f"imports private module {first.value} via {name}()")
        self.generic_visit(node)


def find_private_uses(source: str, path: str = "<string>") -> list[Finding]:
    checker = _Checker(path)
    checker.visit(ast.parse(source, filename=path))
    return sorted(checker.findings, key=lambda finding: finding.line)


def product_modules() -> list[Path]:
    return sorted({path for pattern in SOURCE_GLOBS for path in REPO.glob(pattern)})


def test_the_product_uses_no_private_api_of_its_libraries() -> None:
    modules = product_modules()
    assert len(modules) > 50, "the source folders moved: update SOURCE_GLOBS"
    findings = [
        finding
        for module in modules
        for finding in find_private_uses(
            module.read_text(encoding="utf-8"), str(module.relative_to(REPO))
        )
    ]
    if findings:
        pytest.fail(
            f"{len(findings)} use(s) of libraries' private API:\n"
            + "\n".join(str(finding) for finding in findings),
            pytrace=False,
        )


# --- the checker itself -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from faststream._internal.context import Context", "private module"),
        ("import httpcore._async.connection_pool as pool", "private module"),
        ("import pydantic._internal", "private module"),
        ("from httpx import _types", "private name _types"),
        ("from faststream import _internal", "private name _internal"),
        ("def f(msg):\n    return msg._ackd", "private attribute _ackd"),
        ("def f(msg):\n    return getattr(msg.raw_message, '_client', None)", "via getattr"),
        ("def f(t):\n    t._pool = None", "private attribute _pool"),
        ("import importlib\nimportlib.import_module('nats.js._x')", "via import_module"),
        ("import httpx\nx = httpx._config.DEFAULT_LIMITS", "of a library module"),
        ("from sqlalchemy import Engine\nEngine._private_hook()", "of a library module"),
        (
            "import httpcore\n"
            "class P(httpcore.AsyncConnectionPool):\n"
            "    def _assign_requests_to_connections(self):\n"
            "        return []",
            "overrides private method",
        ),
        (
            "import httpcore\n"
            "class P(httpcore.AsyncConnectionPool):\n"
            "    def reset(self):\n"
            "        self._connections = []",
            "private attribute _connections",
        ),
    ],
)
def test_the_checker_reports_private_uses(source: str, expected: str) -> None:
    findings = find_private_uses(source)
    assert findings, f"not reported: {source!r}"
    assert any(expected in finding.what for finding in findings), findings


@pytest.mark.parametrize(
    "source",
    [
        "from faststream.nats import NatsBroker as _Broker",
        "from pydantic import __version__",
        "from ._internal import helper",
        "import reelvault_common._private",
        "from collections import _tuplegetter",
        (
            "class Provider:\n"
            "    def __init__(self, client):\n"
            "        self._client = client\n"
            "    def close(self):\n"
            "        return self._client.aclose()"
        ),
        "class Gateway:\n    def _client(self):\n        return None\n    def f(self):\n"
        "        return self._client()",
        "import httpx\nclient = httpx.AsyncClient()\nclient.__class__",
    ],
)
def test_the_checker_leaves_public_and_own_names_alone(source: str) -> None:
    assert find_private_uses(source) == []


def test_findings_name_file_and_line() -> None:
    source = "import json\n\nfrom faststream._internal.context import Context\n"
    assert [str(f) for f in find_private_uses(source, "libs/x.py")] == [
        "libs/x.py:3: imports from private module faststream._internal.context"
    ]
