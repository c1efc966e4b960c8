"""The extension over numpy arrays (no torch needed): forward results, poisoned outputs, views."""

import math

import numpy as np
import pytest

import tileflash
from tileflash import _C


def numpy_reference(q, k, v, causal=False, bias=None, scale=None):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    batch, seq_q, heads_q, dim = q.shape
    seq_k, heads_kv = k.shape[1], k.shape[2]
    k = np.repeat(k, heads_q // heads_kv, axis=2)
    v = np.repeat(v, heads_q // heads_kv, axis=2)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * (1.0 / math.sqrt(dim) if scale is None else scale)
    if bias is not None:
        s = s + bias
    if causal:
        allowed = np.arange(seq_k)[None, :] <= np.arange(seq_q)[:, None] + seq_k - seq_q
        s = np.where(allowed, s, -np.inf)
    top = s.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(s - top)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = (np.log(total) + top)[..., 0]
    p = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    return np.einsum("bhqk,bkhd->bqhd", p, v), lse


@pytest.fixture
def generator():
    seed = int(np.random.SeedSequence().entropy % (2**31))
    print(f"test input seed: {seed}")
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dtype,backend,tolerance", [(np.float64, "reference", 1e-6), (np.float32, "auto", 2e-5),
                                                     (np.float16, "auto", 4e-3)])
@pytest.mark.parametrize("causal", [False, True])
def test_numpy_forward_matches_reference(generator, dtype, backend, tolerance, causal):
    q = generator.standard_normal((2, 37, 4, 16)).astype(dtype)
    k = generator.standard_normal((2, 41, 2, 16)).astype(dtype)
    v = generator.standard_normal((2, 41, 2, 16)).astype(dtype)
    out, lse = tileflash.attention(q, k, v, causal=causal, return_lse=True, backend=backend)
    expected, expected_lse = numpy_reference(q, k, v, causal=causal)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and lse.dtype == np.float32
    np.testing.assert_allclose(out.astype(np.float64), expected, atol=tolerance, rtol=0)
    np.testing.assert_allclose(lse, expected_lse, atol=max(tolerance, 1e-5), rtol=0)


def test_numpy_bool_mask_broadcasts_without_copies(generator):
    q = generator.standard_normal((2, 7, 2, 8))
    k = generator.standard_normal((2, 9, 2, 8))
    v = generator.standard_normal((2, 9, 2, 8))
    padding = np.ones((2, 1, 1, 9), dtype=bool)
    padding[1, ..., 5:] = False
    out = tileflash.attention(q, k, v, bias=padding)
    expected, _ = numpy_reference(q, k, v, bias=np.where(padding, 0.0, -np.inf))
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)


def test_every_output_element_is_written(generator):
    """Poisoned outputs: NaN before the call, finite everywhere after, through the raw extension."""
    q = generator.standard_normal((3, 577, 2, 32))
    k = generator.standard_normal((3, 1000, 1, 32))
    v = generator.standard_normal((3, 1000, 1, 32))
    out = np.full(q.shape, np.nan)
    lse = np.full((3, 2, 577), np.nan, dtype=np.float32)
    options = _C.Options()
    options.causal = True
    options.backend = "reference"
    assert _C.forward(q, k, v, out, lse, options) == ("reference", "reference")
    assert np.isfinite(out).all() and np.isfinite(lse).all()


def test_outputs_may_be_strided_views(generator):
    q = generator.standard_normal((1, 5, 3, 8))
    k = generator.standard_normal((1, 6, 3, 8))
    v = generator.standard_normal((1, 6, 3, 8))
    storage = np.full((1, 3, 5, 8), np.nan)
    options = _C.Options()
    _C.forward(q, k, v, storage.transpose(0, 2, 1, 3), None, options)
    expected, _ = numpy_reference(q, k, v)
    np.testing.assert_allclose(storage.transpose(0, 2, 1, 3), expected, atol=1e-6, rtol=0)


def test_read_only_inputs_are_accepted_and_read_only_outputs_refused(generator):
    q = generator.standard_normal((1, 4, 1, 8))
    q.setflags(write=False)
    out = np.empty_like(q)
    _C.forward(q, q, q, out, None, _C.Options())
    with pytest.raises(TypeError):
        _C.forward(q, q, q, q, None, _C.Options())


def test_extension_metadata():
    assert tileflash.__version__ == _C.__version__
    assert isinstance(tileflash.cuda_available(), bool)
    assert tileflash.cuda_device_count() >= 0
