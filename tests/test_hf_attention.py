"""Hugging Face attention through transformers' AttentionInterface (dropit.hf_attention), with the real package."""
import copy
import os
import socket
import sys
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

import dropit
from dropit import hf_attention

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
)

T, VOCAB = 24, 50


def _gpt2(dropout=0.0, **kw):
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=T, bos_token_id=0,
                                      eos_token_id=0, attn_pdrop=dropout, resid_pdrop=0.0, embd_pdrop=0.0, **kw))


def _bert(dropout=0.0, **kw):
    return BertForMaskedLM(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                      vocab_size=VOCAB, max_position_embeddings=T, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=dropout, **kw))


def _llama(**kw):
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=T,
                                        bos_token_id=0, eos_token_id=0, pad_token_id=0, **kw))


BUILD = {"gpt2": _gpt2, "bert": _bert, "llama": _llama}


def _batch(seed=0, pad=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (2, T), generator=g)
    kwargs = dict(input_ids=ids, labels=ids)
    if pad:
        mask = torch.ones_like(ids)
        mask[0, -5:] = 0
        kwargs["attention_mask"] = mask
    return kwargs


def _pair(name):
    torch.manual_seed(0)
    plain = BUILD[name]().train()
    return plain, copy.deepcopy(plain)


@pytest.mark.parametrize("pad", [False, True], ids=["causal-or-full", "padding"])
@pytest.mark.parametrize("name", list(BUILD))
def test_forward_is_bit_identical_and_restore_gives_sdpa_back(name, pad):
    plain, model = _pair(name)
    dropit.to_dropit(model, gamma=0.9, quantize="int8")
    assert model.config._attn_implementation == "dropit_int8"
    batch = _batch(pad=pad)
    want = plain(**batch).logits
    with dropit.CacheMeter(model) as meter:
        got = model(**batch).logits
    assert torch.equal(got, want)
    assert meter.report().by_storage().get("logsumexp", 0) > 0  # the kit's attention ran, and the meter names it
    dropit.restore(model)
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(model(**batch).logits, want)


@pytest.mark.parametrize("name", list(BUILD))
def test_gamma_zero_without_quantize_gives_plain_gradients_exactly(name):
    plain, model = _pair(name)
    dropit.to_dropit(model, gamma=0.0)
    assert model.config._attn_implementation == "sdpa"  # attention is a lossy companion: quantize= only
    batch = _batch(pad=True)
    plain(**batch).loss.backward()
    model(**batch).loss.backward()
    for p, q in zip(plain.parameters(), model.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad)


def _flat_grad(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("level, bound", [("int8", 0.03), ("int4", 0.35)])  # docs/lossy-companions.md
@pytest.mark.parametrize("name", list(BUILD))
def test_quantized_gradients_stay_within_the_documented_error(name, level, bound):
    plain, model = _pair(name)
    dropit.to_dropit(model, gamma=0.0, quantize=level)
    batch = _batch(pad=True)
    plain(**batch).loss.backward()
    model(**batch).loss.backward()
    want, got = _flat_grad(plain), _flat_grad(model)
    error = float((got - want).norm() / want.norm())
    assert 0 < error < bound


def _attention_inputs(B=2, H=4, KV=2, L=40, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, D, generator=g).requires_grad_()
    k = torch.randn(B, KV, L, D, generator=g).requires_grad_()
    v = torch.randn(B, KV, L, D, generator=g).requires_grad_()
    return q, k, v


def _dense_attention(q, k, v, mask, causal, keep=None, p=0.0):
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    s = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    L, S = s.shape[-2:]
    if causal:
        s = s.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), -torch.inf)
    if mask is not None:
        s = s.masked_fill(~mask, -torch.inf)
    probs = s.softmax(-1)
    if keep is not None:
        probs = probs * keep * hf_attention._keep_scale(p)
    return probs @ v


@pytest.mark.parametrize("causal", [True, False])
def test_dropout_path_gradients_equal_dense_autograd_with_the_regenerated_mask(causal):
    q, k, v = _attention_inputs()
    B, H, L, _ = q.shape
    mask = None if causal else (torch.rand(B, 1, L, L, generator=torch.Generator().manual_seed(1)) > 0.3)
    if mask is not None:
        mask[..., 0] = True
    p, seed = 0.2, torch.tensor(987654321)
    out = hf_attention._BlockwiseDropout.apply(q, k, v, mask, causal, None, p, seed, None)  # None: keep dense
    keep = hf_attention.keep_mask(seed, p, B, H, L, L, 0, L, "cpu")
    want = _dense_attention(q, k, v, mask, causal, keep, p)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(want, (q, k, v), g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert a.shape == b.shape  # k and v gradients at their own (fewer) heads


def test_dropout_keep_rate_and_expected_output():
    p = 0.1
    keep = hf_attention.keep_mask(torch.tensor(3), p, 2, 4, 256, 256, 0, 256, "cpu")
    n = keep.numel()
    rate = keep.float().mean().item()
    assert abs(rate - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5  # the keep rate, within 4 standard errors
    assert not torch.equal(keep, hf_attention.keep_mask(torch.tensor(4), p, 2, 4, 256, 256, 0, 256, "cpu"))
    # E[output] over seeds is the attention without dropout
    q, k, v = _attention_inputs(B=1, H=2, KV=2, L=16, D=4)
    with torch.no_grad():
        outs = torch.stack([hf_attention._BlockwiseDropout.apply(q, k, v, None, True, None, 0.5, torch.tensor(s), None)
                            for s in range(2000)])
        want = _dense_attention(q, k, v, None, True)
    mean, stderr = outs.mean(0), outs.std(0) / len(outs) ** 0.5
    assert ((mean - want).abs() <= 5 * stderr + 1e-6).all()


def _numels_saved_inside(model, kind, batch):
    """The numel of every tensor saved for backward while a module of class ``kind`` runs."""
    inside, numels = [], []
    handles = []
    for m in model.modules():
        if type(m).__name__ == kind:
            handles.append(m.register_forward_pre_hook(lambda *a: inside.append(1) and None))
            handles.append(m.register_forward_hook(lambda *a: inside.pop() and None))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (inside and numels.append(t.numel())) or t, lambda t: t):
        model(**batch)
    for h in handles:
        h.remove()
    return numels


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_attention_dropout_keeps_nothing_of_size_t_by_t_and_replays_from_the_seed(name):
    torch.manual_seed(0)
    model = BUILD[name](dropout=0.1).train()
    dropit.to_dropit(model, gamma=0.9, quantize="int8")
    batch = _batch()
    report = dropit.measure_cache(model, **batch)
    attention = [layer for layer in report.layers if layer.kind in ("GPT2Attention", "BertSelfAttention")]
    assert attention and all("logsumexp" in layer.storage for layer in attention)
    heads = model.config.num_attention_heads
    assert max(_numels_saved_inside(model, attention[0].kind, batch)) < 2 * heads * T * T  # no (B, H, T, T)
    torch.manual_seed(5)
    a = model(**batch).logits
    torch.manual_seed(5)
    b = model(**batch).logits
    c = model(**batch).logits
    assert torch.equal(a, b) and not torch.equal(a, c)
    model(**batch).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_grouped_query_attention_keeps_k_and_v_at_their_own_heads():
    torch.manual_seed(0)
    model = _llama().train()
    dropit.to_dropit(model, gamma=0.9, quantize="int8")
    attn = model.model.layers[0].self_attn
    B, D = 2, attn.head_dim
    report = dropit.measure_cache(model, **_batch())
    layer = next(layer for layer in report.layers if layer.name == "model.layers.0.self_attn")
    q_dense = B * 4 * T * D * 4
    kv_dense = B * 2 * T * D * 4
    assert layer.dense_bytes == 2 * q_dense + 2 * kv_dense  # q and out at 4 heads, k and v at 2: nothing repeated


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_output_attentions_falls_back_to_eager_with_one_warning(name):
    plain, model = _pair(name)
    plain.set_attn_implementation("eager")
    dropit.to_dropit(model, gamma=0.0, quantize="int8")
    batch = _batch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model(**batch, output_attentions=True)
        model(**batch, output_attentions=True)
    mine = [w for w in caught if "dropit attention" in str(w.message)]
    assert len(mine) == 1 and "output_attentions" in str(mine[0].message)
    want = plain(**batch, output_attentions=True)
    for a, b in zip(out.attentions, want.attentions):
        torch.testing.assert_close(a, b)


def test_a_mask_that_needs_a_gradient_falls_back_with_one_warning():
    plain, model = _pair("bert")
    dropit.to_dropit(model, gamma=0.0, quantize="int8")
    for m in (plain, model):  # a learned additive bias on the scores, as a custom mask
        m.bias = nn.Parameter(torch.zeros(1, 1, T, T))
    batch = _batch()
    outs = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for m in (plain, model, model):
            out = m(**batch, attention_mask=m.bias.expand(2, 1, T, T)).logits
            out.square().mean().backward()
            outs.append((out, m.bias.grad.clone()))
            m.zero_grad()
    assert sum("dropit attention" in str(w.message) for w in caught) == 1
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


def test_a_transformers_without_the_mask_interface_gets_the_version_and_an_untouched_model(monkeypatch):
    torch.manual_seed(0)
    model = _llama()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setitem(sys.modules, "transformers.masking_utils", None)  # as if transformers were older
    with pytest.raises(ValueError, match=r"transformers >= 4\.53"):
        dropit.to_dropit(model, gamma=0.9, quantize="int8")
    assert model.config._attn_implementation == "sdpa"
    assert not list(dropit.converted_modules(model))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    dropit.to_dropit(model, gamma=0.9)  # without quantize= the attention is not touched: no transformers needed
    assert model.config._attn_implementation == "sdpa"


def test_converting_twice_is_refused():
    model = dropit.to_dropit(_llama(), gamma=0.9, quantize="int8", module_filter_fn=lambda m, name: False)
    with pytest.raises(ValueError, match="already converted"):
        dropit.to_dropit(model, gamma=0.9, quantize="int8")


def test_compile_fullgraph_on_llama_gives_the_eager_gradients():
    torch.manual_seed(0)
    model = dropit.to_dropit(_llama().train(), gamma=0.9, strategy="mink", quantize="int8")
    batch = _batch()
    model(**batch).loss.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    compiled(**batch).loss.backward()
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-5)


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = dropit.to_dropit(_llama().train(), gamma=0.9, strategy="mink", quantize="int8")
    ddp = nn.parallel.DistributedDataParallel(model)
    ddp(**_batch(seed=rank)).loss.backward()
    torch.save([p.grad for p in model.parameters()], os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_two_processes_all_reduce_the_gradients(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    grads = []
    for rank in range(2):
        torch.manual_seed(0)
        model = dropit.to_dropit(_llama().train(), gamma=0.9, strategy="mink", quantize="int8")
        model(**_batch(seed=rank)).loss.backward()
        grads.append([p.grad for p in model.parameters()])
    for g0, g1, a, b in zip(got[0], got[1], *grads):
        torch.testing.assert_close(g0, g1)
        torch.testing.assert_close(g0, (a + b) / 2, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_forward_stays_bit_identical_on_llama():
    plain, model = _pair("llama")
    dropit.to_dropit(model, gamma=0.9, quantize="int8")
    batch = _batch(pad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = plain(**batch), model(**batch)
    assert got.logits.dtype == torch.bfloat16 and torch.equal(got.logits, want.logits)
    got.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_model_that_does_not_use_the_interface_keeps_its_attention_with_a_warning(monkeypatch):
    model = _llama()
    monkeypatch.setattr(type(model), "_can_set_attn_implementation", classmethod(lambda cls: False))
    with pytest.warns(UserWarning, match="AttentionInterface"):
        dropit.to_dropit(model, gamma=0.9, quantize="int8")
    assert model.config._attn_implementation == "sdpa"
    assert any(fwd.kind == "gated_mlp" for _, _, fwd in dropit.converted_modules(model))  # the rest is converted


@pytest.mark.slow
def test_a_compiled_bert_with_attention_dropout_at_sequence_512_compiles_and_trains():
    # the dropout mask's hash, traced inline, made inductor print a 64-bit index constant times a large index and
    # overflow int64 at this length; the mask is a custom op now, opaque to the compiler
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                       vocab_size=VOCAB, max_position_embeddings=512, hidden_dropout_prob=0.0)).train()
    model.config.loss_type = "ForMaskedLM"
    dropit.to_dropit(model, gamma=0.9, quantize="int8")
    ids = torch.randint(0, VOCAB, (1, 512))
    try:
        torch.compile(model)(input_ids=ids, labels=ids).loss.backward()
    finally:
        torch._dynamo.reset()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_the_dropout_mask_op_matches_its_reference_and_its_fake_shape():
    seed = torch.tensor(12345, dtype=torch.int64)
    mask = hf_attention.keep_mask(seed, 0.1, 2, 3, 40, 40, 8, 24, "cpu")
    assert mask.shape == (2, 3, 16, 40) and mask.dtype == torch.bool
    assert torch.equal(mask, hf_attention._keep_mask(seed, 0.1, 2, 3, 40, 40, 8, 24, torch.device("cpu")))
    torch.library.opcheck(torch.ops.dropit.dropout_keep_mask.default, (seed, 0.1, 2, 3, 40, 40, 8, 24, torch.device("cpu")))
