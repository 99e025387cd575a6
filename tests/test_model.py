"""The tiny transformer of chapter 10: shapes, causality, KV-cached generation, training, saving."""

from __future__ import annotations

import pytest
import torch

from selfattention import train as tr
from selfattention.model import ModelConfig, TinyTransformer, ablate_heads, generate

TASK = tr.ReversalTask(length=4)


def make_model(seed: int = 0, **kw) -> TinyTransformer:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=TASK.vocab_size, max_len=TASK.seq_len - 1, d_model=16, num_heads=2,
               num_layers=2)
    cfg.update(kw)
    return TinyTransformer(ModelConfig(**cfg)).eval()


def random_ids(B: int, T: int, V: int = TASK.vocab_size, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --- the task -----------------------------------------------------------------------------------

def test_task_examples_and_split():
    d = torch.tensor([[1, 2, 3, 4], [0, 0, 9, 5]])
    ex = TASK.examples(d)
    assert ex.tolist() == [[1, 2, 3, 4, 10, 4, 3, 2, 1], [0, 0, 9, 5, 10, 5, 9, 0, 0]]
    assert TASK.decode(ex[0]) == "1 2 3 4 | 4 3 2 1"
    assert TASK.prompts(ex).tolist() == [[1, 2, 3, 4, 10], [0, 0, 9, 5, 10]]
    train, test = TASK.make_split(300, 100, seed=3)
    assert train.shape == (300, 9) and test.shape == (100, 9)
    rows = {tuple(r) for r in torch.cat([train, test]).tolist()}
    assert len(rows) == 400  # all distinct, hence train and test disjoint
    assert torch.equal(train[:, 5:], train[:, :4].flip(1)) and (train[:, 4] == TASK.sep).all()
    again, _ = TASK.make_split(300, 100, seed=3)
    assert torch.equal(train, again)


def test_shift_and_answer_targets():
    seq = TASK.examples(torch.tensor([[1, 2, 3, 4]]))
    x, y = tr.shift(seq)
    assert torch.equal(x, seq[:, :-1]) and torch.equal(y, seq[:, 1:])
    t = tr.answer_targets(seq, 4)
    assert t.tolist() == [[tr.IGNORE] * 4 + [4, 3, 2, 1]]
    assert seq[0, 1] == 2  # the input is not modified
    logits = torch.zeros(1, 8, TASK.vocab_size)
    logits[0, torch.arange(4, 8), torch.tensor([4, 3, 2, 1])] = 50.0
    assert tr.lm_loss(logits, t) < 1e-6  # the ignored positions do not count


# --- the model ----------------------------------------------------------------------------------

def test_shapes_and_weights():
    m = make_model()
    idx = random_ids(3, 7)
    logits, w = m(idx)
    assert logits.shape == (3, 7, TASK.vocab_size) and w is None
    logits2, w2 = m(idx, need_weights=True)
    assert w2.shape == (2, 3, 2, 7, 7)  # (num_layers, B, H, T, T)
    torch.testing.assert_close(w2.sum(-1), torch.ones(2, 3, 2, 7))
    assert (w2.triu(1) == 0).all()  # causal: nothing above the diagonal
    torch.testing.assert_close(logits, logits2, atol=1e-5, rtol=1e-5)  # fused SDPA = library SDPA


@pytest.mark.parametrize("t", [0, 3, 6])
def test_causality_future_tokens_do_not_change_earlier_logits(t):
    m = make_model()
    idx = random_ids(4, 8)
    changed = idx.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 3) % TASK.vocab_size
    a, _ = m(idx)
    b, _ = m(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_forward_cached_equals_forward():
    m = make_model()
    idx = random_ids(2, 8)
    full, w_full = m(idx, need_weights=True)
    caches = m.new_caches(2)
    a, wa = m.forward_cached(idx[:, :5], caches)  # prefill
    b, wb = m.forward_cached(idx[:, 5:6], caches)
    c, _ = m.forward_cached(idx[:, 6:], caches)
    torch.testing.assert_close(torch.cat([a, b, c], 1), full, atol=1e-5, rtol=1e-5)
    assert wb.shape == (2, 2, 2, 1, 6)  # (num_layers, B, H, T_new, S)
    torch.testing.assert_close(wb[..., 0, :], w_full[..., 5, :6], atol=1e-6, rtol=1e-5)
    assert caches[0].length == 8


def test_forward_cached_without_weights_gives_the_same_logits():
    """need_weights=False (torch's fused SDPA, as generate uses) gives the logits of the
    library's SDPA and None for the weights, for the prefill and for single steps alike."""
    m = make_model(seed=4).double()
    idx = random_ids(3, 8)
    slow, fast = m.new_caches(3), m.new_caches(3)
    for a, b in ((0, 5), (5, 6), (6, 7), (7, 8)):
        want, w = m.forward_cached(idx[:, a:b], slow)
        got, none = m.forward_cached(idx[:, a:b], fast, need_weights=False)
        assert none is None and w.shape == (2, 3, 2, b - a, b)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    x = torch.randn(3, 2, 16, dtype=torch.float64)
    block, c1, c2 = m.blocks[0], m.new_caches(3)[0], m.new_caches(3)[0]
    (want, w), (got, none) = block.step(x, c1), block.step(x, c2, need_weights=False)
    assert none is None and w.shape == (3, 2, 2, 2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_cached_generation_does_not_build_attention_weights(monkeypatch):
    """generate decodes with torch's fused attention, as the uncached path does: the library's
    SDPA (which materialises the weights) is never called, and the tokens are unchanged."""
    m = make_model(seed=2, vocab_size=13, max_len=20, d_model=24, num_heads=3)
    prompt = random_ids(2, 4, V=13, seed=3)
    before = generate(m, prompt, 12)

    def refuse(*args, **kwargs):
        raise AssertionError("generate built attention weights it does not use")

    monkeypatch.setattr("selfattention.multihead.scaled_dot_product_attention", refuse)
    assert torch.equal(generate(m, prompt, 12), before)
    assert torch.equal(generate(m, prompt, 12, use_cache=False), before)


@pytest.mark.parametrize("B", [1, 5])
def test_cached_generation_equals_uncached(B):
    m = make_model(seed=2, vocab_size=13, max_len=20, d_model=24, num_heads=3)
    prompt = random_ids(B, 4, V=13, seed=B)
    t1, l1 = generate(m, prompt, 12, use_cache=True, return_logits=True)
    t2, l2 = generate(m, prompt, 12, use_cache=False, return_logits=True)
    assert t1.shape == (B, 16) and l1.shape == (B, 12, 13)
    assert torch.equal(t1, t2)
    assert torch.equal(t1[:, :4], prompt)
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
    assert torch.equal(generate(m, prompt, 0), prompt)
    assert generate(m, prompt, 0, return_logits=True)[1].shape == (B, 0, 13)


def test_ablate_heads():
    m = make_model()
    idx = random_ids(2, 6)
    base, _ = m(idx)
    with ablate_heads(m, [(0, 1)]):
        one, _ = m(idx)
        assert not torch.allclose(one, base)
    with ablate_heads(m, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        none, _ = m(idx)
        h = m.embed(idx)
        for block in m.blocks:  # every head silenced: attention adds only W_o's bias
            h = h + block.attn.W_o.bias
            h = h + block.mlp(block.ln2(h))
        torch.testing.assert_close(none, m.head(m.ln_f(h)), atol=1e-5, rtol=1e-5)
    after, _ = m(idx)
    torch.testing.assert_close(after, base, atol=0, rtol=0)  # the hooks are gone
    with pytest.raises(ValueError, match=r"\(layer, head\).*got \(2, 0\)"):
        with ablate_heads(m, [(2, 0)]):
            pass


# --- training, evaluation, saving -----------------------------------------------------------

def test_short_training_run_lowers_the_loss_and_is_reproducible():
    train, _ = TASK.make_split(2000, 10, seed=0)
    runs = []
    for _ in range(2):
        m = make_model(num_layers=1, d_model=32)
        runs.append(tr.train(m, train, TASK, steps=60, batch_size=64, lr=5e-3, warmup=10))
    r = runs[0]
    assert len(r.losses) == 60 and r.steps[-1] == 60
    first, last = sum(r.losses[:10]) / 10, sum(r.losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    assert r.losses == runs[1].losses  # same seeds, same machine: the same numbers
    assert not m.training


def test_train_logs_deterministic_lines():
    train, _ = TASK.make_split(200, 10, seed=0)
    lines = []
    tr.train(make_model(), train, TASK, steps=5, batch_size=8, log_every=2, log=lines.append)
    assert [ln.split("  loss")[0] for ln in lines] == ["step     2/5", "step     4/5",
                                                        "step     5/5"]


def test_evaluate_scores_exact_and_digit_accuracy():
    _, test = TASK.make_split(50, 40, seed=1)
    m = make_model()
    ev = tr.evaluate(m, test, TASK)
    assert ev["predictions"].shape == (40, 4) and torch.equal(ev["answers"], test[:, 5:])
    right = ev["predictions"] == ev["answers"]
    assert ev["exact"] == pytest.approx(float(right.all(1).float().mean()))
    assert ev["digit"] == pytest.approx(float(right.float().mean()))
    assert ev["exact"] == tr.evaluate(m, test, TASK, use_cache=False)["exact"]


def test_save_and_load_give_the_same_outputs(tmp_path):
    m = make_model(seed=5)
    path = tmp_path / "tiny.pt"
    tr.save_model(m, path)
    back = tr.load_model(path)
    assert back.config == m.config and not back.training
    idx = random_ids(3, 8)
    torch.testing.assert_close(back(idx)[0], m(idx)[0], atol=0, rtol=0)
    assert torch.equal(generate(back, idx[:, :5], 3), generate(m, idx[:, :5], 3))


# --- bad input ------------------------------------------------------------------------------

def test_bad_input_errors():
    m = make_model()
    with pytest.raises(TypeError, match="idx must hold integer token ids"):
        m(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\).*got shape \(5\)"):
        m(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\).*got shape \(2, 0\)"):
        m(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx has shape \(1, 9\).*max_len=8"):
        m(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx holds ids from 0 to 11.*0 \.\. 10"):
        m(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="num_heads must divide d_model"):
        ModelConfig(vocab_size=5, max_len=4, d_model=10, num_heads=3)
    with pytest.raises(ValueError, match="vocab_size must be an int >= 1"):
        ModelConfig(vocab_size=0, max_len=4)
    with pytest.raises(TypeError, match="config must be a ModelConfig"):
        TinyTransformer({"vocab_size": 5})
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        generate(m, torch.zeros(1, 2, dtype=torch.long), -1)
    with pytest.raises(ValueError, match=r"prompt has shape \(1, 5\).*read 9 tokens"):
        generate(m, torch.zeros(1, 5, dtype=torch.long), 5)
    caches = m.new_caches(2)
    with pytest.raises(ValueError, match="one KVCache per layer"):
        m.forward_cached(torch.zeros(2, 1, dtype=torch.long), caches[:1])
    with pytest.raises(ValueError, match=r"idx_new has shape \(3, 1\).*batch=2"):
        m.forward_cached(torch.zeros(3, 1, dtype=torch.long), caches)
    with pytest.raises(ValueError, match=r"seq must have shape \(B, 2 \* length \+ 1\) = \(B, 9\)"):
        tr.answer_targets(torch.zeros(2, 8, dtype=torch.long), 4)
    with pytest.raises(ValueError, match=r"data must have shape \(N, seq_len\) = \(N, 9\)"):
        tr.train(m, torch.zeros(4, 7, dtype=torch.long), TASK, steps=1)
    with pytest.raises(ValueError, match="only 10000 exist"):
        TASK.make_split(9000, 2000)
    with pytest.raises(ValueError, match=r"digits must have shape \(N, length\) = \(N, 4\)"):
        TASK.examples(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\)"):
        tr.lm_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="length must be an int >= 1"):
        tr.ReversalTask(length=0)


def test_progress_bar_only_in_an_interactive_session(monkeypatch, capsys):
    train, _ = TASK.make_split(100, 10, seed=0)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not tr.interactive_session()
    tr.train(make_model(), train, TASK, steps=2, batch_size=4, log=None)
    assert capsys.readouterr().err == ""  # no bar in batch runs: stored outputs stay text
    monkeypatch.setenv("JPY_SESSION_NAME", "chapters/10_tiny_transformer.ipynb")
    assert tr.interactive_session()
    r = tr.train(make_model(), train, TASK, steps=2, batch_size=4, log_every=1, log=None)
    assert "training" in capsys.readouterr().err  # tqdm's bar (text form outside Jupyter)
    assert r.log == ["step     1/2  loss " + f"{r.losses[0]:.3f}", "step     2/2  loss "
                     + f"{r.losses[1]:.3f}"]

