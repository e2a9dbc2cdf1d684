"""framing.FrameParser on its own: frames split at every byte, glued together,
malformed, oversized; the same frames and errors however the bytes arrive."""
from __future__ import annotations

import random

import pytest

from rpc_client import frame
from sbexportd.serve.framing import Frame, FrameError, FrameParser


def events(parser: FrameParser, chunks) -> list:
    out = []
    for chunk in chunks:
        parser.feed(chunk)
        while (e := parser.next()) is not None:
            out.append(("frame", e.encoding, bytes(e.body)) if isinstance(e, Frame)
                       else ("error", e.error.code, e.error.kind))
    return out


STREAM = (frame(b'{"a": 1}') + b"\r\n" + frame(b"\x81\xa1b\x02", b"application/msgpack")
          + b"GARBAGE HEADER\r\n\r\n" + frame(b"{}")
          + b"Content-Length: 3\r\nX-Broken\r\n\r\nabc" + frame(b"[1]")
          + b"Content-Length: 99999\r\n\r\n" + b"z" * 99999 + frame(b"x" * 70000)
          + frame(b"{}", b"text/plain") + b"Y" * 9000 + b"\r\n" + frame(b'"end"'))
EXPECTED = [("frame", "json", b'{"a": 1}'), ("frame", "msgpack", b"\x81\xa1b\x02"),
            ("error", -32700, "bad_frame"), ("frame", "json", b"{}"),
            ("error", -32700, "bad_frame"), ("frame", "json", b"[1]"),
            ("error", -33030, "message_too_large"), ("frame", "json", b"x" * 70000),
            ("error", -32700, "unsupported_content_type"), ("error", -32700, "bad_frame"),
            ("frame", "json", b'"end"')]


def test_whole_stream_at_once():
    assert events(FrameParser(80000), [STREAM]) == EXPECTED


@pytest.mark.parametrize("seed", range(12))
def test_any_split_gives_the_same_events(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), rng.choice([3, 30, 300, 3000])))
    chunks = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)], strict=True)]
    assert events(FrameParser(80000), chunks) == EXPECTED


def test_byte_by_byte_small_frames():
    data = frame(b'{"x": 1}') + frame(b"\x90", b"application/msgpack")
    assert events(FrameParser(1000), [data[i:i + 1] for i in range(len(data))]) == \
        [("frame", "json", b'{"x": 1}'), ("frame", "msgpack", b"\x90")]


def test_end_of_stream_inside_a_frame():
    p = FrameParser(1000)
    assert events(p, [b"Content-Length: 10\r\n\r\nabc"]) == []
    assert isinstance(p.eof(), FrameError) and p.eof().fatal
    p = FrameParser(1000)
    events(p, [b"Content-Len"])
    assert p.eof().fatal and p.in_header
    p = FrameParser(1000)
    assert events(p, [frame(b"{}") + b"\r\n"]) and p.eof() is None and not p.in_header


def test_large_bodies_are_received_into_one_buffer():
    body = bytes(range(256)) * 1000
    p = FrameParser(1 << 20)
    data = frame(body)
    got = events(p, [data[:100], data[100:5000], data[5000:]])
    assert got == [("frame", "json", body)]
