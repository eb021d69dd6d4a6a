"""The published numbers of arXiv:1509.00519v4 (Tables 1, 2, 3 and the text around them), and
those of the objectives and estimators that came after it (from other protocols, each cell with
its source and how its protocol differs).

The numbers live in published.json beside this module, each with its source, so that no table or
figure code ever types a published number; a plugin's objective may bring published values of
its own in its definition (benchmark.definitions.PublishedValue), read through the same checks.
`load_published()` validates them: a typo would otherwise turn into a wrong verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.definitions import (
    Params,
    estimator_names,
    estimators,
    find_objective,
    objective_names,
    objectives,
    paper_objectives,
)
from benchmark.errors import UserError

PUBLISHED_JSON = Path(__file__).with_name("published.json")
PAPER_VERSION = "arXiv:1509.00519v4"

TABLE1_DATA = ("mnist-dynamic", "omniglot")
TABLE3_DATA = ("mnist-fixed",)
MODELS = paper_objectives()  # the models of Tables 1-3
LAYERS = (1, 2)
KS = (1, 5, 50)


class PublishedDataError(ValueError):
    """published.json does not hold what the report relies on."""


@dataclass(frozen=True)
class Source:
    paper: str
    table: int | None
    page: int | None
    location: str

    def cite(self) -> str:
        parts = [self.paper]
        if self.table is not None:
            parts.append(f"Table {self.table}")
        if self.page is not None:
            parts.append(f"p. {self.page}")
        if self.location and not self.location.startswith("Table"):
            parts.append(self.location)
        return ", ".join(parts)


@dataclass(frozen=True)
class PublishedCell:
    """One model's entry in one row of Table 1 or Table 3."""

    data: str
    layers: int
    k: int
    model: str
    nll: float
    active_units: tuple[int, ...]
    source: Source


@dataclass(frozen=True)
class Stage:
    model: str
    k: int
    nll: float
    active_units: tuple[int, ...]


@dataclass(frozen=True)
class ContinuationRow:
    """One experiment of Table 2: a first stage, then 3^7 epochs with the other objective."""

    experiment: int
    data: str
    layers: int
    first: Stage
    second: Stage
    source: Source


@dataclass(frozen=True)
class GapRange:
    """How much higher the train log-likelihood is than the test one, as published."""

    data: str
    low: float | None
    high: float | None
    approx: float | None
    quote: str
    source: Source

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:.2f} to {self.high:.2f}"
        return f"about {self.approx:.1f}"


@dataclass(frozen=True)
class Noise:
    """Run-to-run noise estimates behind the agreement tolerances, with their reasons."""

    nll_run_to_run_sd: float
    nll_basis: str
    active_units_per_layer: int
    active_units_basis: str


@dataclass(frozen=True)
class EstimatorCell:
    """A published test NLL of an objective beyond the paper's, from another protocol."""

    data: str
    layers: int
    model: str
    k: int
    estimator: str | None
    params: Params
    nll: float
    spread: float | None  # the quoted +/- over runs, when the source gives one
    source: Source
    quoted_from: str | None  # the paper a secondary source quotes the number from
    protocol: str
    differences: str

    @property
    def key(self) -> tuple:
        return (self.data, self.layers, self.model, self.k, self.estimator, self.params)

    def cite(self) -> str:
        quoted = f" quoting {self.quoted_from}" if self.quoted_from else ""
        return f"{self.source.cite()}{quoted}"


@dataclass(frozen=True)
class Published:
    paper: dict[str, str]
    table1: tuple[PublishedCell, ...]
    table3: tuple[PublishedCell, ...]
    table2: tuple[ContinuationRow, ...]
    gaps: tuple[GapRange, ...]
    pruning_max_change: float
    pruning_quote: str
    pruning_source: Source
    noise: Noise
    estimators: tuple[EstimatorCell, ...] = ()

    def cell(self, data: str, layers: int, k: int, model: str) -> PublishedCell | None:
        for cell in (*self.table1, *self.table3):
            key = (cell.data, cell.layers, cell.k, cell.model)
            if key == (data, layers, k, model):
                return cell
        return None

    def estimator_cell(self, key: tuple) -> EstimatorCell | None:
        """The published cell of (data, layers, model, k, estimator, params), if any."""
        return next((c for c in self.estimators if c.key == key), None)

    def gap(self, data: str) -> GapRange | None:
        return next((g for g in self.gaps if g.data == data), None)

    def continuation(self, experiment: int) -> ContinuationRow | None:
        return next((r for r in self.table2 if r.experiment == experiment), None)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PublishedDataError(f"published.json: {message}")


def _source(raw: Any, where: str) -> Source:
    _require(isinstance(raw, dict), f"{where}: source missing")
    _require(isinstance(raw.get("paper"), str) and raw["paper"], f"{where}: source.paper")
    for key in ("table", "page"):
        value = raw.get(key)
        _require(value is None or isinstance(value, int), f"{where}: source.{key} not an int")
    _require(isinstance(raw.get("location"), str), f"{where}: source.location")
    return Source(raw["paper"], raw.get("table"), raw.get("page"), raw["location"])


def _nll(value: Any, where: str) -> float:
    # Every published NLL in this paper lies between 80 and 110 nats: outside means a typo.
    _require(isinstance(value, int | float) and 80.0 < value < 110.0, f"{where}: nll {value!r}")
    return float(value)


def _units(value: Any, layers: int, where: str) -> tuple[int, ...]:
    ok = isinstance(value, list) and len(value) == layers
    ok = ok and all(isinstance(u, int) and 0 <= u <= 100 for u in value)
    _require(ok, f"{where}: active_units {value!r} for {layers} layer(s)")
    return tuple(value)


def _table_cells(raw: Any, table: int, data_values: tuple[str, ...]) -> tuple[PublishedCell, ...]:
    _require(isinstance(raw, dict) and isinstance(raw.get("cells"), list), f"table{table}.cells")
    cells = []
    for i, c in enumerate(raw["cells"]):
        where = f"table{table}.cells[{i}]"
        _require(c.get("data") in data_values, f"{where}: data {c.get('data')!r}")
        _require(c.get("layers") in LAYERS and c.get("k") in KS, f"{where}: layers/k")
        _require(c.get("model") in MODELS, f"{where}: model {c.get('model')!r}")
        source = _source(c.get("source"), where)
        _require(source.paper == PAPER_VERSION and source.table == table, f"{where}: source")
        units = _units(c.get("active_units"), c["layers"], where)
        cells.append(PublishedCell(c["data"], c["layers"], c["k"], c["model"],
                                   _nll(c.get("nll"), where), units, source))
    expected = {(d, n, k, m) for d in data_values for n in LAYERS for k in KS for m in MODELS}
    found = [(c.data, c.layers, c.k, c.model) for c in cells]
    _require(len(found) == len(set(found)), f"table{table}: duplicate cells")
    _require(set(found) == expected, f"table{table}: cells missing {expected - set(found)}")
    return tuple(cells)


def _stage(raw: Any, where: str) -> Stage:
    _require(isinstance(raw, dict) and raw.get("model") in MODELS, f"{where}: model")
    _require(raw.get("k") in KS, f"{where}: k")
    return Stage(raw["model"], raw["k"], _nll(raw.get("nll"), where),
                 _units(raw.get("active_units"), 1, where))


def _table2(raw: Any) -> tuple[ContinuationRow, ...]:
    _require(isinstance(raw, dict) and isinstance(raw.get("rows"), list), "table2.rows")
    rows = []
    for i, r in enumerate(raw["rows"]):
        where = f"table2.rows[{i}]"
        source = _source(r.get("source"), where)
        _require(source.paper == PAPER_VERSION and source.table == 2, f"{where}: source")
        _require(r.get("data") == "mnist-dynamic" and r.get("layers") == 1, f"{where}: setting")
        first, second = _stage(r.get("first"), where), _stage(r.get("second"), where)
        _require(first.model != second.model, f"{where}: both stages use the same objective")
        rows.append(ContinuationRow(r.get("experiment"), r["data"], 1, first, second, source))
    _require(sorted(r.experiment for r in rows) == [1, 2], "table2: experiments 1 and 2")
    return tuple(rows)


def _gaps(raw: Any) -> tuple[GapRange, ...]:
    _require(isinstance(raw, list), "train_test_gap")
    gaps = []
    for i, g in enumerate(raw):
        where = f"train_test_gap[{i}]"
        low, high, approx = g.get("low"), g.get("high"), g.get("approx")
        _require((low is not None and high is not None and 0 <= low <= high) or
                 (approx is not None and approx > 0), f"{where}: range")
        gaps.append(GapRange(g.get("data"), low, high, approx, str(g.get("quote", "")),
                             _source(g.get("source"), where)))
    _require({g.data for g in gaps} >= {*TABLE1_DATA, *TABLE3_DATA}, "train_test_gap conditions")
    return tuple(gaps)


def _noise(raw: Any) -> Noise:
    _require(isinstance(raw, dict), "noise")
    sd, units = raw.get("nll_run_to_run_sd"), raw.get("active_units_per_layer")
    _require(isinstance(sd, int | float) and 0 < sd < 1, "noise.nll_run_to_run_sd")
    _require(isinstance(units, int) and units >= 0, "noise.active_units_per_layer")
    return Noise(float(sd), str(raw.get("nll_basis", "")), units,
                 str(raw.get("active_units_basis", "")))


def _text(value: Any, where: str) -> str:
    _require(isinstance(value, str) and value.strip() != "", f"{where} missing")
    return value


def _estimator_cells(raw: Any) -> tuple[EstimatorCell, ...]:
    _require(isinstance(raw, dict) and isinstance(raw.get("cells"), list), "estimators.cells")
    cells = []
    for i, c in enumerate(raw["cells"]):
        where = f"estimators.cells[{i}]"
        _require(c.get("data") in TABLE1_DATA and c.get("layers") in LAYERS, f"{where}: setting")
        _require(c.get("model") in objective_names(), f"{where}: model {c.get('model')!r}")
        estimator = c.get("estimator")
        _require(estimator is None or estimator in estimator_names(), f"{where}: estimator")
        _require(isinstance(c.get("k"), int) and c["k"] >= 1, f"{where}: k")
        params = []
        for parameter in find_objective(c["model"]).parameters:  # as its definition checks them
            value = c.get(parameter.name)
            _require(value is not None and parameter.problem(value) is None,
                     f"{where}: {parameter.name} {value!r}")
            params.append((parameter.name, parameter.coerce(value)))
        spread = c.get("spread")
        _require(spread is None or (isinstance(spread, int | float) and 0 < spread < 1),
                 f"{where}: spread")
        cells.append(EstimatorCell(
            c["data"], c["layers"], c["model"], c["k"], estimator, tuple(params),
            _nll(c.get("nll"), where), None if spread is None else float(spread),
            _source(c.get("source"), where), c.get("quoted_from"),
            _text(c.get("protocol"), f"{where}: protocol"),
            _text(c.get("differences"), f"{where}: differences")))
    keys = [c.key for c in cells]
    _require(len(keys) == len(set(keys)), "estimators: duplicate cells")
    return tuple(cells)


def parse_published(doc: dict[str, Any]) -> Published:
    """Validate a decoded published.json and return it as typed, immutable data."""
    _require(isinstance(doc, dict), "top level is not an object")
    paper = doc.get("paper") or {}
    _require(paper.get("version") == PAPER_VERSION, "paper.version")
    pruning = doc.get("pruning") or {}
    change = pruning.get("max_abs_change_nats")
    _require(isinstance(change, int | float) and change > 0, "pruning.max_abs_change_nats")
    return Published(
        paper=dict(paper),
        table1=_table_cells(doc.get("table1"), 1, TABLE1_DATA),
        table3=_table_cells(doc.get("table3"), 3, TABLE3_DATA),
        table2=_table2(doc.get("table2")),
        gaps=_gaps(doc.get("train_test_gap")),
        pruning_max_change=float(change),
        pruning_quote=str(pruning.get("quote", "")),
        pruning_source=_source(pruning.get("source"), "pruning"),
        noise=_noise(doc.get("noise")),
        estimators=_estimator_cells(doc.get("estimators")),
    )


@cache
def _parsed(path: Path) -> Published:
    return parse_published(json.loads(Path(path).read_text(encoding="utf-8")))


def load_published(path: Path = PUBLISHED_JSON) -> Published:
    """The published numbers, validated (the file is parsed once: it ships with the package),
    with those the registered definitions bring (a plugin's)."""
    published = _parsed(Path(path))
    extra = definition_cells()
    return replace(published, estimators=published.estimators + extra) if extra else published


def definition_cells() -> tuple[EstimatorCell, ...]:
    """The published values of the registered definitions, checked as published.json's are; a
    mistake is one UserError naming the definition and its plugin."""
    cells: list[EstimatorCell] = []
    for definition in (*objectives(), *estimators()):
        model = getattr(definition, "of", definition.name)
        estimator = definition.name if model != definition.name else None
        raw = []
        for value in definition.published:
            fields = asdict(value)
            params = fields.pop("params")
            raw.append({**fields, **params, "model": model, "estimator": estimator})
        try:
            cells += _estimator_cells({"cells": raw}) if raw else ()
        except PublishedDataError as err:
            owner = getattr(definition, "plugin", None) or "the suite"
            raise UserError(f"the published values of {definition.name} ({owner}): "
                            f"{str(err).removeprefix('published.json: ')}") from err
    return tuple(cells)
