"""LSTM controller of ENAS macro search (Pham et al. 2018), as used by AMBER.

For every layer the LSTM emits op logits; then, from the hidden state after the chosen op's
embedding, an attention over the earlier layers' hidden states gives one skip logit per earlier
layer. The skip regularizer (KL toward ``skip_target``) and the entropy bonus are computed on
exactly the distributions that architectures are sampled from. Architectures are sampled and
scored in batches, so one LSTM pass serves all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from amber_ray.config import ControllerConfig
from amber_ray.space import Architecture, ModelSpace


@dataclass
class Decisions:
    """What one controller pass produced for ``n`` architectures."""

    ops: torch.Tensor  # (n, layers) op indices
    skips: list[torch.Tensor]  # per layer i: (n, i) 0/1
    log_prob: torch.Tensor  # (n,)
    entropy: torch.Tensor  # (n,)
    skip_kl: torch.Tensor  # (n,)
    op_probs: torch.Tensor  # (layers, ops): mean over the n architectures


def _bernoulli_kl(p: torch.Tensor, target: float) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return p * torch.log(p / target) + (1 - p) * torch.log((1 - p) / (1 - target))


class Controller(nn.Module):
    def __init__(self, space: ModelSpace, config: ControllerConfig, seed: int = 0):
        super().__init__()
        self.space = space
        self.config = config
        hidden = config.hidden_size
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.start = nn.Parameter(torch.empty(1, hidden).uniform_(-0.1, 0.1))
            self.lstm = nn.LSTMCell(hidden, hidden)
            self.op_embedding = nn.Embedding(len(space.ops), hidden)
            self.op_logits = nn.Linear(hidden, len(space.ops))
            self.attn_anchor = nn.Linear(hidden, hidden, bias=False)
            self.attn_query = nn.Linear(hidden, hidden, bias=False)
            self.attn_v = nn.Linear(hidden, 1, bias=False)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=config.learning_rate)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None

    def _squash(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits / self.config.temperature
        if self.config.tanh_constant is not None:
            logits = self.config.tanh_constant * torch.tanh(logits)
        return logits

    def _choose(self, probs: torch.Tensor, given: torch.Tensor | None, greedy: bool, binary: bool) -> torch.Tensor:
        if given is not None:
            return given
        if binary:
            if greedy:
                return (probs > 0.5).long()
            return torch.bernoulli(probs, generator=self.generator).long()
        if greedy:
            return probs.argmax(-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    def decide(self, n: int, given: tuple[torch.Tensor, list[torch.Tensor]] | None = None, greedy: bool = False) -> Decisions:
        """Sample (or, with ``given``, re-score) ``n`` architectures in one batched pass."""
        hidden = self.config.hidden_size
        state = (torch.zeros(n, hidden), torch.zeros(n, hidden))
        inputs = self.start.expand(n, hidden)
        anchors: list[torch.Tensor] = []
        anchor_keys: list[torch.Tensor] = []
        ops, skips, op_probs = [], [], []
        log_prob = torch.zeros(n)
        entropy = torch.zeros(n)
        skip_kl = torch.zeros(n)
        for layer in range(self.space.num_layers):
            state = self.lstm(inputs, state)
            logits = self._squash(self.op_logits(state[0]))
            log_p = F.log_softmax(logits, -1)
            op = self._choose(log_p.exp(), given[0][:, layer] if given else None, greedy, binary=False)
            log_prob = log_prob + log_p.gather(1, op[:, None]).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(-1)
            ops.append(op)
            op_probs.append(log_p.exp().mean(0))

            state = self.lstm(self.op_embedding(op), state)
            if layer:
                stacked = torch.stack(anchors, 1)  # (n, layer, hidden)
                keys = torch.stack(anchor_keys, 1)
                skip_logits = self._squash(self.attn_v(torch.tanh(keys + self.attn_query(state[0])[:, None])).squeeze(-1))
                p_skip = torch.sigmoid(skip_logits)
                skip = self._choose(p_skip, given[1][layer] if given else None, greedy, binary=True)
                log_prob = log_prob + (skip * F.logsigmoid(skip_logits) + (1 - skip) * F.logsigmoid(-skip_logits)).sum(-1)
                entropy = entropy - (p_skip * F.logsigmoid(skip_logits) + (1 - p_skip) * F.logsigmoid(-skip_logits)).sum(-1)
                skip_kl = skip_kl + _bernoulli_kl(p_skip, self.config.skip_target).sum(-1)
                inputs = (skip[..., None] * stacked).sum(1) / (1 + skip.sum(1, keepdim=True))
            else:
                skip = torch.zeros(n, 0, dtype=torch.long)
                inputs = self.start.expand(n, hidden)
            skips.append(skip)
            anchors.append(state[0])
            anchor_keys.append(self.attn_anchor(state[0]))
        return Decisions(torch.stack(ops, 1), skips, log_prob, entropy, skip_kl, torch.stack(op_probs))

    def to_architectures(self, decisions: Decisions) -> list[Architecture]:
        ops = decisions.ops.tolist()
        return [
            Architecture(
                tuple(self.space.ops[o] for o in ops[k]),
                tuple(tuple(int(j) for j in torch.nonzero(layer_skips[k]).flatten()) for layer_skips in decisions.skips),
            )
            for k in range(len(ops))
        ]

    def encode(self, archs: Sequence[Architecture]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Architectures -> the (ops, skips) tensors :meth:`decide` takes as ``given``."""
        index = {op: i for i, op in enumerate(self.space.ops)}
        ops = torch.tensor([[index[op] for op in arch.ops] for arch in archs])
        matrices = torch.from_numpy(np.stack([arch.skip_matrix() for arch in archs])).long()
        return ops, [matrices[:, layer, :layer] for layer in range(self.space.num_layers)]

    @torch.no_grad()
    def sample(self, n: int) -> tuple[list[Architecture], torch.Tensor]:
        """``n`` architectures and the mean op probabilities per layer ``(layers, ops)``."""
        decisions = self.decide(n)
        return self.to_architectures(decisions), decisions.op_probs

    @torch.no_grad()
    def greedy(self) -> Architecture:
        return self.to_architectures(self.decide(1, greedy=True))[0]

    def update(self, archs: Sequence[Architecture], rewards: Sequence[float]) -> dict[str, float]:
        """One REINFORCE step with an exponential-moving-average baseline."""
        reward = torch.tensor(list(rewards), dtype=torch.float32)
        if self.baseline is None:
            self.baseline = float(reward.mean())
        decisions = self.decide(len(archs), given=self.encode(archs))
        advantage = reward - self.baseline
        loss = (
            -(advantage * decisions.log_prob).mean()
            - self.config.entropy_weight * decisions.entropy.mean()
            + self.config.skip_weight * decisions.skip_kl.mean()
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        decay = self.config.baseline_decay
        self.baseline = decay * self.baseline + (1 - decay) * float(reward.mean())
        return {
            "loss": float(loss.detach()),
            "baseline": self.baseline,
            "entropy": float(decisions.entropy.detach().mean()),
            "skip_kl": float(decisions.skip_kl.detach().mean()),
            "skip_fraction": sum(a.skip_fraction() for a in archs) / len(archs),
            "mean_reward": float(reward.mean()),
            "max_reward": float(reward.max()),
        }

    def full_state(self) -> dict:
        """Weights, optimizer, baseline and RNG: everything needed to resume exactly."""
        return {
            "model": self.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "generator": self.generator.get_state(),
        }

    def load_full_state(self, state: dict) -> None:
        self.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.generator.set_state(state["generator"])
