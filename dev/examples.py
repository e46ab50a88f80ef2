"""Writer for the pre-tokenized example file read by the trainers (format: llmc/examples.h).

    header  int64[32]: magic 0x5835544558, version 1, N, total source tokens, total target tokens,
                       largest token id, zeros
    lengths int32[2N]: (source length, target length) per example
    tokens  uint32:    per example, its source ids then its target ids

Written to PATH.tmp and renamed, so a failed write never leaves a partial file.
"""
import os
import struct

MAGIC = 0x5835544558
VERSION = 1
HEADER_INTS = 32
MAX_LEN = 1 << 20


def write_examples(path, examples):
    """examples: sequence of (source_ids, target_ids), each a non-empty sequence of ints >= 0."""
    examples = [(list(map(int, s)), list(map(int, t))) for s, t in examples]
    if not examples:
        raise ValueError(f"{path}: no examples to write")
    max_id = 0
    for i, (s, t) in enumerate(examples):
        for name, ids in (("source", s), ("target", t)):
            if not 1 <= len(ids) <= MAX_LEN:
                raise ValueError(f"{path}: example {i} has a {name} of {len(ids)} tokens (must be 1..{MAX_LEN})")
            if min(ids) < 0 or max(ids) >= 1 << 32:
                raise ValueError(f"{path}: example {i} has a {name} token id outside [0, 2^32)")
            max_id = max(max_id, max(ids))
    header = [0] * HEADER_INTS
    header[0:6] = [MAGIC, VERSION, len(examples), sum(len(s) for s, _ in examples),
                   sum(len(t) for _, t in examples), max_id]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack(f"<{HEADER_INTS}q", *header))
        for s, t in examples:
            f.write(struct.pack("<2i", len(s), len(t)))
        for s, t in examples:
            f.write(struct.pack(f"<{len(s)}I", *s))
            f.write(struct.pack(f"<{len(t)}I", *t))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
