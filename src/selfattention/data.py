"""The running example: "The cat sat on the mat".

Every chapter meets the same six tokens and the same small embeddings, so a reader can check one
level of the library against the last by eye. The embeddings are written by hand (d_model = 8) so
that each dimension means something a reader can name; words outside the tiny vocabulary get a
deterministic pseudo-random vector, so the live widgets accept any sentence.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

SENTENCE: str = "The cat sat on the mat"
TOKENS: tuple[str, ...] = ("The", "cat", "sat", "on", "the", "mat")
D_MODEL: int = 8

#: What each embedding dimension stands for (a reading aid; the maths never uses the names).
FEATURES: tuple[str, ...] = (
    "determiner",
    "noun",
    "verb",
    "preposition",
    "animate",
    "thing/place",
    "f6",
    "f7",
)

# One row per word of the vocabulary (lower case: "The" and "the" share a row, which chapter 4
# uses to show that without positions two equal words get equal outputs).
_TABLE: dict[str, tuple[float, ...]] = {
    "the": (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, -0.1),
    "cat": (0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.3, 0.5),
    "sat": (0.0, 0.0, 1.0, 0.0, 0.5, 0.0, -0.4, 0.2),
    "on": (0.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.1, -0.3),
    "mat": (0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.3, 0.4),
}

#: The tiny vocabulary: word -> id, in first-seen order of the sentence.
VOCAB: dict[str, int] = {w: i for i, w in enumerate(_TABLE)}


def tokenize(text: str) -> list[str]:
    """Split ``text`` into word tokens (letters, digits and apostrophes), keeping their case.

    Raises:
        TypeError: ``text`` is not a string.
        ValueError: ``text`` holds no word.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}.")
    tokens = re.findall(r"[A-Za-z0-9']+", text)
    if not tokens:
        raise ValueError(f"text must contain at least one word, got {text!r}.")
    return tokens


def token_ids(tokens: list[str] | tuple[str, ...] = TOKENS) -> list[int]:
    """Ids of ``tokens`` in :data:`VOCAB` (case-insensitive).

    Raises:
        ValueError: a token is not in the vocabulary (the message lists the vocabulary).
    """
    ids = []
    for t in tokens:
        key = t.lower()
        if key not in VOCAB:
            raise ValueError(
                f"token {t!r} is not in the vocabulary; expected one of {sorted(VOCAB)}."
            )
        ids.append(VOCAB[key])
    return ids


def _vector(word: str) -> tuple[float, ...]:
    key = word.lower()
    if key in _TABLE:
        return _TABLE[key]
    # A stable hash (not Python's salted hash()) so the same word gives the same vector everywhere.
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    return tuple(np.round(rng.normal(0.0, 0.5, D_MODEL), 1).tolist())


def embeddings_list(tokens: list[str] | tuple[str, ...] = TOKENS) -> list[list[float]]:
    """Embeddings of ``tokens`` as a list of T lists of D_MODEL floats (for the loops chapter)."""
    if isinstance(tokens, str):
        raise TypeError("tokens must be a list of words; use tokenize(text) to split a string.")
    if len(tokens) == 0:
        raise ValueError("tokens must hold at least one token, got an empty sequence.")
    return [list(_vector(t)) for t in tokens]


def embeddings(tokens: list[str] | tuple[str, ...] = TOKENS) -> np.ndarray:
    """Embeddings of ``tokens`` as a float64 array of shape (T, D_MODEL)."""
    return np.array(embeddings_list(tokens), dtype=np.float64)


def example_projections(
    d_k: int = 4, d_model: int = D_MODEL, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic W_q, W_k, W_v of shape (d_model, d_k) each, rounded to two decimals.

    Rounded so that printed numbers stay short; scaled by 1/sqrt(d_model) so that X @ W has entries
    of order one. With ``Q = X @ W_q`` (the book writes XW_Q) these give the chapters' numbers.
    """
    if d_k < 1 or d_model < 1:
        raise ValueError(f"d_k and d_model must be >= 1, got d_k={d_k}, d_model={d_model}.")
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 1.0 / np.sqrt(d_model), size=(3, d_model, d_k))
    W = np.round(W, 2)
    return W[0], W[1], W[2]
