"""Renditions: every view prepared once per data generation and minute, ETags, 304s (statuspage/render.py)."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml

from powerplane.statuspage.config import KIND
from powerplane.statuspage.model import Result, Snapshot
from powerplane.statuspage.render import Renderer, prepare
from powerplane.statuspage.server import SECURITY_HEADERS

CONFIG = {
    "title": "Test centre",
    "prometheus": {"url": "http://127.0.0.1:9"},
    "refresh": {"data_seconds": 30, "page_seconds": 300},
    "systems": [{"name": "alpha", "partitions": ["gpu"]}, {"name": "beta"}],
}
T0 = 1_800_000_000.0  # a whole minute


def renderer() -> Renderer:
    return Renderer(KIND.load_text(yaml.safe_dump(CONFIG), "test"), SECURITY_HEADERS)


def snapshot(generation: int, taken_at: float) -> Snapshot:
    return Snapshot(generation, taken_at, {"partition_nodes": Result(None, None, "refused")})


def test_one_rendition_holds_every_view_with_its_headers() -> None:
    r = renderer().rendition(snapshot(1, T0), T0 + 5)
    views = {("page", ""), ("fragment", ""), ("status", ""), ("outages", ""), ("reservations", "")}
    views |= {(kind, name) for kind in ("page", "fragment", "status") for name in ("alpha", "beta")}
    assert set(r.bodies) == views
    for view, body in r.bodies.items():
        assert gzip.decompress(body.gzipped.data) == body.plain.data, view
        assert body.plain.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
        assert body.gzipped.headers["Content-Encoding"] == "gzip"
        assert "Content-Encoding" not in body.plain.headers
        assert body.plain.etag != body.gzipped.etag
        assert body.plain.not_modified["ETag"] == body.plain.etag
        assert "Content-Type" not in body.plain.not_modified
    assert json.loads(r.bodies["status", "alpha"].data)["name"] == "alpha"
    assert json.loads(r.bodies["status", ""].data)["data_generation"] == 1
    assert b"<html" in r.bodies["page", "beta"].data and b"<html" not in r.bodies["fragment", "beta"].data


def test_a_rendition_serves_until_the_minute_turns_or_the_data_is_due() -> None:
    rend = renderer()
    first = rend.rendition(snapshot(1, T0), T0 + 5)
    assert first.serves(1, T0 + 29.9) and not first.serves(1, T0 + 30)  # data due at 30 s
    assert not first.serves(2, T0 + 6)  # a newer snapshot
    assert not first.serves(1, T0 - 0.1)  # a clock stepped back
    late = rend.rendition(snapshot(2, T0 + 40), T0 + 41)
    assert late.serves(2, T0 + 59.9) and not late.serves(2, T0 + 60)  # the minute turns first
    assert rend.renditions == 2


def test_a_rendition_is_made_once_per_generation_and_minute() -> None:
    rend = renderer()
    snap = snapshot(1, T0)
    first = rend.rendition(snap, T0 + 1)
    # Past the data interval (a refresh slower than it): still one rendition for all waiters.
    assert rend.rendition(snap, T0 + 45) is first
    nxt = rend.rendition(snap, T0 + 61)
    assert nxt is not first and rend.latest is nxt and rend.renditions == 2
    assert (
        json.loads(nxt.bodies["status", ""].data)["generated_at"]
        != json.loads(first.bodies["status", ""].data)["generated_at"]
    )


def test_the_etag_follows_the_bytes() -> None:
    a, b = prepare(b"one", "text/plain"), prepare(b"two", "text/plain")
    assert a.plain.etag == prepare(b"one", "text/plain").plain.etag
    assert a.plain.etag != b.plain.etag and a.plain.etag.startswith('"') and a.plain.etag.endswith('"')


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ("{tag}", True),
        ("W/{tag}", True),
        ('"x", {tag}', True),
        ("*", True),
        ('"x", "y"', False),
        ("{other}", False),
        ("", False),
        (",,,", False),
        ("W/", False),
        ('"', False),
        ("{bare}", False),  # the tag without its quotes
        ("\x00\xff" * 2000, False),
    ],
)
def test_if_none_match_is_compared_as_rfc_9110_says(header: str, matches: bool) -> None:
    body = prepare(b"content", "text/plain")
    other = prepare(b"other", "text/plain").plain.etag
    text = header.format(tag=body.plain.etag, other=other, bare=body.plain.etag.strip('"'))
    assert body.plain.matches(text) is matches
    # Each encoding has its own tag: a plain copy's tag does not validate the gzip one.
    if header == "{tag}":
        assert not body.gzipped.matches(text)


def test_accept_encoding_picks_the_variant() -> None:
    body = prepare(b"x" * 1000, "text/plain")
    assert body.variant("gzip, deflate, br") is body.gzipped
    assert body.variant("") is body.plain and body.variant("identity") is body.plain
    assert len(body.gzipped.data) < 100
