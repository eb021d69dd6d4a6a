"""The suite's objectives and gradient estimators, one definition each (benchmark.objective_types
says what a definition holds; the tensor code is in benchmark.models.objectives).

A new objective in the tree takes three things: its definition here, its function in
benchmark/models/objectives.py, and its test in tests/test_objectives.py. One outside the tree
takes the same definition and function in a file of its own (see examples/renyi_objective.py).
"""

from __future__ import annotations

from benchmark.objective_types import (
    SAME,
    SAME_AT_K1,
    EstimatorDefinition,
    ObjectiveDefinition,
    Parameter,
    SnrRole,
)

FUNCTIONS = "benchmark.models.objectives"
RAINFORTH = "Rainforth et al. 2018"
TUCKER = "Tucker et al. 2018"
GRID_KS = (5, 50)  # the estimators grid: every objective at these k ...
GRID_SAMPLES = 64  # ... and at 64 samples per example, where MIWAE's M x K shapes live
CIWAE_BETA = 0.05  # the beta of the published CIWAE number (Rainforth et al. 2018)
MIWAE_SHAPES = ((4, 16), (8, 8), (16, 4))  # (M, K) with M x K = 64

M = Parameter("m", int, "the number M of IWAE-K bounds averaged", minimum=1,
              multiplies_samples=True)
BETA = Parameter("beta", float, "the weight of the ELBO in beta ELBO + (1 - beta) IWAE",
                 minimum=0.0, maximum=1.0)

VAE = ObjectiveDefinition(
    "vae", "the paper's VAE: the k-sample ELBO, every term sampled",
    f"{FUNCTIONS}:vae_bound", order=0, paper=True, reference="Kingma & Welling 2014",
    grid=((5, {}), (50, {}), (GRID_SAMPLES, {})),
    snr=SnrRole(4, "VAE", "#636363"))
IWAE = ObjectiveDefinition(
    "iwae", "the paper's IWAE: the importance-weighted bound L_k",
    f"{FUNCTIONS}:iwae_bound", order=1, paper=True, reference="Burda et al. 2015",
    grid=((5, {}), (50, {}), (GRID_SAMPLES, {})),
    snr=SnrRole(0, "IWAE", "#e6550d", default=True,
                predictions=(("encoder", "falls", RAINFORTH),
                             ("decoder", "rises", RAINFORTH))))
CIWAE = ObjectiveDefinition(
    "ciwae", "beta ELBO + (1 - beta) IWAE on the same samples",
    f"{FUNCTIONS}:ciwae_bound", parameters=(BETA,), label="{title}(β={beta}) k={k}",
    order=4, reference=RAINFORTH,
    grid=tuple((k, {"beta": CIWAE_BETA}) for k in (*GRID_KS, GRID_SAMPLES)))
RWS = ObjectiveDefinition(
    "rws", "reweighted wake-sleep: IWAE for p, the wake-phase update for q",
    f"{FUNCTIONS}:iwae_bound", terms=f"{FUNCTIONS}:rws_terms", stops_samples=True, order=5,
    reference="Bornschein & Bengio 2015", grid=tuple((k, {}) for k in GRID_KS),
    snr=SnrRole(3, "RWS", "#3182bd", means={"decoder": SAME}))
MIWAE = ObjectiveDefinition(
    "miwae", "the mean of M IWAE-K bounds",
    f"{FUNCTIONS}:miwae_bound", parameters=(M,), label="{title}(M={m}, K={k})", order=6,
    reference=RAINFORTH, grid=tuple((k, {"m": m}) for m, k in MIWAE_SHAPES))
PIWAE = ObjectiveDefinition(
    "piwae", "IWAE on all M x K samples for p, MIWAE(M, K) for q",
    f"{FUNCTIONS}:iwae_bound", parameters=(M,), label="{title}(M={m}, K={k})", order=7,
    encoder_bound=f"{FUNCTIONS}:miwae_bound", reference=RAINFORTH,
    grid=tuple((k, {"m": m}) for m, k in MIWAE_SHAPES))

STL = EstimatorDefinition(
    "stl", "sticking the landing: q's parameters stopped inside log q", "STL", of="iwae",
    stops_q_params=True, order=2, reference="Roeder et al. 2017", grid=GRID_KS,
    snr=SnrRole(1, "IWAE-STL", "#756bb1", default=True,
                means={"encoder": SAME_AT_K1, "decoder": SAME}))
DREG = EstimatorDefinition(
    "dreg", "doubly reparameterised: STL with the samples' gradient reweighted by w~",
    "DReG", of="iwae", stops_q_params=True, reweights_sample_gradients=True, max_layers=1,
    # The hierarchical form (Bauer & Mnih 2021) is not implemented: two layers are refused.
    layers_reason="defined for one stochastic layer (Tucker et al. 2018): use --layers 1, or "
                  "--estimator stl for two layers",
    order=3, reference=TUCKER, grid=GRID_KS,
    snr=SnrRole(2, "IWAE-DReG", "#31a354", default=True,
                predictions=(("encoder", "does not fall", TUCKER),),
                means={"encoder": SAME, "decoder": SAME}))

# In this order: the command line lists them so, and the SNR study's streams never change.
BUILTINS = (VAE, IWAE, MIWAE, CIWAE, PIWAE, RWS, STL, DREG)
