"""Writer and reader of the pre-tokenized example file read by the trainers (format: llmc/examples.h).

    header  int64[32]: magic 0x5835544558, version 2, N, total source tokens, total target tokens,
                       largest token id, CRC-32 of everything after the header, zeros
    lengths int32[2N]: (source length, target length) per example
    tokens  uint32:    per example, its source ids then its target ids

Written to PATH.tmp, fsynced and renamed, so a failed write never leaves a partial file.
"""
import os
import struct
import zlib

import numpy as np

MAGIC = 0x5835544558
VERSION = 2
HEADER_INTS = 32
MAX_LEN = 1 << 20


def _check(path, examples):
    max_id = 0
    for i, (s, t) in enumerate(examples):
        for name, ids in (("source", s), ("target", t)):
            if not 1 <= len(ids) <= MAX_LEN:
                raise ValueError(f"{path}: example {i} has a {name} of {len(ids)} tokens (must be 1..{MAX_LEN})")
            if min(ids) < 0 or max(ids) >= 1 << 32:
                raise ValueError(f"{path}: example {i} has a {name} token id outside [0, 2^32)")
            max_id = max(max_id, max(ids))
    return max_id


def write_examples(path, examples):
    """examples: sequence of (source_ids, target_ids), each a non-empty sequence of ints >= 0."""
    examples = [(list(map(int, s)), list(map(int, t))) for s, t in examples]
    if not examples:
        raise ValueError(f"{path}: no examples to write")
    max_id = _check(path, examples)
    lens = np.array([(len(s), len(t)) for s, t in examples], dtype="<i4").tobytes()
    tokens = np.array([x for s, t in examples for x in s + t], dtype="<u4").tobytes()
    header = [0] * HEADER_INTS
    header[0:7] = [MAGIC, VERSION, len(examples), sum(len(s) for s, _ in examples),
                   sum(len(t) for _, t in examples), max_id, zlib.crc32(tokens, zlib.crc32(lens))]
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack(f"<{HEADER_INTS}q", *header))
            f.write(lens)
            f.write(tokens)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_examples(path):
    """-> list of (source_ids, target_ids) from a file write_examples wrote; ValueError names what is wrong"""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 * HEADER_INTS:
        raise ValueError(f"{path}: {len(data)} bytes, shorter than the header")
    header = struct.unpack(f"<{HEADER_INTS}q", data[: 8 * HEADER_INTS])
    magic, version, n, total_src, total_tgt, _, crc = header[:7]
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"{path}: not an example file of version {VERSION} (magic {magic:#x}, version {version})")
    body = data[8 * HEADER_INTS:]
    if n < 1 or len(body) != 8 * n + 4 * (total_src + total_tgt):
        raise ValueError(f"{path}: {len(body)} bytes after the header for {n} examples of {total_src} + {total_tgt} tokens")
    if zlib.crc32(body) != crc:
        raise ValueError(f"{path}: CRC-32 mismatch")
    lens = np.frombuffer(body, dtype="<i4", count=2 * n).reshape(n, 2)
    tokens = np.frombuffer(body, dtype="<u4", offset=8 * n)
    out, at = [], 0
    for ls, lt in lens.tolist():
        out.append((tokens[at: at + ls].tolist(), tokens[at + ls: at + ls + lt].tolist()))
        at += ls + lt
    return out
