"""Compact storage: bit packing, choice of positions by density, bytes kept."""
import pytest
import torch

import dropit
from dropit.storage import pack_bits, unpack_bits


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
    expected = {"dense": 4 * n, "bits": 4 * k + n // 8, "index": 4 * k + 4 * k}[kind]
    assert record.nbytes() == expected
    assert record.nbytes() <= 4 * n
    dense = dropit.expand(*record)
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
    back = dropit.expand(*record)
    assert back.is_contiguous(memory_format=torch.channels_last) and torch.equal(back, x)


@pytest.mark.parametrize("value_dtype", [torch.bfloat16, torch.float16])
def test_lower_precision_values_halve_value_bytes_and_round_to_that_dtype(value_dtype):
    x = torch.randn(100, 100)
    full = dropit.sparsify(x, dropit.DropSpec(0.9, "mink"))
    low = dropit.sparsify(x, dropit.DropSpec(0.9, "mink", value_dtype=value_dtype))
    assert low.values.dtype == value_dtype
    assert low.values.nbytes * 2 == full.values.nbytes
    expanded = dropit.expand(*low)
    assert expanded.dtype == torch.float32
    torch.testing.assert_close(expanded, dropit.expand(*full).to(value_dtype).float(), rtol=0, atol=0)


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

