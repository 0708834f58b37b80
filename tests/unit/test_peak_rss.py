"""peak_rss_mb reports this process's own peak, not the one Linux carries over from a large parent."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PARENT = """
import subprocess, sys
ballast = bytearray(b"x") * (1200 * 2**20)  # 1.2 GB, every page touched
child = "import resource; from tunesmith.train.loop import peak_rss_mb; "
child += "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_child_of_a_large_process_reports_its_own_peak():
    out = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, check=True).stdout
    own, inherited = (int(x) for x in out.split())
    assert inherited >= 1200  # what getrusage says: the parent's peak
    assert own < 1000, own  # the child itself: python, torch and tunesmith imported
