"""Tile paths and widths (c2sp.org/tlog-tiles), with the spec's own examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import TileError
from audit.tiles import (
    TilePath,
    encode_entry_bundle,
    format_tile_path,
    parse_entry_bundle,
    parse_tile_path,
    tiles_for_size,
)


def test_the_specs_index_encoding() -> None:
    assert format_tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert format_tile_path(None, 5, 7) == "tile/entries/005.p/7"


def test_the_specs_tree_of_70000() -> None:
    hash_tiles = [t for t in tiles_for_size(70_000) if t.level is not None]
    assert sum(1 for t in hash_tiles if t.level == 0 and not t.partial) == 273
    assert [t for t in hash_tiles if t.partial] == [
        TilePath(0, 273, 112),
        TilePath(1, 1, 17),
        TilePath(2, 0, 1),
    ]
    assert [t for t in hash_tiles if t.level == 1 and not t.partial] == [TilePath(1, 0)]
    assert [t.path() for t in tiles_for_size(256) if t.level is not None] == ["tile/0/000", "tile/1/000.p/1"]


@given(st.one_of(st.none(), st.integers(0, 63)), st.integers(0, 2**64), st.integers(1, 256))
def test_paths_round_trip(level, index, width) -> None:
    assert parse_tile_path(format_tile_path(level, index, width)) == TilePath(level, index, width)


@pytest.mark.parametrize(
    "path",
    ["tile/0/0", "tile/0/x000/001", "tile/01/000", "tile/64/000", "tile/0/000.p/0", "tile/0/000.p/256",
     "tile/0/000.p/012", "tile/0/001/002", "tile/data/000", "tile/0", "tiles/0/000", "tile/0/000.p"],
)  # fmt: skip
def test_paths_the_spec_does_not_write(path: str) -> None:
    with pytest.raises(TileError):
        parse_tile_path(path)


def test_entry_bundles_round_trip_and_refuse_truncation() -> None:
    entries = [b"", b"x" * 300, b"last"]
    data = encode_entry_bundle(entries)
    assert data[:2] == b"\x00\x00" and parse_entry_bundle(data) == entries
    with pytest.raises(TileError):
        parse_entry_bundle(data[:-1])
    with pytest.raises(TileError):
        encode_entry_bundle([b"x" * 65_536])
