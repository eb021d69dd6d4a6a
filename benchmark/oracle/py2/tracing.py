"""Watching the authors' train.train run, step by step, without changing it (Python 2).

train.train compiles one Theano function (the step) and calls it n_epochs * num_minibatches
times. While a traced train.train runs, theano.function is wrapped so that the compiled step
reports back after every call: the driver snapshots parameters and Adam moments at chosen
steps (between calls, when every update of the step has been applied) and stops training after
the step budget by raising StopTraining, again between calls.
"""
from __future__ import absolute_import, division, print_function

import theano


class StopTraining(Exception):
    pass


class Stage(object):
    def __init__(self, learning_rate, n_epochs, minibatch_size, kwargs):
        self.learning_rate, self.n_epochs = learning_rate, n_epochs
        self.minibatch_size, self.kwargs = minibatch_size, kwargs

    def as_dict(self):
        return {"learning_rate": float(self.learning_rate), "n_epochs": int(self.n_epochs),
                "minibatch_size": int(self.minibatch_size),
                "num_samples": int(self.kwargs.get("num_samples", 1)),
                "model_type": self.kwargs.get("model_type", "iwae")}


class TrainingTrace(object):
    """Installs itself as train.train. dry: record the stages and train nothing.

    on_stage(trace) runs at the start of every stage, before its step function is compiled;
    on_step(trace) after every step (trace.step counts the steps of every stage so far)."""

    def __init__(self, authors, budget=None, dry=False, on_stage=None, on_step=None):
        self.authors, self.budget, self.dry = authors, budget, dry
        self.on_stage, self.on_step = on_stage, on_step
        self.stages, self.indices = [], []
        self.step = 0
        self.model = self.optimizer = self.dataset = self.srng = None
        authors.train.train = self.train

    def train(self, model, dataset, optimizer, minibatch_size, n_epochs, srng, **kwargs):
        self.model, self.dataset, self.optimizer, self.srng = model, dataset, optimizer, srng
        self.stages.append(Stage(optimizer.learning_rate, n_epochs, minibatch_size, kwargs))
        if self.on_stage is not None:
            self.on_stage(self)
        if self.dry:
            return model
        if self.budget is not None and self.step >= self.budget:
            raise StopTraining()
        real_function = theano.function
        theano.function = lambda *a, **kw: _ReportingStep(real_function(*a, **kw), self)
        try:
            return self.authors.real_train(model, dataset, optimizer, minibatch_size, n_epochs,
                                           srng, **kwargs)
        finally:
            theano.function = real_function

    def after_step(self, index):
        self.step += 1
        self.indices.append(int(index))
        if self.on_step is not None:
            self.on_step(self)
        if self.budget is not None and self.step >= self.budget:
            raise StopTraining()


class _ReportingStep(object):
    def __init__(self, function, trace):
        self.function, self.trace = function, trace

    def __call__(self, index):
        out = self.function(index)
        self.trace.after_step(index)
        return out
