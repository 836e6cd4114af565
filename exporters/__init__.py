"""Exporters, one module or small package per source, and the shared runtime in ``runtime``."""
