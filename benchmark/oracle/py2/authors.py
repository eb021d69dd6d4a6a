"""The authors' modules, imported unmodified from the verified cache (Python 2).

The driver steps in at four points only, all module attributes their code looks up at call
time: `utils.srng` (their random stream; replaced by prepared ReplayStreams), `train.train`
(wrapped to watch every step; see tracing.py), `datasets.load_dataset_from_name` (memoised: the
.amat parser takes a minute) and `iwae.get_samples` (the first thing post_experiment does; it
ends a dry run before plotting). `config.DATASETS_DIR` and `config.RESULTS_DIR` point at the
driver's folders.
"""
from __future__ import absolute_import, division, print_function

import collections
import importlib
import os
import runpy
import sys

MODULES = ("config", "utils", "nnet", "iwae", "optimizers", "train", "datasets", "experiments")


class StopExperiment(Exception):
    """Raised in place of post_experiment's plotting and L_5000: the driver has what it needs."""


class Authors(object):
    def __init__(self, code_dir, datasets_dir, results_dir):
        self.code_dir = code_dir
        sys.path.insert(0, code_dir)
        for name in MODULES:
            setattr(self, name, importlib.import_module(name))
            loaded = os.path.dirname(os.path.abspath(getattr(self, name).__file__))
            if loaded != os.path.abspath(code_dir):
                raise ImportError("module %s came from %s, not from the authors' cache" %
                                  (name, loaded))
        self.config.DATASETS_DIR = datasets_dir
        self.config.RESULTS_DIR = results_dir
        self.real_srng = self.utils.srng
        self.real_train = self.train.train
        self.streams = []  # handed out, in order, to the next utils.srng() calls
        self.seeds_asked = []
        self.utils.srng = self._next_stream
        self._datasets = {}
        self._load_dataset = self.datasets.load_dataset_from_name
        self.datasets.load_dataset_from_name = self._memoised_dataset
        self.iwae.get_samples = self._stop_post_experiment

    def _next_stream(self, seed=123):
        self.seeds_asked.append(seed)
        if not self.streams:
            raise RuntimeError("the authors' code asked for a random stream the driver did not "
                               "prepare")
        return self.streams.pop(0)

    def _memoised_dataset(self, name):
        if name not in self._datasets:
            self._datasets[name] = self._load_dataset(name)
        return self._datasets[name]

    @staticmethod
    def _stop_post_experiment(*args, **kwargs):
        raise StopExperiment()

    def run_main(self, argv):
        """Runs experiments.py as `python experiments.py ARGV` would, in the results folder."""
        saved_argv, saved_cwd = sys.argv, os.getcwd()
        sys.argv = ["experiments.py"] + list(argv)
        os.chdir(self.config.RESULTS_DIR)
        try:
            runpy.run_path(os.path.join(self.code_dir, "experiments.py"), run_name="__main__")
        finally:
            sys.argv = saved_argv
            os.chdir(saved_cwd)


def _linears(authors, network):
    return [layer for layer in network.layers if isinstance(layer, authors.nnet.Linear)]


def named_params(authors, model):
    """Every parameter of an authors' IWAE under a stable name, e.g. q0.trunk1.W, p0.logits.b:
    q<l> is q(h_{l+1}|h_l) and p<l> the generative layer that outputs h_l (p0 outputs x)."""
    linears = collections.OrderedDict()
    for l, layer in enumerate(model.q_layers):
        _gaussian(authors, "q%d" % l, layer, linears)
    for l, layer in enumerate(reversed(model.p_layers)):
        if isinstance(layer, authors.iwae.BernoulliSampler):
            chain = _linears(authors, layer.mean_network)
            for j, linear in enumerate(chain[:-1]):
                linears["p%d.trunk%d" % (l, j)] = linear
            linears["p%d.logits" % l] = chain[-1]
        else:
            _gaussian(authors, "p%d" % l, layer, linears)
    params = collections.OrderedDict()
    for name, linear in linears.items():
        params[name + ".W"], params[name + ".b"] = linear.W, linear.b
    if sorted(map(id, params.values())) != sorted(map(id, model.params)):
        raise RuntimeError("the parameter naming does not cover the model's parameters")
    return params


def _gaussian(authors, prefix, layer, out):
    for j, linear in enumerate(_linears(authors, layer.h_network)):
        out["%s.trunk%d" % (prefix, j)] = linear
    out[prefix + ".mean"] = layer.mean_network
    out[prefix + ".sigma"] = _linears(authors, layer.sigma_network)[0]
