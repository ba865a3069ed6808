"""The attention computations of lib/attention in PyTorch, timed the way lib/bench times them.

Usage: python3 torch_attention.py '<json config>'  ->  one JSON object on stdout.

Config keys: lengths ({variant: [n, ...]}), batch, heads, d, causal ([true] or [true, false]), repeats,
max_run_s (stop growing n for a variant once one forward + backward run exceeds it), budget_s (start no new
measurement after this long), threads, sgemm_size, softmax_query_blocks ({"n": block size}: softmax lengths run
by query blocks).
Same shapes and formulas as the TypeScript variants, one twin per variant in TWINS (a new variant in
lib/attention adds its twin there): softmax (masked n x n; by query blocks whose probabilities the backward
recomputes when given a block size), linear (elu+1, chunkwise-parallel when causal, eps 1e-6), norm (elu, no
denominator, SimpleRMSNorm over all heads), cosformer (relu features re-weighted by sin/cos of pi/2 * i/n),
performer (FAVOR+ with m = ceil(d ln d) features), diag (softmax in blocks of 64), local (softmax over
|i - j| <= 64, j <= i when causal, in chunks of the window against 3 chunks of keys, 2 when causal), retention
(decay 1 - 2^(-5-h) per head, scale d^(-1/2), chunkwise with a state carried across chunks; bidirectional: the
symmetric decay). Chunks of 64.
"""

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CHUNK = 64
BLOCK = 64
WINDOW = 64
# Masked logits get this added, as lib/attention/variant.ts's maskBias does (finite, so padded rows stay finite).
MASK_BIAS = -1e9


def pad_tokens(x, size):
    n = x.shape[2]
    extra = (-n) % size
    return F.pad(x, (0, 0, 0, extra)) if extra else x


def exclusive_prefix(x, dim):
    """Sum of the entries before each along dim, as tf.cumsum(exclusive) computes it: shifted, not cumsum - x, whose
    cancellation (forward and backward) costs float32 digits where a denominator is small."""
    n = x.shape[dim]
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    return torch.cat([zero, torch.cumsum(x.narrow(dim, 0, n - 1), dim)], dim)


def kernel_attention(fq, fk, v, causal, normalize, eps, chunk=CHUNK):
    """lib/attention/kernel.ts kernelAttend: global when bidirectional, chunkwise-parallel when causal. eps: a number,
    or a tensor [b, h, n, 1] of one per row (Performer's)."""
    b, h, n, m = fq.shape
    dv = v.shape[3]
    if not causal:
        out = fq @ (fk.transpose(-1, -2) @ v)
        if normalize:
            den = (fq * fk.sum(2, keepdim=True)).sum(-1, keepdim=True)
            out = out / (den + eps)
        return out
    c = min(chunk, n)
    qc = pad_tokens(fq, c).reshape(b, h, -1, c, m)
    kc = pad_tokens(fk, c).reshape(b, h, -1, c, m)
    vc = pad_tokens(v, c).reshape(b, h, -1, c, dv)
    intra = (qc @ kc.transpose(-1, -2)) * torch.tril(torch.ones(c, c))
    out = intra @ vc + qc @ exclusive_prefix(kc.transpose(-1, -2) @ vc, 2)
    if normalize:
        z_before = exclusive_prefix(kc.sum(3), 2)
        if torch.is_tensor(eps):
            # Padded rows get eps 1, not 0: their 0 / 0 would put NaN into the backward pass.
            eps = F.pad(eps, (0, 0, 0, (-n) % c), value=1.0).reshape(b, h, -1, c)
        den = (qc * z_before.unsqueeze(3)).sum(-1) + intra.sum(-1) + eps
        out = out / den.unsqueeze(-1)
    return out.reshape(b, h, -1, dv)[:, :, :n]


def srms_hidden(x):
    b, h, n, dv = x.shape
    hidden = x.transpose(1, 2).reshape(b, n, h * dv)
    norm = torch.sqrt((hidden * hidden).sum(-1, keepdim=True) + 1e-24) * (h * dv) ** -0.5
    return (hidden / (norm + 1e-8)).reshape(b, n, h, dv).transpose(1, 2)


def softmax_attention(q, k, v, causal):
    n, d = q.shape[2], q.shape[3]
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    if causal:
        logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(logits, -1) @ v


def softmax_block(qb, k, v, start, causal):
    rows, d = qb.shape[2], qb.shape[3]
    logits = (qb @ k.transpose(-1, -2)) / math.sqrt(d)
    if causal:
        future = torch.arange(k.shape[2]).reshape(1, -1) > torch.arange(start, start + rows).reshape(-1, 1)
        logits = logits.masked_fill(future, float("-inf"))
    return torch.softmax(logits, -1) @ v


def blocked_softmax_attention(q, k, v, causal, size):
    """Softmax by query blocks of `size`; each block's probabilities are recomputed in the backward (checkpoint),
    so memory is O(size * n). Causal blocks read the keys up to their last query."""
    n = q.shape[2]
    outs = []
    for start in range(0, n, size):
        stop = min(n, start + size)
        keys = stop if causal else n
        qb, kb, vb = q[:, :, start:stop], k[:, :, :keys], v[:, :, :keys]
        if torch.is_grad_enabled():
            outs.append(checkpoint(softmax_block, qb, kb, vb, start, causal, use_reentrant=False))
        else:
            outs.append(softmax_block(qb, kb, vb, start, causal))
    return torch.cat(outs, 2)


def local_attention(q, k, v, causal, window=WINDOW):
    """Softmax over keys with |i - j| <= window (and j <= i when causal), as lib/attention/local.ts computes it:
    queries in chunks of C = window, each chunk against the keys of chunks c-1, c, c+1 (3C), or of c-1 and c (2C)
    when causal: the chunk after is all in the future."""
    b, h, n, d = q.shape
    dv = v.shape[3]
    c = max(1, min(window, n))
    nc = -(-n // c)
    tail = nc * c - n
    span = 2 if causal else 3
    queries = F.pad(q, (0, 0, 0, tail)).reshape(b, h, nc, c, d)

    def neighbourhood(x):
        chunks = F.pad(x, (0, 0, c, tail + c)).reshape(b, h, nc + 2, c, x.shape[3])
        return torch.cat([chunks[:, :, s : s + nc] for s in range(span)], 3)  # [b, h, nc, span C, d]

    i = torch.arange(nc * c).reshape(nc, c, 1)
    j = (torch.arange(nc) * c - c).reshape(nc, 1, 1) + torch.arange(span * c).reshape(1, 1, span * c)
    allowed = (j >= 0) & (j < n) & ((i - j).abs() <= window)
    if causal:
        allowed = allowed & (j <= i)
    bias = (~allowed).float() * MASK_BIAS  # [nc, C, span C]
    logits = (queries @ neighbourhood(k).transpose(-1, -2)) / math.sqrt(d) + bias
    out = torch.softmax(logits, -1) @ neighbourhood(v)
    return out.reshape(b, h, nc * c, dv)[:, :, :n]


def diag_attention(q, k, v, causal):
    b, h, n, d = q.shape
    size = min(BLOCK, n)
    blocks = lambda x: pad_tokens(x, size).reshape(b, h, -1, size, x.shape[3])
    nb = blocks(q).shape[2]
    real = (torch.arange(nb * size) < n).reshape(nb, 1, size)
    allowed = real & (torch.ones(size, size, dtype=torch.bool).tril() if causal else True)
    logits = (blocks(q) @ blocks(k).transpose(-1, -2)) / math.sqrt(d)
    logits = logits.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(logits, -1) @ blocks(v)
    return out.reshape(b, h, -1, v.shape[3])[:, :, :n]


def cosformer_features(x):
    n = x.shape[2]
    a = (math.pi / 2) * torch.arange(1, n + 1, dtype=torch.float32).reshape(n, 1) / n
    r = torch.relu(x)
    return torch.cat([r * torch.sin(a), r * torch.cos(a)], -1)


def favor_features(x, w, role):
    m, d = w.shape
    xs = x * d**-0.25
    wx = xs @ w.T
    half = 0.5 * (xs * xs).sum(-1, keepdim=True)
    stab = wx.amax(-1, keepdim=True) if role == "query" else wx.amax((2, 3), keepdim=True)
    return torch.exp(wx - half - stab) / math.sqrt(m)


def retention_chunked(q, k, v, scale, gammas=None, chunk=CHUNK):
    """Causal retention o_n = sum_{m<=n} gamma_h^(n-m) (q_n . k_m) scale v_m, as lib/attention/retention.ts computes
    it: in chunks of `chunk`, the decay-masked product inside a chunk and a state carried with decay across chunks.
    gammas: one decay per head; default retention.ts's 1 - 2^(-5-h)."""
    b, h, n, d = q.shape
    dv = v.shape[3]
    c = min(chunk, n)
    nc = -(-n // c)
    last = n - (nc - 1) * c
    if gammas is None:
        gamma = 1 - 2.0 ** (-5 - torch.arange(h, dtype=torch.float64))  # [h]
    else:
        gamma = torch.tensor(gammas, dtype=torch.float64)
    qc = pad_tokens(q * scale, c).reshape(b, h, nc, c, d)
    kc = pad_tokens(k, c).reshape(b, h, nc, c, d)
    vc = pad_tokens(v, c).reshape(b, h, nc, c, dv)
    r = torch.arange(c, dtype=torch.float64)
    diff = r.reshape(c, 1) - r.reshape(1, c)
    in_chunk = torch.where(diff >= 0, gamma.reshape(h, 1, 1) ** diff.clamp(min=0), torch.zeros((), dtype=torch.float64))  # [h, C, C]
    intra = (qc @ kc.transpose(-1, -2)) * in_chunk.float().reshape(h, 1, c, c)
    lengths = torch.full((nc,), c, dtype=torch.float64)
    lengths[-1] = last
    exponent = lengths.reshape(nc, 1) - 1 - r.reshape(1, c)  # [nc, C]
    key_decay = torch.where(exponent >= 0, gamma.reshape(h, 1, 1) ** exponent.clamp(min=0), torch.zeros((), dtype=torch.float64))
    chunk_kv = (kc * key_decay.float().reshape(h, nc, c, 1)).transpose(-1, -2) @ vc  # [b, h, nc, d, dv]
    carry = (gamma.reshape(h, 1) ** lengths.reshape(1, nc)).float()  # [h, nc]
    s = torch.zeros(b, h, d, dv)
    before = []
    for chunk in range(nc):
        before.append(s)
        s = s * carry[:, chunk].reshape(1, h, 1, 1) + chunk_kv[:, :, chunk]
    query_decay = (gamma.reshape(h, 1) ** (r + 1).reshape(1, c)).float().reshape(h, 1, c, 1)
    out = intra @ vc + (qc * query_decay) @ torch.stack(before, 2)
    return out.reshape(b, h, nc * c, dv)[:, :, :n]


def retention_attention(q, k, v, causal):
    scale = q.shape[3] ** -0.5
    forward = retention_chunked(q, k, v, scale)
    if causal:
        return forward
    # gamma^|n-m|: the causal sum, its mirror over the reversed sequence, minus the diagonal counted in both.
    backward = retention_chunked(q.flip(2), k.flip(2), v.flip(2), scale).flip(2)
    return forward + backward - (q * k).sum(-1, keepdim=True) * scale * v


def performer_twin(d, causal):
    # performer.ts's performerFeatures(dk): the default number of random features.
    m = max(1, math.ceil(d * math.log(d)))
    w = torch.randn(m, d, generator=torch.Generator().manual_seed(0))
    return lambda q, k, v: kernel_attention(favor_features(q, w, "query"), favor_features(k, w, "key"), v, causal, True, 1e-9)


# Each variant's twin: (d, causal) -> attend(q, k, v), with the variant's default options.
TWINS = {
    "softmax": lambda d, causal: lambda q, k, v: softmax_attention(q, k, v, causal),
    "linear": lambda d, causal: lambda q, k, v: kernel_attention(F.elu(q) + 1, F.elu(k) + 1, v, causal, True, 1e-6),
    "performer": performer_twin,
    "cosformer": lambda d, causal: lambda q, k, v: kernel_attention(
        cosformer_features(q), cosformer_features(k), v, causal, True, 1e-6
    ),
    "norm": lambda d, causal: lambda q, k, v: srms_hidden(kernel_attention(F.elu(q), F.elu(k), v, causal, False, 0.0)),
    "diag": lambda d, causal: lambda q, k, v: diag_attention(q, k, v, causal),
    "local": lambda d, causal: lambda q, k, v: local_attention(q, k, v, causal),
    "retention": lambda d, causal: lambda q, k, v: retention_attention(q, k, v, causal),
}


def make_attend(variant, d, causal, query_block=None):
    if variant == "softmax" and query_block:
        return lambda q, k, v: blocked_softmax_attention(q, k, v, causal, query_block)
    twin = TWINS.get(variant)
    return twin(d, causal) if twin else None


def median(values):
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def seeded_inputs(batch, heads, n, d):
    """q, k, v (requiring gradients) and the cotangent dy, [batch, heads, n, d], drawn from a generator seeded with n."""
    gen = torch.Generator().manual_seed(n)
    q, k, v, dy = (torch.randn(batch, heads, n, d, generator=gen) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_(True)
    return q, k, v, dy


def measure(attend, batch, heads, n, d, repeats, max_run_ms):
    q, k, v, dy = seeded_inputs(batch, heads, n, d)

    def forward():
        with torch.no_grad():
            attend(q, k, v)

    def forward_backward():
        torch.autograd.grad(attend(q, k, v), (q, k, v), dy)

    forward()
    warm = timed(forward_backward)
    if warm > max_run_ms:
        return timed(forward), warm, warm, 0
    runs = min(repeats, max(1, int(max_run_ms // max(warm, 1e-3))))
    fwd = median([timed(forward) for _ in range(runs)])
    fwd_bwd = median([timed(forward_backward) for _ in range(runs)])
    return fwd, fwd_bwd, warm, runs


def main():
    config = json.loads(sys.argv[1])
    start = time.perf_counter()
    budget_s = config.get("budget_s", float("inf"))
    torch.set_num_threads(config.get("threads") or torch.get_num_threads())
    size = config.get("sgemm_size", 1024)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    sgemm_ms = median([timed(lambda: a @ b) for _ in range(5)])
    rows = []
    max_run_ms = config["max_run_s"] * 1000
    blocks = {int(n): size for n, size in config.get("softmax_query_blocks", {}).items()}
    stopped = {}
    # Lengths outer, so a spent budget cuts the longest lengths of every variant first.
    for n in sorted({n for lengths in config["lengths"].values() for n in lengths}):
        for variant in config["lengths"]:
            if n not in config["lengths"][variant]:
                continue
            block = blocks.get(n) if variant == "softmax" else None
            for causal in config["causal"]:
                attend = make_attend(variant, config["d"], causal, block)
                row = {"variant": variant, "n": n, "causal": causal}
                if block:
                    row["note"] = f"query blocks of {block}"
                if attend is None:
                    rows.append({**row, "status": "not in torch_attention.py"})
                elif (variant, causal) in stopped:
                    rows.append({**row, "status": "skipped (time)", "note": stopped[(variant, causal)]})
                elif time.perf_counter() - start > budget_s:
                    rows.append({**row, "status": "skipped (total budget)", "note": f"torch ran past {budget_s:.0f} s"})
                else:
                    fwd, fwd_bwd, warm, runs = measure(
                        attend, config["batch"], config["heads"], n, config["d"], config["repeats"], max_run_ms
                    )
                    rows.append({**row, "status": "ok", "fwd_ms": fwd, "fwd_bwd_ms": fwd_bwd, "repeats": runs})
                    slowest = max(warm, fwd_bwd)
                    if slowest > max_run_ms:
                        stopped[(variant, causal)] = f"n = {n} took {slowest / 1000:.1f} s > {config['max_run_s']} s"
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "sgemm": {"size": size, "ms": sgemm_ms, "gflops": 2 * size**3 / (sgemm_ms * 1e6)},
        "rows": rows,
    }))


if __name__ == "__main__":
    main()
