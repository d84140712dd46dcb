"""The published Sudoku-Extreme CSV format (`source,question,answer,rating`, blanks '.'),
read in numpy chunks and checked line by line."""

from __future__ import annotations

import os

import numpy as np

from hrm.data.sudoku_grid import box_shape, valid_rows

CSV_HEADER = "source,question,answer,rating"
CSV_CHUNK = 1 << 15  # lines parsed per numpy batch: bounds memory on the 3.8M-line train file


def read_csv(path, n: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read a Sudoku-Extreme CSV: (puzzles (N, n*n) uint8, solutions uint8, ratings float32, sources).

    Blanks are '.' or '0'. Lines are split from the right (rsplit), so a source
    may contain commas. Each chunk is validated with numpy; a bad line raises
    ValueError naming the file, the 1-based line number and the problem.
    """
    box_shape(n)
    size = n * n
    name = os.fspath(path)
    puzzles, sols, ratings, sources = [], [], [], []
    intern: dict[str, str] = {}  # few distinct sources: share the string objects
    with open(path, encoding="utf-8-sig") as f:  # -sig: tolerate a BOM
        header = f.readline().strip()
        if header != CSV_HEADER:
            raise ValueError(f"{name}:1: expected header {CSV_HEADER!r}, got {header!r}")
        line_no = 1
        while True:
            lines = f.readlines(CSV_CHUNK * 200)  # size hint in bytes, ~200 per line
            if not lines:
                break
            first = line_no + 1
            qs, ans, rs = [], [], []
            for i, line in enumerate(lines):
                parts = line.rstrip("\r\n").rsplit(",", 3)
                if len(parts) != 4:
                    raise ValueError(f"{name}:{first + i}: expected 4 comma-separated fields, got {len(parts)}")
                src, q, a, r = parts
                for field, text in (("question", q), ("answer", a)):
                    if len(text) != size or not text.isascii():
                        raise ValueError(f"{name}:{first + i}: {field} must be {size} ASCII characters, got {len(text)}")
                try:
                    rs.append(float(r))
                except ValueError:
                    raise ValueError(f"{name}:{first + i}: rating {r!r} is not a number") from None
                qs.append(q)
                ans.append(a)
                sources.append(intern.setdefault(src, src))
            line_no += len(lines)
            q = np.frombuffer("".join(qs).encode(), np.uint8).reshape(-1, size)
            a = np.frombuffer("".join(ans).encode(), np.uint8).reshape(-1, size)
            q = np.where(q == ord("."), ord("0"), q) - ord("0")
            a = a - ord("0")
            _check_chunk(q, a, n, name, first)
            puzzles.append(q.astype(np.uint8))
            sols.append(a.astype(np.uint8))
            ratings.append(np.array(rs, np.float32))
    if not puzzles:
        empty = np.zeros((0, size), np.uint8)
        return empty, empty.copy(), np.zeros(0, np.float32), []
    return np.concatenate(puzzles), np.concatenate(sols), np.concatenate(ratings), sources


def _check_chunk(q: np.ndarray, a: np.ndarray, n: int, name: str, first: int) -> None:
    """Raise on the first bad row: bad characters, givens not matching, invalid answer."""
    checks = (
        ((q > n).any(axis=1), f"question may only hold '.', '0' and 1..{n}"),
        (((a < 1) | (a > n)).any(axis=1), f"answer may only hold digits 1..{n}"),
        (((q != 0) & (q != a)).any(axis=1), "answer does not match the question's givens"),
    )
    for bad, what in checks:
        if bad.any():
            raise ValueError(f"{name}:{first + int(bad.argmax())}: {what}")
    bad = ~valid_rows(a, n)
    if bad.any():
        raise ValueError(f"{name}:{first + int(bad.argmax())}: answer is not a valid {n}x{n} solution")
