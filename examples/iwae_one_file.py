"""Importance Weighted Autoencoders in one file: Burda, Grosse, Salakhutdinov, arXiv:1509.00519.

The paper's model with one stochastic layer (Section 5.1, Appendix C), written from its formulas
in plain PyTorch:

    q(h|x)  = N(h; mu(x), diag sigma(x)^2)   mu, log sigma: linear heads on a 784-200-200 tanh MLP
    p(h)    = N(h; 0, I)                     h has 50 dimensions
    p(x|h)  = prod_j Bernoulli(x_j; sigmoid(a_j(h)))   a: a 50-200-200-784 tanh MLP
    log w_i = log p(x, h_i) - log q(h_i|x),  h_i = mu(x) + sigma(x) * eps_i,  eps_i ~ N(0, I)

    VAE with k samples:  L = 1/k sum_i log w_i          (eq. 7; every term sampled, no closed KL)
    IWAE:                L_k = log 1/k sum_i w_i         (eq. 8; its gradient is eq. 14)

Training (Section 5): Adam with beta1 = 0.9, beta2 = 0.999, eps = 1e-4, minibatches of 20
reshuffled every epoch, the loss the minibatch mean of -L; stage i = 0..7 runs 3^i epochs at
learning rate 0.001 * 10^(-i/7), 3,280 epochs in all. MNIST is binarized dynamically: a fresh
Bernoulli draw of every minibatch's gray values. Test NLL = -mean over the test set of L_5000.
This is the suite's `--fidelity paper`; tests/test_examples.py checks that one step of it moves
the parameters as the suite's step does. Two details come from the authors' code, as in the
suite: train on the first 59,600 training images, and start the decoder's output bias at the
logit of the mean training pixel.

    python -m benchmark fetch mnist                       # datasets/raw/mnist/*.gz, verified
    python examples/iwae_one_file.py --model iwae --k 5 --epochs 1 --eval-n 1000
"""

from __future__ import annotations

import argparse
import gzip
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
BATCH = 20
TRAIN_SIZE = 59_600  # the authors' code kept the last 400 training images aside, unused


class Gaussian(nn.Module):
    """A tanh MLP with two linear heads: the mean and the log standard deviation."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(),
                                   nn.Linear(hidden, hidden), nn.Tanh())
        self.mean = nn.Linear(hidden, n_out)
        self.log_sigma = nn.Linear(hidden, n_out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        t = self.trunk(x)
        return self.mean(t), self.log_sigma(t)


class IWAE(nn.Module):
    """q(h|x) and p(x|h) p(h) of the one-stochastic-layer model; Glorot-uniform weights."""

    def __init__(self, x_dim: int = 784, hidden: int = 200, h_dim: int = 50) -> None:
        super().__init__()
        self.h_dim = h_dim
        self.encoder = Gaussian(x_dim, hidden, h_dim)
        self.decoder = nn.Sequential(nn.Linear(h_dim, hidden), nn.Tanh(),
                                     nn.Linear(hidden, hidden), nn.Tanh(),
                                     nn.Linear(hidden, x_dim))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def log_weights(self, x: Tensor, k: int, eps: Tensor | None = None) -> Tensor:
        """log w of k samples per example: x (B, 784) binary -> (k, B). eps (k, B, 50) may be
        given (the test passes the suite's noise); otherwise it is drawn here."""
        mean, log_sigma = self.encoder(x)  # (B, 50) each: x is encoded once for all k samples
        if eps is None:
            eps = torch.randn(k, *mean.shape, device=x.device)
        h = mean + torch.exp(log_sigma) * eps  # (k, B, 50)
        log_q = -(0.5 * eps.square() + log_sigma + HALF_LOG_2PI).sum(-1)
        log_prior = -(0.5 * h.square() + HALF_LOG_2PI).sum(-1)
        logits = self.decoder(h)  # (k, B, 784)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)
        return log_prior + log_px - log_q


def vae_bound(log_w: Tensor) -> Tensor:
    """The k-sample ELBO of each example: (k, B) -> (B,)."""
    return log_w.mean(0)


def iwae_bound(log_w: Tensor) -> Tensor:
    """L_k = log of the mean of the k weights, computed stably: (k, B) -> (B,)."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


BOUNDS = {"vae": vae_bound, "iwae": iwae_bound}


def stage_schedule() -> list[tuple[int, float]]:
    """(epochs, learning rate) of the 8 stages: 3^i epochs at 0.001 * 10^(-i/7)."""
    return [(3**i, 1e-3 * 10 ** (-i / 7)) for i in range(8)]


def make_adam(model: nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-4)


def train_step(model: IWAE, optimizer: torch.optim.Optimizer, x: Tensor, bound: str, k: int,
               eps: Tensor | None = None) -> Tensor:
    """One Adam step on the minibatch mean of -bound; returns the per-example bounds."""
    per_example = BOUNDS[bound](model.log_weights(x, k, eps))
    optimizer.zero_grad()
    (-per_example.mean()).backward()
    optimizer.step()
    return per_example.detach()


@torch.no_grad()
def log_likelihood(model: IWAE, x: Tensor, k: int = 5000, chunk: int = 1000) -> Tensor:
    """L_k per example (B,), its k samples drawn `chunk` at a time to bound the memory."""
    parts = [model.log_weights(x, min(chunk, k - start)) for start in range(0, k, chunk)]
    return iwae_bound(torch.cat(parts))


def read_mnist(path: Path) -> np.ndarray:
    """A LeCun IDX image file (.gz) as float32 gray values in [0, 1], (N, 784)."""
    data = gzip.decompress(path.read_bytes())
    n = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, 784).astype(np.float32) / 255


def train(model: IWAE, train_x: Tensor, bound: str, k: int, max_epochs: float,
          generator: torch.Generator) -> None:
    """The stage schedule, stopped after max_epochs (the full protocol: 3,280)."""
    optimizer = make_adam(model)
    per_epoch = len(train_x) // BATCH
    done, budget = 0, round(max_epochs * per_epoch)
    for stage, (epochs, lr) in enumerate(stage_schedule()):
        for group in optimizer.param_groups:
            group["lr"] = lr
        for epoch in range(epochs):
            order = torch.randperm(len(train_x), generator=generator)
            for i in range(per_epoch):
                if done == budget:
                    return
                gray = train_x[order[i * BATCH:(i + 1) * BATCH]]
                x = (torch.rand(gray.shape, generator=generator) < gray).float()
                bounds = train_step(model, optimizer, x, bound, k)
                done += 1
            print(f"stage {stage} epoch {epoch}: lr {lr:.2e}, last minibatch's mean bound "
                  f"{bounds.mean():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("datasets"))
    parser.add_argument("--model", choices=BOUNDS, default="iwae")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=3280.0, help="stop after E epochs")
    parser.add_argument("--eval-k", type=int, default=5000)
    parser.add_argument("--eval-n", type=int, default=10_000, help="test images scored")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    mnist = args.data_dir / "raw" / "mnist"
    train_x = torch.from_numpy(read_mnist(mnist / "train-images-idx3-ubyte.gz")[:TRAIN_SIZE])
    test_gray = torch.from_numpy(read_mnist(mnist / "t10k-images-idx3-ubyte.gz"))
    test_x = (torch.rand(test_gray.shape, generator=generator) < test_gray).float()
    model = IWAE()
    mean_pixel = train_x.mean(0).clamp(0.001, 0.999)
    with torch.no_grad():  # start the decoder at the mean image, as the authors' code did
        model.decoder[-1].bias.copy_(torch.log(mean_pixel) - torch.log1p(-mean_pixel))
    train(model, train_x, args.model, args.k, args.epochs, generator)
    subset = torch.randperm(len(test_x), generator=generator)[:args.eval_n]
    ll = torch.cat([log_likelihood(model, test_x[subset[i:i + BATCH]], args.eval_k)
                    for i in range(0, len(subset), BATCH)])
    print(f"test NLL (L_{args.eval_k}, {len(subset)} images): {-ll.mean():.2f} "
          f"+- {ll.std() / math.sqrt(len(ll)):.2f} nats")


if __name__ == "__main__":
    main()
