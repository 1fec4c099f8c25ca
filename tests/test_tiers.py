"""Every test is in a tier: unit (in-process, fast: `make check`), system (subprocesses, real
clips, streams, speech) or system and slow (soak, real-time latency); see conftest.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, TIER_PROBLEMS, tier_problem

pytestmark = pytest.mark.unit

# what selects a test whose tiers are wrong: none, unit with another, or slow without system
MISTIERED = "(not unit and not system) or (unit and (system or slow)) or (slow and not system)"


def test_every_test_collected_in_this_run_has_one_tier(request):
    assert request.config.stash[TIER_PROBLEMS] == []


def test_tier_rules():
    assert tier_problem(set()) is not None
    assert tier_problem({"unit", "system"}) is not None
    assert tier_problem({"slow"}) is not None and tier_problem({"unit", "slow"}) is not None
    for good in ({"unit"}, {"system"}, {"system", "slow"}):
        assert tier_problem(good) is None


def test_markers_are_strict(request):
    assert request.config.getoption("strict_markers")  # pyproject's addopts


@pytest.mark.system
def test_no_test_in_the_tree_is_without_a_tier():
    """The whole of tests/ collected in a child: nothing is selected by a mis-tiered -m."""
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    r = subprocess.run(
        [*argv, "-m", MISTIERED, "tests"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    out = r.stdout[-3000:] + r.stderr[-3000:]
    assert r.returncode == 5, out  # 5: no tests collected
    assert " deselected" in r.stdout and "::" not in r.stdout, out
