"""A stand-in for the authors' random stream that serves draws made elsewhere (Python 2).

The authors' graph asks `utils.srng()` (Theano's MRG_RandomStreams) for `uniform(shape)` (the
binarization) and `normal(shape)` (the reparameterisation noise of each stochastic layer, bottom
first). ReplayStreams answers the same calls with symbolic outputs of ReplayOp, whose perform()
hands out the next stored draw of its slot each time the compiled function runs. The graph is
otherwise untouched, so their code computes exactly what it would on MRG draws equal to ours.

Slots: every uniform() call reads slot "u"; the normal() calls cycle through "n0", "n1", ...
(one per stochastic layer, in the order their q_samplesIx_srng draws them). A slot is a list of
segments (arrays of shape (draws, rows, cols)) read back to back, so a continuation may change
the shapes of its draws (k = 1 then k = 50). Each call site keeps its own position, starting
where the stream stood when the site was created: sites built together (one graph) read the
same draws, a graph built after training continues where training stopped. `rstate` is that
position, so the authors' checkpoints (which pickle srng.rstate) carry it, as they carry MRG's.
"""
from __future__ import absolute_import, division, print_function

import itertools

import numpy as np
import theano
import theano.tensor as T
from theano.gradient import DisconnectedType


class ReplayExhausted(Exception):
    """A graph asked for more draws than were supplied: the lockstep is misaligned."""


class ReplayOp(theano.Op):
    """Outputs the next draw of one call site; never constant-folded, never merged."""

    __props__ = ("site_id",)
    _ids = itertools.count()

    def __init__(self, site):
        self.site = site
        self.site_id = next(ReplayOp._ids)

    def make_node(self, shape):
        shape = T.as_tensor_variable(shape)
        out = T.TensorType(theano.config.floatX, (False, False))()
        return theano.Apply(self, [shape], [out])

    def perform(self, node, inputs, outputs):
        wanted = tuple(int(s) for s in inputs[0])
        draw = self.site.next_draw()
        if draw.shape != wanted:
            raise ReplayExhausted("slot %s draw %d has shape %s, the graph asks for %s"
                                  % (self.site.slot, self.site.position - 1, draw.shape, wanted))
        outputs[0][0] = np.array(draw, dtype=theano.config.floatX)

    def do_constant_folding(self, node):
        return False  # a fixed shape must not turn a draw into a compile-time constant

    def infer_shape(self, node, shapes):
        shape = node.inputs[0]
        return [(shape[0], shape[1])]

    def connection_pattern(self, node):
        return [[False]]

    def grad(self, inputs, output_grads):
        return [DisconnectedType()()]


class Site(object):
    """One uniform()/normal() call of the authors' graph: where it reads in its slot."""

    def __init__(self, stream, slot):
        self.stream, self.slot = stream, slot
        self.position = stream.consumed.get(slot, 0)

    def next_draw(self):
        draw = self.stream.draw(self.slot, self.position)
        self.position += 1
        self.stream.consumed[self.slot] = max(self.stream.consumed.get(self.slot, 0),
                                              self.position)
        return draw


class ReplayStreams(object):
    """Answers uniform()/normal() like MRG_RandomStreams, from stored draws.

    segments: {slot: [array (n, rows, cols), ...]}; layers: stochastic layers (normal slots);
    columns: {slot: index array} keeps only those columns of every draw of a slot, in that order
    (a pruned model draws noise for its remaining units only)."""

    def __init__(self, segments, layers, columns=None):
        self.segments = segments
        self.layers = layers
        self.columns = columns or {}
        self.consumed = {}
        self.normal_calls = 0

    # --- the MRG_RandomStreams interface the authors' code uses ---------------------------------
    def uniform(self, size, low=0.0, high=1.0, ndim=None, dtype=None, nstreams=None):
        self._check_defaults(low == 0.0 and high == 1.0 and ndim is None and nstreams is None)
        return ReplayOp(Site(self, "u"))(size)

    def normal(self, size, avg=0.0, std=1.0, ndim=None, dtype=None, nstreams=None):
        self._check_defaults(avg == 0.0 and std == 1.0 and ndim is None and nstreams is None)
        slot = "n%d" % (self.normal_calls % self.layers)
        self.normal_calls += 1
        return ReplayOp(Site(self, slot))(size)

    @property
    def rstate(self):
        return dict(self.consumed)

    @rstate.setter
    def rstate(self, value):
        self.consumed = dict(value)

    # --- serving --------------------------------------------------------------------------------
    def draw(self, slot, index):
        if slot not in self.segments:
            raise ReplayExhausted("the graph draws from slot %s, which was not supplied" % slot)
        offset = index
        for segment in self.segments[slot]:
            if offset < segment.shape[0]:
                draw = segment[offset]
                if slot in self.columns:
                    draw = draw[:, self.columns[slot]]
                return draw
            offset -= segment.shape[0]
        total = sum(segment.shape[0] for segment in self.segments[slot])
        raise ReplayExhausted("slot %s has %d draws; draw %d was asked for"
                              % (slot, total, index))

    @staticmethod
    def _check_defaults(ok):
        if not ok:
            raise ReplayExhausted("the authors' code asked for a non-standard draw")
