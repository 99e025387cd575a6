"""Level 1: attention with scalar Python loops (no NumPy, no torch).

Everything here works on plain lists of floats so that every multiply and add is visible. It is
slow on purpose: chapter 2 counts the operations and chapter 3 times it against NumPy.

Shapes are written as list nesting: Q is T lists of d_k floats, K is S lists of d_k floats,
V is S lists of d_v floats.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

Matrix = list[list[float]]


def _shape(name: str, rows: object, width_name: str) -> tuple[int, int]:
    """Check ``rows`` is a non-empty list of equal-length lists of numbers; return (n, width)."""
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        raise TypeError(f"{name} must be a list of rows (lists of floats), got {type(rows).__name__}.")
    if len(rows) == 0:
        raise ValueError(f"{name} is empty (0 rows): attention needs at least one token.")
    widths = set()
    for i, row in enumerate(rows):
        if not isinstance(row, Sequence) or isinstance(row, str):
            raise TypeError(
                f"{name}[{i}] must be a list of floats, got {type(row).__name__}; {name} must be "
                f"a list of rows with shape (n, {width_name})."
            )
        widths.add(len(row))
        for c, x in enumerate(row):
            if isinstance(x, bool) or not isinstance(x, numbers.Real):
                raise TypeError(f"{name}[{i}][{c}] must be a number, got {type(x).__name__} {x!r}.")
            if not math.isfinite(x):
                # NaN would poison every weight of its row; the loops level refuses it up front.
                raise ValueError(
                    f"{name}[{i}][{c}] is {x}: the loops level needs finite numbers (NaN and "
                    "inf are rejected here; the NumPy and torch levels pass them through as NaN)."
                )
    if len(widths) != 1:
        raise ValueError(
            f"{name} must be rectangular (every row the same length {width_name}), got row "
            f"lengths {_first([len(row) for row in rows])} (in row order)."
        )
    return len(rows), widths.pop()


def _first(values: list, n: int = 10) -> str:
    """The list as text, cut after ``n`` items (a long ragged input keeps its message short)."""
    return str(values) if len(values) <= n else str(values[:n])[:-1] + ", ...]"


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    """Dot product of two equal-length lists: sum_i a[i] * b[i].

    Raises:
        ValueError: the lists have different lengths.
    """
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length, got len(a)={len(a)}, len(b)={len(b)}.")
    total = 0.0
    for x, y in zip(a, b):
        total += x * y
    return total


def softmax(scores: Sequence[float]) -> list[float]:
    """Numerically stable softmax of a list of scores.

    Subtracting the maximum first leaves the result unchanged (it cancels between numerator and
    denominator) but keeps every exponent <= 0, so exp never overflows. Entries equal to -inf get
    weight 0; a list of only -inf (a fully masked row) returns all zeros, as torch's SDPA does from
    torch 2.5 on (``torch.softmax`` gives NaN there).

    Args:
        scores: S floats (may contain -inf).
    Returns:
        S floats that are >= 0 and sum to 1 (or all 0 for a fully masked row).
    Raises:
        ValueError: ``scores`` is empty or contains NaN or +inf.
    """
    if len(scores) == 0:
        raise ValueError("scores is empty: softmax needs at least one score.")
    for s in scores:
        if s != s or s == math.inf:
            raise ValueError(f"scores must be finite or -inf, got {s} in {list(scores)}.")
    m = max(scores)
    if m == -math.inf:
        return [0.0] * len(scores)
    exps = [math.exp(s - m) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def attention(
    Q: Matrix, K: Matrix, V: Matrix, causal: bool = False, scale: float | None = None
) -> tuple[Matrix, Matrix]:
    """Scaled dot-product attention, one query at a time, one key at a time.

    For each query i: score_ij = (Q[i] . K[j]) * scale, weights_i = softmax(scores_i),
    output_i = sum_j weights_ij * V[j]. With ``causal=True`` query i only sees keys j <= i (the
    top-left alignment of torch's ``is_causal``).

    Args:
        Q: T rows of d_k floats.
        K: S rows of d_k floats.
        V: S rows of d_v floats.
        causal: hide keys after the query's position.
        scale: multiply scores by this; default 1/sqrt(d_k).
    Returns:
        (outputs, weights): T rows of d_v floats, and T rows of S weights that sum to 1.
    Raises:
        TypeError: an argument is not a list of lists of numbers.
        ValueError: empty input, ragged rows, d_k = 0, mismatched d_k / S between Q, K and V, or
            a NaN or infinite entry (this level rejects them; NumPy and torch propagate NaN).
    """
    T, d_k = _shape("Q", Q, "d_k")
    S, d_k2 = _shape("K", K, "d_k")
    S2, d_v = _shape("V", V, "d_v")
    if d_k != d_k2:
        raise ValueError(
            f"Q and K must have the same width d_k: Q has shape ({T}, {d_k}) but K has shape ({S}, {d_k2})."
        )
    if S != S2:
        raise ValueError(
            f"K and V must have the same number of rows S: K has shape ({S}, {d_k2}) but V has "
            f"shape ({S2}, {d_v})."
        )
    if d_k == 0:
        raise ValueError(
            f"Q and K have width d_k = 0 (Q has shape ({T}, 0)): a score needs at least one "
            "feature, and 1/sqrt(d_k) would divide by zero."
        )
    if scale is None:
        scale = 1.0 / math.sqrt(d_k)

    outputs: Matrix = []
    weights: Matrix = []
    for i in range(T):
        scores = []
        for j in range(S):
            if causal and j > i:
                scores.append(-math.inf)  # the future is hidden
            else:
                scores.append(dot(Q[i], K[j]) * scale)
        w = softmax(scores)
        out = [0.0] * d_v
        for j in range(S):
            for c in range(d_v):
                out[c] += w[j] * V[j][c]
        outputs.append(out)
        weights.append(w)
    return outputs, weights


def matmul(A: Matrix, B: Matrix) -> Matrix:
    """Matrix product of an (n, m) and an (m, p) list of lists, with three loops.

    Raises:
        ValueError: the inner dimensions differ.
    """
    n, m = _shape("A", A, "m")
    m2, p = _shape("B", B, "p")
    if m != m2:
        raise ValueError(
            f"A and B do not chain: A has shape ({n}, {m}), B has shape ({m2}, {p}); "
            "expected B to have m rows."
        )
    return [[sum(A[i][t] * B[t][j] for t in range(m)) for j in range(p)] for i in range(n)]


def self_attention(
    X: Matrix, W_q: Matrix, W_k: Matrix, W_v: Matrix, causal: bool = False
) -> tuple[Matrix, Matrix]:
    """Project X (T, d_model) with W_q, W_k (d_model, d_k) and W_v (d_model, d_v), then attend."""
    return attention(matmul(X, W_q), matmul(X, W_k), matmul(X, W_v), causal=causal)


def count_multiply_adds(T: int, S: int, d_k: int, d_v: int) -> int:
    """Multiply-adds done by :func:`attention`: T*S*d_k for the scores plus T*S*d_v for the sums."""
    return T * S * d_k + T * S * d_v
