"""What the driver can be asked to do with the authors' code (Python 2). Each task reads its
inputs from the task's folder and writes .npy/.npz files and result.json there.

Every model, optimizer and dataset below is made by the authors' own code: training runs their
experiments.py __main__ (argument parsing, datasets.py, random_iwae, Adam, train.train and the
stage loop of training_experiment) with their random stream replaced by the suite's draws.
"""
from __future__ import absolute_import, division, print_function

import copy
import os
import time

import numpy as np
import theano
import theano.tensor as T

from authors import StopExperiment, named_params
from replay import ReplayStreams
from tracing import StopTraining, TrainingTrace

BATCH = 20


def load_segments(folder, names):
    """{slot: [array, ...]} from slot files <slot>.npy, or <slot>.<i>.npy for several segments."""
    segments = {}
    for name in sorted(os.listdir(folder)):
        stem = name[:-len(".npy")]
        slot = stem.split(".")[0]
        if name.endswith(".npy") and slot in names:
            segments.setdefault(slot, []).append(np.load(os.path.join(folder, name),
                                                         mmap_mode="r"))
    return segments


def slot_names(layers):
    return ["u"] + ["n%d" % l for l in range(layers)]


def main_argv(spec):
    return ["--exp", "train", "--layers", str(spec["layers"]), "--model", spec["model"],
            "--k", str(spec["k"]), "--dataset", spec["dataset"]]


def state_arrays(authors, model, optimizer):
    params = named_params(authors, model)
    out = {}
    for name, p in params.items():
        out["param/" + name] = p.get_value()
        if optimizer is not None:
            out["m/" + name] = optimizer.first_moments[p].get_value()
            out["v/" + name] = optimizer.second_moments[p].get_value()
    if optimizer is not None:
        out["t"] = np.asarray(optimizer.timestep.get_value())
    return out


def set_params(authors, model, arrays):
    for name, p in named_params(authors, model).items():
        p.set_value(arrays[name].astype(theano.config.floatX))


def save_npz(path, arrays):
    tmp = path + ".part.npz"
    np.savez(tmp, **arrays)
    os.rename(tmp, path)


def run_dry(authors, argv, layers):
    """Their __main__ with training skipped: the stages it would train, and its model."""
    trace = TrainingTrace(authors, dry=True)
    authors.streams.append(ReplayStreams({}, layers))
    try:
        authors.run_main(argv)
    except StopExperiment:
        pass
    return trace


def task_schedule(authors, spec, folder, report):
    trace = run_dry(authors, main_argv(spec), spec["layers"])
    dataset = trace.dataset
    return {"stages": [s.as_dict() for s in trace.stages],
            "n_train": int(dataset.get_n_examples("train"))}


def step1_probe(authors, trace, segments, layers, folder):
    """Per-example log-weights and bounds, and every gradient, at the initial parameters on
    the draws of step 1: a graph of their own functions over a fresh replay of those draws."""
    model, dataset, stage = trace.model, trace.dataset, trace.stages[0]
    k, model_type = stage.kwargs["num_samples"], stage.kwargs["model_type"]
    stream = ReplayStreams(segments, layers)
    index = T.lscalar("i")
    x = dataset.minibatchIindex_minibatch_size(index, BATCH, srng=stream, subdataset="train")
    grads = model.gradIminibatch_srng(x, stream, num_samples=k, model_type=model_type)
    rep_x = authors.utils.t_repeat(x, k, axis=0)
    log_ws = model.log_weightsIq_samples(model.q_samplesIx_srng(rep_x, stream))
    matrix = log_ws.reshape((x.shape[0], k))
    names = list(named_params(authors, model).items())
    outputs = [x, log_ws, T.mean(matrix, axis=1),
               authors.utils.log_mean_exp(matrix, axis=1).flatten()]
    outputs += [grads[p] for _, p in names]
    values = theano.function([index], outputs)(0)
    arrays = {"x": values[0], "log_w": values[1], "vae_bound": values[2],
              "iwae_bound": values[3]}
    for (name, _), g in zip(names, values[4:]):
        arrays["grad/" + name] = g
    save_npz(os.path.join(folder, "step1.npz"), arrays)


def start(authors, trace, folder):
    """Before the first step: a float64 baseline takes the float32 initial values (their
    float64 init differs in the last bits), then the initial state is saved as step 0."""
    initial = os.path.join(folder, "initial_params.npz")
    if os.path.exists(initial):
        set_params(authors, trace.model, np.load(initial))
    save_npz(os.path.join(folder, "snap_%06d.npz" % 0),
             state_arrays(authors, trace.model, trace.optimizer))


def task_train(authors, spec, folder, report):
    """Lockstep training: their experiments.py for spec['steps'] steps on the suite's draws,
    with snapshots (parameters, both moments, timestep) after the steps in spec['snapshots']."""
    layers, budget = spec["layers"], spec["steps"]
    segments = load_segments(os.path.join(folder, "draws"), slot_names(layers))
    snapshots = set(spec["snapshots"])
    started = time.time()

    def on_stage(trace):
        if len(trace.stages) == 1:
            start(authors, trace, folder)
            step1_probe(authors, trace, segments, layers, folder)

    def on_step(trace):
        if trace.step in snapshots:
            save_npz(os.path.join(folder, "snap_%06d.npz" % trace.step),
                     state_arrays(authors, trace.model, trace.optimizer))
        report(trace.step, budget)

    trace = TrainingTrace(authors, budget=budget, on_stage=on_stage, on_step=on_step)
    authors.streams.append(ReplayStreams(segments, layers))
    try:
        authors.run_main(main_argv(spec))
    except StopTraining:
        pass
    if trace.step != budget:
        raise RuntimeError("their training stopped after %d of %d steps" % (trace.step, budget))
    np.save(os.path.join(folder, "indices.npy"), np.asarray(trace.indices, dtype=np.int64))
    return {"steps": trace.step, "stages": [s.as_dict() for s in trace.stages],
            "seconds": time.time() - started, "seeds_asked": authors.seeds_asked[-1:]}


def task_continue(authors, spec, folder, report):
    """Section 5.2: their training for spec['steps'] steps, their save_checkpoint as stage 8 of
    the first run's folder, then their experiments.py --exp <direction> (experiment2) for
    spec['continuation_steps'] steps, which loads that checkpoint."""
    layers = 1
    first, then = spec["steps"], spec["continuation_steps"]
    segments = load_segments(os.path.join(folder, "draws"), slot_names(layers))
    snapshots = set(spec["snapshots"])
    budget = first + then
    started = time.time()

    def on_step(trace):
        if trace.step in snapshots:
            save_npz(os.path.join(folder, "snap_%06d.npz" % trace.step),
                     state_arrays(authors, trace.model, trace.optimizer))
        report(trace.step, budget)

    def on_stage(trace):
        if len(trace.stages) == 1:
            start(authors, trace, folder)

    trace = TrainingTrace(authors, budget=first, on_stage=on_stage, on_step=on_step)
    authors.streams.append(ReplayStreams(segments, layers))
    try:
        authors.run_main(main_argv(spec))
    except StopTraining:
        pass
    directory = authors.experiments.directory_to_store(**spec["first_run"])
    authors.experiments.save_checkpoint(directory, 8, trace.model, trace.optimizer, trace.srng)
    trace.budget = budget
    # load_checkpoint asks utils.srng() for a stream and sets its rstate from the checkpoint
    authors.streams.append(ReplayStreams(segments, layers))
    try:
        authors.run_main(["--exp", spec["direction"], "--dataset", spec["dataset"]])
    except StopTraining:
        pass
    if trace.step != budget:
        raise RuntimeError("their continuation stopped after %d of %d steps"
                           % (trace.step, budget))
    return {"steps": trace.step, "stages": [s.as_dict() for s in trace.stages],
            "seconds": time.time() - started}


def _evaluation_dataset(authors, trace, test_x, train_x):
    """A shallow copy of their dataset whose test (and train) split is the suite's binary
    subset; a dynamic dataset then binarizes it with u = 0.5, which leaves 0/1 values as they
    are under their 1[u <= x]."""
    dataset = copy.copy(trace.dataset)
    dataset.data = dict(dataset.data)
    dataset.data["test"] = theano.shared(test_x.astype(theano.config.floatX))
    dataset.data["train"] = theano.shared(train_x.astype(theano.config.floatX))
    return dataset


def _per_call(authors, call):
    """Runs call() with every compiled function's outputs recorded, call by call."""
    calls = []
    real_function = theano.function

    def recording(*a, **kw):
        function = real_function(*a, **kw)

        def run(*args):
            out = function(*args)
            calls.append(np.asarray(out))
            return out
        return run
    theano.function = recording
    try:
        result = call()
    finally:
        theano.function = real_function
    return result, calls


def _kept_columns(before, after):
    """Which original columns the pruned weight matrix kept, in its order (matched by value:
    chop_units_with_variance_under_threshold reorders and drops columns, nothing else)."""
    kept = []
    for j in range(after.shape[1]):
        matches = np.where((before == after[:, j:j + 1]).all(axis=0))[0]
        if len(matches) != 1:
            raise RuntimeError("cannot tell which unit pruned column %d was" % j)
        kept.append(int(matches[0]))
    return np.asarray(kept, dtype=np.int64)


def task_evaluate(authors, spec, folder, report):
    """On the suite's trained parameters: their measure_marginal_log_likelihood per example
    (minibatch_size=1), get_units_variances, chop_units_with_variance_under_threshold, and the
    measure again on the pruned model; every draw from the suite."""
    layers, k = spec["layers"], spec["k"]
    trace = run_dry(authors, main_argv(spec), layers)
    model = trace.model
    set_params(authors, model, np.load(os.path.join(folder, "params.npz")))
    test_x, train_x = np.load(os.path.join(folder, "test_x.npy")), np.load(
        os.path.join(folder, "units_x.npy"))
    dataset = _evaluation_dataset(authors, trace, test_x, train_x)
    started = time.time()
    eval_segments = load_segments(os.path.join(folder, "eval_draws"), slot_names(layers))
    units_segments = load_segments(os.path.join(folder, "units_draws"), slot_names(layers))

    def measure(columns=None):
        authors.streams.append(ReplayStreams(eval_segments, layers, columns))
        mean, calls = _per_call(authors, lambda: authors.iwae.measure_marginal_log_likelihood(
            model=model, dataset=dataset, subdataset="test", minibatch_size=1, num_samples=k))
        return float(mean), np.asarray(calls, dtype=np.float64)

    mean, per_example = measure()
    report(1, 3)
    authors.streams.append(ReplayStreams(units_segments, layers))
    variances = authors.iwae.get_units_variances(model, dataset)
    before = [q.mean_network.W.get_value() for q in model.q_layers]
    authors.iwae.chop_units_with_variance_under_threshold(model, variances)
    kept = [_kept_columns(b, q.mean_network.W.get_value())
            for b, q in zip(before, model.q_layers)]
    report(2, 3)
    pruned_mean, pruned = measure({"n%d" % l: kept[l] for l in range(layers)})
    report(3, 3)
    arrays = {"per_example": per_example, "pruned_per_example": pruned}
    for l in range(layers):
        arrays["variances/%d" % l] = np.asarray(variances[l])
        arrays["kept/%d" % l] = kept[l]
    save_npz(os.path.join(folder, "evaluation.npz"), arrays)
    return {"mean": mean, "pruned_mean": pruned_mean,
            "active_units": [int(len(c)) for c in kept],
            "seeds_asked": authors.seeds_asked[-2:], "seconds": time.time() - started}


def task_data(authors, spec, folder, report):
    """Their datasets.py on the data folder: every split and the decoder bias."""
    dataset = authors.datasets.load_dataset_from_name(spec["dataset"])
    arrays = {name: dataset.data[name].get_value() for name in ("train", "validation", "test")}
    arrays["bias"] = dataset.get_train_bias_np()
    for name, value in arrays.items():
        np.save(os.path.join(folder, name + ".npy"), value)
    return {name: list(value.shape) for name, value in arrays.items()}


def task_carry(authors, spec, folder, report):
    """What their checkpoint carries into experiment2, on the real MRG stream: parameters,
    moments and timestep through save_checkpoint/load_checkpoint, and srng.rstate, which is
    where MRG_RandomStreams starts the next random op it creates (not the position of the draws
    already made: a graph built after loading draws from a new substream)."""
    trace = run_dry(authors, main_argv(spec), spec["layers"])
    model, optimizer = trace.model, trace.optimizer
    optimizer.timestep.set_value(np.asarray(7, dtype=theano.config.floatX))
    srng = authors.real_srng()
    x = T.matrix()
    old_op = theano.function([x], srng.uniform(x.shape))
    grid = np.zeros((2, 3), dtype=theano.config.floatX)
    old_draws = [old_op(grid), old_op(grid), old_op(grid)]
    before = state_arrays(authors, model, optimizer)
    directory = os.path.join(authors.config.RESULTS_DIR, "carry")
    if not os.path.isdir(directory):
        os.makedirs(directory)
    authors.experiments.save_checkpoint(directory, 8, model, optimizer, srng)
    authors.utils.srng = authors.real_srng  # load_checkpoint builds a real stream here
    try:
        loaded, model2, optimizer2, srng2 = authors.experiments.load_checkpoint(directory, 8)
    finally:
        authors.utils.srng = authors._next_stream
    after = state_arrays(authors, model2, optimizer2)
    new_draw = theano.function([x], srng2.uniform(x.shape))(grid)
    same_point = theano.function([x], srng.uniform(x.shape))(grid)
    fresh = theano.function([x], authors.real_srng(123).uniform(x.shape))(grid)
    equal = all(np.array_equal(before[n], after[n]) for n in before)
    return {"loaded_checkpoint": int(loaded), "state_equal": bool(equal),
            "timestep": float(after["t"]),
            "rstate_equal": bool(np.array_equal(srng.rstate, srng2.rstate)),
            "continues_old_draws": bool(np.array_equal(new_draw, old_op(grid))),
            "equals_new_op_of_saved_stream": bool(np.array_equal(new_draw, same_point)),
            "equals_fresh_seed_123": bool(np.array_equal(new_draw, fresh)),
            "old_draws_distinct": bool(not np.array_equal(old_draws[0], old_draws[1]))}


def task_independent(authors, spec, folder, report):
    """Independent run: their experiments.py for spec['steps'] steps on their own random stream
    (utils.srng unmodified, seed 123), then their measure_marginal_log_likelihood with its
    defaults (seed 123, minibatch 20) and num_samples = spec['eval_k'] on the suite's binary
    test subset (test_x.npy). What their graph actually scored is hashed for the suite to check:
    a dynamic dataset binarizes it again with 1[u <= x], which leaves 0/1 values as they are."""
    import hashlib

    budget = spec["steps"]

    def own_stream(seed=123):
        authors.seeds_asked.append(seed)
        return authors.real_srng(seed)

    trace = TrainingTrace(authors, budget=budget, on_step=lambda t: report(t.step, budget))
    authors.utils.srng = own_stream
    started = time.time()
    try:
        try:
            authors.run_main(main_argv(spec))
        except StopTraining:
            pass
        if trace.step != budget:
            raise RuntimeError("their training stopped after %d of %d steps"
                               % (trace.step, budget))
        train_s = time.time() - started
        test_x = np.load(os.path.join(folder, "test_x.npy"))
        dataset = _evaluation_dataset(authors, trace, test_x, test_x)
        size = spec["eval_minibatch"]
        index = T.lscalar("i")
        minibatch = dataset.minibatchIindex_minibatch_size(index, size, subdataset="test",
                                                           srng=own_stream(123))
        served = theano.function([index], minibatch)
        scored = np.concatenate([served(i) for i in range(-(-test_x.shape[0] // size))])
        mean = authors.iwae.measure_marginal_log_likelihood(
            model=trace.model, dataset=dataset, subdataset="test", minibatch_size=size,
            num_samples=spec["eval_k"])
    finally:
        authors.utils.srng = authors._next_stream
    digest = hashlib.sha256(np.ascontiguousarray(scored, dtype=np.uint8).tobytes()).hexdigest()
    return {"mean": float(mean), "steps": trace.step, "train_s": train_s,
            "eval_s": time.time() - started - train_s, "test_set_sha256": digest,
            "scored_binary": bool(np.all((scored == 0) | (scored == 1))),
            "seeds_asked": authors.seeds_asked[-3:]}


TASKS = {"schedule": task_schedule, "train": task_train, "continue": task_continue,
         "evaluate": task_evaluate, "data": task_data, "carry": task_carry,
         "independent": task_independent}
