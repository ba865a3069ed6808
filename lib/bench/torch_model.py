"""A PyTorch twin of attnlab's whole model (lib/models/model.ts), trained the way lib/bench/train_step.ts trains it.

Usage: python3 torch_model.py --server [--threads N]
    JSON lines over stdin/stdout, one request and one reply per line (lib/bench/torch_twin.ts drives it).
       python3 torch_model.py --info [--threads N]
    prints the hello line (torch version, threads, BLAS library, sgemm GFLOP/s) and exits.

The twin is the same model, variable for variable, under attnlab's names ("embed.weight", "blocks.0.attn.wq", ...):
the one-hot embedding times sqrt(d), sinusoidal positions, rotary q and k when configured, SimpleRMSNorm or LayerNorm
pre-norms and final norm, each layer's attention variant with its options (causal for "lm", bidirectional for "mlm";
the learned gain when set), the q/k/v/o projections, the GLU (silu) or MLP (tanh gelu) feed-forward, the tied output
head, the loss (mean cross-entropy; with mask weights sum(w CE) / max(sum w, 1)), and AdamW as lib/train/adam.ts
makes it: global-norm clipping (norm summed in float64 over per-tensor float32 sums of squares), bias correction,
decoupled weight decay on the named variables, the same learning-rate schedule. The update itself is
torch.optim.AdamW, what a PyTorch user would write.

Protocol: every request is {"id", "op", ...}; every reply {"id", "ok": true, ...} or {"id", "ok": false, "error"}.
Float arrays travel as base64 of little-endian float32, token ids as base64 of little-endian int32. The first line
the server writes is the hello: {"ok": true, "info": {...}}, or {"ok": false, "missing": "torch", "error"} when
PyTorch cannot be imported. Beside the model, op "timeAttention" times one attention computation of
torch_attention.py forward + backward (lib/bench/paired.ts pairs it with attnlab's, round by round).
"""

import base64
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Optimised BLAS libraries, by a word of their file name (after resolving links).
OPTIMISED_BLAS = ("openblas", "mkl", "blis", "atlas", "accelerate")


def b64_floats(torch, data, count, what):
    raw = base64.b64decode(data)
    if len(raw) != 4 * count:
        raise ValueError(f"{what} must hold {count} float32 values, got {len(raw) // 4}")
    return torch.frombuffer(bytearray(raw), dtype=torch.float32)


def b64_ints(torch, data, count, what):
    raw = base64.b64decode(data)
    if len(raw) != 4 * count:
        raise ValueError(f"{what} must hold {count} int32 values, got {len(raw) // 4}")
    return torch.frombuffer(bytearray(raw), dtype=torch.int32).long()


def to_b64(t):
    return base64.b64encode(t.detach().contiguous().to("cpu").float().numpy().tobytes()).decode("ascii")


def blas_library(torch):
    """The BLAS library torch has loaded, from /proc/self/maps after a matmul (links resolved, so Debian's
    alternatives path .../openblas-pthread/libblas.so.3 counts as OpenBLAS); else from torch's build config."""
    a = torch.randn(64, 64)
    a @ a
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/"):
                    paths.add(os.path.realpath(parts[5]))
    except OSError:
        pass
    names = sorted(p for p in paths if any(w in os.path.basename(p).lower() for w in ("blas", "mkl", "blis", "atlas")))
    # A library named for its maker first (libopenblasp-r0.3.21.so), then one in a folder named for it.
    for where in (lambda p: os.path.basename(p).lower(), lambda p: p.lower()):
        for word in ("mkl", "openblas", "blis", "atlas"):
            for path in names:
                if word in where(path):
                    return word, path
    for path in names:
        if os.path.basename(path).startswith("libblas.so") or os.path.basename(path).startswith("libcblas.so"):
            # Debian's reference BLAS (libblas3) lives in .../blas/; any other libblas we cannot name.
            return ("reference" if os.path.basename(os.path.dirname(path)) == "blas" else "unknown"), path
    config = torch.__config__.show().lower()
    for word in ("mkl", "openblas", "accelerate", "blis"):
        if f"blas_info={word}" in config.replace(" ", ""):
            return word, None
    return "unknown", None


def sgemm_gflops(torch, size=1024, repeats=5):
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    times.sort()
    return 2 * size**3 / (times[len(times) // 2] * 1e9)


def hello(torch, threads):
    torch.set_num_threads(threads)
    blas, path = blas_library(torch)
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas,
        "blasPath": path,
        "blasOptimised": blas in OPTIMISED_BLAS,
        "sgemmGflops": sgemm_gflops(torch),
    }


# ---------------------------------------------------------------------------------------------------------------
# The attention variants, with their options (lib/attention/*.ts).

VARIANT_DEFAULTS = {
    "softmax": {"causal": False, "scale": None, "queryBlockSize": None},
    "linear": {"causal": False, "featureMap": "elu+1", "eps": 1e-6, "chunkSize": 64},
    "performer": {"causal": False, "features": None, "seed": 0, "projection": None, "eps": 1e-9, "chunkSize": 64},
    "cosformer": {"causal": False, "eps": 1e-6, "chunkSize": 64, "maxLength": None},
    "norm": {"causal": False, "featureMap": "elu", "norm": "srms", "normScope": "hidden", "chunkSize": 64},
    "diag": {"causal": False, "blockSize": 64, "inner": "softmax"},
    "local": {"causal": False, "window": 64},
    "retention": {"causal": False, "gamma": None, "scale": None, "chunkSize": 64},
}


def build_variants(torch):
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    sys.path.insert(0, HERE)
    # No __pycache__ beside the sources: lib/ is hashed into the results' provenance.
    sys.dont_write_bytecode = True
    from torch_attention import (
        MASK_BIAS,
        kernel_attention as kernel_attend,
        local_attention,
        pad_tokens,
        retention_chunked,
    )

    def feature_map(x, name):
        if name == "elu+1":
            # relu(x) + exp(min(x, 0)): elu(x) + 1 as lib/attention/feature_maps.ts computes it.
            return torch.relu(x) + torch.exp(torch.clamp(x, max=0))
        if name == "elu":
            return F.elu(x)
        if name == "relu":
            return torch.relu(x)
        if name == "identity":
            return x
        raise ValueError(f'featureMap must be one of "elu+1", "elu", "relu", "identity", got {name!r}')

    def normalize_last(x, norm):
        d = x.shape[-1]
        if norm == "none":
            return x
        if norm == "srms":
            l2 = torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-24)
            return x / (l2 * (1 / math.sqrt(d)) + 1e-8)
        if norm == "rms":
            return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
        if norm == "layer":
            centred = x - x.mean(-1, keepdim=True)
            return centred / torch.sqrt((centred * centred).mean(-1, keepdim=True) + 1e-5)
        raise ValueError(f'norm must be one of "srms", "rms", "layer", "none", got {norm!r}')

    def output_norm(o, norm, scope):
        if norm == "none":
            return o
        if scope == "head":
            return normalize_last(o, norm)
        b, h, n, dv = o.shape
        hidden = o.transpose(1, 2).reshape(b, n, h * dv)
        return normalize_last(hidden, norm).reshape(b, n, h, dv).transpose(1, 2)

    causal_bias = {}

    def softmax_rows(qb, k, v, start, causal, scale):
        rows, keys = qb.shape[2], k.shape[2]
        logits = (qb @ k.transpose(-1, -2)) * scale
        if causal:
            # An additive -inf above the diagonal (cached per shape), as softmax.ts adds its mask: cheaper than
            # masked_fill, whose backward is a second pass over the scores.
            key = (start, rows, keys)
            if key not in causal_bias:
                future = torch.arange(keys).reshape(1, -1) > torch.arange(start, start + rows).reshape(-1, 1)
                causal_bias[key] = torch.zeros(rows, keys).masked_fill(future, float("-inf"))
            logits = logits + causal_bias[key]
        return torch.softmax(logits, -1) @ v

    def softmax(o):
        def attend(q, k, v):
            n, dk = q.shape[2], q.shape[3]
            scale = o["scale"] if o["scale"] is not None else 1 / math.sqrt(dk)
            size = o["queryBlockSize"]
            if size is None or size >= n:
                return softmax_rows(q, k, v, 0, o["causal"], scale)
            # By query blocks whose probabilities the backward recomputes, as softmax.ts's blockedSoftmaxAttend.
            outs = []
            for start in range(0, n, size):
                stop = min(n, start + size)
                keys = stop if o["causal"] else n
                args = (q[:, :, start:stop], k[:, :, :keys], v[:, :, :keys], start, o["causal"], scale)
                if torch.is_grad_enabled():
                    outs.append(checkpoint(softmax_rows, *args, use_reentrant=False))
                else:
                    outs.append(softmax_rows(*args))
            return torch.cat(outs, 2)

        return attend

    def linear(o):
        fm = o["featureMap"]
        return lambda q, k, v: kernel_attend(
            feature_map(q, fm), feature_map(k, fm), v, o["causal"], True, o["eps"], o["chunkSize"]
        )

    def norm(o):
        fm = o["featureMap"]

        def attend(q, k, v):
            raw = kernel_attend(feature_map(q, fm), feature_map(k, fm), v, o["causal"], False, 0.0, o["chunkSize"])
            return output_norm(raw, o["norm"], o["normScope"])

        return attend

    def cosformer(o):
        def features(x):
            n = x.shape[2]
            m = o["maxLength"] if o["maxLength"] is not None else n
            if n > m:
                raise ValueError(f"cosformer: the sequence has {n} tokens but option maxLength is {m}")
            angles = [(math.pi / 2) * (i + 1) / m for i in range(n)]
            a = torch.tensor(angles, dtype=torch.float32).reshape(n, 1)
            r = torch.relu(x)
            return torch.cat([r * torch.sin(a), r * torch.cos(a)], -1)

        return lambda q, k, v: kernel_attend(features(q), features(k), v, o["causal"], True, o["eps"], o["chunkSize"])

    def performer(o, projection):
        """FAVOR+ from the log-features log phi(x) = w x' - |x'|^2/2 - ln(m)/2, x' = dk^(-1/4) x, with eps added to
        each row's denominator at the unstabilised scale, as performer.ts. Bidirectional: its per-feature key
        summaries (favorGlobal). Causal: chunkwise kernel attention on features stabilised by each query row's
        maximum and each (batch, head)'s largest key log-feature (the same function; exact while a head's key
        log-features span less than about 80, as they do in a model at any sane scale)."""
        w = projection
        m, dk = w.shape

        def log_features(x):
            xs = x * dk**-0.25
            return xs @ w.T - (0.5 * (xs * xs).sum(-1, keepdim=True) + 0.5 * math.log(m))

        def eps_term(s):
            if o["eps"] == 0:
                return None
            return torch.exp(torch.clamp(math.log(o["eps"]) - s, max=40.0))

        def attend(q, k, v):
            lq, lk = log_features(q), log_features(k)  # [b, h, n, m]
            if not o["causal"]:
                top = lk.detach().amax(2, keepdim=True)  # [b, h, 1, m]
                e = torch.exp(lk - top)
                z = e.sum(2)  # [b, h, m]
                mean = (e.transpose(-1, -2) @ v) / z.unsqueeze(-1)  # [b, h, m, dv]
                logits = lq + (top.squeeze(2) + torch.log(z)).unsqueeze(2)  # [b, h, n, m]
                s = logits.detach().amax(-1, keepdim=True)  # [b, h, n, 1]
                p = torch.exp(logits - s)
                den = p.sum(-1, keepdim=True)
                extra = eps_term(s)
                return (p @ mean) / (den if extra is None else den + extra)
            sq = lq.detach().amax(-1, keepdim=True)  # [b, h, n, 1]
            sk = lk.detach().amax((2, 3), keepdim=True)  # [b, h, 1, 1]
            fq, fk = torch.exp(lq - sq), torch.exp(lk - sk)
            extra = eps_term(sq + sk)  # [b, h, n, 1]: eps at the scale of these features
            eps = torch.zeros_like(sq) if extra is None else extra
            return kernel_attend(fq, fk, v, True, True, eps, o["chunkSize"])

        return attend

    def diag(o):
        cache = {}

        def allowed_bias(n, size, nb, causal):
            key = (n, size, causal)
            if key not in cache:
                r = torch.arange(size)
                real = (torch.arange(nb * size) < n).reshape(nb, 1, size)
                allowed = real & ((r.reshape(-1, 1) >= r.reshape(1, -1)) if causal else True)
                cache[key] = (allowed.float(), (~allowed).float() * MASK_BIAS)
            return cache[key]

        def attend(q, k, v):
            b, h, n, dk = q.shape
            size = min(o["blockSize"], n)
            blocks = lambda x: pad_tokens(x, size).reshape(b, h, -1, size, x.shape[3])
            nb = -(-n // size)
            allowed, bias = allowed_bias(n, size, nb, o["causal"])
            logits = (blocks(q) @ blocks(k).transpose(-1, -2)) * (1 / math.sqrt(dk))
            if o["inner"] == "softmax":
                scores = torch.softmax(logits + bias, -1)
            else:
                scores = torch.relu(logits) * allowed
            out = (scores @ blocks(v)).reshape(b, h, nb * size, v.shape[3])[:, :, :n]
            return output_norm(out, "srms", "hidden") if o["inner"] == "relu" else out

        return attend

    def local(o):
        return lambda q, k, v: local_attention(q, k, v, o["causal"], o["window"])

    def retention(o):
        def decays(h):
            g = o["gamma"]
            if g is None:
                return [1 - 2.0 ** (-5 - i) for i in range(h)]
            if isinstance(g, (int, float)):
                return [float(g)] * h
            if len(g) != h:
                raise ValueError(f"retention: option gamma has {len(g)} values but the input has {h} heads")
            return [float(x) for x in g]

        def chunked(q, k, v, scale, gammas):
            return retention_chunked(q, k, v, scale, gammas, o["chunkSize"])

        def attend(q, k, v):
            h, dk = q.shape[1], q.shape[3]
            scale = o["scale"] if o["scale"] is not None else 1 / math.sqrt(dk)
            gammas = decays(h)
            forward = chunked(q, k, v, scale, gammas)
            if o["causal"]:
                return forward
            backward = chunked(q.flip(2), k.flip(2), v.flip(2), scale, gammas).flip(2)
            return forward + backward - (q * k).sum(-1, keepdim=True) * scale * v

        return attend

    makers = {
        "softmax": softmax,
        "linear": linear,
        "cosformer": cosformer,
        "norm": norm,
        "diag": diag,
        "local": local,
        "retention": retention,
    }

    def make(variant, options, projection):
        if variant not in VARIANT_DEFAULTS:
            raise ValueError(f"unknown attention variant {variant!r}; expected one of {', '.join(VARIANT_DEFAULTS)}")
        defaults = VARIANT_DEFAULTS[variant]
        for key in options:
            if key not in defaults:
                raise ValueError(f'unknown option "{key}" for {variant}; valid options are {", ".join(defaults)}')
        o = {**defaults, **options}
        if variant == "performer":
            if projection is None:
                raise ValueError("a performer layer needs its projection [features, dk] from the attnlab model")
            return performer(o, projection)
        return makers[variant](o)

    return make, normalize_last


# ---------------------------------------------------------------------------------------------------------------
# The model.

CONFIG_KEYS = (
    "preset", "vocabSize", "dModel", "heads", "attention", "norm", "ffn", "ffnHidden", "positions", "rotary",
    "maxLength", "task", "numClasses", "maskToken", "seed",
)


def ffn_hidden(config):
    if config["ffnHidden"] is not None:
        return config["ffnHidden"]
    d = config["dModel"]
    # JavaScript's Math.round: halves up.
    return math.floor((8 / 3) * d + 0.5) if config["ffn"] == "glu" else 4 * d


def variable_plan(config):
    """(name, shape, init) in model.ts's order; init: a std, "ones" or "zeros"."""
    V, d = config["vocabSize"], config["dModel"]
    L = len(config["attention"])
    hidden = ffn_hidden(config)
    out_std = lambda fan_in: 1 / math.sqrt(fan_in) / math.sqrt(2 * L)
    plan = [("embed.weight", [V, d], 1 / math.sqrt(d))]
    layer_norm = config["norm"] == "layer"
    for i, layer in enumerate(config["attention"]):
        p = f"blocks.{i}"
        if layer_norm:
            plan += [(f"{p}.norm1.weight", [d], "ones"), (f"{p}.norm1.bias", [d], "zeros")]
        plan += [(f"{p}.attn.{w}", [d, d], 1 / math.sqrt(d)) for w in ("wq", "wk", "wv")]
        if layer.get("gain"):
            plan.append((f"{p}.attn.gain", [d], "ones"))
        plan.append((f"{p}.attn.wo", [d, d], out_std(d)))
        if layer_norm:
            plan += [(f"{p}.norm2.weight", [d], "ones"), (f"{p}.norm2.bias", [d], "zeros")]
        if config["ffn"] == "glu":
            plan += [(f"{p}.ffn.w1", [d, hidden], 1 / math.sqrt(d)), (f"{p}.ffn.w2", [d, hidden], 1 / math.sqrt(d))]
            plan.append((f"{p}.ffn.w3", [hidden, d], out_std(hidden)))
        else:
            plan += [(f"{p}.ffn.w1", [d, hidden], 1 / math.sqrt(d)), (f"{p}.ffn.w2", [hidden, d], out_std(hidden))]
    if layer_norm:
        plan += [("norm.weight", [d], "ones"), ("norm.bias", [d], "zeros")]
    return plan


ADAM_DEFAULTS = {
    "lr": 1e-3, "minLr": None, "warmup": 0, "steps": 1_000_000, "schedule": "constant", "beta1": 0.9,
    "beta2": 0.999, "eps": 1e-8, "weightDecay": 0.0, "clip": None,
}


def learning_rate(step, o):
    """lib/train/adam.ts scheduledRate: linear warmup, then constant or cosine down to minLr."""
    lr, warmup = o["lr"], o["warmup"]
    min_lr = o["minLr"] if o["minLr"] is not None else 0.1 * lr
    if step < warmup:
        return lr * (step + 1) / warmup
    if o["schedule"] == "constant":
        return lr
    span = o["steps"] - warmup - 1
    progress = min(1, (step - warmup) / span) if span > 0 else 0
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


class Twin:
    def __init__(self, torch, make_variant, normalize_last, request):
        import torch.nn.functional as F

        self.torch, self.F, self.normalize_last = torch, F, normalize_last
        config = request.get("config")
        if not isinstance(config, dict):
            raise ValueError("load: config must be an object (a ModelConfig)")
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if unknown:
            raise ValueError(f'load: unknown config key "{unknown[0]}"; valid keys are {", ".join(CONFIG_KEYS)}')
        missing = [k for k in CONFIG_KEYS if k not in config]
        if missing:
            raise ValueError(f'load: config lacks "{missing[0]}"; pass a full ModelConfig (modelConfig(...))')
        if config["task"] not in ("lm", "mlm"):
            raise ValueError(f'load: the twin models task "lm" or "mlm", got {config["task"]!r}')
        self.config = config
        self.causal = config["task"] == "lm"
        d, H = config["dModel"], config["heads"]
        if d % H:
            raise ValueError(f"load: dModel ({d}) must be divisible by heads ({H})")
        self.embedding = request.get("embedding", "gather")
        if self.embedding not in ("onehot", "gather"):
            raise ValueError(f'load: embedding must be "onehot" or "gather", got {self.embedding!r}')

        plan = variable_plan(config)
        weights = request.get("weights")
        gen = torch.Generator().manual_seed(int(config["seed"]))
        if weights is not None:
            names = {name for name, _, _ in plan}
            extra = [k for k in weights if k not in names]
            if extra:
                raise ValueError(f'load: weights has "{extra[0]}", which is not a variable of this config')
        self.params = {}
        for name, shape, init in plan:
            size = math.prod(shape)
            if weights is not None:
                if name not in weights:
                    raise ValueError(f'load: weights lacks "{name}" (shape {shape})')
                t = b64_floats(torch, weights[name], size, f'weights["{name}"]').reshape(shape).clone()
            elif init == "ones":
                t = torch.ones(shape)
            elif init == "zeros":
                t = torch.zeros(shape)
            else:
                t = torch.randn(shape, generator=gen) * init
            self.params[name] = t.requires_grad_(True)
        self.names = [name for name, _, _ in plan]

        projections = request.get("projections") or {}
        self.attend = []
        for i, layer in enumerate(config["attention"]):
            projection = None
            if str(i) in projections:
                p = projections[str(i)]
                m, dk = p["shape"]
                if dk != d // H:
                    raise ValueError(f"load: projections[{i}] must be [features, dk = {d // H}], got [{m}, {dk}]")
                projection = b64_floats(torch, p["data"], m * dk, f"projections[{i}]").reshape(m, dk).clone()
            options = {k: v for k, v in layer.get("options", {}).items() if k != "projection"}
            if "causal" in options:
                raise ValueError(f'load: attention[{i}].options: "causal" is set by the task; remove it')
            self.attend.append(make_variant(layer["variant"], {**options, "causal": self.causal}, projection))
        self._tables = {}

        adam = {**ADAM_DEFAULTS, **(request.get("adam") or {})}
        unknown = [k for k in adam if k not in ADAM_DEFAULTS]
        if unknown:
            raise ValueError(f'load: unknown adam option "{unknown[0]}"; valid options are {", ".join(ADAM_DEFAULTS)}')
        self.adam = adam
        decay = request.get("decayNames")
        if decay is None:
            decay = [name for name, shape, _ in plan if len(shape) >= 2]
        bad = [n for n in decay if n not in self.params]
        if bad:
            raise ValueError(f'load: decayNames has "{bad[0]}", which is not a variable of this config')
        decayed = set(decay)
        groups = [
            {"params": [self.params[n] for n in self.names if n in decayed], "weight_decay": adam["weightDecay"]},
            {"params": [self.params[n] for n in self.names if n not in decayed], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        kwargs = {"lr": adam["lr"], "betas": (adam["beta1"], adam["beta2"]), "eps": adam["eps"]}
        try:
            # The multi-tensor update: PyTorch's fastest CPU AdamW here (the per-tensor loop is the default).
            self.optimizer = torch.optim.AdamW(groups, foreach=True, **kwargs)
        except TypeError:
            self.optimizer = torch.optim.AdamW(groups, **kwargs)
        self.step_count = 0

    # -- tables --------------------------------------------------------------------------------------------------

    def _angles(self, n, d):
        """float64 angles as model.ts / positions.ts compute them, [n, d]: p / 10000^(2 floor(j/2) / d)."""
        torch = self.torch
        p = torch.arange(n, dtype=torch.float64).reshape(n, 1)
        j = torch.arange(d, dtype=torch.float64)
        return p / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.floor(j / 2) / d)

    def _sinusoidal(self, n):
        key = ("pe", n)
        if key not in self._tables:
            d = self.config["dModel"]
            a = self._angles(n, d)
            even = (self.torch.arange(d) % 2 == 0).reshape(1, d)
            self._tables[key] = self.torch.where(even, self.torch.sin(a), self.torch.cos(a)).float()
        return self._tables[key]

    def _rotary(self, n):
        key = ("rot", n)
        if key not in self._tables:
            dh = self.config["dModel"] // self.config["heads"]
            half = dh // 2
            p = self.torch.arange(n, dtype=self.torch.float64).reshape(n, 1)
            i = self.torch.arange(half, dtype=self.torch.float64)
            a = p / self.torch.pow(self.torch.tensor(10000.0, dtype=self.torch.float64), 2 * i / dh)
            self._tables[key] = (self.torch.cos(a).float(), self.torch.sin(a).float())
        return self._tables[key]

    # -- forward -------------------------------------------------------------------------------------------------

    def _norm(self, x, prefix):
        if self.config["norm"] == "srms":
            return self.normalize_last(x, "srms")
        d = x.shape[-1]
        return self.F.layer_norm(x, (d,), self.params[f"{prefix}.weight"], self.params[f"{prefix}.bias"], 1e-5)

    def loss(self, ids, targets, mask):
        torch, F, P = self.torch, self.F, self.params
        c = self.config
        b, n = ids.shape
        V, d, H = c["vocabSize"], c["dModel"], c["heads"]
        dh = d // H
        E = P["embed.weight"]
        if self.embedding == "onehot":
            x = (F.one_hot(ids.reshape(-1), V).float() @ E * math.sqrt(d)).reshape(b, n, d)
        else:
            x = F.embedding(ids, E) * math.sqrt(d)
        if c["positions"] == "sinusoidal":
            x = x + self._sinusoidal(n)
        rot = self._rotary(n) if c["rotary"] else None
        for i, layer in enumerate(c["attention"]):
            p = f"blocks.{i}"
            h = self._norm(x, f"{p}.norm1")
            split = lambda w: (h @ P[f"{p}.attn.{w}"]).reshape(b, n, H, dh).transpose(1, 2)
            q, k, v = split("wq"), split("wk"), split("wv")
            if rot is not None:
                cos, sin = rot

                def rotate(t):
                    t1, t2 = t[..., : dh // 2], t[..., dh // 2 :]
                    return torch.cat([t1 * cos - t2 * sin, t1 * sin + t2 * cos], -1)

                q, k = rotate(q), rotate(k)
            o = self.attend[i](q, k, v).transpose(1, 2).reshape(b, n, d)
            if layer.get("gain"):
                o = o * P[f"{p}.attn.gain"]
            x = x + o @ P[f"{p}.attn.wo"]
            h = self._norm(x, f"{p}.norm2")
            if c["ffn"] == "glu":
                x = x + (F.silu(h @ P[f"{p}.ffn.w1"]) * (h @ P[f"{p}.ffn.w2"])) @ P[f"{p}.ffn.w3"]
            else:
                x = x + F.gelu(h @ P[f"{p}.ffn.w1"], approximate="tanh") @ P[f"{p}.ffn.w2"]
        logits = self._norm(x, "norm").reshape(b * n, d) @ E.T  # [b n, V]
        ce = F.cross_entropy(logits, targets, reduction="none" if mask is not None else "mean")
        if mask is None:
            return ce
        return (ce * mask).sum() / torch.clamp(mask.sum(), min=1)

    # -- training ------------------------------------------------------------------------------------------------

    def batch(self, request):
        torch = self.torch
        batch = request.get("batch")
        if not isinstance(batch, dict):
            raise ValueError("batch must be an object { inputs, targets, batch, length, mask? }")
        b, n = batch.get("batch"), batch.get("length")
        if not isinstance(b, int) or not isinstance(n, int) or b < 1 or n < 1:
            raise ValueError(f"batch.batch and batch.length must be integers >= 1, got {b} and {n}")
        if n > self.config["maxLength"]:
            raise ValueError(f"batch.length must be at most maxLength {self.config['maxLength']}, got {n}")
        ids = b64_ints(torch, batch["inputs"], b * n, "batch.inputs").reshape(b, n)
        targets = b64_ints(torch, batch["targets"], b * n, "batch.targets")
        V = self.config["vocabSize"]
        for what, t in (("inputs", ids), ("targets", targets)):
            if int(t.min()) < 0 or int(t.max()) >= V:
                raise ValueError(f"batch.{what} holds a token id outside 0..{V - 1}")
        mask = batch.get("mask")
        if mask is not None:
            mask = b64_floats(torch, mask, b * n, "batch.mask")
        elif self.config["task"] == "mlm":
            raise ValueError('a masked language model (task "mlm") needs batch.mask')
        return ids, targets, mask

    def loss_and_grads(self, data):
        for p in self.params.values():
            p.grad = None
        loss = self.loss(*data)
        loss.backward()
        return float(loss.item())

    def _clip(self):
        """lib/train/adam.ts: global norm from per-tensor float32 sums of squares summed in float64; scale the
        gradients by clip / norm when the norm is above clip. Returns the norm."""
        torch = self.torch
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norm = math.sqrt(float(torch.stack([(g * g).sum() for g in grads]).double().sum()))
        if not math.isfinite(norm):
            raise ValueError(f"the global gradient norm is {norm}; refusing to apply a non-finite update")
        clip = self.adam["clip"]
        if clip is not None and norm > clip:
            torch._foreach_mul_(grads, clip / norm)
        return norm

    def step(self, data):
        """One update: loss, gradients, clipping, AdamW. Returns the loss before the update."""
        for p in self.params.values():
            p.grad = None
        loss = self.loss(*data)
        loss.backward()
        self._clip()
        lr = learning_rate(self.step_count, self.adam)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step_count += 1
        return loss

    def peak_bytes(self, data):
        """Peak bytes of tensors allocated by one update above those alive before it: the running total of the
        profiler's allocation events (CPU allocator, torch.profiler with profile_memory), as tf.profile's peakBytes
        counts the tensors of a step. Falls back to the rise of the process's peak resident set (VmHWM, after
        resetting it through /proc/self/clear_refs). Returns (bytes, method)."""
        torch = self.torch
        try:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                self.step(data)
            events = []

            def walk(nodes):
                for node in nodes:
                    fields = node.extra_fields
                    if type(fields).__name__.endswith("Allocation"):
                        events.append((node.start_time_ns, fields.alloc_size))
                    walk(node.children)

            walk(prof.profiler.kineto_results.experimental_event_tree())
            if events:
                total = peak = 0
                for _, size in sorted(events):
                    total += size
                    peak = max(peak, total)
                return peak, "profiler"
        except Exception:  # noqa: BLE001 - any profiler failure: fall back to the resident set
            pass

        def status(key):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1]) * 1024
            return None

        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = status("VmRSS:")
            self.step(data)
            return max(0, status("VmHWM:") - before), "rss"
        except (OSError, TypeError):
            self.step(data)
            return -1, "none"

    def time_steps(self, data, warmup, steps, memory):
        for _ in range(warmup):
            self.step(data)
        peak, method = self.peak_bytes(data) if memory else (-1, "none")
        ms, losses = [], []
        for _ in range(steps):
            start = time.perf_counter()
            loss = self.step(data)
            ms.append((time.perf_counter() - start) * 1000)
            losses.append(float(loss.item()))
        return {"ms": ms, "losses": losses, "peakBytes": peak, "peakMethod": method}


# ---------------------------------------------------------------------------------------------------------------
# The server.


class AttentionTimer:
    """Times one attention computation of torch_attention.py, forward + backward (the gradients of q, k and v through
    a seeded cotangent), as lib/bench/measure.ts times attnlab's. The inputs of the last shape asked for are kept, so
    rounds of the same (variant, shape) time only the computation."""

    def __init__(self, torch):
        self.torch = torch
        self.key = None

    def time(self, request):
        from torch_attention import make_attend, seeded_inputs

        torch = self.torch
        keys = ("variant", "n", "batch", "heads", "d", "causal", "queryBlockSize")
        spec = {key: request.get(key) for key in keys}
        for key in ("n", "batch", "heads", "d"):
            if not isinstance(spec[key], int) or spec[key] < 1:
                raise ValueError(f"timeAttention: {key} must be an integer >= 1, got {spec[key]!r}")
        warmup, repeats = request.get("warmup", 1), request.get("repeats")
        if not isinstance(warmup, int) or not isinstance(repeats, int) or warmup < 0 or repeats < 1:
            raise ValueError(f"timeAttention: warmup must be an integer >= 0 and repeats >= 1, got {warmup}, {repeats}")
        key = json.dumps(spec, sort_keys=True)
        if key != self.key:
            self.key = None
            attend = make_attend(spec["variant"], spec["d"], bool(spec["causal"]), spec["queryBlockSize"])
            if attend is None:
                raise ValueError(f'timeAttention: torch_attention.py has no twin of variant {spec["variant"]!r}')
            inputs = seeded_inputs(spec["batch"], spec["heads"], spec["n"], spec["d"])
            self.attend, self.inputs, self.key = attend, inputs, key
        q, k, v, dy = self.inputs
        ms = []
        for i in range(warmup + repeats):
            start = time.perf_counter()
            torch.autograd.grad(self.attend(q, k, v), (q, k, v), dy)
            if i >= warmup:
                ms.append((time.perf_counter() - start) * 1000)
        return {"ms": ms}


def set_threads(torch, threads, info):
    """torch's intra-op threads and, when torch runs OpenBLAS, OpenBLAS's own pool: the thread count of every later
    op. Returns torch.get_num_threads()."""
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: threads must be an integer >= 1, got {threads!r}")
    torch.set_num_threads(threads)
    if info.get("blas") == "openblas" and info.get("blasPath"):
        import ctypes

        setter = getattr(ctypes.CDLL(info["blasPath"]), "openblas_set_num_threads", None)
        if setter is not None:
            setter(threads)
    return torch.get_num_threads()


def serve(torch, out, threads):
    make_variant, normalize_last = build_variants(torch)
    info = hello(torch, threads)
    write = lambda obj: (out.write(json.dumps(obj) + "\n"), out.flush())
    write({"ok": True, "info": info})
    twin = None
    attention = AttentionTimer(torch)
    for line in sys.stdin:
        if not line.strip():
            continue
        rid = None
        try:
            request = json.loads(line)
            rid = request.get("id")
            op = request.get("op")
            if op == "close":
                write({"id": rid, "ok": True})
                return
            if op == "load":
                twin = None
                twin = Twin(torch, make_variant, normalize_last, request)
                shapes = {name: list(twin.params[name].shape) for name in twin.names}
                write({"id": rid, "ok": True, "names": twin.names, "shapes": shapes, "adam": twin.adam})
                continue
            if op == "threads":
                write({"id": rid, "ok": True, "threads": set_threads(torch, request.get("threads"), info)})
                continue
            if op == "timeAttention":
                write({"id": rid, "ok": True, **attention.time(request)})
                continue
            if op not in ("lossAndGrads", "step", "timeSteps", "weights"):
                raise ValueError(
                    f'unknown op "{op}"; expected load, lossAndGrads, step, timeSteps, weights, threads, '
                    "timeAttention, close"
                )
            if twin is None:
                raise ValueError("no model loaded: call load(config) first")
            if op == "weights":
                write({"id": rid, "ok": True, "weights": {n: to_b64(twin.params[n]) for n in twin.names}})
            elif op == "lossAndGrads":
                loss = twin.loss_and_grads(twin.batch(request))
                grads = {}
                for name in twin.names:
                    g = twin.params[name].grad
                    grads[name] = to_b64(g if g is not None else torch.zeros_like(twin.params[name]))
                write({"id": rid, "ok": True, "loss": loss, "grads": grads})
            elif op == "step":
                loss = twin.step(twin.batch(request))
                write({"id": rid, "ok": True, "loss": float(loss.item())})
            else:
                warmup, steps = request.get("warmup"), request.get("steps")
                if not isinstance(warmup, int) or not isinstance(steps, int) or warmup < 0 or steps < 1:
                    raise ValueError(f"timeSteps: warmup must be an integer >= 0 and steps >= 1, got {warmup}, {steps}")
                result = twin.time_steps(twin.batch(request), warmup, steps, request.get("memory", True))
                write({"id": rid, "ok": True, **result})
        except Exception as err:  # noqa: BLE001 - every failure goes back to the caller as a message
            write({"id": rid, "ok": False, "error": f"{type(err).__name__}: {err}"})


def main():
    args = sys.argv[1:]
    threads = None
    if "--threads" in args:
        threads = int(args[args.index("--threads") + 1])
    # The protocol owns the real stdout; anything else printed goes to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    if sys.byteorder != "little":
        out.write(json.dumps({"ok": False, "error": "the twin's wire format is little-endian; this machine is not"}))
        out.write("\n")
        return 2
    try:
        import torch
    except ImportError as err:
        out.write(json.dumps({"ok": False, "missing": "torch", "error": f"{type(err).__name__}: {err}"}) + "\n")
        out.flush()
        return 3
    threads = threads or torch.get_num_threads()
    if "--info" in args:
        torch.set_num_threads(threads)
        out.write(json.dumps({"ok": True, "info": hello(torch, threads)}) + "\n")
        return 0
    serve(torch, out, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
