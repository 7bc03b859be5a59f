"""Plain-PyTorch references of each structured adapter's ΔW, written from the papers' formulas.

Each takes the layer's parameterisation (for its tensors) and W0 (m, n) and returns ΔW (m, n) with
explicit loops / dense products, independently of the library's factored code paths.
"""

from __future__ import annotations

import math

import torch


def vera(d, w0):
    return torch.diag(d.vera_lambda_b) @ d.vera_B @ torch.diag(d.vera_lambda_d) @ d.vera_A


def nola(d, w0):
    a = sum(d.nola_alpha[i] * d.nola_A[i] for i in range(d.nola_A.shape[0]))
    b = sum(d.nola_beta[j] * d.nola_B[j] for j in range(d.nola_B.shape[0]))
    return d.scale * b @ a


def randlora(d, w0):
    """Σ over (k, b) of a basis column of B times λ[k, b]·A[k]·γ[b], paired as PEFT flattens them."""
    m, n = w0.shape
    lam, gam = d.randlora_lambda, d.randlora_gamma
    r, nb = lam.shape
    big = d.randlora_B.reshape(d.randlora_B.shape[0], -1)        # columns in (b, k) order
    out = torch.zeros(max(m, n), min(m, n), dtype=w0.dtype)
    for k in range(r):
        for b in range(nb):
            c = k * nb + b                                       # rows of the small side in (k, b) order
            out = out + torch.outer(big[:, c], lam[k, b] * d.randlora_A[k, 0] * gam[b])
    return d.scale * (out if n <= m else out.t())


def svfit(d, w0):
    return d.svfit_U @ torch.diag(d.svfit_sigma - d.svfit_sigma0) @ d.svfit_Vh


def svft(d, w0):
    k = d.svft_U.shape[1]
    m_core = torch.zeros(k, k, dtype=w0.dtype)
    for (i, j), v in zip(d.svft_index.t().tolist(), d.svft_values, strict=True):
        m_core[i, j] = m_core[i, j] + v
    gate = 1.0 if d.svft_gate is None else 1.0 / (1.0 + torch.exp(-d.svft_gate[0]))  # σ(g), the reference's gate
    return d.svft_U @ (gate * m_core) @ d.svft_Vh


def loldu(d, w0):
    return d.loldu_L @ (d.loldu_sigma * torch.diag(d.loldu_z) - torch.diag(d.loldu_z0)) @ d.loldu_U


def qr_lora(d, w0):
    return d.scale * sum(d.qr_lambda[i] * torch.outer(d.qr_Q[:, i], d.qr_R[i]) for i in range(d.rank))


def mora_rope(m, n, mm):
    """MoRA type 6 (arXiv 2405.12130 Eq. 9 as kongds/MoRA implements it), one column and one entry at a time.

    Input feature j sits at padded position j, and also at n + j when j < pad (wrap-around padding).
    Position p is entry q = p mod r̂ of chunk i = p // r̂; chunk i is rotated by RoPE at position i
    (pairs (t, t + r̂/2) turned by the angle i·10000^(−2t/r̂)), multiplied by M, and written to output
    slots i·r̂ … i·r̂ + r̂ − 1 of a b·r̂ vector, which is tiled/truncated to length m.
    """
    rh = mm.shape[0]
    h = rh // 2
    nb = -(-n // rh)
    pad = nb * rh - n
    out = torch.zeros(m, n, dtype=mm.dtype)
    for j in range(n):
        for p in [j] + ([n + j] if j < pad else []):
            i, q = divmod(p, rh)
            t = q % h
            angle = i * 10000.0 ** (-2.0 * t / rh)
            rotated = torch.zeros(rh, dtype=torch.float64)  # R_i·e_q
            rotated[q] = math.cos(angle)
            rotated[q + h if q < h else q - h] = math.sin(angle) if q < h else -math.sin(angle)
            z = mm @ rotated.to(mm.dtype)
            for row in range(m):
                s = row % (nb * rh)
                if s // rh == i:
                    out[row, j] += z[s % rh]
    return out


def mora(d, w0):
    m, n = w0.shape
    if d.mora_type == 6:
        return mora_rope(m, n, d.mora_M)
    rh = d.rhat
    c = torch.zeros(rh, n, dtype=w0.dtype)
    for j in range(n):
        c[j % rh, j] += 1
    pad = (rh - n % rh) % rh
    for p in range(pad):                                         # wrap-around padding repeats x[:pad]
        c[(n + p) % rh, p] += 1
    dec = torch.zeros(m, rh, dtype=w0.dtype)
    for i in range(m):
        dec[i, i % rh] = 1
    return dec @ d.mora_M @ c


def hra(d, w0):
    n = w0.shape[1]
    h = torch.eye(n, dtype=w0.dtype)
    for i in range(d.hra_u.shape[1]):
        u = d.hra_u[:, i] / d.hra_u[:, i].norm()
        h = h @ (torch.eye(n, dtype=w0.dtype) - 2 * torch.outer(u, u))
    return w0 @ h - w0


def fourierft(d, w0):
    """The inverse DFT written out: ΔW[p, q] = s/(mn) Σₖ cₖ·cos(2π(p·iₖ/m + q·jₖ/n))."""
    m, n = w0.shape
    p = torch.arange(m, dtype=torch.float64)[:, None]
    q = torch.arange(n, dtype=torch.float64)[None, :]
    out = torch.zeros(m, n, dtype=torch.float64)
    for (i, j), c in zip(d.fourierft_indices.t().tolist(), d.fourierft_spectrum.double(), strict=True):
        out = out + c * torch.cos(2 * math.pi * (p * i / m + q * j / n))
    return (d.scale * out / (m * n)).to(w0.dtype)


def abba(d, w0):
    return d.scale * (d.abba_B1 @ d.abba_A1) * (d.abba_B2 @ d.abba_A2)


def deep_lora(d, w0):
    return d.deep_W3 @ d.deep_W2 @ d.deep_W1


REFERENCES = {"vera": vera, "nola": nola, "randlora": randlora, "svfit": svfit, "svft": svft, "loldu": loldu,
              "qr-lora": qr_lora, "mora": mora, "hra": hra, "fourierft": fourierft, "abba": abba,
              "deep-lora": deep_lora}

# options that keep the test models small
OPTIONS = {"nola": {"nola_k": 6, "nola_l": 5}, "fourierft": {"fourierft_n_frequency": 60}}


def trainable_count(name: str, m: int, n: int, r: int, opts: dict) -> int:
    """Trainable numbers per (m, n) layer as each paper states them."""
    nb = math.ceil(min(m, n) / r)
    k = min(m, n)
    svft_n = sum(k - abs(o) for o in range(-2, 3)) + 1  # banded, d = 2: nnz(M), plus the gate
    rh = min(int(math.sqrt((m + n) * r) + 0.5), m, n)
    return {"vera": r + m, "nola": opts.get("nola_k", 64) + opts.get("nola_l", 64), "randlora": r * nb + nb * k,
            "svfit": r, "svft": svft_n, "loldu": r + 1, "qr-lora": r, "mora": rh * rh, "hra": r * n,
            "fourierft": opts.get("fourierft_n_frequency", 1000), "abba": r * (m + n),
            "deep-lora": r * (m + n) + r * r}[name]
