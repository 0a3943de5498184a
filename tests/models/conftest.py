"""Shared fixtures for model tests: the real data sets, loaded once per session."""

from __future__ import annotations

import pytest

from tests.conftest import data_dir


@pytest.fixture(scope="session")
def severson(shared_data):
    from cloud.datasets.severson import load_qdlin, severson_root, split_paths

    root = severson_root(shared_data)
    train = load_qdlin(*split_paths(root, "train"))
    test = load_qdlin(*split_paths(root, "test1"), exclude=("cell22.csv",))
    return train, test


@pytest.fixture(scope="session")
def nasa(shared_data):
    from cloud.datasets.capacity import from_nasa

    return from_nasa(shared_data / "nasa_pcoe" / "capacity_per_cycle")


def severson_dir():
    return data_dir() / "severson2019" / "qdlin_cycles2to100"
