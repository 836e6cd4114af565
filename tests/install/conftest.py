"""The install tests: systemd units, Slurm hooks, the Prometheus sample, the image, the workflows."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here so that `-m "not image"` leaves out the slow container tests on a quick run.
    config.addinivalue_line(
        "markers", "image: builds the image with buildah or boots systemd in a container (slow; CI runs it)"
    )
