"""Render leaderboard rows to a self-contained HTML page, CSV and JSON.

Pure functions over a list of row dicts (another module fetches them from the database); nothing here opens a
connection. The HTML page needs no network: styles, the sorting script and the plots (base64 PNG) are inline, and a
Content-Security-Policy with hashes of the inline style and script blocks everything else, so even a name that
slipped past escaping could not run a script.

Library use::

    from leaderboard.export import render_html, write_html, write_csv, write_json
    write_html(rows, "board.html")

From the command line: ``python -m leaderboard export --html board.html --csv board.csv --json board.json``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from recursive_models.report import human_count

__all__ = ["COLUMNS", "ROW_KEYS", "render_html", "write_csv", "write_html", "write_json"]

# The keys of a row, in the order the CSV writes them (extra keys follow, in the order first seen).
ROW_KEYS: list[str] = [
    "id", "task", "task_version", "data", "name", "model", "size", "parameters",
    "exact_accuracy", "exact_accuracy_se", "cell_accuracy", "valid_path_rate",
    "halt_steps_mean", "solver_iters_mean", "examples_per_s", "device", "kind",
    "reportable", "count", "sha256", "scored_at", "source",
    # what a reader needs to compare fairly (schema version 2): test-time compute, declared training data, split
    "steps", "network_evals_per_example", "train_examples", "train_augmentations", "split",
]  # fmt: skip

# The HTML table's columns: (row key, header, kind). ``rank`` is computed, not a row key. The kind picks the cell
# formatting and, in the page's script, whether the column sorts numerically ("text", "date" and "hash" sort as text).
COLUMNS: list[tuple[str, str, str]] = [
    ("rank", "#", "rank"),
    ("name", "Name", "text"),
    ("model", "Model", "text"),
    ("size", "Size", "text"),
    ("parameters", "Params", "params"),
    ("exact_accuracy", "Exact acc. (%)", "pct"),
    ("cell_accuracy", "Cell acc. (%)", "pct"),
    ("valid_path_rate", "Valid path (%)", "pct"),
    ("halt_steps_mean", "Halt steps", "float"),
    ("solver_iters_mean", "Solver iters", "float"),
    ("network_evals_per_example", "Net evals/ex", "float"),
    ("train_examples", "Train N (declared)", "int"),
    ("train_augmentations", "Aug (declared)", "int"),
    ("split", "Split", "text"),
    ("examples_per_s", "Examples/s", "rate"),
    ("count", "N", "int"),
    ("device", "Device", "text"),
    ("kind", "Kind", "text"),
    ("scored_at", "Scored", "date"),
    ("sha256", "SHA-256", "hash"),
    ("source", "Source", "text"),
]

_TEXT_KINDS = {"text", "date", "hash"}
# Shown even when every row of a group leaves them empty; other all-empty columns are dropped per group.
_ALWAYS_SHOWN = {"rank", "name", "exact_accuracy"}
_EMPTY = "—"
_REPORTED_NOTE = "reported, not measured here"
_LIMIT_NOTE = "not reportable: scored on a subset of the test set (--limit)"

_STYLE = """
:root { --fg: #1d2330; --muted: #6b7280; --line: #d9dde5; --head: #eef1f6; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "DejaVu Sans", sans-serif; color: var(--fg); background: #fafbfc; }
header { border-bottom: 2px solid var(--line); margin-bottom: 20px; padding-bottom: 10px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; }
.meta, .explain, .note, .empty { color: var(--muted); margin: 4px 0; }
.explain { max-width: 1000px; }
.empty { font-size: 16px; padding: 24px 0; }
.wrap { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 6px; }
table.board { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.board th, table.board td { padding: 5px 10px; border-bottom: 1px solid var(--line); white-space: nowrap;
  text-align: left; }
table.board th { background: var(--head); position: sticky; top: 0; padding: 0; }
table.board th button { all: unset; cursor: pointer; display: block; padding: 7px 10px; font-weight: 600;
  width: 100%; box-sizing: border-box; }
table.board th button:focus-visible { outline: 2px solid var(--accent); }
table.board th .arrow { display: inline-block; width: 1em; margin-left: 3px; color: var(--accent); }
table.board th.num button, table.board td.num { text-align: right; }
table.board tbody tr:nth-child(even) { background: #f6f8fb; }
table.board tbody tr:hover { background: #eaf1fb; }
td.name { max-width: 320px; overflow: hidden; text-overflow: ellipsis; }
td.hash { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
td.src { max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
tr.reported td { color: var(--muted); font-style: italic; }
tr.limit td { color: #7a5b00; }
.badge { display: inline-block; font-size: 11px; font-style: normal; line-height: 1; padding: 3px 6px;
  margin-left: 6px; border-radius: 9px; vertical-align: 1px; border: 1px solid; }
.badge.reported { color: #555; border-color: #aaa; background: #f0f0f0; }
.badge.limit { color: #7a5b00; border-color: #e0b84a; background: #fff6d6; }
.badge.baseline { color: #8a2b1f; border-color: #e3a397; background: #fdeeea; }
figure { margin: 14px 0 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figcaption { color: var(--muted); font-size: 13px; }
"""

# Sorts a table by the clicked header's column: numbers numerically, text with a natural order, empty cells last in
# both directions; a second click on the same header reverses. Ties keep their current order (a stable sort).
_SCRIPT = """
(function () {
  "use strict";
  function keyOf(cell, numeric) {
    var v = cell ? cell.getAttribute("data-value") : null;
    if (v === null || v === "") return null;
    if (!numeric) return v;
    var x = parseFloat(v);
    return isNaN(x) ? null : x;
  }
  function sortBy(table, th) {
    var col = th.cellIndex, numeric = !th.classList.contains("text");
    var same = table.getAttribute("data-sort-col") === String(col);
    var dir = same && table.getAttribute("data-sort-dir") === "asc" ? "desc" : "asc";
    var body = table.tBodies[0];
    var items = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, key: keyOf(row.cells[col], numeric), i: i };
    });
    items.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        return a.key === b.key ? a.i - b.i : (a.key === null ? 1 : -1);
      }
      var c = numeric ? a.key - b.key : a.key.localeCompare(b.key, undefined, { numeric: true });
      return c === 0 ? a.i - b.i : (dir === "asc" ? c : -c);
    });
    items.forEach(function (it) { body.appendChild(it.row); });
    table.setAttribute("data-sort-col", String(col));
    table.setAttribute("data-sort-dir", dir);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      var on = h === th;
      h.setAttribute("aria-sort", on ? (dir === "asc" ? "ascending" : "descending") : "none");
      h.querySelector(".arrow").textContent = on ? (dir === "asc" ? "\\u25B2" : "\\u25BC") : "";
    });
  }
  document.querySelectorAll("table.board").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.querySelector("button").addEventListener("click", function () { sortBy(table, th); });
    });
  });
})();
"""


# The served page (`leaderboard.service`): poll the board's state and reload when a score landed. Polling (not a
# socket) keeps the page a plain document that works behind any proxy; a failed poll backs off and tries again.
_LIVE_SCRIPT = """
(function () {
  "use strict";
  var body = document.body, url = body.getAttribute("data-live"), drawn = body.getAttribute("data-state");
  var every = parseInt(body.getAttribute("data-refresh-ms"), 10) || 5000;
  function poll(wait) {
    setTimeout(function () {
      fetch(url, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (j) {
        if (j.state !== drawn) { window.location.reload(); } else { poll(every); }
      }).catch(function () { poll(Math.min(wait * 2, 60000)); });
    }, wait);
  }
  poll(every);
})();
"""


def _esc(value: Any) -> str:
    """HTML-escape any value for text or a double-quoted attribute; None becomes an empty string."""
    return "" if value is None else html.escape(str(value), quote=True)


def _is_number(x: Any) -> bool:
    """True for a finite int or float (bools excluded)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# One count format for the board and `recursive_models.report` (defined there: the board imports the models).
human_params = human_count


def _tick_label(v: float, _pos: Any = None) -> str:
    """An axis tick's parameter count without trailing zeros: "100K", "2M"."""
    if v < 1000:
        return f"{v:g}"
    return re.sub(r"\.?0*([KMB])$", r"\1", human_params(v)) if "." in human_params(v) else human_params(v)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _fmt_cell(key: str, kind: str, row: dict, rank: int | None) -> tuple[str, str, str]:
    """The (shown html, data-value, title) of one cell; html is already escaped."""
    value = rank if key == "rank" else row.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return _EMPTY, "", ""
    if kind in ("rank", "int"):
        return f"{value:,}" if kind == "int" else str(value), str(value), ""
    if kind == "params":
        return _esc(human_params(value)), str(value), f"{value:,} parameters"
    if kind == "pct":
        shown = _pct(value)
        se = row.get("exact_accuracy_se") if key == "exact_accuracy" else None
        if _is_number(se):
            shown += f" ± {_pct(se)}"
        return shown, repr(float(value)), ""
    if kind == "float":
        return f"{value:.2f}", repr(float(value)), ""
    if kind == "rate":
        return (f"{value:,.0f}" if value >= 100 else f"{value:.3g}"), repr(float(value)), ""
    text = str(value)
    if kind == "date":
        return _esc(text[:10]), _esc(text), _esc(text)
    if kind == "hash":
        return _esc(text[:12]), _esc(text), _esc(text)
    return _esc(text), _esc(text), (_esc(text) if key == "source" else "")


def _group_key(row: dict) -> tuple[str, str, str]:
    return (str(row.get("task") or ""), str(row.get("task_version") or ""), str(row.get("data") or ""))


def _heading(row: dict) -> str:
    version = row.get("task_version")
    return f"{row.get('task') or '?'} @ v{'?' if version is None else version} — {row.get('data') or '?'}"


def _ranked(rows: list[dict]) -> list[tuple[int | None, dict]]:
    """Rows by exact accuracy, best first, with competition ranks (ties share a rank); no accuracy: no rank, last."""
    scored = [r for r in rows if _is_number(r.get("exact_accuracy"))]
    unscored = [r for r in rows if not _is_number(r.get("exact_accuracy"))]
    scored.sort(key=lambda r: (-r["exact_accuracy"], r.get("reportable") is False, str(r.get("name") or "")))
    out: list[tuple[int | None, dict]] = []
    for i, r in enumerate(scored):
        same = i > 0 and r["exact_accuracy"] == scored[i - 1]["exact_accuracy"]
        out.append((out[-1][0] if same else i + 1, r))
    return out + [(None, r) for r in unscored]


def _badges(row: dict) -> str:
    out = []
    if row.get("kind") == "reported":
        tip = _REPORTED_NOTE + (f": {row['source']}" if row.get("source") else "")
        out.append(f'<span class="badge reported" title="{_esc(tip)}">reported</span>')
    elif row.get("kind") == "baseline":
        out.append('<span class="badge baseline" title="a reference baseline, not a submission">baseline</span>')
    if row.get("reportable") is False:
        out.append(f'<span class="badge limit" title="{_esc(_LIMIT_NOTE)}">--limit</span>')
    return "".join(out)


def _table(rows: list[dict], task: str) -> str:
    ranked = _ranked(rows)
    columns = [c for c in COLUMNS if c[0] in _ALWAYS_SHOWN or any(r.get(c[0]) is not None for r in rows)]
    head = []
    for i, (key, header, kind) in enumerate(columns):
        cls = "text" if kind in _TEXT_KINDS else "num"
        arrow, sort = ("▲", "ascending") if i == 0 else ("", "none")
        head.append(
            f'<th class="{cls}" data-key="{key}" aria-sort="{sort}"><button type="button">{_esc(header)}'
            f'<span class="arrow">{arrow}</span></button></th>'
        )
    body = []
    for rank, row in ranked:
        classes = ["row", _esc(row.get("kind") or "measured")]
        if row.get("reportable") is False:
            classes.append("limit")
        cells = []
        for key, _, kind in columns:
            shown, value, title = _fmt_cell(key, kind, row, rank)
            cls = "text" if kind in _TEXT_KINDS else "num"
            if key == "name":
                cls, shown = "text name", shown + _badges(row)
                title = title or value
            elif key == "source":
                cls = "text src"
            elif kind == "hash":
                cls = "text hash"
            tip = f' title="{title}"' if title else ""
            cells.append(f'<td class="{cls}" data-value="{value}"{tip}>{shown}</td>')
        body.append(
            f'<tr class="{" ".join(classes)}" data-id="{_esc(row.get("id"))}" data-kind="{_esc(row.get("kind"))}">'
            + "".join(cells)
            + "</tr>"
        )
    return (
        f'<div class="wrap"><table class="board" data-task="{_esc(task)}" data-sort-col="0" data-sort-dir="asc">'
        f"<thead><tr>{''.join(head)}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


_PLOT_STYLES: dict[str, dict[str, Any]] = {
    "measured": {"marker": "o", "color": "#1f5fa8", "filled": True, "label": "measured"},
    "limit": {"marker": "o", "color": "#c99400", "filled": True, "label": "measured (--limit, not reportable)"},
    "baseline": {"marker": "D", "color": "#c0392b", "filled": True, "label": "baseline"},
    "reported": {"marker": "s", "color": "#6b7280", "filled": False, "label": "reported (paper)"},
}


def _plot_style(row: dict) -> str:
    kind = row.get("kind")
    if kind in ("reported", "baseline"):
        return kind
    return "limit" if row.get("reportable") is False else "measured"


def _plot_png(rows: list[dict]) -> bytes:
    """Exact accuracy (%) against parameter count (log x) as PNG bytes; rows need a positive parameter count."""
    # A bare Figure with its own Agg canvas: no pyplot, so no global backend switch and no figure registry to leak
    # into; the figure is freed with its last reference.
    fig = Figure(figsize=(7.2, 3.9), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for style_name, style in _PLOT_STYLES.items():
        group = [r for r in rows if _plot_style(r) == style_name]
        if not group:
            continue
        xs = [float(r["parameters"]) for r in group]
        ys = [100 * r["exact_accuracy"] for r in group]
        se = [100 * r["exact_accuracy_se"] if _is_number(r.get("exact_accuracy_se")) else 0.0 for r in group]
        color = style["color"]
        ax.errorbar(
            xs, ys, yerr=se, fmt=style["marker"], linestyle="none", markersize=7, capsize=2.5,
            color=color, ecolor=color, markeredgecolor=color, markeredgewidth=1.5,
            markerfacecolor=color if style["filled"] else "white", label=style["label"], zorder=3,
        )  # fmt: skip
        for x, y, r in zip(xs, ys, group, strict=True):
            name = str(r.get("name") or r.get("model") or "?")
            name = name if len(name) <= 28 else name[:27] + "…"
            # parse_math=False: a "$" in an untrusted name must not be read as mathtext (it could even fail to parse).
            ax.annotate(
                name, (x, y), xytext=(6, 5), textcoords="offset points", fontsize=8, color=color,
                fontstyle="normal" if style["filled"] else "italic", parse_math=False, zorder=4,
            )  # fmt: skip
    xs_all = [float(r["parameters"]) for r in rows]
    lo, hi = min(xs_all), max(xs_all)
    ax.set_xscale("log")
    ax.set_xlim(lo / 2.5, hi * 4)  # room on the right for the labels
    ax.set_ylim(-4, 104)
    decades = math.log10(hi * 4) - math.log10(lo / 2.5)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3.5 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(_tick_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("exact accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _plot_html(rows: list[dict], heading: str) -> str:
    plotted = [r for r in rows if _is_number(r.get("parameters")) and r["parameters"] > 0]
    plotted = [r for r in plotted if _is_number(r.get("exact_accuracy"))]
    ids = {id(r) for r in plotted}
    left_out = [r for r in rows if id(r) not in ids]
    parts = ['<figure class="plot">']
    if plotted:
        data = base64.b64encode(_plot_png(plotted)).decode("ascii")
        alt = f"exact accuracy against parameter count, {heading}"
        parts.append(f'<img class="plot" alt="{_esc(alt)}" src="data:image/png;base64,{data}">')
    else:
        parts.append("<figcaption>No row has a parameter count, so there is nothing to plot.</figcaption>")
    if left_out and plotted:
        names = ", ".join(_esc(r.get("name") or r.get("model") or "?") for r in left_out)
        parts.append(f"<figcaption>Not plotted (no parameter count for a log axis): {names}.</figcaption>")
    parts.append("</figure>")
    return "".join(parts)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def render_html(
    rows: list[dict],
    *,
    title: str = "attractor-suite leaderboard",
    generated_at: str | None = None,
    live: tuple[str, str, float] | None = None,
) -> str:
    """Render leaderboard rows as one self-contained HTML page.

    Rows are grouped by ``(task, task_version, data)``, one section per group with a sortable table (ranked by exact
    accuracy, best first) and a plot of exact accuracy against parameter count. Every value is HTML-escaped.

    Args:
        rows: Row dicts with the keys in ``ROW_KEYS`` (missing keys read as None).
        title: Page title and top heading.
        generated_at: Timestamp shown in the header; the current UTC time when None.
        live: ``(state URL, state, seconds)`` for a page served by `leaderboard.service`: every ``seconds`` it
            fetches the same-origin state URL and reloads when the state is no longer the one it was drawn at
            (the CSP then allows ``connect-src 'self'``); None for a static page (no network at all).

    Returns:
        The page as a string.
    """
    generated_at = generated_at or _now()
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    sections = []
    for key in sorted(groups, key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0, k[1], k[2])):
        group = groups[key]
        heading = _heading(group[0])
        sections.append(
            f'<section class="group" data-task="{_esc(key[0])}">\n<h2>{_esc(heading)}</h2>\n'
            f"{_table(group, key[0])}\n{_plot_html(group, heading)}\n</section>"
        )
    if not sections:
        sections.append('<p class="empty">The leaderboard is empty: no scored rows yet.</p>')
    scripts = f"<script>{_SCRIPT}</script>"
    script_src, connect, body = _csp_hash(_SCRIPT), "", ""
    if live is not None:
        url, state, seconds = live
        scripts += f"<script>{_LIVE_SCRIPT}</script>"
        script_src += " " + _csp_hash(_LIVE_SCRIPT)
        connect = "connect-src 'self'; "
        body = f' data-live="{_esc(url)}" data-state="{_esc(state)}" data-refresh-ms="{int(seconds * 1000)}"'
    csp = (
        f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {script_src}; {connect}img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    n_rows = f"{len(rows)} row{'s' if len(rows) != 1 else ''} in {len(groups)} group{'s' if len(groups) != 1 else ''}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<link rel="icon" href="data:,">
<style>{_STYLE}</style>
</head>
<body{body}>
<header>
<h1>{_esc(title)}</h1>
<p class="meta">Generated {_esc(generated_at)} · {n_rows}</p>
<p class="explain"><b>Exact accuracy</b>: share of test puzzles with every cell right, ± one bootstrap standard
error; <b>cell accuracy</b>: share of cells right. Ranked by exact accuracy within each task version and data set.
Rows marked <span class="badge reported">reported</span> are {_REPORTED_NOTE} (see Source);
<span class="badge limit">--limit</span> rows were scored on a subset and are not reportable. Click a column header to
sort; click again to reverse.</p>
</header>
<main>
{chr(10).join(sections)}
</main>
{scripts}
</body>
</html>
"""


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one step, on error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; a published page should be as readable as an ordinary file.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_text(path: str | os.PathLike, text: str) -> None:
    with _atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_html(
    rows: list[dict],
    path: str | os.PathLike,
    *,
    title: str = "attractor-suite leaderboard",
    generated_at: str | None = None,
) -> None:
    """Write ``render_html(rows)`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``).

    Args:
        rows: Leaderboard rows.
        path: The HTML file to write.
        title: Page title.
        generated_at: Timestamp shown on the page; now (UTC) when None.
    """
    _write_text(path, render_html(rows, title=title, generated_at=generated_at))


def _columns(rows: Sequence[dict]) -> list[str]:
    keys = list(ROW_KEYS)
    seen = set(keys)
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    return keys


def write_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """Write rows as CSV atomically: the columns of ``ROW_KEYS`` in order, then any extra keys as first seen.

    Values are written as given (object dtype, so an int column with gaps stays ints, not floats); None is empty.

    Args:
        rows: Leaderboard rows.
        path: The CSV file to write.
    """
    df = pd.DataFrame(list(rows), columns=_columns(rows), dtype=object)
    with _atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None, so the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(rows: list[dict], path: str | os.PathLike, *, generated_at: str | None = None) -> None:
    """Write ``{"generated_at": ..., "rows": rows}`` as JSON atomically.

    Args:
        rows: Leaderboard rows; non-finite floats are written as null, other non-JSON values as strings.
        path: The JSON file to write.
        generated_at: Timestamp stored in the file; now (UTC) when None.
    """
    doc = {
        "generated_at": generated_at or _now(),
        "rows": [{k: _json_safe(v) for k, v in row.items()} for row in rows],
    }
    _write_text(path, json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n")
