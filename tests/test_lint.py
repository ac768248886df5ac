"""The code stays ruff-clean (configuration in pyproject.toml)."""

import subprocess
import sys

import pytest
from mutation_support import ROOT


def test_ruff_is_clean():
    pytest.importorskip("ruff", reason="ruff is in the dev extra (make test installs it)")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
