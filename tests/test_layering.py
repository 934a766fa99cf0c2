"""The import rules that keep the layout readable, checked on the source itself.

A route module is one the app's router dispatches a request to. It reads the
request and shapes the answer; what two front doors share lives in service.http
(reading a request) or service.usecases (the work), never in another route module.
The app (and the console's mount) assemble route modules and are not bound by it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import BaseRoute, Mount, Route

from service.app import create_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "handlers")
ASSEMBLY = {"service.app"}


def _module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


MODULES = _module_files()


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs, at module level or inside a function; imports made
    only for the type checker form no cycle when the program runs."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def imports_of(source: str) -> set[str]:
    """The modules of service/ and handlers/ that `source` imports; `from pkg import
    mod` counts as importing pkg.mod when that is a module."""
    found: set[str] = set()
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif node.module is not None and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules)
            # `from pkg import mod` runs pkg/__init__ only as the parent of mod, which
            # this check leaves out everywhere; a name defined in pkg itself is a real
            # import of pkg.
            if len(submodules) < len(node.names):
                found.add(node.module)
    return found & MODULES.keys()


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(path.read_text()) - {name} for name, path in MODULES.items()}


def _endpoint_modules(routes: list[BaseRoute]) -> Iterator[str]:
    for route in routes:
        if isinstance(route, Route):
            yield route.endpoint.__module__
        elif isinstance(route, Mount):
            yield from _endpoint_modules(route.routes)


@pytest.fixture(scope="module")
def route_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    # The app is only built, never started: no store is opened.
    app = create_app(make_settings(tmp_path_factory.mktemp("layering")))
    return set(_endpoint_modules(app.routes)) - ASSEMBLY


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as the path that closes it, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        path.append(name)
        for target in sorted(graph.get(name, ())):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        if cycle is not None:
            return cycle
    return None


def test_the_route_modules_are_the_ones_the_layout_names(route_modules: set[str]) -> None:
    # Guards the check below against passing because it found no routes at all.
    assert route_modules >= {
        "service.api",
        "service.inbound_api",
        "service.events_api",
        "service.callbacks",
        "service.web.pages",
        "service.web.send",
        "service.web.gateways",
        "service.web.signin",
    }


def test_no_route_module_imports_another(route_modules: set[str]) -> None:
    graph = import_graph()
    crossing = {
        name: sorted(graph[name] & route_modules)
        for name in sorted(route_modules)
        if graph[name] & route_modules
    }
    assert crossing == {}


def test_the_import_graph_has_no_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_checks_see_what_they_forbid() -> None:
    assert imports_of("from service import api, clock\nimport service.web.pages") == {
        "service.api",
        "service.clock",
        "service.web.pages",
    }
    assert imports_of("from handlers import HANDLERS, wire") == {"handlers", "handlers.wire"}
    assert (
        imports_of("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import service.api\n")
        == set()
    )
    assert imports_of("def late() -> None:\n    from service.api import ROUTES\n") >= {
        "service.api"
    }
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
