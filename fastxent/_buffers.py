"""Large output arrays, recycled from outputs the caller has dropped.

A fresh N x C output costs a page fault per 4 KiB page on its first write
(the kernel zeroes every page): at 4096 x 32000 float32 that is about as long
as the whole softmax.  A loop such as ``grad = cross_entropy_with_grad(x, y)``
drops last step's gradient as it takes the new one, so fastxent keeps the
memory of its large outputs and hands it out again once no array refers to
it any more: the pages are already mapped.

Every array handed out is a view of a pooled block; a block is free when the
pool holds the only reference to it (a view, or a view of a view, refers to
the block itself).  The pool keeps at most ``FASTXENT_BUFFER_CACHE`` bytes
(default 1 GiB; 0 turns recycling off); ``release_buffers()`` frees the
blocks nobody uses.
"""
import math
import os
import sys
import threading

import numpy as np

# Below this, np.empty is served by malloc's own free lists: nothing to gain.
_MIN_BYTES = 4 << 20


def _cache_limit_from_env():
    text = os.environ.get("FASTXENT_BUFFER_CACHE", "").strip()
    if not text:
        return 1 << 30
    try:
        limit = int(text)
    except ValueError:
        raise ValueError(f"FASTXENT_BUFFER_CACHE must be a number of bytes, got {text!r}") from None
    if limit < 0:
        raise ValueError(f"FASTXENT_BUFFER_CACHE must be >= 0 bytes, got {limit}")
    return limit


_limit = _cache_limit_from_env()
_blocks = []  # uint8 arrays, oldest first
_lock = threading.Lock()


def _free_at(i):
    # A free block's only references are the list's and getrefcount's
    # argument.  Indexing, not a loop variable: that would be one more.
    return sys.getrefcount(_blocks[i]) == 2


def empty(shape, dtype):
    """An uninitialised C-contiguous array, like ``np.empty(shape, dtype)``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _MIN_BYTES or nbytes > _limit:
        return np.empty(shape, dtype)
    with _lock:
        for i in range(len(_blocks)):
            if _blocks[i].nbytes == nbytes and _free_at(i):
                block = _blocks.pop(i)
                break
        else:
            # Make room: free idle blocks, oldest first, then forget blocks
            # still in use (their arrays keep them alive).
            held = sum(b.nbytes for b in _blocks)
            for forget_used in (False, True):
                i = 0
                while i < len(_blocks) and held + nbytes > _limit:
                    if forget_used or _free_at(i):
                        held -= _blocks.pop(i).nbytes
                    else:
                        i += 1
            block = np.empty(nbytes, np.uint8)
        _blocks.append(block)
    return block.view(dtype).reshape(shape)


def release_buffers():
    """Free the recycled output memory that no array uses any more.

    Returns the number of bytes freed.
    """
    freed = 0
    with _lock:
        i = 0
        while i < len(_blocks):
            if _free_at(i):
                freed += _blocks.pop(i).nbytes
            else:
                i += 1
    return freed


def cached_bytes():
    """Bytes the pool holds, in use or not, and its limit."""
    with _lock:
        return sum(b.nbytes for b in _blocks), _limit
