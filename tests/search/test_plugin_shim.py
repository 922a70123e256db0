"""The sweeper's plugin shim: Hydra's scan finds it, and the package never imports it (the shim imports the
package, so the other way would be a circle)."""
from __future__ import annotations

import ast

import pytest

from conftest import ROOT

SHIM = "hydra_plugins.archsearch_sweeper"


def test_no_module_of_the_package_imports_the_shim() -> None:
    importers = []
    for path in (ROOT / "archsearch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            importers += [path.relative_to(ROOT).as_posix() for name in names if name.startswith(SHIM)]
    assert importers == []


def test_hydras_scan_finds_the_sweeper() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from archsearch.search import register
    from archsearch.search.sweeper import SweeperLogic
    from archsearch.search.sweeper_config import ArchSearchSweeperConf

    register()
    [found] = [c for c in Plugins.instance().discover(Sweeper) if c.__module__.startswith(SHIM)]
    assert f"{found.__module__}.{found.__name__}" == ArchSearchSweeperConf._target_ and issubclass(found, SweeperLogic)


def test_a_shim_the_scan_misses_is_one_line_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.core.plugins import Plugins

    from archsearch.search import SetupError, register

    monkeypatch.setattr(Plugins.instance(), "discover", lambda *_: [])  # as a plain editable install leaves it
    with pytest.raises(SetupError, match=r"^Hydra's plugin scan does not find hydra_plugins\.archsearch_sweeper: .*"
                                         r"editable_mode=compat"):
        register()
