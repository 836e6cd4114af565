"""Helpers for tests that read exporter output."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from powerplane.components import all_specs


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Exposition text → {sample name: {sorted label pairs: value}}."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    matches = [v for k, v in samples.get(name, {}).items() if set(labels.items()) <= set(k)]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples in {sorted(samples.get(name, {}))}"
    return matches[0]


def undocumented(text: str) -> set[str]:
    """Families in the exposition that docs/METRICS.md (the METRICS declarations) does not list."""
    specs = all_specs()
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.startswith(("process_", "python_")):
            continue
        exposed = family.name + "_total" if family.type == "counter" else family.name
        if exposed not in specs:
            names.add(exposed)
    return names
