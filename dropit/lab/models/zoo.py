"""Models people train today, built offline from small configurations, ready for DropIT.

    case = zoo.build("gpt2", "bench")         # the model, an example batch and its loss
    dropit.to_dropit(case.model, gamma=0.9)
    loss = case.loss(case.forward())
    report = dropit.measure_cache(case.model, *case.args, **case.kwargs)

Each case is built from a configuration (no hub, no download), randomly
initialised and seeded, in two sizes: ``"small"`` (the test suite: seconds on a
CPU) and ``"bench"`` (``benchmarks/models.py``; for GPT-2 the configuration of
issue 13: 4 layers, width 512, vocabulary 1000, sequence 256, batch 8).

=============  ===========================================================
name           model
=============  ===========================================================
gpt2           Hugging Face ``GPT2LMHeadModel`` (its ``Conv1D`` layers)
bert           Hugging Face ``BertForMaskedLM``
llama          Hugging Face ``LlamaForCausalLM``
deit_tiny      timm ``deit_tiny_patch16_224``
timm_resnet    timm ``resnet18`` (a CNN: BatchNorm, ReLU, max-pool)
faster_rcnn    torchvision ``fasterrcnn_resnet50_fpn`` (training mode, with targets)
=============  ===========================================================

transformers and timm are imported only when their cases are built (the
``test`` extra installs both); the core never imports them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = ("small", "bench")


@dataclass
class Case:
    """A model with one example training batch: ``model(*args, **kwargs)``, reduced by ``loss``."""

    name: str
    config: str  # what was built, in words
    model: nn.Module
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    loss: Callable[[Any], torch.Tensor] = None  # output -> scalar

    def forward(self):
        return self.model(*self.args, **self.kwargs)


def _hf_loss(out) -> torch.Tensor:
    return out.loss


def _gpt2(size: str) -> Case:
    from transformers import GPT2Config, GPT2LMHeadModel

    layers, width, heads, vocab, seq, batch = (2, 64, 4, 100, 16, 2) if size == "small" else (4, 512, 8, 1000, 256, 8)
    cfg = GPT2Config(n_layer=layers, n_embd=width, n_head=heads, vocab_size=vocab, n_positions=seq,
                     bos_token_id=0, eos_token_id=0)
    ids = torch.randint(0, vocab, (batch, seq))
    return Case("gpt2", f"{layers} layers, width {width}, vocab {vocab}, seq {seq}, batch {batch}",
                GPT2LMHeadModel(cfg), kwargs=dict(input_ids=ids, labels=ids), loss=_hf_loss)


def _bert(size: str) -> Case:
    from transformers import BertConfig, BertForMaskedLM

    layers, width, heads, vocab, seq, batch = (2, 64, 4, 100, 16, 2) if size == "small" else (4, 512, 8, 1000, 256, 8)
    cfg = BertConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads, intermediate_size=4 * width,
                     vocab_size=vocab, max_position_embeddings=seq)
    ids = torch.randint(0, vocab, (batch, seq))
    return Case("bert", f"{layers} layers, width {width}, vocab {vocab}, seq {seq}, batch {batch}",
                BertForMaskedLM(cfg), kwargs=dict(input_ids=ids, labels=ids), loss=_hf_loss)


def _llama(size: str) -> Case:
    from transformers import LlamaConfig, LlamaForCausalLM

    layers, width, heads, vocab, seq, batch = (2, 64, 4, 100, 16, 2) if size == "small" else (4, 512, 8, 1000, 256, 8)
    cfg = LlamaConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads,
                      num_key_value_heads=heads // 2, intermediate_size=width * 11 // 4, vocab_size=vocab,
                      max_position_embeddings=seq, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    ids = torch.randint(0, vocab, (batch, seq))
    return Case("llama", f"{layers} layers, width {width}, {heads} heads ({heads // 2} kv), vocab {vocab}, seq {seq}, batch {batch}",
                LlamaForCausalLM(cfg), kwargs=dict(input_ids=ids, labels=ids), loss=_hf_loss)


def _classifier_case(name: str, config: str, model: nn.Module, batch: int, size: int, classes: int) -> Case:
    images = torch.randn(batch, 3, size, size)
    targets = torch.randint(0, classes, (batch,))
    return Case(name, config, model, args=(images,), loss=lambda logits: F.cross_entropy(logits, targets))


def _deit_tiny(size: str) -> Case:
    import timm

    if size == "small":
        model = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=8, depth=2)
        return _classifier_case("deit_tiny", "DeiT-Ti blocks, depth 2, 32x32, patch 8, batch 2", model, 2, 32, 10)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=1000)
    return _classifier_case("deit_tiny", "deit_tiny_patch16_224, 224x224, batch 8", model, 8, 224, 1000)


def _timm_resnet(size: str) -> Case:
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=10 if size == "small" else 1000)
    batch, res = (2, 32) if size == "small" else (8, 224)
    return _classifier_case("timm_resnet", f"timm resnet18, {res}x{res}, batch {batch}", model, batch, res, 10 if size == "small" else 1000)


def _faster_rcnn(size: str) -> Case:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    res, batch = (64, 2) if size == "small" else (512, 2)
    # small: fewer proposals and sampled regions than the defaults (2000 / 512), so a CPU test takes a second
    fewer = dict(rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100, box_batch_size_per_image=64) if size == "small" else {}
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5, min_size=res, max_size=res, **fewer)
    images = [torch.rand(3, res, res) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(3, 2) * res * 0.5
        wh = torch.rand(3, 2) * res * 0.4 + res * 0.1
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 5, (3,))})
    return Case("faster_rcnn", f"ResNet-50 FPN, {batch} images {res}x{res}, 3 boxes each" + (", fewer proposals" if fewer else ""), model,
                args=(images, targets), loss=lambda losses: sum(losses.values()))


BUILDERS: dict[str, Callable[[str], Case]] = {
    "gpt2": _gpt2,
    "bert": _bert,
    "llama": _llama,
    "deit_tiny": _deit_tiny,
    "timm_resnet": _timm_resnet,
    "faster_rcnn": _faster_rcnn,
}
NAMES = tuple(BUILDERS)


def build(name: str, size: str = "small", seed: int = 0) -> Case:
    """The case ``name`` at ``size`` ("small" or "bench"), seeded: the same weights and batch every time."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NAMES)}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    torch.manual_seed(seed)
    case = BUILDERS[name](size)
    case.model.train()
    return case
