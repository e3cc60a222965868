"""The T2M-GPT transformer (Zhang et al., CVPR 2023) with PoseSyn's MR_init prefix, one readable file.

References: the public T2M-GPT code (models/t2m_trans.py, models/pos_encoding.py) and nanoGPT (KV-cached decoding
in the same spirit). Module, parameter and buffer names and shapes are the release's (`trans_base.*`,
`trans_head.*`, including the per-block causal `attn.mask` buffers and the two position tables), so the release's
`net_best_fid.pth["trans"]` loads with `load_state_dict(strict=True)` into `T2MGPTConfig()` and computes the same
logits: the text feature goes through `cond_emb` as token 0, tokens through `tok_emb`, the fixed sinusoidal
`pos_embed` is added (the learnt `pos_embedding` table and `drop` exist in the release but its forward never
uses them; they are kept, unused, for strict loading), then 2 x num_layers pre-LN causal blocks, `ln_f` and a
bias-free head over num_vq + 1 classes (codes and end). Vocabulary: codes 0..num_vq-1, end = num_vq, pad = num_vq+1.

PoseSyn's change (the paper's p(s_i | e_text, S_MR, s_<i)): the sequence is

    [text token] [MR_init codes m_1..m_M] [motion codes s_1..s_N] -> predicts s_1..s_N, end

`mrinit_len` M = 0 is exactly the public model (block size 51: text + 50 motion tokens). With M > 0 the position
tables (and masks) grow by M so motion tokens keep the same maximum count; `T2MGPT.from_release(sd, mrinit_len=M)`
loads the public checkpoint strictly into the public shapes and then calls `extend_positions(M)`, which copies the
51 public rows and extends the tables explicitly: the fixed sinusoid by its formula (so rows 0..50 are unchanged)
and the unused learnt table with N(0, 0.02) rows. Such a model must be fine-tuned with prefixes (motion-train does).
Text-only conditioning fills the prefix with pad tokens; MR_init-only conditioning uses the text encoder's
embedding of the empty string (see `posesyn_core.motion.text`).

Sampling: `sample` is batched and KV-cached (one prefill of text + prefix, then one position per step, finished
rows dropped from the batch), with temperature / top-k / top-p, fixed-length or end-token stopping. Randomness is
per row: row r draws Gumbel noise from its own generator seeded with seeds[r], so a row's tokens do not depend on
the batch it ran in, and `sample_uncached` (the release's `sample()`: one sequence at a time, the whole prefix
re-encoded every step) returns the same tokens for the same seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class T2MGPTConfig:
    num_vq: int = 512
    embed_dim: int = 1024
    clip_dim: int = 512  # text feature size (CLIP ViT-B/32 in the release; 384 for the offline MiniLM encoder)
    block_size: int = 51  # positions: text token + MR_init prefix + motion tokens
    num_layers: int = 9  # per half: trans_base and trans_head have num_layers blocks each
    n_head: int = 16
    drop_out_rate: float = 0.1
    fc_rate: int = 4
    mrinit_len: int = 0  # PoseSyn's MR_init prefix length; 0 = the public model

    @property
    def end_id(self) -> int:
        return self.num_vq

    @property
    def pad_id(self) -> int:
        return self.num_vq + 1

    @property
    def max_motion_tokens(self) -> int:
        return self.block_size - 1 - self.mrinit_len


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """The release's PE1d_sincos: (length, 1, dim) sin on even, cos on odd channels."""
    pe = torch.zeros(length, dim)
    position = torch.arange(0, length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * -(math.log(10000.0) / dim))
    pe[:, 0::2] = torch.sin(position.float() * div_term)
    pe[:, 1::2] = torch.cos(position.float() * div_term)
    return pe.unsqueeze(1)


class PositionEmbedding(nn.Module):
    """Fixed sinusoidal positions stored as a parameter (requires_grad False), as the release does."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.embed = nn.Parameter(sinusoid_table(length, dim), requires_grad=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        return x + self.embed[start : start + x.shape[1], 0].unsqueeze(0)  # (B, T, C) + (1, T, C)


class KVCache:
    """Keys and values of every block (base then head), (layers, B, nh, block_size, hs), filled left to right."""

    def __init__(self, config: T2MGPTConfig, batch: int, device: torch.device, dtype: torch.dtype):
        shape = (2 * config.num_layers, batch, config.n_head, config.block_size, config.embed_dim // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions filled

    def keep(self, rows: torch.Tensor) -> None:
        """Drop finished sequences from the batch."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]


class CausalCrossConditionalSelfAttention(nn.Module):
    def __init__(self, embed_dim: int, block_size: int, n_head: int, drop_out_rate: float):
        super().__init__()
        assert embed_dim % n_head == 0
        self.key = nn.Linear(embed_dim, embed_dim)
        self.query = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.attn_drop = nn.Dropout(drop_out_rate)
        self.resid_drop = nn.Dropout(drop_out_rate)
        self.proj = nn.Linear(embed_dim, embed_dim)
        # causal mask, a persistent buffer in the release's state_dict
        self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))
        self.n_head = n_head

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, c = x.shape
        k = self.key(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = self.query(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = self.value(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        start = 0
        if cache is not None:  # append this chunk's keys/values, attend over everything so far
            start = cache.length
            cache.k[layer, :, :, start : start + t] = k
            cache.v[layer, :, :, start : start + t] = v
            k, v = cache.k[layer, :, :, : start + t], cache.v[layer, :, :, : start + t]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, start+T)
        att = att.masked_fill(self.mask[:, :, start : start + t, : start + t] == 0, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)  # re-assemble heads side by side
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, embed_dim: int, block_size: int, n_head: int, drop_out_rate: float, fc_rate: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.attn = CausalCrossConditionalSelfAttention(embed_dim, block_size, n_head, drop_out_rate)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, fc_rate * embed_dim),
            nn.GELU(),
            nn.Linear(fc_rate * embed_dim, embed_dim),
            nn.Dropout(drop_out_rate),
        )

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


class CrossCondTransBase(nn.Module):
    def __init__(self, c: T2MGPTConfig):
        super().__init__()
        self.tok_emb = nn.Embedding(c.num_vq + 2, c.embed_dim)  # codes + end + pad
        self.cond_emb = nn.Linear(c.clip_dim, c.embed_dim)
        self.pos_embedding = nn.Embedding(c.block_size, c.embed_dim)  # unused by the release's forward
        self.drop = nn.Dropout(c.drop_out_rate)  # unused by the release's forward
        self.blocks = nn.Sequential(
            *[Block(c.embed_dim, c.block_size, c.n_head, c.drop_out_rate, c.fc_rate) for _ in range(c.num_layers)]
        )
        self.pos_embed = PositionEmbedding(c.block_size, c.embed_dim)
        self.apply(_init_weights)

    def forward(self, idx: torch.Tensor, clip_feature: torch.Tensor | None, cache: KVCache | None = None):
        """idx (B, t) tokens; the text token is prepended when `clip_feature` is given (a new sequence)."""
        x = self.tok_emb(idx)  # (B, t, C)
        if clip_feature is not None:
            x = torch.cat([self.cond_emb(clip_feature).unsqueeze(1), x], dim=1)
        x = self.pos_embed(x, start=cache.length if cache is not None else 0)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        return x


class CrossCondTransHead(nn.Module):
    def __init__(self, c: T2MGPTConfig):
        super().__init__()
        self.blocks = nn.Sequential(
            *[Block(c.embed_dim, c.block_size, c.n_head, c.drop_out_rate, c.fc_rate) for _ in range(c.num_layers)]
        )
        self.ln_f = nn.LayerNorm(c.embed_dim)
        self.head = nn.Linear(c.embed_dim, c.num_vq + 1, bias=False)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, last_only: bool = False) -> torch.Tensor:
        offset = len(self.blocks)  # cache layers of the base come first
        for i, block in enumerate(self.blocks):
            x = block(x, cache, offset + i)
        if last_only:
            x = x[:, -1:]
        return self.head(self.ln_f(x))


class T2MGPT(nn.Module):
    """The release's Text2Motion_Transformer plus the MR_init prefix, training loss, samplers and checkpoints."""

    def __init__(self, config: T2MGPTConfig):
        super().__init__()
        self.config = config
        self.trans_base = CrossCondTransBase(config)
        self.trans_head = CrossCondTransHead(config)

    def forward(self, idx: torch.Tensor, clip_feature: torch.Tensor) -> torch.Tensor:
        """idx (B, t) = MR_init prefix + motion tokens, clip_feature (B, clip_dim) -> logits (B, t+1, num_vq+1)."""
        if idx.shape[1] + 1 > self.config.block_size:
            raise ValueError(f"sequence of {idx.shape[1] + 1} positions exceeds block_size {self.config.block_size}")
        return self.trans_head(self.trans_base(idx, clip_feature))

    # --- training -----------------------------------------------------------------------------------------------
    def loss(self, clip_feature: torch.Tensor, prefix: torch.Tensor, targets: torch.Tensor, pkeep: float = 0.5):
        """Cross-entropy of the motion tokens and end given text and prefix (the release's objective).

        prefix (B, M) MR_init codes or pad; targets (B, N) = motion codes, end, then pad (ignored). Inputs are the
        targets shifted right and corrupted as in the release: each kept with probability pkeep, else a random
        code (the prefix is conditioning and stays clean)."""
        inputs = targets[:, :-1]
        keep = torch.bernoulli(torch.full(inputs.shape, pkeep, device=inputs.device)).to(torch.int64)
        inputs = keep * inputs + (1 - keep) * torch.randint_like(inputs, self.config.num_vq)
        logits = self(torch.cat([prefix, inputs], dim=1), clip_feature)[:, prefix.shape[1] :]  # (B, N, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=self.config.pad_id)  # fmt: skip

    def configure_optimizers(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]  # the fixed sinusoid is excluded
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)

    # --- sampling -----------------------------------------------------------------------------------------------
    def _check_inputs(self, clip_feature: torch.Tensor, prefix: torch.Tensor | None, max_tokens: int | None):
        c = self.config
        if clip_feature.ndim != 2 or clip_feature.shape[1] != c.clip_dim:
            raise ValueError(f"clip_feature must be (B, {c.clip_dim}), got {tuple(clip_feature.shape)}")
        b = clip_feature.shape[0]
        if prefix is None:  # no MR_init: pad tokens hold the prefix positions
            prefix = torch.full((b, c.mrinit_len), c.pad_id, dtype=torch.long, device=clip_feature.device)
        if prefix.shape != (b, c.mrinit_len):
            raise ValueError(f"prefix must be (B={b}, mrinit_len={c.mrinit_len}), got {tuple(prefix.shape)}")
        max_tokens = c.max_motion_tokens if max_tokens is None else max_tokens
        if not 1 <= max_tokens <= c.max_motion_tokens:
            raise ValueError(f"max_tokens must be in [1, {c.max_motion_tokens}], got {max_tokens}")
        return prefix.long(), max_tokens

    def _noise(self, seeds: Sequence[int], steps: int, device: torch.device) -> torch.Tensor:
        """(B, steps, num_vq+1) Gumbel noise, row r from its own generator seeded with seeds[r]."""
        rows = []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            u = torch.rand(steps, self.config.num_vq + 1, generator=g).clamp_(1e-10, 1.0 - 1e-7)
            rows.append(-torch.log(-torch.log(u)))
        return torch.stack(rows).to(device)

    def _choose(self, logits: torch.Tensor, noise: torch.Tensor, temperature: float, top_k: int | None,
                top_p: float | None, allow_end: bool) -> torch.Tensor:  # fmt: skip
        """(B, V) logits -> (B,) tokens: argmax of filtered logits / temperature + Gumbel noise, which is an exact
        draw from the filtered softmax (temperature 0: greedy)."""
        logits = logits.float().clone()
        if not allow_end:
            logits[:, self.config.end_id] = float("-inf")
        if temperature <= 0:
            return logits.argmax(-1)
        logits = logits / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p is not None and top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            probs = F.softmax(sorted_logits, dim=-1)
            drop = probs.cumsum(-1) - probs > top_p  # tokens after the nucleus (the top one always stays)
            logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        return (logits + noise).argmax(-1)

    @torch.no_grad()
    def sample(self, clip_feature: torch.Tensor, prefix: torch.Tensor | None = None, max_tokens: int | None = None,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               stop_on_end: bool = True, seeds: Sequence[int] | None = None) -> list[list[int]]:  # fmt: skip
        """Batched KV-cached sampling. clip_feature (B, clip_dim), prefix (B, M) or None -> B token lists
        (without the end token). stop_on_end False: the end token is never drawn and every row has max_tokens."""
        # 1. Check inputs
        prefix, max_tokens = self._check_inputs(clip_feature, prefix, max_tokens)
        b = clip_feature.shape[0]
        seeds = list(range(b)) if seeds is None else list(seeds)
        if len(seeds) != b:
            raise ValueError(f"seeds must have one entry per row ({b}), got {len(seeds)}")
        was_training = self.training
        self.eval()
        # 2. Noise per row, cache
        noise = self._noise(seeds, max_tokens, clip_feature.device)
        param = self.trans_base.tok_emb.weight
        cache = KVCache(self.config, b, param.device, param.dtype)
        # 3. Prefill: text token + prefix in one pass
        h = self.trans_base(prefix, clip_feature.to(param.dtype), cache)
        logits = self.trans_head(h, cache, last_only=True)[:, 0]
        cache.length += prefix.shape[1] + 1
        # 4. Decode one position per step; finished rows leave the batch
        out: list[list[int]] = [[] for _ in range(b)]
        active = torch.arange(b, device=clip_feature.device)
        for step in range(max_tokens):
            tok = self._choose(logits, noise[active, step], temperature, top_k, top_p, allow_end=stop_on_end)
            alive = tok != self.config.end_id
            for r, t in zip(active[alive].tolist(), tok[alive].tolist(), strict=True):
                out[r].append(t)
            if step == max_tokens - 1 or not alive.any():
                break
            if not alive.all():
                active, tok = active[alive], tok[alive]
                cache.keep(alive)
            h = self.trans_base(tok[:, None], None, cache)
            logits = self.trans_head(h, cache, last_only=True)[:, 0]
            cache.length += 1
        self.train(was_training)
        return out

    @torch.no_grad()
    def sample_uncached(self, clip_feature: torch.Tensor, prefix: torch.Tensor | None = None,
                        max_tokens: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None, stop_on_end: bool = True,
                        seeds: Sequence[int] | None = None) -> list[list[int]]:  # fmt: skip
        """The release's `sample()` loop: one sequence at a time, the full forward (every position, every layer)
        re-run for each new token. Same arguments and tokens as `sample`; kept as the benchmark's baseline."""
        prefix, max_tokens = self._check_inputs(clip_feature, prefix, max_tokens)
        b = clip_feature.shape[0]
        seeds = list(range(b)) if seeds is None else list(seeds)
        was_training = self.training
        self.eval()
        noise = self._noise(seeds, max_tokens, clip_feature.device)
        out = []
        for r in range(b):
            xs = prefix[r : r + 1]
            for step in range(max_tokens):
                logits = self(xs, clip_feature[r : r + 1])[:, -1, :]
                tok = self._choose(logits, noise[r : r + 1, step], temperature, top_k, top_p, allow_end=stop_on_end)
                if tok.item() == self.config.end_id:
                    break
                xs = torch.cat([xs, tok[:, None]], dim=1)
            out.append(xs[0, prefix.shape[1] :].tolist())
        self.train(was_training)
        return out

    # --- checkpoints and the public release ---------------------------------------------------------------------
    def extend_positions(self, mrinit_len: int) -> None:
        """Grow block_size by `mrinit_len` prefix positions (see the module docstring); old rows are kept."""
        if mrinit_len < 0:
            raise ValueError(f"mrinit_len must be >= 0, got {mrinit_len}")
        c = self.config
        new = replace(c, block_size=c.block_size + mrinit_len, mrinit_len=c.mrinit_len + mrinit_len)
        base = self.trans_base
        with torch.no_grad():
            table = sinusoid_table(new.block_size, c.embed_dim).to(base.pos_embed.embed)
            table[: c.block_size] = base.pos_embed.embed
            base.pos_embed.embed = nn.Parameter(table, requires_grad=False)
            learnt = nn.Embedding(new.block_size, c.embed_dim).to(base.pos_embedding.weight)
            learnt.weight.normal_(0.0, 0.02)
            learnt.weight[: c.block_size] = base.pos_embedding.weight
            base.pos_embedding = learnt
        mask = torch.tril(torch.ones(new.block_size, new.block_size)).view(1, 1, new.block_size, new.block_size)
        for block in [*base.blocks, *self.trans_head.blocks]:
            block.attn.mask = mask.to(block.attn.mask)
        self.config = new

    def checkpoint(self) -> dict:
        return {"config": asdict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> T2MGPT:
        model = cls(T2MGPTConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"], strict=True)
        return model

    @classmethod
    def from_release(cls, state_dict: dict[str, torch.Tensor], mrinit_len: int = 0,
                     config: T2MGPTConfig | None = None) -> T2MGPT:  # fmt: skip
        """Build from the release's `net_best_fid.pth["trans"]` (HumanML3D config by default). Keys map one to one
        (same names, nothing skipped or transposed); key count and every shape are checked first. With
        mrinit_len > 0 the position tables are then extended for the MR_init prefix (`extend_positions`)."""
        with torch.device("meta"):  # no throwaway initialization of 228M parameters: all come from the release
            model = cls(config or T2MGPTConfig())
        ours = model.state_dict()
        missing, unexpected = sorted(set(ours) - set(state_dict)), sorted(set(state_dict) - set(ours))
        if missing or unexpected or len(state_dict) != len(ours):
            raise ValueError(f"T2M-GPT release keys do not match: missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}, {len(state_dict)} keys vs {len(ours)}")  # fmt: skip
        for key, tensor in state_dict.items():
            if tuple(tensor.shape) != tuple(ours[key].shape):
                raise ValueError(f"T2M-GPT release key {key}: shape {tuple(tensor.shape)}, "
                                 f"expected {tuple(ours[key].shape)}")  # fmt: skip
        model.load_state_dict(state_dict, strict=True, assign=True)
        if mrinit_len:
            model.extend_positions(mrinit_len)
        return model
