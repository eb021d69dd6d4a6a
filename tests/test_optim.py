"""The two Adams: the authors' code (hand-computed three-step trace) and the paper's."""

import copy
import math

import pytest
import torch

from benchmark.training.optim import AuthorsAdam, loss_reduction, make_optimizer, set_learning_rate


def run_steps(opt, param, grads):
    trace = []
    for g in grads:
        param.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        trace.append(param.item())
    return trace


def test_authors_adam_matches_a_hand_computed_trace():
    lr, b1, b2, eps = 0.1, 0.99, 0.999, 1e-4
    param = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = AuthorsAdam([param], lr=lr)
    trace = run_steps(opt, param, [0.5, -1.0, 2.0])

    # By hand. State before step 1: m0 = 0, v0 = 1, t = 1.
    m0, v0 = 0.0, 1.0
    # Step 1 uses m0, v0 (the lag): m0 = 0, so the parameter does not move.
    p1 = 1.0 - lr * math.sqrt(1 - b2**1) / (1 - b1**1) * m0 / (math.sqrt(v0) + eps)
    m1, v1 = b1 * m0 + (1 - b1) * 0.5, b2 * v0 + (1 - b2) * 0.25  # 0.005, 0.99925
    # Step 2 (t = 2) moves by the moments of step 1.
    p2 = p1 - lr * math.sqrt(1 - b2**2) / (1 - b1**2) * m1 / (math.sqrt(v1) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * -1.0, b2 * v1 + (1 - b2) * 1.0  # -0.00505, 0.99925075
    p3 = p2 - lr * math.sqrt(1 - b2**3) / (1 - b1**3) * m2 / (math.sqrt(v2) + eps)

    assert p1 == 1.0 and trace[0] == 1.0
    assert m1 == pytest.approx(0.005) and v1 == pytest.approx(0.99925)
    assert p2 == pytest.approx(1.0 - 0.1 * 0.044710178 / 0.0199 * 0.005 / 0.99972493, rel=1e-7)
    assert trace == pytest.approx([p1, p2, p3], rel=1e-12)
    assert opt.state[param]["t"] == 4


def test_authors_adam_keeps_state_when_the_learning_rate_changes():
    param = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    opt = AuthorsAdam([param], lr=1e-3)
    run_steps(opt, param, [1.0, 1.0])
    m_before = opt.state[param]["m"].clone()
    set_learning_rate(opt, 7.2e-4)
    assert opt.param_groups[0]["lr"] == 7.2e-4
    assert torch.equal(opt.state[param]["m"], m_before) and opt.state[param]["t"] == 3


def test_authors_adam_state_dict_round_trip():
    a = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
    opt = AuthorsAdam([a], lr=1e-2)
    run_steps_vec = [torch.tensor([0.1, 0.2]), torch.tensor([-0.3, 0.5])]
    for g in run_steps_vec:
        a.grad = g.double()
        opt.step()
    b = torch.nn.Parameter(a.detach().clone())
    opt_b = AuthorsAdam([b], lr=1e-2)
    # deep copy: torch shares state tensors with the source optimizer (as a resume from disk
    # never would)
    opt_b.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p, o in ((a, opt), (b, opt_b)):
        p.grad = torch.tensor([0.7, -0.1], dtype=torch.float64)
        o.step()
    assert torch.equal(a, b)


def test_paper_fidelity_is_torch_adam_with_the_papers_settings():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer("paper", [p], 1e-3)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) and opt.param_groups[0]["eps"] == 1e-4
    assert isinstance(make_optimizer("code", [p], 1e-3), AuthorsAdam)
    assert loss_reduction("code") == "sum" and loss_reduction("paper") == "mean"


def test_authors_adam_steps_every_group_with_gradients_and_refuses_closures():
    idle = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    busy = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = AuthorsAdam([{"params": [idle]}, {"params": [busy]}], lr=0.1)
    run_steps(opt, busy, [0.5, 0.5])  # the first group has no gradient: skipped, not the rest
    assert busy.item() != 1.0 and idle.item() == 1.0 and not opt.state[idle]
    with pytest.raises(ValueError, match="AuthorsAdam does not take a closure"):
        opt.step(lambda: None)
    with pytest.raises(ValueError, match="unknown fidelity 'other'"):
        make_optimizer("other", [busy], 1e-3)
