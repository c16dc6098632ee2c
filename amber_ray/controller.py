"""LSTM controller of ENAS macro search (Pham et al. 2018), as used by AMBER.

For every layer the LSTM emits op logits; then, from the hidden state after the chosen op's
embedding, an attention over the earlier layers' hidden states gives one skip logit per earlier
layer. The skip regularizer (KL toward ``skip_target``) and the entropy bonus are computed on
exactly the distributions that architectures are sampled from. Architectures are sampled and
scored in batches, so one LSTM pass serves all of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from amber_ray.config import ControllerConfig
from amber_ray.space import Architecture, ModelSpace

# Picks one decision for a batch: (layer, probabilities) -> choices.
Chooser = Callable[[int, torch.Tensor], torch.Tensor]


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


def finite_rewards(rewards: Sequence[float]) -> np.ndarray:
    """Rewards as float64 (round-off between equal rewards stays far below any real difference); NaN or infinity refused."""
    reward = np.asarray(rewards, dtype=np.float64)
    if not np.isfinite(reward).all():
        raise ValueError("rewards must be finite")
    return reward


def iteration_stats(archs: Sequence[Architecture], reward: np.ndarray) -> dict[str, float]:
    """What every policy reports of an iteration: realised skip fraction, mean and max reward."""
    return {
        "skip_fraction": sum(a.skip_fraction() for a in archs) / len(archs),
        "mean_reward": float(reward.mean()),
        "max_reward": float(reward.max()),
    }


class Controller(nn.Module):
    """The ENAS policy over a model space, with its optimizer, baseline and RNG.

    In one search iteration it is used three times: :meth:`sample` draws the architectures the
    supernet scores; :meth:`update` takes several clipped policy steps (PPO by default, REINFORCE
    as in AMBER) on them with advantages = reward minus a baseline, re-scoring their
    log-probabilities under the moving policy (:meth:`rescore`) and stopping once the KL to the
    sampling policy passes ``max_kl``; then :meth:`sample` draws one architecture per supernet
    mini-batch of the training pass.
    """

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

    def decide(self, n: int, greedy: bool = False) -> Decisions:
        """Sample ``n`` architectures in one batched pass (``greedy``: each decision's most likely choice)."""

        def choose_op(layer: int, probs: torch.Tensor) -> torch.Tensor:
            return probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

        def choose_skips(layer: int, probs: torch.Tensor) -> torch.Tensor:
            return (probs > 0.5).long() if greedy else torch.bernoulli(probs, generator=self.generator).long()

        return self._run(n, choose_op, choose_skips)

    def rescore(self, given: tuple[torch.Tensor, list[torch.Tensor]]) -> Decisions:
        """The log-probabilities, entropies and skip KL of given architectures (:meth:`encode`), in one batched pass."""
        ops, skips = given
        return self._run(len(ops), lambda layer, _: ops[:, layer], lambda layer, _: skips[layer])

    def _run(self, n: int, choose_op: Chooser, choose_skips: Chooser) -> Decisions:
        """One LSTM pass over the layers; ``choose_op``/``choose_skips`` take (layer, probabilities) and
        return the op index per architecture ``(n,)`` or the 0/1 skips to each earlier layer ``(n, layer)``."""
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
            op = choose_op(layer, log_p.exp())
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
                skip = choose_skips(layer, p_skip)
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
        """Architectures -> the (ops, skips) tensors :meth:`rescore` takes."""
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

    def advantages(self, reward: torch.Tensor) -> torch.Tensor:
        """Reward minus the configured baseline, divided by its spread when normalising.

        ``leave_one_out`` and ``mean`` compare each architecture with the others of its own
        iteration, so the supernet's learning between iterations (which lifts every reward) is not
        credited to whatever was sampled; ``previous`` (AMBER's) and ``ema`` lag behind it.
        """
        n, total = len(reward), float(reward.sum())
        rule = self.config.baseline
        if rule == "leave_one_out" and n > 1:
            baseline = (total - reward) / (n - 1)
        elif rule in ("mean", "leave_one_out"):
            baseline = torch.full_like(reward, total / n)
        else:
            baseline = torch.full_like(reward, total / n if self.baseline is None else self.baseline)
        advantage = reward - baseline
        if self.config.normalize_advantages:
            # float64 rewards keep round-off (~1e-17) far below the 1e-8 floor: equal rewards give no signal.
            advantage = advantage / (advantage.std(unbiased=False) + 1e-8) if n > 1 else torch.zeros_like(advantage)
        return advantage.float()

    def _next_baseline(self, reward: torch.Tensor) -> float:
        mean = float(reward.mean())
        if self.config.baseline == "ema" and self.baseline is not None:
            decay = self.config.baseline_decay
            return decay * self.baseline + (1 - decay) * mean
        return mean

    def _loss(self, decisions: Decisions, old_log_prob: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
        config = self.config
        if config.update == "ppo":
            ratio = torch.exp(decisions.log_prob - old_log_prob)
            clipped = ratio.clamp(1 - config.clip_ratio, 1 + config.clip_ratio)
            policy = -torch.minimum(ratio * advantage, clipped * advantage)
        else:
            policy = -advantage * decisions.log_prob
        policy = policy.sum() if config.loss_reduction == "sum" else policy.mean()
        skip_kl = decisions.skip_kl
        if config.skip_kl_reduction == "mean":
            skip_kl = skip_kl / max(1, self.space.num_skip_choices)
        return policy - config.entropy_weight * decisions.entropy.mean() + config.skip_weight * skip_kl.mean()

    def update(self, archs: Sequence[Architecture], rewards: Sequence[float]) -> dict[str, float]:
        """Policy steps on one iteration's architectures (``policy_epochs`` x ``policy_minibatches``).

        After each epoch the approximate KL from the sampling policy, mean(old - new log-prob)
        over the iteration, is measured; past ``max_kl`` the update stops (AMBER's rule), so a
        noisy iteration cannot drag the policy far.
        """
        reward = torch.from_numpy(finite_rewards(rewards))
        advantage = self.advantages(reward)
        ops, skips = self.encode(archs)
        with torch.no_grad():
            before = self.rescore((ops, skips))
        minibatches = min(self.config.policy_minibatches, len(archs))
        losses, kl, steps = [], 0.0, 0
        for _ in range(self.config.policy_epochs):
            order = torch.randperm(len(archs), generator=self.generator)
            for index in order.tensor_split(minibatches):
                decisions = self.rescore((ops[index], [s[index] for s in skips]))
                loss = self._loss(decisions, before.log_prob[index], advantage[index])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                losses.append(float(loss.detach()))
                steps += 1
            with torch.no_grad():
                kl = float((before.log_prob - self.rescore((ops, skips)).log_prob).mean())
            if self.config.max_kl is not None and kl > self.config.max_kl:
                break
        self.baseline = self._next_baseline(reward)
        return {
            "loss": float(np.mean(losses)),
            "baseline": self.baseline,
            "policy_steps": float(steps),
            "kl": kl,
            "entropy": float(before.entropy.mean()),
            "skip_kl": float(before.skip_kl.mean()),
            **iteration_stats(archs, reward.numpy()),
        }

    def full_state(self) -> dict:
        """Weights, optimizer, baseline and RNG: everything needed to resume exactly.

        A copy: ``Optimizer.load_state_dict`` keeps the tensors it is given, so a shared state would
        let one controller's steps move another's.
        """
        return copy.deepcopy(
            {
                "model": self.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline,
                "generator": self.generator.get_state(),
            }
        )

    def load_full_state(self, state: dict) -> None:
        self.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.generator.set_state(state["generator"])


class UniformPolicy:
    """Random search, the ablation of every NAS result: uniform ops, each skip present with ``skip_target``.

    It has the controller's interface (sample, update, state) so the search loop runs it on the
    same supernet with the same budget; ``update`` only reports the iteration's statistics.
    """

    def __init__(self, space: ModelSpace, config: ControllerConfig, seed: int = 0):
        self.space = space
        self.skip_probability = config.skip_target
        self.rng = np.random.default_rng([seed, 1])

    def sample(self, n: int) -> tuple[list[Architecture], torch.Tensor]:
        archs = [self.space.sample(self.rng, self.skip_probability) for _ in range(n)]
        return archs, torch.full((self.space.num_layers, len(self.space.ops)), 1 / len(self.space.ops))

    def entropy(self) -> float:
        """Entropy of one architecture's decisions, in nats (the controller reports the same quantity)."""
        p = self.skip_probability
        skip_entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        return float(self.space.num_layers * np.log(len(self.space.ops)) + self.space.num_skip_choices * skip_entropy)

    def greedy(self) -> None:
        """Uniform sampling has no mode."""
        return

    def update(self, archs: Sequence[Architecture], rewards: Sequence[float]) -> dict[str, float]:
        reward = finite_rewards(rewards)
        return {"baseline": float(reward.mean()), "entropy": self.entropy(), **iteration_stats(archs, reward)}

    def full_state(self) -> dict:
        return {"rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_full_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
