"""URLs taken from what a BMC sends: paths on the BMC's own origin, nothing else.

A BMC's documents and headers name other resources (``@odata.id`` of members and links, a
session's ``Location``).  The exporter sends credentials with every request, so a link that
led anywhere but the BMC itself (``@other:19199/x``, ``0:19199/x`` appended to a host without a
port, ``//other/x``, ``http://other/x``, the same host on another port or scheme, backslashes
that some parsers read as slashes, percent-encoded slashes and dots) would hand the BMC's
credentials to whoever the document names.  ``same_origin`` accepts an absolute path, or an
absolute URL whose scheme, host and port are the target's own, and builds the URL from the
target's origin: nothing in the link can choose where the request goes.  Everything else raises
``LinkRefused``, which the client counts (``powerplane_redfish_links_refused_total``).
"""

from __future__ import annotations

import re

from yarl import URL

#: Longer links are refused: no Redfish URI comes close.
MAX_LINK = 2048
# Encoded forms of "/", "\", ".", NUL and "%" itself (a second decoding would reveal the others).
_ENCODED = re.compile(r"%(?:2f|5c|2e|00|25)", re.IGNORECASE)


class LinkRefused(ValueError):
    """A link that does not name a resource of the target itself."""


def same_origin(origin: URL, link: object) -> URL:
    """The URL of ``link`` on ``origin`` (scheme, host and port); ``LinkRefused`` otherwise."""
    if not isinstance(link, str) or not link:
        raise LinkRefused("not a string")
    if len(link) > MAX_LINK or not link.isascii() or not link.isprintable() or " " in link:
        raise LinkRefused("too long, or white space, control or non-ASCII characters")
    if "\\" in link:
        raise LinkRefused("backslashes")
    link = link.split("#", 1)[0]  # a fragment (…/Power#/PowerControl/0) is never sent
    if link.startswith("/") and not link.startswith("//"):
        relative = URL(link, encoded=True)
    elif "://" in link:
        absolute = URL(link, encoded=True)
        theirs = (absolute.scheme.lower(), (absolute.host or "").lower(), absolute.port)
        ours = (origin.scheme, (origin.host or "").lower(), origin.port)
        if theirs != ours or absolute.user is not None or absolute.password is not None:
            raise LinkRefused("another origin (scheme, host or port)")
        relative = URL.build(
            path=absolute.raw_path or "/", query_string=absolute.raw_query_string, encoded=True
        )
    else:
        raise LinkRefused("not a path on the BMC")
    path = relative.raw_path
    if _ENCODED.search(path):
        raise LinkRefused("encoded slashes, dots or percent signs")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise LinkRefused("dot segments")
    # The origin's own scheme, host and port, then a path that starts with one "/": nothing in
    # the link can reach the authority part.
    query = relative.raw_query_string
    return URL(str(origin.origin()) + path + (f"?{query}" if query else ""), encoded=True)
