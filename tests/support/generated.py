"""A review file generated on the fly as a binary stream (what boto3's StreamingBody offers: read(n)); never in memory."""

from __future__ import annotations

import io


class GeneratedReviews(io.RawIOBase):
    """``total_bytes`` (rounded down to whole rows) of TSV: a header, then ``unique`` distinct long reviews repeated."""

    def __init__(self, total_bytes: int, unique: int = 3000, review_chars: int = 600):
        pad = "the fit is right and the fabric feels good, though the colour is a little darker than shown. "
        rows = [
            f"{(i % 3) - 1}\treview {i}: {(pad * (review_chars // len(pad) + 1))[:review_chars]}\n".encode()
            for i in range(unique)
        ]
        self._cycle = b"".join(rows)
        self._header = b"sentiment\treview_body\n"
        whole, rest = divmod(max(0, total_bytes - len(self._header)), len(self._cycle))
        partial = sum(len(r) for r in _prefix_within(rows, rest))
        self.total = len(self._header) + whole * len(self._cycle) + partial
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._pos >= self.total:
            return 0
        if self._pos < len(self._header):
            data = self._header[self._pos :]
        else:
            offset = (self._pos - len(self._header)) % len(self._cycle)
            data = self._cycle[offset : offset + len(buffer)]
        n = min(len(buffer), len(data), self.total - self._pos)
        buffer[:n] = data[:n]
        self._pos += n
        return n


def _prefix_within(rows: list[bytes], limit: int) -> list[bytes]:
    out, size = [], 0
    for row in rows:
        if size + len(row) > limit:
            break
        out.append(row)
        size += len(row)
    return out
