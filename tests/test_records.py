"""Records: bit packing, kinds by density, bytes kept, static shapes, the overflow rule."""
import math

import pytest
import torch

import dropit
from dropit.kernels import SAMPLE_SIZE
from dropit.kernels.reference import pack_bits, sample_positions, unpack_bits
from dropit.strategies import STRATEGIES, num_kept


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 1001])
def test_pack_unpack_roundtrip(n):
    mask = torch.rand(n) < 0.3
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 7) // 8
    flags = unpack_bits(packed, n)
    assert flags.dtype == torch.uint8 and torch.equal(flags.bool(), mask)


def test_pack_bits_uses_every_bit_of_every_byte():
    mask = torch.ones(8 * 300, dtype=torch.bool)
    mask[::7] = False
    packed = pack_bits(mask)
    assert torch.equal(unpack_bits(packed, mask.numel()).bool(), mask)
    assert pack_bits(torch.ones(64, dtype=torch.bool)).tolist() == [255] * 8


def test_pack_bits_layout_is_bit_i_of_byte_j():
    mask = torch.zeros(16, dtype=torch.bool)
    mask[[0, 3, 9]] = True
    assert pack_bits(mask).tolist() == [0b1001, 0b10]


def test_pack_bits_of_a_view_with_unaligned_offset():
    base = torch.rand(20) < 0.5
    view = base[3:17]
    assert torch.equal(unpack_bits(pack_bits(view), view.numel()).bool(), view)


@pytest.mark.parametrize(
    "gamma, kind",
    [(0.0, "dense"), (0.02, "dense"), (0.5, "bits"), (0.9, "bits"), (0.99, "index")],
)
def test_positions_chosen_by_density_and_bytes_are_smaller(gamma, kind):
    x = torch.randn(64, 1000)
    record = dropit.sparsify(x, dropit.DropSpec(gamma, "mink"))
    assert record.layout.kind == kind
    n, k = x.numel(), x.numel() - int(gamma * x.numel())
    assert record.layout.capacity == (k if kind != "dense" else n)  # exact min-k holds exactly k
    expected = {"dense": 4 * n, "bits": 4 * k + n // 8, "index": 4 * k + 4 * k}[kind]
    assert record.nbytes() == expected
    assert record.nbytes() <= 4 * n
    dense = dropit.expand(record)
    kept = dropit.STRATEGIES["mink"](x.reshape(-1), gamma).view_as(x)
    torch.testing.assert_close(dense, torch.where(kept, x, 0), rtol=0, atol=0)


def test_gamma_zero_keeps_the_input_itself_without_copy():
    x = torch.randn(8, 8)
    record = dropit.sparsify(x, dropit.DropSpec(0.0))
    assert record.values.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()


def test_channels_last_is_flattened_in_memory_order_without_copy():
    x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last)
    record = dropit.sparsify(x, dropit.DropSpec(0.0))
    assert record.values.data_ptr() == x.data_ptr()
    back = dropit.expand(record)
    assert back.is_contiguous(memory_format=torch.channels_last) and torch.equal(back, x)


def test_any_dense_permutation_is_flattened_without_copy():
    heads = torch.randn(3, 10, 4, 8).transpose(1, 2)  # (N, H, T, hd) view of a (N, T, H, hd) projection
    flat, perm = dropit.record.memory_order(heads)
    assert perm == (0, 2, 1, 3) and flat.data_ptr() == heads.data_ptr()
    back = dropit.record.from_memory_order(flat, heads.shape, perm)
    assert back.stride() == heads.stride() and torch.equal(back, heads)


def test_a_strided_input_is_copied_contiguous_and_kept_right():
    # x[:, ::2] flattens to a 1-D view of stride 2, which the kernels (reading data_ptr densely) must not get
    x = torch.randn(400, 600)[:, ::2]
    flat, perm = dropit.record.memory_order(x)
    assert perm is None and flat.is_contiguous() and torch.equal(flat.view(x.shape), x)
    for strategy in ("sampled", "mink"):
        dense = dropit.expand(dropit.sparsify(x, dropit.DropSpec(0.5, strategy)))
        kept = dense != 0
        assert kept.sum() > 0 and torch.equal(dense[kept], x[kept])
    codes = dropit.quant.quantize(x, 8)
    assert (dropit.quant.dequantize(codes) - x).abs().max() <= x.abs().max() / 127


@pytest.mark.parametrize("value_dtype", [torch.bfloat16, torch.float16])
def test_lower_precision_values_halve_value_bytes_and_round_to_that_dtype(value_dtype):
    x = torch.randn(100, 100)
    full = dropit.sparsify(x, dropit.DropSpec(0.9, "mink"))
    low = dropit.sparsify(x, dropit.DropSpec(0.9, "mink", value_dtype=value_dtype))
    assert low.values.dtype == value_dtype
    assert low.values.nbytes * 2 == full.values.nbytes
    expanded = dropit.expand(low)
    assert expanded.dtype == torch.float32
    torch.testing.assert_close(expanded, dropit.expand(full).to(value_dtype).float(), rtol=0, atol=0)


def test_meta_tensor_record_has_the_real_records_size():
    x = torch.randn(32, 300)
    for gamma in (0.0, 0.5, 0.9, 0.99):
        spec = dropit.DropSpec(gamma, "mink")
        real, meta = dropit.sparsify(x, spec), dropit.sparsify(x.to("meta"), spec)
        assert meta.layout.kind == real.layout.kind
        assert meta.nbytes() == real.nbytes()


@pytest.mark.parametrize("value_dtype, bound", [(torch.bfloat16, 1e-2), (torch.float16, 1e-3)])
def test_lower_precision_values_change_the_weight_gradient_slightly(value_dtype, bound):
    import copy

    layer = torch.nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(4, 16, 12, 12)
    grads = []
    for vdt in (None, value_dtype):
        m = dropit.to_dropit(copy.deepcopy(layer), strategy="mink", gamma=0.9, value_dtype=vdt)
        m(x).square().sum().backward()
        grads.append(m.weight.grad)
    rel = float((grads[1] - grads[0]).norm() / grads[0].norm())
    assert 0 < rel < bound



def _shapes(record):
    return [(tuple(t.shape), t.dtype) for t in (record.values, record.positions, record.count) if t is not None]


@pytest.mark.parametrize("strategy", ["sampled", "mink", "random"])
@pytest.mark.parametrize("gamma", [0.02, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("shape", [(3, 5, 7), (64, 33, 41), (4, 64, 40, 40)])
def test_record_shapes_depend_only_on_the_input_shape_and_gamma(strategy, gamma, shape):
    spec = dropit.DropSpec(gamma, strategy)
    inputs = [
        torch.randn(shape),
        torch.randn(shape).relu() * 100,
        torch.zeros(shape),
        torch.full(shape, 3.0),
        torch.randn(shape).clamp(-0.1, 0.1),
    ]
    records = [dropit.sparsify(x, spec) for x in inputs] + [dropit.sparsify(torch.empty(shape, device="meta"), spec)]
    assert len({str(_shapes(r)) for r in records}) == 1
    assert len({r.layout for r in records}) == 1


def test_sampled_capacity_is_the_kept_count_plus_six_standard_errors():
    n, gamma = 1 << 22, 0.9
    record = dropit.sparsify(torch.randn(n), dropit.DropSpec(gamma, "sampled"))
    k = num_kept(n, gamma)
    margin = record.layout.capacity - k
    assert margin == math.ceil(6 * n * math.sqrt(gamma * (1 - gamma) / SAMPLE_SIZE)) + 1
    assert 0.09 < margin / k < 0.11
    assert int(record.count) <= record.layout.capacity


def _stored_mask(record):
    """Where the record stores an element, from its positions alone."""
    ones = record._replace(values=torch.ones_like(record.values))
    return dropit.expand(ones).bool().view(-1)


def test_overflow_of_a_constant_tensor_keeps_the_first_capacity_elements_in_memory_order():
    n = 4 * SAMPLE_SIZE + 5
    x = torch.full((n,), -2.5)  # every element ties with the largest magnitude
    record = dropit.sparsify(x, dropit.DropSpec(0.9, "sampled"))
    cap = record.layout.capacity
    assert int(record.count) == n > cap  # all selected: an overflow
    stored = _stored_mask(record)
    assert int(stored.sum()) == cap and bool(stored[:cap].all()) and not bool(stored[cap:].any())
    assert torch.equal(dropit.expand(record), torch.where(stored, x, 0))


def test_overflow_from_a_misleading_sample_stores_exactly_what_the_positions_say():
    n = 1 << 20
    x = torch.rand(n) + 1.0
    x[sample_positions(n)] = 0.001  # the sample sees only small values: its threshold keeps nearly all
    record = dropit.sparsify(x, dropit.DropSpec(0.9, "sampled"))
    cap = record.layout.capacity
    assert int(record.count) > cap
    stored = _stored_mask(record)
    selected = STRATEGIES["sampled"](x, 0.9)
    first = selected.nonzero().view(-1)[:cap]  # the first `capacity` selected, in memory order
    assert torch.equal(stored.nonzero().view(-1), first)
    assert torch.equal(dropit.expand(record), torch.where(stored, x, 0))


def test_weight_gradient_after_an_overflow_is_that_of_the_stored_input():
    layer = torch.nn.Linear(SAMPLE_SIZE // 8, 4, bias=False)
    x = torch.full((64, SAMPLE_SIZE // 8), 0.5, requires_grad=True)  # constant: overflows
    converted = dropit.to_dropit(layer, gamma=0.9)
    converted(x).square().sum().backward()
    record = dropit.sparsify(x.detach(), dropit.DropSpec(0.9, "sampled"))
    assert int(record.count) > record.layout.capacity
    g = 2 * torch.nn.functional.linear(x.detach(), layer.weight)
    torch.testing.assert_close(layer.weight.grad, g.t() @ dropit.expand(record))


def test_a_resnet_forward_does_not_overflow():
    import torchvision

    from dropit.record import observe

    model = dropit.to_dropit(torchvision.models.resnet18(num_classes=10), gamma=0.9)
    records = []
    with observe(lambda dense, r: records.append(r)):
        model(torch.randn(4, 3, 64, 64))
    sparse = [r for r in records if r.count is not None]
    assert sparse and all(int(r.count) <= r.layout.capacity for r in sparse)
