"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin contention.

    A module that builds tiny models uses it for all its tests:
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_CAMPAIGN = """
name = "tiny"
out_dir = "{out}"
size = "tiny"
dtype = "float32"
idle_s = 0
min_window_s = 0
[repeats]
min = 2
max = 2

[[experiment]]
name = "steps"
models = ["audioldm", "tango"]
grid = ["1"]

[[experiment]]
name = "quality"
models = ["audioldm"]
grid = ["1"]
captions = ["audiocaps"]
caption_limit = 2
"""


@pytest.fixture
def tiny_campaign(tmp_path: Path) -> Path:
    """A campaign file of tiny models (steps: two models, two repeats; quality: two captions) that writes its
    tables into ``tmp_path / "tables"``."""
    path = tmp_path / "c.toml"
    path.write_text(TINY_CAMPAIGN.format(out=tmp_path / "tables"), encoding="utf-8")
    return path
