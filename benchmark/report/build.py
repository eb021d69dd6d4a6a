"""Assemble the report: read the runs, build tables and figures, write everything atomically.

Output layout (out_dir):
    index.html                      the self-contained page (figures inlined)
    tables/<fidelity>/table1.{csv,md,tex}, table3.*, table2.*, binarization.*, train_test_gap.*,
                      estimators.* (the objectives beyond the paper's)
    tables/snr_<i>.*                every gradient SNR record found (diagnose --snr)
    tables/runs.*, tables/attention.*, tables/provenance.*, tables/datasets.*
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmark.errors import UserError
from benchmark.records import atomic_write_text
from benchmark.report import figures
from benchmark.report.binarization_causes import (
    causes_results,
    effects_table,
    findings_markdown,
    nll_table,
    stages_markdown,
)
from benchmark.report.causes_figure import causes_figure
from benchmark.report.estimators import (
    SnrRecord,
    estimators_table,
    find_snr_records,
    means_table,
    snr_table,
)
from benchmark.report.html import Banner, FigureBlock, GalleryCard, Page, Section, render_page
from benchmark.report.oracle_section import oracle_section
from benchmark.report.provenance import (
    ReportOrigin,
    checksum_table,
    provenance_table,
    report_origin,
)
from benchmark.report.published import KS, LAYERS, MODELS, Published, load_published
from benchmark.report.runs import Run, data_label, load_runs, select_grid, unreadable_records
from benchmark.report.table_set import FidelityTables, build_fidelity_tables
from benchmark.report.tableio import Cell, ReportTable, write_table
from benchmark.report.tables import ALL_DATA, fidelities, runs_table
from benchmark.report.tightness import (
    AIS_HINT,
    ais_table,
    bdmc_curves,
    bdmc_table,
    runs_with_ais,
)

FIDELITY_NOTES = {
    "code": "fidelity code: as the authors' released code ran (Adam beta1=0.99, second moment "
            "initialised to ones, lagged update, summed gradients); it produced the published "
            "numbers.",
    "paper": "fidelity paper: as the paper's text states (Adam beta1=0.9, beta2=0.999, "
             "eps=1e-4, standard update).",
}
SWEEP_HINT = ("run a sweep first, e.g. `python -m benchmark sweep table1 --schedule quick "
              "--results {dir}` (or `make reproduce-table1`), then `python -m benchmark report "
              "--results {dir}`")


def default_out_dir(results_dir: Path) -> Path:
    return Path("reports") / Path(results_dir).resolve().name


def load_runs_or_explain(results_dir: Path) -> list[Run]:
    if not Path(results_dir).is_dir():
        raise UserError(f"no results folder at {results_dir}: "
                        + SWEEP_HINT.format(dir=results_dir))
    runs = load_runs(results_dir)
    if not runs:
        raise UserError(f"no runs (result.json) under {results_dir}: "
                        + SWEEP_HINT.format(dir=results_dir))
    return runs


def attention_table(runs: Sequence[Run], results_dir: Path) -> ReportTable:
    """Runs that did not finish (failed, running, unavailable) and records that do not parse."""
    rows = [((_relative(run_dir, results_dir),), (Cell(value="?"), Cell(value="?"),
                                                   Cell(value=why)))
            for run_dir, why in unreadable_records(results_dir)]
    for run in runs:
        if run.status == "complete" and run.test_nll is not None:
            continue
        name = _relative(run.run_dir, results_dir)
        rows.append(((name,), (Cell(value=run.describe()), Cell(value=run.fidelity),
                               Cell(value=run.status_text()))))
    return ReportTable(name="attention", title="Runs that did not complete",
                       description="Failed, running and unavailable runs, with their reasons.",
                       index_columns=("Run",), value_columns=("What", "Fidelity", "Status"),
                       rows=tuple(rows))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)


def fidelity_figures(ft: FidelityTables, runs: Sequence[Run],
                     published: Published) -> tuple[FigureBlock, ...]:
    grid = ft.grid
    return (
        FigureBlock("Test NLL against k", figures.nll_vs_k(grid, published),
                    "Measured test NLL (filled squares, error bars: sd over seeds or the "
                    "estimator's s.e.), cut runs (crosses; not a reproduction) and the published "
                    "values (open circles, dotted) for the VAE and IWAE with 1 and 2 stochastic "
                    "layers."),
        FigureBlock("Learning curves", figures.learning_curves(runs, ft.fidelity),
                    "Training bound (NLL of the objective being trained, nats) against epoch on a "
                    "log axis; solid VAE, dashed IWAE; dotted lines mark the learning-rate stage "
                    "boundaries at cumulative epochs 1, 4, 13, 40, 121, 364, 1093."),
        FigureBlock("Active units", figures.active_units_histograms(grid),
                    "Histogram of log10 of each latent unit's activity statistic (the variance "
                    "over data points of its posterior mean; all stochastic layers), as in the "
                    "paper's Appendix C. The dashed line is the 0.01 activity threshold."),
        FigureBlock("Fixed vs dynamic binarization", figures.binarization_dots(grid, published),
                    "MNIST train (open) and test (filled) NLL per model, dynamic (blue circles) "
                    "and fixed (orange squares) binarization; grey ticks: published test NLL "
                    "(Table 1 dynamic, Table 3 fixed). Rows marked (cut) include a cut run."),
    )


def gallery(ft: FidelityTables) -> tuple[GalleryCard, ...]:
    """One card per grid cell with a measured run: its samples and reconstructions."""
    cards = []
    for data in ALL_DATA:
        for layers in LAYERS:
            for k in KS:
                for model in MODELS:
                    m = ft.grid[(data, layers, k, model)].measurement
                    if m is None:
                        continue
                    run = m.runs[0]
                    samples, recon = figures.samples_png(run), figures.reconstructions_png(run)
                    if samples is None and recon is None:
                        continue
                    title = f"{data_label(data)} · {model.upper()} k={k} · {layers}L · seed " \
                            f"{run.seed}"
                    cards.append(GalleryCard(title, run.status_text(), samples, recon))
    return tuple(cards)


def fidelity_sections(ft: FidelityTables, runs: Sequence[Run], published: Published,
                      grid: str | None) -> list[Section]:
    fid = ft.fidelity
    wants_table2 = grid in (None, "table2")
    notes = [] if ft.table2 or not wants_table2 else [
        "Table 2 (Section 5.2 continuations): no run of this fidelity yet "
        "(`python -m benchmark sweep table2`)."]
    tables = ft.for_grid(grid)
    return [
        Section(f"tables-{fid}", f"Tables, fidelity {fid}", FIDELITY_NOTES.get(fid, ""),
                tables=tuple(tables), notes=tuple(notes)),
        Section(f"figures-{fid}", f"Figures, fidelity {fid}",
                figures=fidelity_figures(ft, runs, published)),
        Section(f"samples-{fid}", f"Samples and reconstructions, fidelity {fid}",
                "One run per model cell (the first seed behind the measured value). Left: the "
                "Bernoulli means of 64 samples from the model. Right: test inputs (odd rows) "
                "above their reconstruction means (even rows). Images are 28×28; OMNIGLOT "
                "images are transposed back from their stored order.",
                gallery=gallery(ft)),
    ]


def tightness_section(runs: Sequence[Run], tables: Sequence[ReportTable]) -> Section:
    """"How tight is L_5000?": AIS beside L_k per run, the BDMC tables and their figure."""
    by_name = {t.name: t for t in tables}
    notes = () if runs_with_ais(runs) else (AIS_HINT,)
    return Section(
        "tightness", "How tight is L_5000?",
        "Every number in the paper's tables is L_5000, a stochastic lower bound on log p(x). "
        "Annealed importance sampling (AIS) estimates log p(x) more tightly; the difference is "
        "how much of a run's number is estimator slack. The Table 1 cells keep L_5000 (the "
        "paper's estimator) and show the AIS value as a labelled note.",
        tables=(by_name["ais"], by_name["bdmc"]), notes=notes,
        figures=(FigureBlock("BDMC gap against T", figures.bdmc_gap_vs_steps(bdmc_curves(runs)),
                             "Upper minus lower BDMC bound (nats, symmetric-log axis) on data "
                             "simulated from each model, against the number of intermediate "
                             "distributions: where it is near zero, forward AIS with that T is "
                             "accurate for data like the model's own.",
                             empty="No run has a BDMC evaluation yet (`python -m benchmark "
                                   "evaluate RUN_DIR --bdmc`)."),))


def verdict_counts(tables: Sequence[ReportTable]) -> dict[str, int]:
    counts = {"agrees": 0, "differs": 0}
    for table in tables:
        # Table 2's first stage is a Table 1 run already counted there.
        columns = [i for i, c in enumerate(table.value_columns)
                   if not c.startswith("First-stage")]
        for _, cells in table.rows:
            for i in columns:
                if cells[i].verdict in counts:
                    counts[cells[i].verdict] += 1
    return counts


def banners(runs: Sequence[Run]) -> list[Banner]:
    out = []
    if not any(r.is_full_protocol for r in runs):
        out.append(Banner("warn", "No run in this report completed the full protocol.",
                          " Every measured number comes from a run cut short (quick or smoke "
                          "schedule, or --stages/--epochs/--steps): it shows how far training "
                          "got, is not a reproduction of the paper, and gets no verdict. The "
                          "full protocol is 3,280 epochs (2,187 for the Table 2 continuations)."))
    recorded = {r.environment.get("dataset_catalogue") for r in runs}
    catalogues = sorted(c for c in recorded if c not in (None, "built-in"))
    if catalogues:
        out.append(Banner("warn", "Some runs read data verified against another catalogue.",
                          " Their dataset files were checked against "
                          + ", ".join(catalogues) + " instead of the suite's built-in checksums "
                          "of the canonical files, so they may not be the paper's data."))
    stuck = [r for r in runs if r.status in ("failed", "running", "unavailable")]
    if stuck:
        out.append(Banner("info", f"{len(stuck)} run(s) did not complete.",
                          " They appear in the tables with their reason (failed, running, "
                          "unavailable) and are listed under “Runs that did not complete”."))
    return out


def page_stats(runs: Sequence[Run], counts: dict[str, int]) -> tuple[tuple[str, str], ...]:
    def n(pred) -> str:
        return str(sum(1 for r in runs if pred(r)))

    return (("runs", str(len(runs))), ("full protocol", n(lambda r: r.is_full_protocol)),
            ("cut short", n(lambda r: r.status == "complete" and not r.is_full_protocol)),
            ("running", n(lambda r: r.status == "running")),
            ("failed", n(lambda r: r.status == "failed")),
            ("unavailable", n(lambda r: r.status == "unavailable")),
            ("verdicts: agree", str(counts["agrees"])),
            ("verdicts: differ", str(counts["differs"])))


def reading_guide(published: Published) -> Section:
    paper = published.paper
    return Section(
        "reading", "How to read this report",
        f"Each comparison cell shows the measured value in bold (mean ± sd over seeds, or ± the "
        f"L_5000 estimator's standard error for a single seed), the published value in italics "
        f"marked “published” (reference data from {paper['authors']}, “{paper['title']}”, "
        f"{paper['version']}; never a measurement of this suite), the difference Δ = measured "
        f"− published, and a verdict. Verdicts are given only for complete runs of the full "
        f"protocol; cut runs show how many of the 3,280 epochs they ran. NLL is in nats, "
        f"lower is better. Removing inactive units changed the paper's test log-likelihood by "
        f"less than {published.pruning_max_change:g} nats ({published.pruning_source.cite()}).")


def shows_estimators(runs: Sequence[Run], grid: str | None, snr: Sequence[SnrRecord]) -> bool:
    """The estimators section: in its grid's report, and in a whole-folder report that holds
    any run of an objective beyond the paper's or any SNR record."""
    if grid == "estimators":
        return True
    return grid is None and (any(not r.is_plain for r in runs) or bool(snr))


def estimators_section(tables: Sequence[ReportTable], snr: Sequence[SnrRecord],
                       snr_tables: Sequence[ReportTable]) -> Section:
    blocks = tuple(
        FigureBlock(f"Gradient SNR against K: {record.where}", record.png(),
                    "Median SNR over each network's parameter coordinates (lines) and their "
                    "quartiles (shaded), log-log; solid: inference network, dashed: generative "
                    "network. Drawn by `python -m benchmark diagnose --snr` beside the record.",
                    empty="The record has no snr.png beside it.")
        for record in snr)
    notes = () if snr else (
        "No gradient SNR record yet: run `python -m benchmark diagnose RUN_DIR --snr` on a "
        "trained run (or without RUN_DIR, at initialisation) and report again.",)
    return Section(
        "estimators", "Objectives and estimators beyond the paper",
        "STL and DReG estimators of the IWAE bound, MIWAE, CIWAE and PIWAE (Rainforth et al. "
        "2018) and reweighted wake-sleep, trained on the paper's protocol beside its VAE and "
        "IWAE; then the gradient signal-to-noise diagnostic that explains their differences.",
        tables=(*tables, *snr_tables), figures=blocks, notes=notes)


CAUSES_HINT = ("No run of the binarization-causes grid has its test binarizations scored yet: "
               "`make compare-binarization-causes`, or `python -m benchmark sweep "
               "binarization-causes` then `python -m benchmark evaluate RUN_DIR --test "
               "lm,dynamic --split train --stage all` (and once more without --stage) for "
               "each run.")


def causes_section(tables: Sequence[ReportTable], figure: bytes | None) -> Section:
    """"Why fixed binarization scores worse": the gap's three parts, stage by stage."""
    return Section(
        "binarization-causes", "Why fixed binarization scores worse",
        "The paper trained on MNIST binarized afresh for every minibatch (Table 1) and, in its "
        "Appendix D, on the fixed Larochelle–Murray (LM) binarization earlier work used "
        "(Table 3): fixed scored about 2 nats worse. Trained on the same gray images, the gap "
        "splits exactly into three paired differences: the resampling itself (LM's one draw "
        "against fresh draws of the same 50,000 images), the extra images (50,000 against the "
        "paper's 59,600), and the test draw (LM's test file against the suite's seed-123 draw "
        "of the same 10,000 images).",
        tables=tuple(tables),
        notes=() if tables and tables[0].rows else (CAUSES_HINT,),
        figures=(FigureBlock(
            "The gap stage by stage", figure,
            "Left: test NLL on LM's test file (solid) and training NLL (dashed) of each "
            "condition, mean over seeds, at the end of each stage of the schedule (log axis). "
            "Right: the three effects with ± their standard error over seeds.",
            empty="Stage-by-stage scores appear once the runs' stage snapshots are scored "
                  "(`evaluate RUN_DIR --test lm,dynamic --split train --stage all`)."),))


def build_page(results_dir: Path, out_dir: Path, runs: list[Run], published: Published,
               per_fidelity: list[FidelityTables], extra: list[ReportTable],
               links: dict[str, list[str]], origin: ReportOrigin, grid: str | None,
               oracle: Section | None = None, estimator_tables: Sequence[ReportTable] = (),
               snr: Sequence[SnrRecord] = (), snr_tables: Sequence[ReportTable] = (),
               causes: Section | None = None) -> Page:
    counts = verdict_counts([t for ft in per_fidelity for t in ft.for_grid(grid)]
                            + list(estimator_tables))
    sections = [reading_guide(published)]
    if causes is not None:
        sections.append(causes)
    if grid != "estimators":
        for ft in per_fidelity:
            sections += fidelity_sections(ft, runs, published, grid)
    if estimator_tables or snr:
        sections.append(estimators_section(estimator_tables, snr, snr_tables))
    by_name = {t.name: t for t in extra}
    sections += [
        tightness_section(runs, extra),
        Section("attention", "Runs that did not complete", tables=(by_name["attention"],)),
        Section("runs", "Every run", tables=(by_name["runs"],)),
        Section("provenance", "Provenance",
                tables=(by_name["provenance"], by_name["datasets"])),
    ]
    if oracle is not None:
        sections.append(oracle)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Page(
        title=f"IWAE reproduction report: {grid or Path(results_dir).resolve().name}",
        subtitle=f"Measured by this suite beside the published numbers of "
                 f"{published.paper['version']}. Results from {results_dir}; generated {now}.",
        banners=tuple(banners(runs)), stats=page_stats(runs, counts),
        sections=tuple(sections),
        footer=f"Regenerate with: {origin.command}  ·  report code {origin.package_version}, "
               f"commit {origin.git_commit}",
        table_links=links)


def build_report(results_dir: Path, out_dir: Path | None = None, grid: str | None = None
                 ) -> Path:
    """Write out_dir/index.html and out_dir/tables/*; return the path of index.html.

    With a grid (table1, binarization, table2, estimators), only that sweep's runs and tables
    are shown:
    the runs of one results folder can serve several grids (table1's MNIST runs are also the
    dynamic half of the binarization comparison)."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(results_dir)
    runs = select_grid(load_runs_or_explain(results_dir), grid)
    if not runs:
        raise UserError(f"no runs of the {grid} grid under {results_dir}: "
                        + SWEEP_HINT.format(dir=results_dir))
    published = load_published()
    per_fidelity = [build_fidelity_tables(runs, published, fid, results_dir)
                    for fid in fidelities(runs)]
    origin = report_origin(results_dir, out_dir, grid)
    extra = [attention_table(runs, results_dir), runs_table(runs, results_dir),
             provenance_table(runs, origin), checksum_table(runs),
             ais_table(runs, results_dir), bdmc_table(runs, results_dir)]
    oracle = oracle_section(results_dir)
    if oracle is not None:
        extra.extend(oracle[1])
    snr = find_snr_records(results_dir)
    estimator_tables, snr_tables = [], []
    if shows_estimators(runs, grid, snr):
        estimator_tables = [estimators_table(runs, published, fid) for fid in fidelities(runs)]
        snr_tables = [table for i, record in enumerate(snr, start=1)
                      for table in (snr_table(record, i), means_table(record, i))
                      if table is not None]
    else:
        snr = []
    shown = [] if grid == "estimators" else [t for ft in per_fidelity for t in ft.for_grid(grid)]
    causes, causes_tables = None, []
    if grid == "binarization-causes" or (grid is None and any(
            r.data == "mnist-dynamic-lm50k" for r in runs)):
        results = causes_results(runs)
        causes_tables = [effects_table(results, published), nll_table(results)]
        causes = causes_section(causes_tables, causes_figure(results))
        # The final models' figures as README quotes them (tests compare the two).
        findings = out_dir / "tables" / "binarization-causes" / "findings.md"
        atomic_write_text(findings, findings_markdown(results))
        by_stage = findings.with_name("stages.md")
        atomic_write_text(by_stage, stages_markdown(results))
        _make_readable([findings, by_stage])
    links = {}
    for table in shown + causes_tables + estimator_tables + snr_tables + extra:
        written = write_table(table, out_dir / "tables")
        links[table.relpath] = [str(p.relative_to(out_dir)) for p in written]
        _make_readable(written)
    page = build_page(results_dir, out_dir, runs, published, per_fidelity, extra, links, origin,
                      grid, oracle[0] if oracle is not None else None, estimator_tables, snr,
                      snr_tables, causes)
    index = out_dir / "index.html"
    atomic_write_text(index, render_page(page))
    _make_readable([index])
    return index


def _make_readable(paths: Sequence[Path]) -> None:
    # Atomic writes go through mkstemp, which creates files 0600; a report is meant to be
    # shared (attached, served), so give it the usual 0644.
    for path in paths:
        path.chmod(0o644)


def report_command(results_dir: Path, out_dir: Path | None, grid: str | None = None) -> int:
    index = build_report(results_dir, out_dir, grid)
    print(f"report written to {index}")
    return 0
