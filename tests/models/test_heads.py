"""Branch heads against a float64 loop oracle written from spec/models/heads.md."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.models import heads
from reference.models.heads import MultiGranularityHead

BN_EPS = 1e-5  # torch's BatchNorm default, which the spec keeps


def oracle_gem(fmap, b, c, rows, p):
    w = len(fmap[0][0][0])
    vals = [max(fmap[b][c][i][j], 0.0) ** p for i in rows for j in range(w)]
    return (sum(vals) / len(vals) + 1e-12) ** (1.0 / p)


def oracle_bn(z, gamma, beta, mean, var, training):
    """Batch norm of column j of z (a list of rows); batch statistics in training mode."""
    n, d = len(z), len(z[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        if training:
            m = sum(z[r][j] for r in range(n)) / n
            v = sum((z[r][j] - m) ** 2 for r in range(n)) / n  # biased, as BN normalises
        else:
            m, v = mean[j], var[j]
        for r in range(n):
            out[r][j] = (z[r][j] - m) / math.sqrt(v + BN_EPS) * gamma[j] + beta[j]
    return out


def oracle(head, fmap_t, training):
    """Features, neck features, logits per branch and the embedding, from the spec's formulas."""
    fmap = fmap_t.tolist()
    batch, channels, h = fmap_t.shape[0], fmap_t.shape[1], fmap_t.shape[2]
    feats, necks, logits, pieces = {}, {}, {}, []
    for kind, g in head.granularities.items():
        n, d = g.stripes, g.dim
        p = g.gem_p
        for i in range(n):
            name = "global" if kind == "global" else f"{kind}.{i}"
            rows = range(i * h // n, (i + 1) * h // n)
            pooled = [
                [oracle_gem(fmap, b, c, rows, p) for c in range(channels)] for b in range(batch)
            ]
            if g.reduce is not None:
                conv, bn = g.reduce[0], g.reduce[1]
                sl = slice(i * d, (i + 1) * d)
                w = conv.weight[sl, :, 0, 0].tolist()
                bias = conv.bias[sl].tolist()
                z = [
                    [
                        sum(w[o][c] * pooled[b][c] for c in range(channels)) + bias[o]
                        for o in range(d)
                    ]
                    for b in range(batch)
                ]
                z = oracle_bn(
                    z,
                    bn.weight[sl].tolist(),
                    bn.bias[sl].tolist(),
                    bn.running_mean[sl].tolist(),
                    bn.running_var[sl].tolist(),
                    training,
                )
                f = [[max(v, 0.0) for v in row] for row in z]
            else:
                f = pooled
            feats[name] = f
            src = f
            if g.neck is not None:
                sl = slice(i * d, (i + 1) * d)
                nk = g.neck
                src = oracle_bn(
                    f,
                    nk.weight[sl].tolist(),
                    nk.bias[sl].tolist(),
                    nk.running_mean[sl].tolist(),
                    nk.running_var[sl].tolist(),
                    training,
                )
                necks[name] = src
            if training:
                v = g.classifier_weight[i].tolist()
                cb = g.classifier_bias[i].tolist() if g.classifier_bias is not None else None
                logits[name] = [
                    [
                        sum(v[k][j] * src[b][j] for j in range(d)) + (cb[k] if cb else 0.0)
                        for k in range(len(v))
                    ]
                    for b in range(batch)
                ]
            if head.embedding in ("all", kind):
                pieces.append(necks[name] if head.embedding_neck else f)
    emb = []
    for b in range(batch):
        parts = [piece[b] for piece in pieces]
        if head.embedding_norm == "branch":
            parts = [
                [x / max(math.sqrt(sum(y * y for y in part)), 1e-12) for x in part]
                for part in parts
            ]
        row = [x for part in parts for x in part]
        if head.embedding_norm == "concat":
            norm = max(math.sqrt(sum(x * x for x in row)), 1e-12)
            row = [x / norm for x in row]
        emb.append(row)
    return feats, necks, logits, emb


@st.composite
def head_cases(draw):
    global_branch = draw(st.booleans())
    coarse = draw(st.integers(0, 3))
    fine = draw(st.integers(0 if (global_branch or coarse) else 1, 4))
    bn_neck = draw(st.booleans())
    present = [k for k, on in (("global", global_branch), ("coarse", coarse), ("fine", fine)) if on]
    kwargs = dict(
        num_classes=draw(st.integers(1, 4)),
        in_channels=draw(st.integers(1, 5)),
        global_branch=global_branch,
        reduce_global=draw(st.booleans()),
        coarse_stripes=coarse,
        fine_stripes=fine,
        reduction_dim=draw(st.integers(1, 4)),
        gem_p=draw(st.sampled_from([1.0, 3.0, 10.0, 2.5])),
        bn_neck=bn_neck,
        embedding=draw(st.sampled_from(["all", *present])),
        embedding_norm=draw(st.sampled_from(["concat", "branch"])),
        embedding_neck=bn_neck and draw(st.booleans()),
    )
    multiple = math.lcm(*(n for n in (1 if global_branch else 0, coarse, fine) if n))
    h = multiple * draw(st.integers(1, 2))
    w = draw(st.integers(1, 3))
    batch = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    return kwargs, (batch, kwargs["in_channels"], h, w), seed


def make(kwargs, shape, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        head = MultiGranularityHead(**kwargs).double()
    # non-trivial batch-norm state so that every term of the formulas matters
    for g in head.granularities.values():
        bns = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for bn in bns:
            with torch.no_grad():
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
                bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
                bn.weight.copy_(torch.randn(bn.num_features, generator=gen))
                if bn.bias.requires_grad:
                    bn.bias.copy_(torch.randn(bn.num_features, generator=gen))
        with torch.no_grad():
            g.classifier_weight.copy_(torch.randn(g.classifier_weight.shape, generator=gen))
            if g.classifier_bias is not None:
                g.classifier_bias.copy_(torch.randn(g.classifier_bias.shape, generator=gen))
    fmap = torch.randn(*shape, generator=gen, dtype=torch.float64).relu()
    return head, fmap


def compare(out, want, training, tol):
    feats, necks, logits, emb = want
    assert list(out.features) == list(feats)
    for name, value in feats.items():
        torch.testing.assert_close(
            out.features[name].cpu().double(), torch.tensor(value, dtype=torch.float64), **tol
        )
    assert sorted(out.neck_features) == sorted(necks)
    for name, value in necks.items():
        torch.testing.assert_close(
            out.neck_features[name].cpu().double(), torch.tensor(value, dtype=torch.float64), **tol
        )
    if training:
        assert sorted(out.logits) == sorted(feats)
        for name, value in logits.items():
            torch.testing.assert_close(
                out.logits[name].cpu().double(), torch.tensor(value, dtype=torch.float64), **tol
            )
    else:
        assert out.logits == {}
    torch.testing.assert_close(
        out.embedding.cpu().double(), torch.tensor(emb, dtype=torch.float64), **tol
    )


@given(head_cases(), st.booleans())
def test_head_matches_the_float64_oracle(device, case, training):
    kwargs, shape, seed = case
    head, fmap = make(kwargs, shape, seed)
    head.train(training)
    modality = torch.arange(shape[0]) % 2
    want = oracle(head, fmap, training)
    out = head.to(device)(fmap.to(device), modality.to(device))
    compare(out, want, training, {"rtol": 1e-9, "atol": 1e-9})
    assert torch.equal(out.modality.cpu(), modality)


@given(head_cases())
def test_float32_head_is_close_to_the_oracle(device, case):
    kwargs, shape, seed = case
    head, fmap = make(kwargs, shape, seed)
    head.eval()
    want = oracle(head, fmap, False)
    out = head.float().to(device)(
        fmap.float().to(device), torch.zeros(shape[0], dtype=torch.int64, device=device)
    )
    compare(out, want, False, {"rtol": 1e-4, "atol": 1e-4})


@given(head_cases())
def test_eval_rows_do_not_depend_on_each_other(device, case):
    kwargs, shape, seed = case
    head, fmap = make(kwargs, shape, seed)
    head.eval().to(device)
    fmap = fmap.to(device)
    modality = torch.zeros(shape[0], dtype=torch.int64, device=device)
    perm = torch.randperm(shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
    full = head(fmap, modality).embedding
    torch.testing.assert_close(head(fmap[perm], modality).embedding, full[perm])
    torch.testing.assert_close(head(fmap[:1], modality[:1]).embedding, full[:1])


def seeded_head(**kwargs) -> MultiGranularityHead:
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        return MultiGranularityHead(**kwargs)


def rand(*shape, dtype=torch.float32):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=dtype)


def test_default_head_branches_and_dimensions(device):
    head = seeded_head(num_classes=7).to(device)
    fmap = rand(2, 2048, 6, 1).to(device)
    out = head.train()(fmap, torch.tensor([0, 1], device=device))
    assert list(out.features) == ["global", "coarse.0", "coarse.1", "coarse.2"] + [
        f"fine.{i}" for i in range(6)
    ]
    assert all(v.shape == (2, 256) for v in out.features.values())
    assert all(v.shape == (2, 7) for v in out.logits.values())
    assert out.embedding.shape == (2, 10 * 256) == (2, head.embedding_dim())
    assert head.row_multiple == 6
    # BN neck bias is frozen at zero; the classifier has no bias behind a neck
    g = head.granularities["fine"]
    assert not g.neck.bias.requires_grad and bool((g.neck.bias == 0).all())
    assert g.classifier_bias is None


def test_embedding_norms(device):
    fmap = rand(3, 16, 6, 2, dtype=torch.float64).to(device)
    kwargs = dict(num_classes=2, in_channels=16, reduction_dim=4)
    branch = seeded_head(embedding_norm="branch", **kwargs).double().eval().to(device)
    emb = branch(fmap, torch.zeros(3, dtype=torch.int64, device=device)).embedding
    blocks = emb.reshape(3, 10, 4).norm(dim=-1)
    # unit blocks, except a block whose features are all zero after the ReLU (stays zero)
    assert bool(((blocks - 1).abs() < 1e-12).logical_or(blocks == 0).all())
    assert int((blocks == 0).sum()) < 5
    concat = seeded_head(**kwargs).double().eval().to(device)
    emb = concat(fmap, torch.zeros(3, dtype=torch.int64, device=device)).embedding
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3, dtype=torch.float64, device=device))


def test_gradients_reach_every_branch(device):
    head = seeded_head(num_classes=3, in_channels=8, reduction_dim=16).to(device).train()
    fmap = rand(4, 8, 6, 2).to(device).requires_grad_(True)
    out = head(fmap, torch.zeros(4, dtype=torch.int64, device=device))
    # squares: a plain sum over the batch of a batch-normalised value has zero gradient
    loss = sum(v.square().sum() for v in (*out.logits.values(), *out.features.values()))
    loss.backward()
    frozen = [name for name, p in head.named_parameters() if not p.requires_grad]
    assert frozen == [f"granularities.{g}.neck.bias" for g in ("global", "coarse", "fine")]
    for name, param in head.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
    assert fmap.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"embedding": "medium"},
            "embedding: expected one of ('all', 'global', 'fine', 'coarse'), got 'medium'",
        ),
        (
            {"embedding_norm": "l1"},
            "embedding_norm: expected one of ('concat', 'branch'), got 'l1'",
        ),
        ({"embedding_neck": True, "bn_neck": False}, "embedding_neck: needs bn_neck=True"),
        (
            {"global_branch": False, "coarse_stripes": 0, "fine_stripes": 0},
            "head: at least one branch is needed (global, coarse or fine)",
        ),
        ({"fine_stripes": 0, "embedding": "fine"}, "embedding: 'fine' needs the fine branch"),
        ({"gem_p": 0.0}, "gem_p: expected a finite number >= 1, got 0.0"),
    ],
)
def test_bad_heads(kwargs, message):
    with pytest.raises(VireidError) as info:
        MultiGranularityHead(num_classes=2, in_channels=4, reduction_dim=2, **kwargs)
    assert str(info.value) == message


def test_map_height_must_split_into_the_stripes(device):
    head = MultiGranularityHead(num_classes=2, in_channels=4, reduction_dim=2).to(device)
    with pytest.raises(VireidError) as info:
        head(rand(2, 4, 4, 2).to(device), torch.zeros(2, dtype=torch.int64, device=device))
    assert str(info.value) == "feature map: height 4 is not divisible into 3 equal stripes"


def per_branch_reference(head, fmap):
    """The head as it was first written, one granularity at a time with autograd's own ops:
    clamp -> pow -> mean per granularity, the reductions as a grouped 1x1 convolution, one
    BN module call each, the classifiers by einsum. The fast head must match it in values,
    gradients and batch-norm running statistics."""
    features, necks, logits, parts = {}, {}, {}, []
    b, c, h, w = fmap.shape
    for kind, g in head.granularities.items():
        n, d, p = g.stripes, g.dim, g.gem_p
        bands = fmap.clamp(min=0).reshape(b, c, n, (h // n) * w)
        if p == 1.0:
            pooled = bands.mean(dim=-1) + 1e-12
        else:
            pooled = (bands.pow(p).mean(dim=-1) + 1e-12).pow(1.0 / p)
        feats = pooled.transpose(1, 2)
        if g.reduce is not None:
            conv, bn, relu = g.reduce
            z = torch.nn.functional.conv2d(
                feats.reshape(b, -1, 1, 1), conv.weight, conv.bias, groups=n
            )
            feats = relu(bn(z)).reshape(b, n, d)
        neck = None
        if g.neck is not None:
            neck = g.neck(feats.reshape(b, -1)).reshape(b, n, d)
        logit = None
        if head.training:
            src = neck if neck is not None else feats
            logit = torch.einsum("bnd,nkd->bnk", src, g.classifier_weight)
            if g.classifier_bias is not None:
                logit = logit + g.classifier_bias
        for i in range(n):
            name = "global" if kind == "global" else f"{kind}.{i}"
            features[name] = feats[:, i]
            if neck is not None:
                necks[name] = neck[:, i]
            if logit is not None:
                logits[name] = logit[:, i]
        if head.embedding in ("all", kind):
            parts.append(neck if head.embedding_neck else feats)
    if head.embedding_norm == "branch":
        parts = [torch.nn.functional.normalize(q, dim=-1) for q in parts]
    embedding = torch.cat([q.flatten(1) for q in parts], dim=1)
    if head.embedding_norm == "concat":
        embedding = torch.nn.functional.normalize(embedding, dim=1)
    return features, necks, logits, embedding


def batch_spread(x: torch.Tensor) -> float:
    """The smallest spread over the batch and positions (max - min) of a BN input's channels,
    each relative to the channel's largest magnitude; channels that are all 0 are left out
    (their BN output is exactly 0 in any order of summation)."""
    flat = x.detach().transpose(0, 1).reshape(x.shape[1], -1)
    scale = flat.abs().amax(dim=1)
    kept = scale > 0
    if not bool(kept.any()):
        return 1.0
    return float(((flat.amax(dim=1) - flat.amin(dim=1))[kept] / scale[kept]).min())


def weighted_loss(features, necks, logits, embedding, seed):
    """A loss that weighs every output value by its own random factor (so no gradient vanishes
    by symmetry, e.g. a plain sum through a batch norm)."""
    gen = torch.Generator().manual_seed(seed)
    values = [*features.values(), *necks.values(), *logits.values(), embedding]
    return sum(
        (v * torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)).sum() for v in values
    )


@given(head_cases(), st.booleans(), st.booleans())
def test_fast_head_equals_the_per_branch_formulation(device, case, training, signed):
    kwargs, shape, seed = case
    fast, fmap = make(kwargs, shape, seed)
    if signed:  # negative values too, not only ReLU output (whose zeros test the kink)
        fmap = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=fmap.dtype)
    slow = copy.deepcopy(fast)
    fast.to(device).train(training)
    slow.to(device).train(training)
    x_fast = fmap.to(device).requires_grad_(True)
    x_slow = fmap.to(device).requires_grad_(True)
    out = fast(x_fast, torch.zeros(shape[0], dtype=torch.int64, device=device))
    got = (out.features, out.neck_features, out.logits, out.embedding)
    spreads: list[float] = []
    hooks = [
        m.register_forward_pre_hook(lambda m, args: spreads.append(batch_spread(args[0])))
        for m in slow.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    want = per_branch_reference(slow, x_slow)
    for hook in hooks:
        hook.remove()
    # a channel (nearly) constant over the batch: a training-mode BN then outputs mostly the
    # rounding noise of (x - mean), which a normalisation can turn into O(1) values; both
    # formulations are right there, their noise differs (seen: 0.008 apart), so such draws
    # are left out (the noise is about 1e-16 / spread relative to the output)
    assume(not training or min(spreads, default=1.0) > 1e-4)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    for g, w in zip(got[:3], want[:3], strict=True):
        assert list(g) == list(w)
        for name in w:
            torch.testing.assert_close(g[name], w[name], **tol)
    torch.testing.assert_close(got[3], want[3], **tol)
    weighted_loss(*got, seed).backward()
    weighted_loss(*want, seed).backward()
    torch.testing.assert_close(x_fast.grad, x_slow.grad, **tol)
    slow_params = dict(slow.named_parameters())
    scale = max((float(p.grad.abs().max()) for p in slow.parameters() if p.grad is not None),
                default=0.0)  # fmt: skip
    for name, param in fast.named_parameters():
        other = slow_params[name].grad
        if param.grad is None or other is None:
            assert param.grad is None and other is None, name
        elif training and name.endswith(".reduce.0.bias"):
            # a bias before a training-mode BatchNorm: its gradient is 0 in exact arithmetic
            # (the BN subtracts the batch mean), what is left is rounding that the BN's
            # 1 / std can magnify (seen: 3.5e-12 against 8.7e-15); both must be that noise
            for g in (param.grad, other):
                assert float(g.abs().max()) <= 1e-9 * max(1.0, scale), name
        else:
            torch.testing.assert_close(param.grad, other, **tol, msg=name)
    slow_buffers = dict(slow.named_buffers())
    for name, buf in fast.named_buffers():
        torch.testing.assert_close(buf, slow_buffers[name], **tol, msg=name)


def test_fast_head_keeps_the_state_dict_keys():
    head = seeded_head(num_classes=3, in_channels=8, reduction_dim=4)
    assert [k for k in head.state_dict() if k.startswith("granularities.fine.")] == [
        "granularities.fine.classifier_weight",
        "granularities.fine.reduce.0.weight",
        "granularities.fine.reduce.0.bias",
        "granularities.fine.reduce.1.weight",
        "granularities.fine.reduce.1.bias",
        "granularities.fine.reduce.1.running_mean",
        "granularities.fine.reduce.1.running_var",
        "granularities.fine.reduce.1.num_batches_tracked",
        "granularities.fine.neck.weight",
        "granularities.fine.neck.bias",
        "granularities.fine.neck.running_mean",
        "granularities.fine.neck.running_var",
        "granularities.fine.neck.num_batches_tracked",
    ]
    assert head.granularities["fine"].reduce[0].weight.shape == (6 * 4, 8, 1, 1)


def test_head_trains_under_bf16_autocast(device):
    """The written-out backwards receive reduced-precision gradients under autocast: they must
    return gradients of each input's own dtype, close to those of the per-branch formulation
    under the same autocast (bf16 alone moves this small head's input gradient by ~30%, so the
    float32 gradients are no yardstick)."""
    fast = seeded_head(num_classes=3, in_channels=16, reduction_dim=8).to(device).train()
    slow = copy.deepcopy(fast)
    fmap = rand(4, 16, 6, 2).to(device)
    tags = torch.zeros(4, dtype=torch.int64, device=device)
    grads = []
    for head in (fast, slow):
        x = fmap.clone().requires_grad_(True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            if head is fast:
                out = head(x, tags)
                values = (out.features, out.neck_features, out.logits, out.embedding)
            else:
                values = per_branch_reference(head, x)
        weighted_loss(*values, 0).float().backward()
        grads.append([x.grad] + [p.grad for p in head.parameters() if p.requires_grad])
    for got, want in zip(*grads, strict=True):
        assert got.dtype == want.dtype == torch.float32
        assert float((got - want).abs().max() / want.abs().max()) < 0.03


def test_a_granularity_alone_equals_its_part_of_the_head(device):
    head = seeded_head(num_classes=3, in_channels=8, reduction_dim=4).double().train().to(device)
    fmap = rand(3, 8, 6, 2, dtype=torch.float64).to(device)
    out = head(fmap, torch.zeros(3, dtype=torch.int64, device=device))
    feats, neck, logits = head.granularities["coarse"](fmap, with_logits=True)
    for i in range(3):
        torch.testing.assert_close(feats[:, i], out.features[f"coarse.{i}"])
        torch.testing.assert_close(neck[:, i], out.neck_features[f"coarse.{i}"])
        torch.testing.assert_close(logits[:, i], out.logits[f"coarse.{i}"])


@pytest.mark.parametrize("bn_neck", [True, False])
def test_second_derivatives(device, bn_neck):
    """The reductions' written-out gradient is itself differentiable: second derivatives
    checked against finite differences of the first, for the map and every parameter.

    gradgradcheck's fast mode checks that Jacobian along random directions instead of column
    by column (1.6 s instead of 15 s); each of three breaks of the backward's graph (the
    weight, the input or the incoming gradient detached) fails it, as the full check does."""
    head = seeded_head(num_classes=3, in_channels=4, reduction_dim=2, bn_neck=bn_neck)
    head = head.double().to(device).eval()
    tags = torch.zeros(3, dtype=torch.int64, device=device)
    names = [n for n, p in head.named_parameters() if p.requires_grad]
    x = rand(3, 4, 6, 2, dtype=torch.float64).add(0.1).to(device).requires_grad_(True)
    params = [head.get_parameter(n).detach().clone().requires_grad_(True) for n in names]

    def run(fmap, *values):
        out = torch.func.functional_call(head, dict(zip(names, values, strict=True)), (fmap, tags))
        return torch.cat([*out.features.values(), *out.logits.values()], dim=1)

    assert torch.autograd.gradgradcheck(run, (x, *params), fast_mode=True)


def test_stripe_linear_fast_path_equals_the_plain_grouped_convolution(device):
    gen = torch.Generator().manual_seed(7)
    n, c, d = 3, 4, 2
    x = torch.randn(5, n, c, generator=gen, dtype=torch.float64).to(device)
    weight = torch.randn(n * d, c, 1, 1, generator=gen, dtype=torch.float64).to(device)
    bias = torch.randn(n * d, generator=gen, dtype=torch.float64).to(device)
    g = torch.randn(5, n, d, generator=gen, dtype=torch.float64).to(device)
    fast = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    plain = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    got = heads._StripeLinearFastBackward.apply(*fast)
    want = heads.stripe_linear_plain(*plain)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    (got * g).sum().backward()
    (want * g).sum().backward()
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
