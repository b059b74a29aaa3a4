"""Writes the bad-input corpus beside this file (``python tests/bad_inputs/make_corpus.py``).

The files are committed; this script documents how each was made and makes them again. Cases
that must be made where they are used (file names that are not UTF-8, a data set folder
around a bad image) are built by ``tests/workflows/test_bad_inputs.py`` from these files.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def png_bytes(size=(40, 32), seed=0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def animated_png() -> bytes:
    frames = [Image.new("RGB", (40, 32), colour) for colour in ("red", "blue", "green")]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def zip_of(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as handle:
        for info, data in entries:
            handle.writestr(info, data)
    return out.getvalue()


def symlink_entry(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def class_tree(extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    """A small class-folder archive (4 AD, 2 SSA, 2 HP) plus ``extra`` entries."""
    good = [(f"set/{cls}/{cls.lower()}{i}.png", png_bytes(seed=k * 10 + i))
            for k, (cls, n) in enumerate((("AD", 4), ("SSA", 2), ("HP", 2))) for i in range(n)]
    return zip_of(good + extra)


def main() -> None:
    png = png_bytes()
    files = {
        "truncated.png": png[: len(png) // 2],
        "garbage.png": bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)),
        "empty.png": b"",
        "huge-dimension.png": huge_png(60_000, 60_000),
        "animated.png": animated_png(),
        "html-as.jpg": b"<!doctype html><html><body><script>alert(1)</script></body></html>",
        "labels-wrong-columns.csv": b"file,diagnosis\nad000,AD\n",
        "labels-empty.csv": b"",
        "labels-header-only.csv": b"image_id,cls\n",
        "labels-xlsx-renamed.csv": zip_of([("[Content_Types].xml", b"<Types/>"),
                                           ("xl/workbook.xml", b"<workbook/>")]),
        # 50 MiB of zeros in 50 KiB: a compression ratio of 1000 (the limit is 200)
        "bomb-ratio.zip": zip_of([("set/AD/zeros.png", b"\x00" * (50 * 2**20))]),
        "slip.zip": class_tree([("../evil.png", png)]),
        "absolute.zip": class_tree([("/tmp/evil.png", png)]),
        "symlink.zip": class_tree([symlink_entry("set/AD/link.png", "/etc/passwd")]),
        "duplicate.zip": class_tree([("set/AD/ad0.png", png)]),
        "deep.zip": class_tree([("/".join(["d"] * 20) + "/x.png", png)]),
        "not-a-zip.zip": b"PK\x03\x04 this is not really a zip archive",
    }
    whole = class_tree([])
    files["truncated.zip"] = whole[: len(whole) // 2]
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(files)} files to {HERE}")


if __name__ == "__main__":
    main()
