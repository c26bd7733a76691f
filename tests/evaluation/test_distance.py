"""Pairwise distances against a float64 loop oracle written from ``spec/evaluation/distance.md``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.distance import (
    PreparedGallery,
    PreparedQueries,
    as_float_matrix,
    first_non_finite,
    pairwise_distance,
    pairwise_distance_partial,
)


def oracle(query: np.ndarray, gallery: np.ndarray, metric: str) -> list[list[float]]:
    """Plain loops in Python floats (float64)."""
    out = []
    for q in query.tolist():
        row = []
        for g in gallery.tolist():
            if metric == "euclidean":
                row.append(math.sqrt(sum((a - b) ** 2 for a, b in zip(q, g, strict=True))))
            else:
                dot = sum(a * b for a, b in zip(q, g, strict=True))
                nq = math.sqrt(sum(a * a for a in q))
                ng = math.sqrt(sum(b * b for b in g))
                row.append(1.0 - dot / (nq * ng))
        out.append(row)
    return out


@st.composite
def feature_pairs(draw, *, nonzero: bool = False):
    n_query = draw(st.integers(1, 6))
    n_gallery = draw(st.integers(1, 7))
    d = draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    query = rng.normal(size=(n_query, d)) * scale
    gallery = rng.normal(size=(n_gallery, d)) * scale
    if draw(st.booleans()):  # exact duplicates: distance 0 up to rounding
        gallery[0] = query[0]
    if nonzero:
        query[np.linalg.norm(query, axis=1) == 0] = 1.0
        gallery[np.linalg.norm(gallery, axis=1) == 0] = 1.0
    return query, gallery


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


@given(pair=feature_pairs(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_euclidean_matches_oracle(device, pair, dtype):
    query, gallery = pair
    q = torch.as_tensor(query, dtype=dtype, device=device)
    g = torch.as_tensor(gallery, dtype=dtype, device=device)
    got = pairwise_distance(q, g, "euclidean")
    assert got.dtype == dtype and got.device.type == device.type
    assert got.shape == (len(query), len(gallery))
    # the oracle on the values the function received (float32 rounding included)
    expected = np.array(oracle(q.double().cpu().numpy(), g.double().cpu().numpy(), "euclidean"))
    # the expansion |q|^2 + |g|^2 - 2 q.g loses ~eps * (|q|^2 + |g|^2) on the squared distance
    sq_q = (q.double() ** 2).sum(1).cpu().numpy()[:, None]
    sq_g = (g.double() ** 2).sum(1).cpu().numpy()[None, :]
    bound = 8 * query.shape[1] * eps(dtype) * (sq_q + sq_g)
    assert np.all(np.abs(got.double().cpu().numpy() ** 2 - expected**2) <= bound)
    assert torch.all(got >= 0)


def out_of_place_euclidean(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The formula of the spec with a new matrix for the product (``torch.addmm``)."""
    bias = (q * q).sum(dim=1, keepdim=True) + (g * g).sum(dim=1)
    return torch.addmm(bias, q, g.T, alpha=-2.0).clamp_min(0.0).sqrt()


@given(pair=feature_pairs(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_euclidean_product_in_place_equals_the_out_of_place_product(device, pair, dtype):
    # the product adds into the matrix of norms in place (addmm_): the same values, every bit
    q, g = (torch.as_tensor(x, dtype=dtype, device=device) for x in pair)
    assert torch.equal(pairwise_distance(q, g), out_of_place_euclidean(q, g))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euclidean_product_in_place_at_the_evaluation_size(device, dtype):
    # d = 2048, a few hundred rows each side: the blocked BLAS kernels of the real protocols
    gen = torch.Generator().manual_seed(3)
    q = (torch.randn(300, 2048, generator=gen) * 4).to(device, dtype)
    g = (torch.randn(517, 2048, generator=gen) * 4).to(device, dtype)
    g[0] = q[0]  # a duplicate: the clamp at 0
    assert torch.equal(pairwise_distance(q, g), out_of_place_euclidean(q, g))


@given(pair=feature_pairs(nonzero=True), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_cosine_matches_oracle(device, pair, dtype):
    query, gallery = pair
    q = torch.as_tensor(query, dtype=dtype, device=device)
    g = torch.as_tensor(gallery, dtype=dtype, device=device)
    got = pairwise_distance(q, g, "cosine")
    assert got.dtype == dtype and got.device.type == device.type
    expected = np.array(oracle(q.double().cpu().numpy(), g.double().cpu().numpy(), "cosine"))
    tol = 8 * query.shape[1] * eps(dtype)
    np.testing.assert_allclose(got.double().cpu().numpy(), expected, rtol=0, atol=tol)


@given(pair=feature_pairs(nonzero=True), scales=st.lists(st.floats(0.01, 100.0), min_size=1))
def test_cosine_ignores_the_norms(device, pair, scales):
    query, gallery = pair
    factors = np.resize(np.array(scales), len(query))[:, None]
    a = pairwise_distance(torch.as_tensor(query, device=device), gallery, "cosine")
    b = pairwise_distance(torch.as_tensor(query * factors, device=device), gallery, "cosine")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@given(pair=feature_pairs(nonzero=True))
def test_unit_features_rank_alike_under_both_metrics(device, pair):
    """For L2-normalised features, euclidean^2 = 2 * cosine distance (spec: same ranking)."""
    query, gallery = pair
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    q = torch.as_tensor(query, device=device)
    euclid = pairwise_distance(q, gallery, "euclidean")
    cosine = pairwise_distance(q, gallery, "cosine")
    torch.testing.assert_close(euclid**2, 2 * cosine, rtol=0, atol=1e-12)


@given(pair=feature_pairs())
def test_euclidean_is_symmetric(device, pair):
    query, gallery = pair
    q = torch.as_tensor(query, device=device)
    g = torch.as_tensor(gallery, device=device)
    scale = float(max(np.abs(query).max(), np.abs(gallery).max()))
    torch.testing.assert_close(
        pairwise_distance(q, g), pairwise_distance(g, q).T, rtol=0, atol=1e-6 * scale
    )


def test_hand_example(device):
    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, device=device)
    g = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64, device=device)
    assert pairwise_distance(q, g).tolist() == [[5.0, 1.0], [0.0, math.sqrt(18.0)]]
    cos = pairwise_distance(g, g, "cosine").tolist()
    assert cos[0][1] == pytest.approx(1.0 - 4.0 / 5.0, abs=1e-15)
    assert cos[0][0] == pytest.approx(0.0, abs=1e-15)


def test_numpy_and_half_inputs(device):
    rng = np.random.default_rng(1)
    query = rng.normal(size=(4, 3)).astype(np.float32)
    gallery = rng.normal(size=(5, 3)).astype(np.float32)
    from_numpy = pairwise_distance(query, gallery)
    assert from_numpy.dtype == torch.float32 and from_numpy.device.type == "cpu"
    half = pairwise_distance(
        torch.as_tensor(query, device=device).half(), torch.as_tensor(gallery, device=device)
    )
    assert half.dtype == torch.float32  # float16 is computed in float32
    mixed = pairwise_distance(
        torch.as_tensor(query, device=device), torch.as_tensor(gallery, device=device).double()
    )
    assert mixed.dtype == torch.float64  # the wider of the two


@pytest.mark.parametrize(
    ("query", "gallery", "metric", "message"),
    [
        (
            torch.zeros(2, 3),
            torch.zeros(4, 2),
            "euclidean",
            "gallery_features: expected 3 columns like query_features, got 2",
        ),
        (
            torch.zeros(2, 3, dtype=torch.int32),
            torch.zeros(4, 3),
            "euclidean",
            "query_features: expected a floating-point array (n, d), got dtype torch.int32",
        ),
        (
            np.zeros((2, 3), dtype=np.int64),
            torch.zeros(4, 3),
            "euclidean",
            "query_features: expected a floating-point array (n, d), got dtype int64",
        ),
        (
            [[0.0, 1.0]],
            torch.zeros(4, 2),
            "euclidean",
            "query_features: expected a torch.Tensor or numpy.ndarray (n, d), got <class 'list'>",
        ),
        (
            torch.zeros(2, 3),
            torch.zeros(3),
            "euclidean",
            "gallery_features: expected a 2-D array (n, d), got shape (3,)",
        ),
        (
            torch.tensor([[0.0, 1.0], [1.0, float("inf")]]),
            torch.zeros(4, 2),
            "euclidean",
            "query_features: contains NaN or inf (first in row 1); expected finite",
        ),
        (
            torch.ones(2, 2),
            torch.tensor([[1.0, 1.0], [0.0, 0.0]]),
            "cosine",
            "gallery_features: row 1 has zero norm; the cosine distance needs non-zero features",
        ),
        (
            torch.ones(2, 2),
            torch.ones(2, 2),
            "l1",
            "metric: unknown metric 'l1'; expected one of 'euclidean', 'cosine'",
        ),
    ],
)
def test_bad_input_is_named(device, query, gallery, metric, message):
    if isinstance(query, torch.Tensor):
        query = query.to(device)
    with pytest.raises(VireidError) as info:
        pairwise_distance(query, gallery, metric)
    assert str(info.value) == message


def test_finite_features_whose_sum_overflows_are_accepted(device):
    # Every entry is finite but the float32 sum is inf: the finite-sum shortcut must fall back
    # to the elementwise test, not reject the input ("a finite sum proves every entry finite").
    query = torch.full((4, 1), 1.0e38, device=device)
    assert not bool(torch.isfinite(query.sum()))
    gallery = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    d = pairwise_distance(query, gallery, "cosine")
    assert d.dtype == torch.float64
    assert d.tolist() == [[0.0, 2.0]] * 4


def test_gallery_is_moved_to_the_query_device(device):
    # spec: "The result is on `query`'s device; `gallery` is moved there."
    query = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, device=device)
    for gallery in (torch.tensor([[3.0, 4.0]], dtype=torch.float64), np.array([[3.0, 4.0]])):
        d = pairwise_distance(query, gallery)
        assert d.device == query.device
        assert d.cpu().tolist() == [[5.0], [0.0]]


NON_FINITE = [math.nan, math.inf, -math.inf]


@given(
    st.integers(1, 5),
    st.integers(1, 5),
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 4), st.sampled_from(NON_FINITE)), max_size=3
    ),
    st.sampled_from([np.float32, np.float64]),
)
def test_first_non_finite_is_the_first_bad_entry_in_row_major_order(rows, cols, bad, dtype):
    m = np.ones((rows, cols), dtype=dtype)
    for i, j, v in bad:
        m[i % rows, j % cols] = v
    oracle = next(
        ((i, j) for i in range(rows) for j in range(cols) if not math.isfinite(float(m[i, j]))),
        None,
    )
    assert first_non_finite(torch.from_numpy(m)) == oracle


def test_first_non_finite_sees_past_an_overflowing_sum():
    big = torch.full((2, 3), 3e38, dtype=torch.float32)  # the sum overflows; every entry is finite
    assert first_non_finite(big) is None
    big[1, 2] = math.nan
    assert first_non_finite(big) == (1, 2)


def test_as_float_matrix_keeps_floats_and_names_the_expected_shape():
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    out = as_float_matrix(a, "x", "(n, d)")
    assert out.dtype == torch.float16 and out.shape == (2, 3)
    assert out.data_ptr() == torch.from_numpy(a).data_ptr()  # the array is not copied
    t = torch.zeros(1, 4, dtype=torch.float64)
    assert as_float_matrix(t, "x", "(n, d)") is t
    floating = "x: expected a floating-point array (a, b), got dtype"
    typed = "x: expected a torch.Tensor or numpy.ndarray"
    cases = [
        (np.zeros((2, 2), dtype=np.int32), {}, f"{floating} int32"),
        (torch.zeros(2, 2, dtype=torch.int64), {}, f"{floating} torch.int64"),
        ([[1.0]], {}, f"{typed} (a, b), got <class 'list'>"),
        ([[1.0]], {"shape_on_type": False}, f"{typed}, got <class 'list'>"),
        (np.zeros(3), {}, "x: expected a 2-D array (a, b), got shape (3,)"),
    ]
    for value, kw, message in cases:
        with pytest.raises(VireidError) as info:
            as_float_matrix(value, "x", "(a, b)", **kw)
        assert str(info.value) == message


@given(
    pair=feature_pairs(nonzero=True),
    metric=st.sampled_from(["euclidean", "cosine"]),
    q_dtype=st.sampled_from([torch.float64, torch.float32, torch.float16]),
    g_dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_prepared_queries_equal_the_plain_call(device, pair, metric, q_dtype, g_dtype):
    # the queries' side computed once, then met by two galleries: every value to the last bit,
    # also where a gallery of a wider dtype makes the plain call compute in that dtype
    query, gallery = pair
    q = torch.tensor(query, device=device).to(q_dtype)
    prepared = PreparedQueries.of(q, metric)
    for g in (torch.tensor(gallery, device=device).to(g_dtype), torch.tensor(gallery[::-1].copy())):
        got, expected = prepared.distances(g), pairwise_distance(q, g, metric)
        assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_prepared_queries_are_checked_and_matched():
    with pytest.raises(VireidError, match=r"^metric: unknown metric 'l1'"):
        PreparedQueries.of(torch.ones(2, 3), "l1")
    with pytest.raises(VireidError, match=r"^query_features: row 1 has zero norm"):
        PreparedQueries.of(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "cosine")
    prepared = PreparedQueries.of(torch.ones(2, 3), "euclidean")
    with pytest.raises(VireidError, match=r"^gallery_features: expected 3 columns"):
        prepared.distances(torch.ones(2, 4))
    cosine = PreparedGallery.build(torch.ones(2, 3), "cosine", torch.float32, 3)
    with pytest.raises(VireidError) as info:
        cosine.distances_to(prepared)
    assert str(info.value) == (
        "queries: prepared for euclidean in torch.float32, the gallery for cosine in torch.float32"
    )


# ---------------------------------------------------------------------------------------------
# rows that skip columns (pairwise_distance_partial)
# ---------------------------------------------------------------------------------------------


@given(
    pair=feature_pairs(nonzero=True),
    metric=st.sampled_from(["euclidean", "cosine"]),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    data=st.data(),
)
def test_partial_distances_are_the_oracle_outside_the_skipped_block(
    device, pair, metric, dtype, data
):
    query, gallery = pair
    n_query, n_gallery = len(query), len(gallery)
    width = data.draw(st.integers(0, n_gallery), label="width")
    short = np.array(data.draw(st.lists(st.booleans(), min_size=n_query, max_size=n_query)))
    q = torch.as_tensor(query, dtype=dtype, device=device)
    g = torch.as_tensor(gallery, dtype=dtype, device=device)
    got = pairwise_distance_partial(q, g, metric, short_rows=short, width=width)
    assert got.dtype == dtype and got.device.type == device.type
    assert got.shape == (n_query, n_gallery)
    got = got.double().cpu().numpy()
    expected = np.array(oracle(q.double().cpu().numpy(), g.double().cpu().numpy(), metric))
    read = ~(short[:, None] & (np.arange(n_gallery) >= width)[None])
    assert np.all(got[~read] == 0.0)  # no distance there: 0
    # within the plain call's error bounds of the oracle (above): the products differ in shape
    # only, and a BLAS may round another shape otherwise (a near-duplicate's cancellation then
    # leaves another small remainder), so each is held to the bound, not to the other's bits
    if metric == "euclidean":
        sq_q = (q.double() ** 2).sum(1).cpu().numpy()[:, None]
        sq_g = (g.double() ** 2).sum(1).cpu().numpy()[None, :]
        bound = 8 * query.shape[1] * eps(dtype) * (sq_q + sq_g)
        assert np.all((np.abs(got**2 - expected**2) <= bound)[read])
    else:
        assert np.all((np.abs(got - expected) <= 8 * query.shape[1] * eps(dtype))[read])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_partial_distances_at_the_sysu_size_equal_the_whole_product(device, metric):
    # SYSU-MM01's shape (3,803 queries, about half of camera 3; the single-shot pool of 2,489
    # images, its 470 camera-2 ones last; d = 2048): on the CPU's BLAS every entry computed is
    # the whole product's to the last bit (a near-tie then ranks alike), and the product into
    # rows a cache line apart is the compact product's; another device's library may choose
    # another kernel for another shape: within rounding there
    gen = torch.Generator().manual_seed(5)
    q = (torch.randn(3803, 2048, generator=gen) * 3).to(device)
    g = (torch.randn(2489, 2048, generator=gen) * 3).to(device)
    short = torch.rand(3803, generator=gen).to(device) < 0.5
    width = 2489 - 470
    got = pairwise_distance_partial(q, g, metric, short_rows=short, width=width)
    whole = pairwise_distance(q, g, metric)
    # rows a cache line apart (the products' outputs): the values of a compact product
    assert whole.stride(0) % 16 == 0 and whole.stride(1) == 1
    if metric == "euclidean":
        compact = (q * q).sum(dim=1, keepdim=True) + (g * g).sum(dim=1)
        compact = compact.addmm_(q, g.T, alpha=-2.0).clamp_min_(0.0).sqrt_()
    else:
        unit_q, unit_g = (x / x.norm(dim=1, keepdim=True) for x in (q, g))
        compact = torch.ones(3803, 2489, device=device).addmm_(unit_q, unit_g.T, alpha=-1.0)
    got[short, width:] = whole[short, width:]  # the skipped block aside
    if device.type == "cpu":
        assert torch.equal(got, whole)
        assert compact.is_contiguous() and torch.equal(whole, compact)
    else:
        torch.testing.assert_close(got, whole)
        torch.testing.assert_close(whole, compact)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"short_rows": np.zeros(3, dtype=bool), "width": 5},
            "width: expected an integer in 0..4, got 5",
        ),
        (
            {"short_rows": np.zeros(3, dtype=bool), "width": -1},
            "width: expected an integer in 0..4, got -1",
        ),
        (
            {"short_rows": np.zeros(2, dtype=bool), "width": 1},
            "short_rows: expected a bool array of shape (3,) (one per query), got (2,) of "
            "torch.bool",
        ),
        (
            {"short_rows": np.zeros(3, dtype=np.int64), "width": 1},
            "short_rows: expected a bool array of shape (3,) (one per query), got (3,) of "
            "torch.int64",
        ),
    ],
)
def test_partial_distances_bad_input(device, kwargs, message):
    q, g = torch.ones(3, 2, device=device), torch.ones(4, 2, device=device)
    with pytest.raises(VireidError) as info:
        pairwise_distance_partial(q, g, "euclidean", **kwargs)
    assert str(info.value) == message
