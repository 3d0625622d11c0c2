#!/usr/bin/env python3
"""PyTorch reference for `npm run bench`: the taskforge iGPT training step, on the CPU.

Same architecture as @taskforge/backbone-gpt2 with task/vision/igpt's generative loss: learned
sos vector and positions, GPT-2 pre-norm blocks (LayerNorm -> causal multi-head attention ->
residual, LayerNorm -> 4x MLP with tanh-GELU -> residual), final LayerNorm, untied bias-free
LM head, cross-entropy over every position, Adam (lr 3e-3). Input position i sees
[sos, x_0 .. x_{i-1}] and predicts x_i, exactly as in Gpt2.forward.

Batches are uniform random tokens made before timing, so "data" is not measured here.
Prints one JSON object (--json) or a short summary. Needs only torch.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--embed", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda; on cuda each timestamp waits for the GPU (torch.cuda.synchronize)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--attention", choices=("auto", "mha", "matmul"), default="auto",
                   help="auto (default): the fastest this torch offers (F.scaled_dot_product_attention on 2.x, "
                        "else nn.MultiheadAttention); mha: nn.MultiheadAttention; matmul: minGPT's masked "
                        "matmul + softmax in [B, H, T, hd]")
    p.add_argument("--spawned-at", type=float, default=None, help="ms since the epoch when the caller started this process")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args()


ATTENTION_NAMES = {
    "sdpa": "F.scaled_dot_product_attention(is_causal=True)",
    "mha": "nn.MultiheadAttention, [T, B, D] layout, additive causal mask",
    "matmul": "minGPT: masked matmul + softmax in [B, H, T, hd]",
}


def attention_kind(F, requested="auto"):
    """Which formulation to build: `requested`, or for auto the fastest this torch offers."""
    if requested != "auto":
        return requested
    return "sdpa" if hasattr(F, "scaled_dot_product_attention") else "mha"


def build_model(torch, nn, F, D, H, L, T, V, attention="auto"):
    # The fastest attention a PyTorch user gets: the fused kernel from torch 2.0 on. On torch 1.x,
    # nn.MultiheadAttention over a [T, B, D] residual stream (its native layout: batched matmuls
    # over B*H with no head transposes of the activations) measured faster than minGPT's masked
    # matmul + softmax in [B, H, T, hd]: 2.5 s vs 4.0 s per default-config step at 2 threads
    # (issue 13); `npm run bench` times both on torch 1.x and compares against the faster.
    # Same parameters in every formulation (in-projection D -> 3D with bias, out-projection D -> D).
    kind = attention_kind(F, attention)
    hd = D // H

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(D, eps=1e-5)
            if kind == "mha":
                self.attn = nn.MultiheadAttention(D, H, bias=True)
                # Built once, like Gpt2's CausalMasks: -inf above the diagonal.
                self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1), persistent=False)
            else:
                self.qkv = nn.Linear(D, 3 * D)
                self.proj = nn.Linear(D, D)
                if kind == "matmul":
                    self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1), persistent=False)
            self.ln2 = nn.LayerNorm(D, eps=1e-5)
            self.fc = nn.Linear(D, 4 * D)
            self.fc_proj = nn.Linear(4 * D, D)

        def forward(self, x):
            if kind == "mha":
                # x: [T, B, D]
                T_ = x.shape[0]
                h = self.ln1(x)
                x = x + self.attn(h, h, h, attn_mask=self.mask[:T_, :T_], need_weights=False)[0]
            else:
                # x: [B, T, D]
                B, T_, _ = x.shape
                q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
                q, k, v = (t.view(B, T_, H, hd).transpose(1, 2) for t in (q, k, v))
                if kind == "sdpa":
                    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                else:
                    att = (q @ k.transpose(-2, -1)) * (hd ** -0.5) + self.mask[:T_, :T_]
                    y = F.softmax(att, dim=-1) @ v
                x = x + self.proj(y.transpose(1, 2).reshape(B, T_, D))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class Gpt2(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_embed = nn.Embedding(V, D)
            self.pos_embed = nn.Parameter(torch.randn(T, D) * 0.02)
            self.sos = nn.Parameter(torch.randn(D) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(D, eps=1e-5)
            self.lm_head = nn.Linear(D, V, bias=False)

        def forward(self, tokens):
            B, T_ = tokens.shape
            x = torch.cat([self.sos.expand(B, 1, D), self.tok_embed(tokens[:, :-1])], 1) + self.pos_embed[:T_]
            if kind == "mha":
                x = x.transpose(0, 1)  # [T, B, D] for nn.MultiheadAttention, once for all blocks
            for block in self.blocks:
                x = block(x)
            if kind == "mha":
                x = x.transpose(0, 1)
            return self.lm_head(self.ln_f(x))

    return Gpt2()


def mapped_libraries(keys):
    """Shared libraries this process has mapped (Linux) whose file name contains one of `keys`."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if any(k in os.path.basename(p).lower() for k in keys))


def allocator():
    """The malloc torch's tensors come from: jemalloc or tcmalloc when preloaded (LD_PRELOAD), else
    glibc's. It matters on VMs where page faults are slow: glibc returns every large tensor's pages
    to the kernel on free (mmap/munmap), so each step faults its activations in again."""
    found = mapped_libraries(("jemalloc", "tcmalloc"))
    return found[0] if found else "glibc malloc"


def blas_libraries():
    """The BLAS/LAPACK shared libraries this process has mapped (Linux): which one torch really
    uses. Debian's python3-torch links the generic libblas.so.3, which points at the unoptimised
    reference BLAS unless an optimised one (libopenblas0-pthread) is installed."""
    return mapped_libraries(("blas", "lapack", "mkl"))


def main():
    args = parse_args()
    # OpenMP and BLAS size their pools when torch loads: N threads means N everywhere (these
    # override any outer setting, so a run is what its --threads says).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    # Imported after parsing so --help works without torch.
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    D, H, L, T, V, B = args.embed, args.heads, args.layers, args.seq_len, args.vocab, args.batch
    if D % H:
        sys.exit(f"--embed ({D}) must be divisible by --heads ({H})")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device=cuda but torch.cuda.is_available() is False (no CUDA GPU or driver visible to this torch)")
    device = torch.device(args.device)
    # On a GPU, kernels run asynchronously: wait for them before every timestamp.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = build_model(torch, nn, F, D, H, L, T, V, args.attention).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batches = [torch.randint(0, V, (B, T)).to(device) for _ in range(4)]

    def step(i):
        tokens = batches[i % len(batches)]
        sync()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, V), tokens.reshape(-1))
        loss.backward()
        sync()
        wall1, cpu1 = time.perf_counter(), time.process_time()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        wall2, cpu2 = time.perf_counter(), time.process_time()
        return {
            "dataMs": 0.0,
            "forwardBackwardMs": (wall1 - wall0) * 1e3,
            "optimizerMs": (wall2 - wall1) * 1e3,
            "totalMs": (wall2 - wall0) * 1e3,
            "cpuMs": (cpu2 - cpu0) * 1e3,
            "loss": loss.item(),
        }

    warmup, steps, first_step_ms = [], [], None
    for i in range(args.warmup + args.steps):
        (warmup if i < args.warmup else steps).append(step(i))
        if first_step_ms is None and args.spawned_at is not None:
            first_step_ms = time.time() * 1e3 - args.spawned_at

    result = {
        "ok": True,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "attention": ATTENTION_NAMES[attention_kind(F, args.attention)],
        "attentionKind": attention_kind(F, args.attention),
        "shape": {"batch": B, "seqLen": T, "vocab": V, "embed": D, "layers": L, "heads": H},
        "numParams": sum(p.numel() for p in model.parameters()),
        "warmup": warmup,
        "steps": steps,
        "firstStepMs": first_step_ms,
        # ru_maxrss is in KiB on Linux.
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "blasEnv": {k: v for k, v in os.environ.items() if "BLAS" in k or k.startswith(("OMP_", "MKL_"))},
        "blasLibraries": blas_libraries(),
        "allocator": allocator(),
        "mallocConf": os.environ.get("MALLOC_CONF"),
    }
    if args.json:
        print(json.dumps(result))
    else:
        med = statistics.median(s["totalMs"] for s in steps) if steps else float("nan")
        print(f"torch {result['torch']} threads={result['threads']} B={B} T={T} D={D} L={L} H={H}: "
              f"{med:.0f} ms/step, {B * T / med * 1e3:.0f} tokens/s, peak RSS {result['peakRssBytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
