"""Row operations on (n, 3) arrays in the forms numpy runs fast.

numpy reduces along a short last axis and gathers rows by fancy indexing an order of magnitude slower
than it takes rows or combines three columns; on the allocator's hot path (tens of thousands of rows,
several times per allocation) that is most of the time.
"""

from __future__ import annotations

import numpy as np

from controller.allocation.compiled import BoolArray, FloatArray, IntArray


def take(a: FloatArray, index: IntArray) -> FloatArray:
    return a.take(index, axis=0)


def take_bool(a: BoolArray, index: IntArray) -> BoolArray:
    return a.take(index, axis=0)


def take_int(a: IntArray, index: IntArray) -> IntArray:
    return a.take(index, axis=0)


def min3(a: FloatArray) -> FloatArray:
    return np.minimum(np.minimum(a[:, 0], a[:, 1]), a[:, 2])


def any3(a: BoolArray) -> BoolArray:
    return a[:, 0] | a[:, 1] | a[:, 2]
