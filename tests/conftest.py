"""Fixtures shared by the op tests (builders live in _trees.py)."""

import pytest
import torch


@pytest.fixture
def gen():
    g = torch.Generator().manual_seed(1234)
    return g
