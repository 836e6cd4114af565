"""The families written as text: the same exposition as prometheus_client's samples, hostile label
values escaped, and the per-record cache following the records."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from powerplane.exporters.runtime import exposition
from powerplane.exporters.slurm import metrics as m
from powerplane.exporters.slurm.families import Line, Lines, RecordLines, escape, number

HOSTILE = ["plain", 'quo"te', "back\\slash", "new\nline", "ünïcode", '\\"\n', ""]


def _line(job: str, node: str, value: float) -> str:
    head = Line(m.JOB_ALLOCATION, "job_id", "node", "resource").head
    return f'{head}job_id="{escape(job)}",node="{escape(node)}",resource="cpus"}} {number(value)}\n'


def test_lines_render_as_prometheus_client_renders_the_same_samples() -> None:
    reference = m.JOB_ALLOCATION.family()
    chunks = []
    for i, name in enumerate(HOSTILE):
        value: Any = [3, 2.5, 1e20, float("inf"), 0, 7, -1][i]
        reference.add_metric([str(i), name, "cpus"], float(value))
        chunks.append(_line(str(i), name, value).encode())
    ours = exposition.render([Lines(m.JOB_ALLOCATION, chunks)])
    theirs = exposition.render([reference])
    assert ours == theirs
    (parsed,) = text_string_to_metric_families(ours.decode())
    assert [s.labels["node"] for s in parsed.samples] == HOSTILE


def test_samples_are_there_for_openmetrics_and_merging() -> None:
    family = Lines(m.JOB_ALLOCATION, [_line("1", 'a"b', 4).encode(), _line("2", "c", 8).encode()])
    assert [(s.labels["node"], s.value) for s in family.samples] == [('a"b', 4.0), ("c", 8.0)]
    assert b'node="a\\"b"' in generate_latest(_Registry(family))
    assert Lines(m.JOB_ALLOCATION, []).samples == []
    with pytest.raises(AttributeError):
        family.samples = [object()]


class _Registry:
    def __init__(self, *families: Any) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


def test_a_line_must_name_the_labels_in_the_declared_order() -> None:
    with pytest.raises(ValueError, match="not the declared"):
        Line(m.JOB_ALLOCATION, "node", "job_id", "resource")


def test_the_cache_renders_a_record_once_and_keeps_only_current_ones() -> None:
    rendered: list[str] = []

    def render(record: tuple[str, int]) -> tuple[str, ...]:
        rendered.append(record[0])
        return (_line(record[0], "n", record[1]), "")

    lines = RecordLines(render, (m.JOB_ALLOCATION, m.JOB_GPU))
    first = lines.families([("1", 1), ("2", 2)])
    assert rendered == ["1", "2"] and [len(f.text_chunks) for f in first] == [2, 0]
    second = lines.families([("1", 1), ("2", 3), ("4", 4)])  # job 2 changed, 4 is new
    assert rendered == ["1", "2", "2", "4"]
    assert b"".join(second[0].text_chunks).decode().count("\n") == 3
    lines.families([("4", 4)])
    lines.families([("1", 1)])  # dropped from the cache when it left the listing: rendered again
    assert rendered[-1] == "1" and len(rendered) == 5


def test_text_families_and_sample_families_render_together_in_order() -> None:
    plain = GaugeMetricFamily("powerplane_slurm_up", "up", labels=[])
    plain.add_metric([], 1.0)
    body = exposition.render([plain, Lines(m.JOB_ALLOCATION, [_line("1", "n", 2).encode()])]).decode()
    assert body.index("powerplane_slurm_up 1.0") < body.index('job_id="1"')
    assert {f.name for f in text_string_to_metric_families(body)} == {
        "powerplane_slurm_up",
        "powerplane_slurm_job_allocation",
    }
