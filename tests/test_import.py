"""``import pcseg`` is silent, loads no optional extras and never touches CUDA; the
visualisation modules load Open3D and matplotlib only when they draw."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys, torch
import pcseg, pcseg.ops, pcseg.data.formats.semantickitti
import pcseg.vis.plots, pcseg.vis.render, pcseg.vis.result_plots, pcseg.vis.scenes, pcseg.vis.viewer
pcseg.ops.voxelize(torch.rand(100, 3), 0.1)
assert not torch.cuda.is_initialized(), "CUDA was initialised"
extras = ("open3d", "matplotlib", "laspy", "tensorboard", "skimage")
loaded = sorted(m for m in extras if m in sys.modules)
assert not loaded, loaded
"""


def test_import_prints_nothing_and_touches_no_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
