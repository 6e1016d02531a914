"""c2sp.org/tlog-tiles: tile paths, which stored subtree hashes a tile holds, entry bundles.

A log of n entries is served as tiles of 256 hashes::

    tile/<L>/<N>[.p/<W>]         hash tile: hashes `N*256 .. N*256+W-1` of tree level 8*L
    tile/entries/<N>[.p/<W>]     entry bundle: entries `N*256 .. N*256+W-1`, each uint16-length-prefixed

A hash of tile level L is MTH(D[j * 256**L : (j + 1) * 256**L]): the complete subtree of height 8*L
at index j, which `audit.tree` stores as key `(8 * L, j)`, so a tile is one range of stored hashes.
`N` is written as zero-padded 3-digit path elements, all but the last prefixed with `x`
(1234067 → `x001/x234/067`); `.p/<W>` (1 ≤ W ≤ 255) marks a partial tile, the right edge of a tree.
Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from audit.errors import TileError
from audit.rfc6962 import HASH_SIZE

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TilePath",
    "encode_entry_bundle",
    "format_tile_path",
    "parse_entry_bundle",
    "parse_tile_path",
    "split_tile",
    "tile_width",
    "tiles_for_size",
]

TILE_HEIGHT = 8  # tree levels per tile level
TILE_WIDTH = 256  # hashes (or entries) in a full tile
MAX_LEVEL = 63  # §Merkle Tree: L is 0..63
MAX_ENTRY_SIZE = 0xFFFF  # §Log entries: a uint16 length prefix

_LEVEL = re.compile("0|[1-9][0-9]?")
_WIDTH = re.compile("[1-9][0-9]{0,2}")
_INTERMEDIATE = re.compile("x[0-9]{3}")
_LAST = re.compile("[0-9]{3}")


@dataclass(frozen=True, slots=True)
class TilePath:
    """A parsed tile path: `level` None for an entry bundle; `width` 256 for a full tile."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """The tile's path, `tile/<L>/<N>[.p/<W>]` (`format_tile_path`)."""
        return format_tile_path(self.level, self.index, self.width)

    def tree_level(self) -> int:
        """The level of `audit.tree` keys whose hashes this tile holds (0 for entry bundles)."""
        return TILE_HEIGHT * (self.level or 0)

    def first(self) -> int:
        """The index, at `tree_level()`, of the tile's first hash (or the first entry's seq)."""
        return self.index * TILE_WIDTH

    def required_size(self) -> int:
        """The smallest tree size whose tiles include this one at this width."""
        return (self.first() + self.width) << self.tree_level()


def format_tile_path(level: int | None, index: int, width: int = TILE_WIDTH) -> str:
    """`tile/<L>/<N>[.p/<W>]`, or `tile/entries/<N>[.p/<W>]` when `level` is None.

    Raises `TileError` for a level outside 0..63, a negative index or a width outside 1..256.
    """
    if level is not None and not 0 <= level <= MAX_LEVEL:
        raise TileError(f"tile level {level} is not in 0..{MAX_LEVEL}")
    if index < 0 or not 1 <= width <= TILE_WIDTH:
        raise TileError(f"tile index {index} or width {width} is out of range")
    digits = f"{index:d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[at : at + 3] for at in range(0, len(digits), 3)]
    encoded = "/".join([*(f"x{group}" for group in groups[:-1]), groups[-1]])
    suffix = f".p/{width}" if width < TILE_WIDTH else ""
    return f"tile/{'entries' if level is None else level}/{encoded}{suffix}"


def parse_tile_path(path: str) -> TilePath:
    """Parse the part of a tile URL after the log's prefix: `tile/<L>/<N>[.p/<W>]` or
    `tile/entries/<N>[.p/<W>]`, strictly (the inverse of `format_tile_path`).

    Raises `TileError` if it is not one: an unknown level, a leading zero, a missing `x`, a width
    outside 1..255.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(f"not a tile path: {path[:120]!r}")
    kind, elements = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(elements) >= 2 and elements[-2].endswith(".p"):
        if _WIDTH.fullmatch(elements[-1]) is None or int(elements[-1]) >= TILE_WIDTH:
            raise TileError(f"partial tile width {elements[-1][:20]!r} is not in 1..255")
        width = int(elements[-1])
        elements = [*elements[:-2], elements[-2][:-2]]
    if (
        not elements
        or len(elements) > 7  # 2**64 has 20 digits: 7 groups of 3
        or _LAST.fullmatch(elements[-1]) is None
        or any(_INTERMEDIATE.fullmatch(element) is None for element in elements[:-1])
        or (len(elements) > 1 and elements[0] == "x000")
    ):
        raise TileError(f"tile index in {path[:120]!r} is not zero-padded 3-digit path elements")
    index = int("".join(element.lstrip("x") for element in elements))
    if kind == "entries":
        return TilePath(None, index, width)
    if _LEVEL.fullmatch(kind) is None or int(kind) > MAX_LEVEL:
        raise TileError(f"tile level {kind[:20]!r} is not in 0..{MAX_LEVEL}")
    return TilePath(int(kind), index, width)


def tiles_for_size(size: int) -> list[TilePath]:
    """Every hash tile and entry bundle of a tree of `size` leaves, at the widths that size gives
    them (§Partial Tiles: `floor(size / 256**L) mod 256` for the partial one of level L)."""
    tiles: list[TilePath] = []
    level = 0
    while (count := size >> (TILE_HEIGHT * level)) > 0:
        full, rest = divmod(count, TILE_WIDTH)
        for index in range(full):
            tiles.append(TilePath(level, index))
            if level == 0:
                tiles.append(TilePath(None, index))
        if rest:
            tiles.append(TilePath(level, full, rest))
            if level == 0:
                tiles.append(TilePath(None, full, rest))
        level += 1
    return tiles


def tile_width(tile: TilePath, size: int) -> int:
    """How many hashes (entries) of `tile` a tree of `size` leaves holds: 0..256."""
    count = size >> tile.tree_level()  # complete subtrees of that height in the tree
    return max(0, min(TILE_WIDTH, count - tile.first()))


def split_tile(data: bytes) -> list[bytes]:
    """The hashes of a hash tile. Raises `TileError` if it is not 1..256 hashes of 32 bytes."""
    if not data or len(data) % HASH_SIZE or len(data) > TILE_WIDTH * HASH_SIZE:
        raise TileError(f"a hash tile of {len(data)} bytes is not 1..256 hashes of {HASH_SIZE} bytes")
    return [data[at : at + HASH_SIZE] for at in range(0, len(data), HASH_SIZE)]


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries each prefixed with its big-endian uint16 length (§Log entries).

    Raises `TileError` for an entry longer than 65,535 bytes, or more than 256 entries.
    """
    if len(entries) > TILE_WIDTH:
        raise TileError(f"an entry bundle holds at most {TILE_WIDTH} entries, not {len(entries)}")
    out = bytearray()
    for number, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise TileError(f"entry {number} of the bundle is {len(entry)} bytes, over {MAX_ENTRY_SIZE}")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle. Raises `TileError` if a length runs past the end."""
    entries, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            raise TileError(f"entry bundle ends inside a length prefix at byte {at}")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise TileError(f"entry {len(entries)} of the bundle runs past its end")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    if len(entries) > TILE_WIDTH:
        raise TileError(f"an entry bundle holds at most {TILE_WIDTH} entries, not {len(entries)}")
    return entries
