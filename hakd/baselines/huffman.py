"""Huffman coding of integer symbol streams (Deep Compression's last stage), lossless.

>>> codes = huffman_codes([0, 0, 0, 1, 1, 2])
>>> decode(encode([0, 0, 0, 1, 1, 2], codes), codes, 6)
[0, 0, 0, 1, 1, 2]
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np

__all__ = ["huffman_codes", "encode", "decode"]


def huffman_codes(symbols: Sequence[int]) -> Dict[int, str]:
    """A prefix-free code (symbol -> bit string), shortest for the most frequent symbols."""
    freq = Counter(int(s) for s in symbols)
    if not freq:
        return {}
    if len(freq) == 1:
        return {next(iter(freq)): "0"}
    heap = [(n, i, {s: ""}) for i, (s, n) in enumerate(sorted(freq.items()))]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        n1, _, a = heapq.heappop(heap)
        n2, _, b = heapq.heappop(heap)
        merged = {s: "0" + c for s, c in a.items()}
        merged.update({s: "1" + c for s, c in b.items()})
        heapq.heappush(heap, (n1 + n2, tie, merged))
        tie += 1
    return heap[0][2]


def encode(symbols: Sequence[int], codes: Dict[int, str]) -> bytes:
    bits = "".join(codes[int(s)] for s in symbols)
    arr = np.frombuffer(bits.encode(), dtype=np.uint8) - ord("0")
    return np.packbits(arr).tobytes()


def decode(data: bytes, codes: Dict[int, str], n: int) -> List[int]:
    lookup = {c: s for s, c in codes.items()}
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    out, cur = [], ""
    for b in bits:
        cur += "1" if b else "0"
        if cur in lookup:
            out.append(lookup[cur])
            cur = ""
            if len(out) == n:
                break
    return out
