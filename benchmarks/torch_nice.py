"""Peer (b) of the throughput benchmark: the reference NICE in PyTorch, run eagerly.

The same architecture as ``solutions/``: ``num_couplings`` additive couplings with the even/odd
split (parity 0 keeps the even coordinates and changes the odd ones), each with its own MLP
m (``hidden_layers`` ReLU layers of ``hidden_units``, linear output), then the diagonal scale
exp(log_scale); the same factorised prior and change of variables (NICE paper, equation 3):

    log p(x) = sum_d log p_H(h_d) + sum_d log_scale_d,   h = f(x).

Only imported when PyTorch is installed (``pip install -e .[bench]``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class TorchCoupling(nn.Module):
    """Additive coupling: y_change = x_change + m(x_keep), y_keep = x_keep (shapes ``(B, D)``)."""

    def __init__(self, dim: int, parity: int, hidden_units: int, hidden_layers: int):
        super().__init__()
        even, odd = np.arange(0, dim, 2), np.arange(1, dim, 2)
        keep, change = (even, odd) if parity == 0 else (odd, even)
        self.register_buffer("keep", torch.as_tensor(keep, dtype=torch.long))
        self.register_buffer("change", torch.as_tensor(change, dtype=torch.long))
        sizes = [len(keep)] + [hidden_units] * hidden_layers
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], len(change)))
        self.m = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[:, self.change] = x[:, self.change] + self.m(x[:, self.keep])
        return y


class TorchNICE(nn.Module):
    """NICE: couplings with parities 0, 1, 0, 1, ..., then h = x * exp(log_scale)."""

    def __init__(self, dim: int, num_couplings: int = 4, hidden_units: int = 64,
                 hidden_layers: int = 3, prior: str = "logistic"):
        super().__init__()
        if prior not in ("logistic", "gaussian"):
            raise ValueError(f"prior must be 'logistic' or 'gaussian', got {prior!r}.")
        self.dim, self.prior = dim, prior
        self.couplings = nn.ModuleList(
            TorchCoupling(dim, i % 2, hidden_units, hidden_layers) for i in range(num_couplings))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """f: data -> latent, ``(B, D)`` -> ``(B, D)``."""
        for coupling in self.couplings:
            x = coupling(x)
        return x * torch.exp(self.log_scale)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), shape ``(B,)``: sum_d log p_H(h_d) + sum_d log_scale_d."""
        h = self.forward(x)
        if self.prior == "logistic":
            log_prior = -(nn.functional.softplus(h) + nn.functional.softplus(-h)).sum(dim=1)
        else:
            log_prior = -0.5 * (h * h).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return log_prior + self.log_scale.sum()


def copy_from_keras(torch_model: TorchNICE, keras_model) -> TorchNICE:
    """Give ``torch_model`` the weights of a reference (``solutions``) Keras NICE of the same size.

    Keras Dense kernels are ``(in, out)``; torch Linear weights are ``(out, in)``.
    """
    if len(keras_model.couplings) != len(torch_model.couplings):
        raise ValueError("the two models have different numbers of couplings.")
    with torch.no_grad():
        for tc, kc in zip(torch_model.couplings, keras_model.couplings, strict=True):
            dense = [layer for layer in kc.m.layers if layer.weights]
            linear = [layer for layer in tc.m if isinstance(layer, nn.Linear)]
            if len(dense) != len(linear):
                raise ValueError("the coupling networks have different numbers of layers.")
            for t_layer, k_layer in zip(linear, dense, strict=True):
                kernel, bias = (np.asarray(w) for w in k_layer.get_weights())
                if kernel.T.shape != tuple(t_layer.weight.shape):
                    raise ValueError(f"layer shapes differ: {kernel.T.shape} vs "
                                     f"{tuple(t_layer.weight.shape)}.")
                t_layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
                t_layer.bias.copy_(torch.from_numpy(bias))
        torch_model.log_scale.copy_(torch.from_numpy(np.asarray(keras_model.log_scale)))
    return torch_model


def make_train_step(model: TorchNICE, learning_rate: float = 1e-3):
    """One eager Adam step on the mean NLL, like the reference ``train_step``; returns the loss.

    Adam with Keras' defaults (beta1 0.9, beta2 0.999, epsilon 1e-7)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(0.9, 0.999), eps=1e-7)

    def step(x: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = -model.log_likelihood(x).mean()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step
