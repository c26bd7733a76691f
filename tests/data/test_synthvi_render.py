"""SynthVI's generative model (spec/data/synthvi.md): every size renders, the rendering
agrees with a plain float64 per-pixel oracle written from the spec, the infrared response folds,
an identity's look depends on (seed, pid) alone, and chunking changes no byte."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference.data import synthvi_render
from reference.data.synthvi import write_regdb
from tests.data.test_synthvi import SMALL, files_of


def test_chunking_does_not_change_a_byte(tmp_path, monkeypatch):
    whole = files_of(write_regdb(tmp_path / "a", ids=4, seed=7, image_size=SMALL))
    monkeypatch.setattr(synthvi_render, "CHUNK_PIXELS", 3 * 32 * 16)  # three images per chunk
    assert files_of(write_regdb(tmp_path / "b", ids=4, seed=7, image_size=SMALL)) == whole


@given(h=st.integers(16, 40), w=st.integers(8, 24), seed=st.integers(0, 2**20))
def test_any_valid_size_renders(h, w, seed):
    ident = synthvi_render.identities([1, 2], seed)
    rows = np.array([0, 1, 1])
    for infrared in (False, True):
        cam = synthvi_render.camera(seed, 1, infrared=infrared)
        poses = synthvi_render.poses(np.random.default_rng(seed), 3)
        imgs = synthvi_render.render(ident, rows, cam, poses, (h, w))
        assert imgs.shape == (3, h, w, 3) and imgs.dtype == np.uint8
        assert (imgs == imgs[..., :1]).all() == infrared


def clip01(z: float) -> float:
    return min(1.0, max(0.0, z))


def oracle_image(ident, r: int, cam, poses, b: int, h: int, w: int) -> np.ndarray:
    """Image ``b`` of identity row ``r`` by the formulas of spec/data/synthvi.md, pixel by pixel."""
    bounds = [float(v) for v in ident.bounds[r]]
    big_b = float(poses.scale[b]) * h
    a = float(ident.aspect[r])
    top = (0.5 + float(poses.dy[b])) * h - big_b / 2
    centre = (0.5 + float(poses.dx[b])) * w
    noise = np.random.default_rng(int(poses.noise_seed[b])).standard_normal((h, w))
    pre = np.zeros((h, w, 3))
    for i in range(h):
        for j in range(w):
            y, x = i + 0.5, j + 0.5
            u = (y - top) / big_b
            v = (x - centre) / (a * big_b)
            p = sum(u >= bounds[k] for k in (1, 2, 3))
            ut = clip01((u - bounds[p]) / (bounds[p + 1] - bounds[p]))
            half = float(ident.halfwidth[r, p])
            if p == 0:
                half = half * math.sqrt(max(0.0, 1 - (2 * ut - 1) ** 2)) + 0.02
            alpha = clip01((half - abs(v)) * a * big_b + 0.5)
            alpha *= clip01(u * big_b + 0.5) * clip01((1 - u) * big_b + 0.5)
            if p == 2 and ut > 0.12:
                alpha *= clip01((abs(v) - float(ident.gap[r])) * a * big_b + 0.5)
            f = float(ident.freq[r, p])
            phi, psi = (float(z) for z in ident.phase[r, p])
            sq_h = math.tanh(4 * math.sin(2 * math.pi * f * ut + phi))
            sq_v = math.tanh(4 * math.sin(2 * math.pi * f * v + psi))
            kind = int(ident.kind[r, p])
            tt = [0.0, sq_h, sq_v, sq_h * sq_v][kind]
            t = (1 + tt) / 2
            col = [(1 - t) * ident.base[r, p, c] + t * ident.second[r, p, c] for c in range(3)]
            wave = sum(
                poses.bg_amp[b, m]
                * math.sin(
                    2 * math.pi * (poses.bg_freq[b, m, 0] * y / h + poses.bg_freq[b, m, 1] * x / w)
                    + poses.bg_phase[b, m]
                )
                for m in range(3)
            )
            if cam.infrared:
                s_in = clip01(sum(cam.weights[c] * col[c] for c in range(3)))
                resp = (1 - math.cos(math.pi * cam.fold * s_in**cam.gamma)) / 2
                fg = (
                    cam.level[0]
                    + cam.level[1] * resp
                    + ident.heat[r, p]
                    + ident.emissivity[r, p] * (t - 0.5)
                )
                bg = cam.background[0] + poses.bg_colour[b, 0] / 2 + wave
                pre[i, j, :] = alpha * fg + (1 - alpha) * bg
            else:
                for c in range(3):
                    fg = clip01(poses.gain[b] * cam.white_balance[c] * col[c])
                    bg = cam.background[c] + poses.bg_colour[b, c] + wave
                    pre[i, j, c] = alpha * fg + (1 - alpha) * bg + poses.noise[b] * noise[i, j]
    if cam.infrared:
        blurred = np.zeros_like(pre)
        for i in range(h):
            for j in range(w):
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        ii, jj = min(h - 1, max(0, i + di)), min(w - 1, max(0, j + dj))
                        blurred[i, j] += pre[ii, jj] / 9
        pre = blurred + poses.noise[b] * noise[..., None]
    return np.clip(np.rint(pre * 255), 0, 255)


@given(seed=st.integers(0, 2**32 - 1), infrared=st.booleans())
def test_render_matches_the_per_pixel_oracle(seed, infrared):
    h, w = 20, 10
    ident = synthvi_render.identities([3, 9], seed)
    cam = synthvi_render.camera(seed, 2, infrared=infrared)
    poses = synthvi_render.poses(np.random.default_rng(seed), 2)
    got = synthvi_render.render(ident, np.array([1, 0]), cam, poses, (h, w)).astype(np.float64)
    for b, r in ((0, 1), (1, 0)):
        want = oracle_image(ident, r, cam, poses, b, h, w)
        # same formulas in float64: at most a rounding tie apart
        assert np.abs(got[b] - want).max() <= 1
        assert (np.abs(got[b] - want) > 0).mean() < 0.01


def test_infrared_response_folds_back():
    # kappa > 1: the response rises, peaks and falls again, so colour cannot be read back.
    for cam_id in (3, 6):
        cam = synthvi_render.camera(0, cam_id, infrared=True)
        s_in = np.linspace(0, 1, 201)
        resp = (1 - np.cos(np.pi * cam.fold * s_in**cam.gamma)) / 2
        peak = int(resp.argmax())
        assert 0 < peak < 200 and resp[-1] < resp[peak] - 0.05


def test_identity_appearance_depends_only_on_seed_and_pid():
    alone = synthvi_render.identities([7], 4)
    among = synthvi_render.identities(range(1, 12), 4)
    for field in ("bounds", "halfwidth", "base", "second", "kind", "freq", "emissivity"):
        np.testing.assert_array_equal(getattr(alone, field)[0], getattr(among, field)[6])
