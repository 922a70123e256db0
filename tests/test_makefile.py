"""The Makefile's promises about the developer loop: `make test` needs no root and touches nothing outside the
checkout."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_installs_nothing_outside_the_checkout() -> None:
    # PG_INITDB= : as on a machine without PostgreSQL, where test-all would apt-get it.
    plan = subprocess.run(["make", "-n", "test", "PG_INITDB="], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "pytest" in plan and "apt-get" not in plan and "playwright" not in plan
    assert "-n auto --dist loadfile --no-loadscope-reorder" in plan  # on every core, a test file per worker (its module fixtures once)
    full = subprocess.run(["make", "-n", "test-all", "PG_INITDB="], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "apt-get" in full and "postgresql" in full  # the PostgreSQL server, as CI needs it
