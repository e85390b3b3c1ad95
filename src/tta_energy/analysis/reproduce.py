"""``python -m tta_energy.analysis.reproduce``: execute every notebook, write every figure and ``index.md``.

``make reproduce`` runs::

    python -m tta_energy.analysis.reproduce --data data --figures figures [--study PATH]

* the run and score tables under ``--data`` (the project's own measurements and ``data/study``, the study's
  published data already imported) are the notebooks' input;
* with ``--study PATH`` (a copy of the study's repository or its ``results/``), that copy is imported into a
  temporary folder and used instead of ``data/study``;
* each notebook under ``notebooks/`` (the jupytext ``.py`` files) is executed with nbclient, all in one
  shared kernel (``--isolated``: one kernel per notebook); parameters are injected after the cell tagged
  ``parameters`` (papermill's convention);
* the analysis tables go to ``<figures>/tables/`` (with ``spread_h200.csv``, :func:`write_spread`), the
  figures (PDF + PNG) to ``<figures>/`` and ``<figures>/index.md`` shows each figure with one line of
  explanation;
* given the repository's own ``data/``, the numbers quoted in README.md, data/README.md and docs/ are
  rewritten from it (:mod:`tta_energy.analysis.docs_numbers`).

The notebooks call :func:`notebook_inputs` to load what they were given.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tta_energy import schema
from tta_energy.analysis import docs_numbers, efficiency, plots, spread, study_import, summaries, tables
from tta_energy.analysis.compare import platform_label
from tta_energy.devices import rows_of_gpu
from tta_energy.errors import TtaError
from tta_energy.fileio import atomic_path, output_folder_path, staging_folder, write_csv_atomic
from tta_energy.intervals import DEFAULT_RESAMPLES, check_resamples

if TYPE_CHECKING:
    from jupyter_client import KernelManager
    from nbformat import NotebookNode

GROUP_TITLES: dict[str, str] = {
    "steps": "Inference steps",
    "phases": "Where the energy goes",
    "power": "Power during a generation",
    "batch": "Batch size",
    "quality": "Quality vs energy",
    "comparison": "H200 (this project) vs A40 (study)",
    "host": "How busy the GPU was, and the host",
    "new": "Beyond the study: duration, guidance, precision",
}
NOTEBOOK_TIMEOUT_S = 900
#: a terminal colour code (ESC [ ... m)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
#: The variance components of the H200's repeated sweeps (:mod:`tta_energy.analysis.spread`).
SPREAD_TABLE = "spread_h200.csv"
#: Each H200 cell's 95% interval, from its repeats and with the process level counted.
CELL_INTERVALS_TABLE = "cell_intervals_h200.csv"


def repo_root(start: Path | None = None) -> Path:
    """The repository root: the first parent holding ``pyproject.toml`` (falls back to the current folder)."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file():
            return p
    return here


# --------------------------------------------------------------------------------------------------------
# What a notebook gets


@dataclass
class NotebookInputs:
    """Everything a notebook analyses: usable runs, score tables and where figures go."""

    runs: pd.DataFrame  # usable rows (status ok, not warm-up), with 'table_path' and 'first_generation'
    scores: pd.DataFrame | None
    published_sanity: pd.DataFrame | None
    figures: Path
    sources: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)  # the folders and files the tables were found in

    @cached_property
    def ceilings(self) -> pd.DataFrame:
        """The bf16 matrix-product ceilings found among the inputs (:func:`.efficiency.read_ceilings`), read
        when a notebook first asks for them."""
        return efficiency.read_ceilings(self.paths)

    def platforms(self, experiment: str) -> list[tuple[str, pd.DataFrame]]:
        """(label, rows) for each (source, GPU) that has rows of ``experiment``."""
        rows = self.runs[self.runs["experiment"] == experiment]
        out = []
        pairs = rows[["source", "gpu_name"]].drop_duplicates().sort_values(["source", "gpu_name"])
        for source, gpu in pairs.itertuples(index=False):
            out.append(
                (
                    platform_label(source, gpu),
                    self.runs[(self.runs["source"] == source) & (self.runs["gpu_name"] == gpu)],
                )
            )
        return out

    def scores_for(self, rows: pd.DataFrame) -> pd.DataFrame | None:
        if self.scores is None:
            return None
        return self.scores[self.scores["source"].isin(set(rows["source"]))]


_TABLE_CACHE: dict[tuple[str, int, int], pd.DataFrame] = {}


def _read_run_table(path: Path) -> pd.DataFrame:
    """``schema.read_runs`` memoised on (path, size, mtime): notebooks sharing a kernel read a table once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _TABLE_CACHE:
        df = schema.read_runs(path)
        df["table_path"] = str(path)
        _TABLE_CACHE[key] = df
    return _TABLE_CACHE[key].copy()


def notebook_inputs(
    runs_paths: list[str] | None = None, figures_dir: str | None = None, *, drop_study_warmup: bool = False
) -> NotebookInputs:
    """Load the run and score tables a notebook was given (default: the repository's ``data/``)."""
    root = repo_root()
    paths = [Path(p) for p in runs_paths] if runs_paths else [root / "data"]
    figures = Path(figures_dir) if figures_dir else root / "figures"
    run_files, score_files = tables.find_tables([p for p in paths if p.exists()])
    frames = [_read_run_table(f) for f in run_files]
    if frames:
        runs = summaries.usable_runs(
            pd.concat(frames, ignore_index=True), drop_study_warmup=drop_study_warmup
        )
    else:
        runs = pd.DataFrame(columns=[*schema.COLUMN_NAMES, "table_path", "first_generation"])
    scores = [tables.read_scores(f) for f in score_files]
    published = tables.find_published_sanity([p for p in paths if p.exists()])
    return NotebookInputs(
        runs=runs,
        scores=pd.concat(scores, ignore_index=True) if scores else None,
        published_sanity=published,
        figures=figures,
        sources=[str(f) for f in run_files],
        paths=[p for p in paths if p.exists()],
    )


# --------------------------------------------------------------------------------------------------------
# Running the notebooks


def load_notebook(path: Path) -> NotebookNode:
    """A notebook from its jupytext ``.py`` (percent format) or ``.ipynb`` file."""
    import jupytext

    return jupytext.read(path)


def inject_parameters(nb: NotebookNode, params: dict[str, object]) -> NotebookNode:
    """Insert a cell assigning ``params`` after the cell tagged ``parameters`` (papermill's convention)."""
    import nbformat

    source = "# Parameters injected by tta_energy.analysis.reproduce\n" + "".join(
        f"{name} = {value!r}\n" for name, value in params.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    index = next(
        (i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None
    )
    if index is None:
        raise TtaError("notebook has no cell tagged 'parameters'")
    nb.cells.insert(index + 1, cell)
    return nb


def execute_notebook(
    path: Path,
    params: dict[str, object],
    executed_dir: Path | None = None,
    timeout: int = NOTEBOOK_TIMEOUT_S,
    km: KernelManager | None = None,
) -> Path | None:
    """Execute one notebook with ``params`` (in kernel ``km`` if given, else a fresh one).

    The executed copy is saved into ``executed_dir`` if given (never next to the sources).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = inject_parameters(load_notebook(path), params)
    client = NotebookClient(
        nb, km=km, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        plain = ANSI_ESCAPE.sub("", str(exc))  # the kernel colours its traceback for a terminal
        lines = [ln for ln in plain.splitlines() if ln.strip()]
        raise TtaError(f"{path}: a cell failed: {lines[-1] if lines else exc}") from None
    finally:
        if km is not None and client.kc is not None:
            client.kc.stop_channels()
    if executed_dir is None:
        return None
    executed_dir.mkdir(parents=True, exist_ok=True)
    out = executed_dir / f"{path.stem}.ipynb"
    nbformat.write(nb, out)
    return out


def execute_notebooks(
    paths: list[Path],
    params: dict[str, object],
    executed_dir: Path | None = None,
    *,
    shared_kernel: bool = True,
    timeout: int = NOTEBOOK_TIMEOUT_S,
    log: Callable[[str], None] = print,
) -> None:
    """Execute ``paths`` in order. A shared kernel imports the libraries and reads the tables once
    (:func:`notebook_inputs` caches them); every notebook still sets all the names it uses."""
    km = None
    with kernels_import_this_package():
        if shared_kernel:
            from jupyter_client.manager import AsyncKernelManager
            from jupyter_core.utils import run_sync

            km = AsyncKernelManager(kernel_name="python3")
            run_sync(km.start_kernel)(cwd=str(paths[0].parent))
        try:
            for path in paths:
                start = time.monotonic()
                execute_notebook(path, params, executed_dir, timeout, km=km)
                log(f"executed {path.name} in {time.monotonic() - start:.0f} s")
        finally:
            if km is not None:
                run_sync(km.shutdown_kernel)(now=True)


@contextlib.contextmanager
def kernels_import_this_package() -> Iterator[None]:
    """While open, a kernel started from here imports the ``tta_energy`` this process runs: its folder leads
    PYTHONPATH. A kernel starts in the notebooks' folder, where a relative PYTHONPATH (``src``) names
    nothing, and would otherwise import whatever tree the environment installed."""
    before = os.environ.get("PYTHONPATH")
    here = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def notebook_paths(notebooks: Path) -> list[Path]:
    paths = sorted(notebooks.glob("[0-9]*.py"))
    if not paths:
        raise TtaError(f"{notebooks}: no notebooks (expected jupytext files like 01_inference_steps.py)")
    return paths


# --------------------------------------------------------------------------------------------------------
# Figures folder


@contextlib.contextmanager
def staged_figures(figures: Path) -> Iterator[Path]:
    """A staging folder beside ``figures`` to draw a whole set of figures into; once the block ends without
    an error, its files replace those of ``figures`` (:func:`publish_figures`). A block that fails leaves
    ``figures`` as it was; the staging folder goes either way."""
    staging = staging_folder(figures)
    try:
        yield staging
        publish_figures(staging, figures)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_figures(staging: Path, figures: Path) -> None:
    """Move a finished run's files from ``staging`` into ``figures``, each replacing its namesake (tables
    included, one file at a time, never half-written), then remove the files of the figures the previous
    run recorded that this one did not draw (absent, or skipped now): a move that fails leaves every earlier
    figure in place."""
    previous = set(plots.read_manifest(figures)) if figures.is_dir() else set()
    try:
        figures.mkdir(parents=True, exist_ok=True)
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            _move_file(path, figures / path.relative_to(staging))
    except OSError as exc:
        raise TtaError(f"{figures}: the new figures could not be moved there ({exc.strerror or exc}); "
                       "the previous ones are kept") from None
    drawn = {stem for stem, entry in plots.read_manifest(figures).items() if entry["status"] == "drawn"}
    for stem in previous - drawn:
        for ext in ("pdf", "png"):
            (figures / f"{stem}.{ext}").unlink(missing_ok=True)


def _move_file(path: Path, target: Path) -> None:
    """``path`` to ``target`` atomically: a rename, or, where ``target`` is on another file system (a
    symlinked ``tables/``), a copy beside it first and then a rename there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
        path.unlink()


def clear_previous(figures: Path) -> None:
    """Remove the figures the last run recorded (and its manifest), so stale figures never linger."""
    for stem in plots.read_manifest(figures):
        for ext in ("pdf", "png"):
            (figures / f"{stem}.{ext}").unlink(missing_ok=True)
    (figures / plots.MANIFEST).unlink(missing_ok=True)


def write_index(
    figures: Path,
    *,
    inputs: list[str],
    tables_dir: Path | None,
    notebooks: Sequence[Path] = (),
    generated_by: str = "`make reproduce` (`python -m tta_energy.analysis.reproduce`)",
) -> Path:
    """``index.md``: every recorded figure with its one-line explanation, grouped; skipped figures listed.

    ``tables_dir``: the analysis tables' folder, linked and listed by the tables it holds."""
    manifest = plots.read_manifest(figures)
    lines = [
        "# Figures",
        "",
        f"Generated by {generated_by}; do not edit by hand.",
        "",
        "Inputs: " + ", ".join(f"`{i}`" for i in inputs) + ".",
    ]
    if notebooks:
        lines.append("Notebooks: " + ", ".join(f"`notebooks/{p.name}`" for p in notebooks) + ".")
    lines.append("")
    if tables_dir is not None:
        rel = Path(os.path.relpath(tables_dir, figures)).as_posix()
        present = {p.stem for p in tables_dir.glob("*.csv")}
        known = [name for name in tables.TABLE_COLUMNS if name in present]
        names = known + sorted(present - set(known))
        lines += [f"Tables: [`{rel}/`]({rel}/README.md) ({', '.join(names)}).", ""]
    groups = list(GROUP_TITLES) + sorted({e["group"] for e in manifest.values()} - set(GROUP_TITLES))
    for group in groups:
        entries = {s: e for s, e in sorted(manifest.items()) if e["group"] == group}
        if not entries:
            continue
        lines += [f"## {GROUP_TITLES.get(group, group or 'Other')}", ""]
        for stem, entry in entries.items():
            if entry["status"] == "drawn":
                lines += [
                    f"### {stem}",
                    "",
                    f"![{stem}]({stem}.png)",
                    "",
                    f"{entry['caption']} ([PDF]({stem}.pdf))",
                    "",
                ]
            else:
                lines += [f"- *{stem}* not drawn: {entry['caption']}", ""]
    path = figures / tables.INDEX_FILE
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------------
# The whole job


def write_spread(inputs: list[str], tables_dir: Path, *, seed: int = 0) -> Path:
    """``spread_h200.csv``: per experiment and model of the H200's run tables among ``inputs``, how much of
    the energy's spread lies between processes and how much within one (:func:`.spread.spread_table`); and
    ``cell_intervals_h200.csv``: each cell's 95% interval from its repeats and with the process level counted
    (:func:`.spread.cell_interval_table`)."""
    runs = notebook_inputs(inputs, str(tables_dir)).runs
    h200 = runs[rows_of_gpu(runs["gpu_name"])]
    path = tables_dir / SPREAD_TABLE
    write_csv_atomic(path, spread.spread_table(h200, seed=seed))
    write_csv_atomic(tables_dir / CELL_INTERVALS_TABLE, spread.cell_interval_table(h200))
    return path


def data_inputs(data: Path, *, exclude: Path | None = None) -> list[str]:
    """The tables under ``data`` (minus ``exclude``) as paths for the notebooks: ``data`` itself, else its run
    and score tables one by one with the side tables read beside them (published numbers, ceilings)."""
    if not data.is_dir():
        return []
    run_files, score_files = tables.find_tables([data])
    if not run_files and not score_files:
        return []
    if exclude is None:
        return [str(data)]
    exclude = exclude.resolve()
    published = [f for name in tables.SIDE_TABLES for f in sorted(data.rglob(name))]
    files = list(run_files) + list(score_files) + published
    return [str(f) for f in files if not f.resolve().is_relative_to(exclude)]


def reproduce(
    data: Path,
    figures: Path,
    *,
    study: Path | None = None,
    notebooks: Path | None = None,
    executed: Path | None = None,
    n_boot: int = DEFAULT_RESAMPLES,
    shared_kernel: bool = True,
    update_docs: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Execute all notebooks on ``data`` (and a fresh import of ``study``), write figures and ``index.md``.

    Everything is written into a staging folder beside ``figures`` first and moved there only once every
    notebook ran: a run that fails leaves the previous figures, tables and index as they were.
    With ``update_docs`` (what ``make reproduce`` asks for), the generated blocks of the repository's docs are
    rewritten too, when ``data`` is the repository's own ``data/``.
    """
    root = repo_root()
    notebooks = notebooks or root / "notebooks"
    paths = notebook_paths(notebooks)
    figures = output_folder_path(figures, "--figures").resolve()  # a file there: refused before any notebook
    with staged_figures(figures) as staging:
        _reproduce_into(staging, data, paths, study=study, executed=executed, n_boot=n_boot,
                        shared_kernel=shared_kernel, log=log)
    index = figures / tables.INDEX_FILE
    if update_docs and data.resolve() == (root / "data").resolve():  # the docs quote the repository's data
        for path in docs_numbers.update_docs(root, data):
            log(f"numbers in {os.path.relpath(path, root)} rewritten from {data}")
    drawn = sum(e["status"] == "drawn" for e in plots.read_manifest(figures).values())
    log(f"{drawn} figures and {index} written")
    return index


def _reproduce_into(figures: Path, data: Path, paths: list[Path], *, study: Path | None,
                    executed: Path | None, n_boot: int, shared_kernel: bool,
                    log: Callable[[str], None]) -> Path:
    """The tables, the notebooks' figures and ``index.md`` of :func:`reproduce`, written into ``figures``."""
    root = repo_root()
    with tempfile.TemporaryDirectory(prefix="tta-energy-reproduce-") as tmp:
        inputs = data_inputs(data, exclude=(data / "study") if study is not None else None)
        if study is not None:
            log(f"importing the study from {study}")
            imported = Path(tmp) / "study"
            study_import.write_study(study_import.load_study(study), imported)
            inputs.append(str(imported))
        if not inputs:
            log(f"no run tables under {data}: the notebooks will record every figure as skipped")
        tables_dir = figures / "tables"

        def source_name(source: str) -> str:  # the temporary import, named after what it imported
            if study is None or not source.startswith(str(imported)):
                return source
            return f"{os.path.relpath(source, imported)} imported from {study}"

        try:
            if inputs:
                tables.analyze(None, inputs, tables_dir, n_boot=n_boot, source_name=source_name)
                write_spread(inputs, tables_dir)
        except TtaError as exc:  # the figures are still worth drawing
            log(f"analysis tables not written: {exc}")
            tables_dir = None
        params = {
            "runs_paths": [str(Path(i).resolve()) for i in inputs],
            "figures_dir": str(figures),
            "n_boot": n_boot,
        }
        execute_notebooks(paths, params, executed, shared_kernel=shared_kernel, log=log)
        shown_inputs = [
            str(study) + " (imported)"
            if study is not None and i == str(imported)
            else os.path.relpath(i, root)
            if Path(i).resolve().is_relative_to(root)
            else i
            for i in inputs
        ]
        return write_index(figures, inputs=shown_inputs, notebooks=paths, tables_dir=tables_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tta_energy.analysis.reproduce", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, default=Path("data"), help="folder of run tables (default data)")
    parser.add_argument(
        "--figures", type=Path, default=Path("figures"), help="output folder (default figures)"
    )
    parser.add_argument(
        "--study", type=Path, default=None, help="a copy of the study (repository or results/)"
    )
    parser.add_argument("--notebooks", type=Path, default=None, help="notebook folder (default notebooks/)")
    parser.add_argument(
        "--executed", type=Path, default=None, help="save executed notebooks here (default: not saved)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples for the Pareto table"
    )
    parser.add_argument("--isolated", action="store_true", help="a fresh kernel per notebook (slower)")
    args = parser.parse_args(argv)
    try:
        check_resamples(args.bootstrap)  # before the data are read
        reproduce(
            args.data,
            args.figures,
            study=args.study,
            notebooks=args.notebooks,
            executed=args.executed,
            n_boot=args.bootstrap,
            shared_kernel=not args.isolated,
            update_docs=True,
        )
    except TtaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
