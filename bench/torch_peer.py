"""PyTorch peer of bench/bench.ts: a long-lived worker driven over stdin/stdout, one JSON line per reply.

Run with Debian's torch (python3-torch + libopenblas0-pthread); bench/bench.ts starts it:
  /usr/bin/python3 bench/torch_peer.py --mode train|generate [--prompt 6109,3626,6100,345]
                                       [--seq N] [--device cpu|cuda]
                                       [bench/torch_step.py's flags: --vocab --ctx --emb --layers
                                        --heads --batch --drop --threads --qkv-bias]
--seq: tokens per training row (default --ctx); --device cuda runs eager fp32 on the GPU (TF32
matmuls stay off, torch's default) and synchronises before each reply's time is taken.
The model is bench/torch_step.py's GPT (the book's GPTModel). Commands, one per line:
  step      train: one step (forward, cross-entropy, backward, AdamW lr 4e-4 / weight decay 0.1)
  fwd       train: forward and cross-entropy of the same batch without gradients (an evaluation)
  gen N     generate: N new tokens, greedy, with a key/value cache
  quit      exit
Replies: {"ready": true, ...} once built, then {"ms": ...} per command.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn

import torch_step
from torch_step import GPT

own = argparse.ArgumentParser()
own.add_argument("--mode", choices=["train", "generate"], default="train")
own.add_argument("--prompt", default="6109,3626,6100,345")
own.add_argument("--seq", type=int, default=0)
own.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
mine, rest = own.parse_known_args()
a = torch_step.p.parse_args(rest)
torch_step.a = a  # the model classes read their settings from torch_step.a
torch.set_num_threads(a.threads)
torch.manual_seed(123)
if mine.device == "cuda" and not torch.cuda.is_available():
    sys.stderr.write("error: --device cuda but torch.cuda.is_available() is False\n")
    sys.exit(1)
dev = torch.device(mine.device)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


@torch.no_grad()
def forward_cached(m, ids, start, caches):
    """Logits of the last position for ids [B, T] at absolute positions start.., keys/values cached."""
    b, t = ids.shape
    h, d = a.heads, a.emb // a.heads
    x = m.tok_emb(ids) + m.pos_emb(torch.arange(start, start + t, device=dev))
    for i, blk in enumerate(m.trf_blocks):
        att, y = blk.att, blk.norm1(x)
        q, k, v = (f(y).view(b, t, h, d).transpose(1, 2) for f in (att.W_query, att.W_key, att.W_value))
        if caches[i] is not None:
            k, v = torch.cat([caches[i][0], k], 2), torch.cat([caches[i][1], v], 2)
        caches[i] = (k, v)
        s = (q @ k.transpose(2, 3)) / d**0.5
        if t > 1:  # the prompt: query j (absolute start + j) sees keys up to start + j
            s.masked_fill_(torch.triu(torch.ones(t, start + t, dtype=torch.bool, device=dev), start + 1), -torch.inf)
        ctx = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).contiguous().view(b, t, a.emb)
        x = x + att.out_proj(ctx)
        x = x + blk.ff(blk.norm2(x))
    return m.out_head(m.final_norm(x[:, -1:, :]))[:, -1, :]


def generate(m, prompt, n):
    caches = [None] * a.layers
    ids, start, out = torch.tensor([prompt], device=dev), 0, []
    for _ in range(n):
        logits = forward_cached(m, ids, start, caches)
        start += ids.shape[1]
        nxt = int(torch.argmax(logits[0]))
        out.append(nxt)
        ids = torch.tensor([[nxt]], device=dev)
    return out


model = GPT().to(dev)
info = {"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()), "device": mine.device}
if dev.type == "cuda":
    info["deviceName"] = torch.cuda.get_device_name(dev)
if mine.mode == "train":
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    seq = mine.seq or a.ctx
    inputs = torch.randint(0, a.vocab, (a.batch, seq), device=dev)
    targets = torch.randint(0, a.vocab, (a.batch, seq), device=dev)
else:
    model.eval()
    prompt = [int(s) for s in mine.prompt.split(",")]
reply(info)

for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "quit":
        break
    t0 = time.perf_counter()
    if cmd[0] == "step":
        model.train()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        opt.step()
        result = {"loss": loss.item()}
    elif cmd[0] == "fwd":
        model.eval()
        with torch.no_grad():
            loss = nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        result = {"loss": loss.item()}
    elif cmd[0] == "gen":
        ids = generate(model, prompt, int(cmd[1]))
        result = {"tokens": len(ids), "ids": ids[:8]}
    else:
        reply({"error": f"unknown command {cmd[0]!r}"})
        continue
    sync()
    ms = (time.perf_counter() - t0) * 1000
    if dev.type == "cuda":
        result["deviceMB"] = torch.cuda.max_memory_allocated(dev) / 2**20
    reply({"ms": ms, **result})
