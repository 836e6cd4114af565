"""powerplane: Prometheus-native power and heat monitoring and power capping for HPC and GPU clusters.

The top-level directories ``exporters/``, ``controller/``, ``dashboards/`` and ``lab/`` are the
subpackages ``powerplane.exporters`` and so on; ``powerplane/`` links them into one namespace so
that editable installs, wheels and mypy all see a single package (see docs/ARCHITECTURE.md).
"""

__version__ = "0.1.0"
