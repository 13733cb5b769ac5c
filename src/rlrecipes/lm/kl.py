"""Estimating KL(policy || reference) from the tokens the policy sampled (Schulman, "Approximating KL
Divergence", 2020, http://joschu.net/blog/kl-approx.html).

With r = p_ref(x) / p_policy(x) = exp(ref_logp - logp) and x drawn from the policy:

    k1 = -log r                 unbiased, but half its samples are negative: noisy, can go below zero
    k2 = (log r)^2 / 2          always >= 0, low variance, biased (good when the two are close)
    k3 = (r - 1) - log r        always >= 0, unbiased, low variance: what GRPO uses as its KL penalty

PPO-style RLHF folds k1 into the per-token reward; GRPO adds k3 to the loss. Each function works per
token and returns a tensor of the same shape as `logp`.
"""

import torch


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio  # expm1 keeps precision when the two are close
