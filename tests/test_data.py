"""The running example: deterministic tokens, vocabulary and embeddings."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _helpers import one_thread  # noqa: F401 (autouse: one thread per module)

from selfattention import data


def test_sentence_tokens_and_vocab():
    assert data.tokenize(data.SENTENCE) == list(data.TOKENS)
    assert data.tokenize("Don't stop, 2 cats!") == ["Don't", "stop", "2", "cats"]
    assert data.token_ids() == [0, 1, 2, 3, 0, 4]
    assert data.VOCAB == {"the": 0, "cat": 1, "sat": 2, "on": 3, "mat": 4}
    assert len(data.FEATURES) == data.D_MODEL


def test_embeddings_are_fixed():
    X = data.embeddings()
    assert X.shape == (6, data.D_MODEL) and X.dtype == np.float64
    np.testing.assert_array_equal(X[0], X[4])  # "The" and "the" share a row
    np.testing.assert_array_equal(X[1], [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.3, 0.5])
    assert data.embeddings_list() == X.tolist()


def test_unknown_words_are_deterministic_across_processes():
    v = data.embeddings(["zebra", "Zebra"])
    np.testing.assert_array_equal(v[0], v[1])  # case-insensitive
    assert v.shape == (2, 8) and not np.allclose(v[0], data.embeddings(["quokka"])[0])
    code = "from selfattention import data; print(data.embeddings(['zebra'])[0].tolist())"
    env = {"PYTHONHASHSEED": "123", "PATH": ""}
    import os

    env.update({k: os.environ[k] for k in ("PYTHONPATH", "HOME") if k in os.environ})
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert eval(got) == v[0].tolist()  # same vector in a process with another hash seed


def test_example_projections():
    W_q, W_k, W_v = data.example_projections()
    assert W_q.shape == W_k.shape == W_v.shape == (8, 4)
    for a, b in zip(data.example_projections(), (W_q, W_k, W_v)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(W_q, np.round(W_q, 2))
    assert not np.array_equal(data.example_projections(seed=1)[0], W_q)
    assert data.example_projections(d_k=3, d_model=5)[2].shape == (5, 3)


def test_errors():
    with pytest.raises(TypeError, match=r"text must be a string, got int"):
        data.tokenize(3)
    with pytest.raises(ValueError, match=r"text must contain at least one word, got '  !! '"):
        data.tokenize("  !! ")
    with pytest.raises(ValueError, match=r"token 'dog' is not in the vocabulary; expected one of \["):
        data.token_ids(["the", "dog"])
    with pytest.raises(TypeError, match=r"tokens must be a list of words"):
        data.embeddings("the cat")
    with pytest.raises(ValueError, match=r"tokens must hold at least one token"):
        data.embeddings_list([])
    with pytest.raises(ValueError, match=r"d_k and d_model must be >= 1, got d_k=0, d_model=8"):
        data.example_projections(d_k=0)
