"""The install tests: systemd units, Slurm hooks, the Prometheus sample, the image, the workflows."""

from __future__ import annotations

from pathlib import Path

import pytest

from .boot import fetch_host_wheels


def pytest_configure(config: pytest.Config) -> None:
    # Registered here so that `-m "not image"` leaves out the slow container tests on a quick run.
    config.addinivalue_line(
        "markers", "image: builds the image with buildah or boots systemd in a container (slow; CI runs it)"
    )


@pytest.fixture(scope="session")
def host_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """powerplane's wheel and its dependencies from this host's pip, once for the image and the booted
    node (resolving them against the index takes most of a minute)."""
    return fetch_host_wheels(tmp_path_factory.mktemp("wheels"))
