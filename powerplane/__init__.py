"""powerplane: Prometheus-native power and heat monitoring and power capping for HPC and GPU clusters.

The top-level directories ``exporters/``, ``controller/``, ``dashboards/`` and ``lab/`` are the
subpackages ``powerplane.exporters`` and so on, mapped onto this one namespace by
pyproject.toml's ``package-dir`` (see docs/ARCHITECTURE.md, "Layout").
"""

__version__ = "0.1.0"
