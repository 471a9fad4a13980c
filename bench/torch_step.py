"""PyTorch peer of bench/kernels.ts: ms per training step of the book's GPTModel.

Run with Debian's torch (python3-torch + libopenblas0-pthread):
  /usr/bin/python3 bench/torch_step.py [--vocab 50257 --ctx 128 --emb 128 --layers 2 --heads 4
                                        --batch 4 --drop 0.1 --steps 7 --threads 2]
Same shapes, AdamW (lr 4e-4, weight decay 0.1) and dropout as the tfjs bench.
"""
import argparse
import time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
for name, default in [("vocab", 50257), ("ctx", 128), ("emb", 128), ("layers", 2), ("heads", 4),
                      ("batch", 4), ("steps", 7), ("threads", 2)]:
    p.add_argument(f"--{name}", type=int, default=default)
p.add_argument("--drop", type=float, default=0.1)
p.add_argument("--qkv-bias", action="store_true")
# The model classes read these settings; bench/torch_peer.py imports this file and sets `a` itself.
a = p.parse_args() if __name__ == "__main__" else None


class MHA(nn.Module):
    def __init__(s):
        super().__init__()
        e = a.emb
        s.W_query, s.W_key, s.W_value = (nn.Linear(e, e, bias=a.qkv_bias) for _ in range(3))
        s.out_proj = nn.Linear(e, e)
        s.dropout = nn.Dropout(a.drop)
        s.register_buffer("mask", torch.triu(torch.ones(a.ctx, a.ctx), diagonal=1))

    def forward(s, x):
        b, t, e = x.shape
        h, d = a.heads, e // a.heads
        q, k, v = (f(x).view(b, t, h, d).transpose(1, 2) for f in (s.W_query, s.W_key, s.W_value))
        att = q @ k.transpose(2, 3)
        att.masked_fill_(s.mask.bool()[:t, :t], -torch.inf)
        w = s.dropout(torch.softmax(att / d**0.5, dim=-1))
        return s.out_proj((w @ v).transpose(1, 2).contiguous().view(b, t, e))


class LN(nn.Module):
    def __init__(s):
        super().__init__()
        s.scale, s.shift = nn.Parameter(torch.ones(a.emb)), nn.Parameter(torch.zeros(a.emb))

    def forward(s, x):
        m, v = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return s.scale * (x - m) / torch.sqrt(v + 1e-5) + s.shift


class GELU(nn.Module):
    def forward(s, x):
        return 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * torch.pow(x, 3))))


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.att, s.norm1, s.norm2 = MHA(), LN(), LN()
        s.ff = nn.Sequential(nn.Linear(a.emb, 4 * a.emb), GELU(), nn.Linear(4 * a.emb, a.emb))
        s.drop = nn.Dropout(a.drop)

    def forward(s, x):
        x = x + s.drop(s.att(s.norm1(x)))
        return x + s.drop(s.ff(s.norm2(x)))


class GPT(nn.Module):
    def __init__(s):
        super().__init__()
        s.tok_emb, s.pos_emb = nn.Embedding(a.vocab, a.emb), nn.Embedding(a.ctx, a.emb)
        s.drop = nn.Dropout(a.drop)
        s.trf_blocks = nn.Sequential(*[Block() for _ in range(a.layers)])
        s.final_norm, s.out_head = LN(), nn.Linear(a.emb, a.vocab, bias=False)

    def forward(s, ids):
        x = s.drop(s.tok_emb(ids) + s.pos_emb(torch.arange(ids.shape[1], device=ids.device)))
        return s.out_head(s.final_norm(s.trf_blocks(x)))


def main():
    torch.set_num_threads(a.threads)
    torch.manual_seed(123)
    model = GPT()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    ids = torch.randint(0, a.vocab, (a.batch, a.ctx))
    targets = torch.randint(0, a.vocab, (a.batch, a.ctx))

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(ids).flatten(0, 1), targets.flatten())
        loss.backward()
        opt.step()
        return loss.item()

    step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(f"torch {torch.__version__} threads={a.threads} V={a.vocab} C={a.ctx} E={a.emb} L={a.layers} "
          f"H={a.heads} B={a.batch} drop={a.drop}: {times[len(times) // 2]:.0f} ms/step "
          f"(median of {a.steps}, min {times[0]:.0f}), loss {loss:.4f}")


if __name__ == "__main__":
    main()
