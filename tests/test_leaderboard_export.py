"""Tests of ``leaderboard.export``: the HTML page, CSV/JSON round trips, and the page in a headless Chromium.

The unit tests check grouping, ranking, escaping, badges, cell formatting, plots and atomic writes; the browser test
checks that the tables show, the plots load, header clicks sort (and reverse) and the malicious name stays text.

Run: ``python -m pytest tests/test_leaderboard_export.py``. The browser test needs ``/usr/bin/chromium``,
``/usr/bin/chromedriver`` and ``selenium``, and is skipped without them; set ``LEADERBOARD_SCREENSHOT_DIR`` to keep
its screenshot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from leaderboard import export
from leaderboard.export import COLUMNS, ROW_KEYS, human_params, render_html, write_csv, write_html, write_json

EVIL = "<script>alert(1)</script>"
SUDOKU_DATA = "generated:seed=0:n=500"
MAZE_DATA = "sha256:ab12cd34"


def _row(i: int, **kw) -> dict:
    row = dict.fromkeys(ROW_KEYS)
    row.update(
        id=i, task="sudoku6", task_version=1, data=SUDOKU_DATA, name=f"user{i}", model="attractor", size="7m",
        parameters=6_830_000, exact_accuracy=0.5, exact_accuracy_se=0.02, cell_accuracy=0.9, kind="measured",
        reportable=True, count=500, sha256="ab" * 32, scored_at="2025-06-01T12:00:00+00:00",
    )  # fmt: skip
    row.update(kw)
    return row


def sample_rows() -> list[dict]:
    """Two tasks; a reported row, a baseline with 0 parameters, a --limit row, a row without a parameter count."""
    return [
        _row(1, name="alice", exact_accuracy=0.738),
        _row(2, name=EVIL, model="trm", size="tiny", parameters=263_000, exact_accuracy=0.612, exact_accuracy_se=0.03),
        _row(
            3,
            name="TRM authors",
            model="trm",
            parameters=7_000_000,
            exact_accuracy=0.87,
            exact_accuracy_se=None,
            kind="reported",
            source="TRM paper, Table 1",
            count=None,
            sha256=None,
            scored_at=None,
        ),
        _row(
            4,
            name="copy",
            model="copy-input",
            size=None,
            parameters=0,
            exact_accuracy=0.0,
            exact_accuracy_se=0.0,
            kind="baseline",
        ),
        _row(5, name="bob", parameters=None, exact_accuracy=0.65, reportable=False, count=50),
        _row(
            6,
            task="maze30",
            data=MAZE_DATA,
            name="carol",
            model="hrm",
            parameters=27_000_000,
            exact_accuracy=0.55,
            valid_path_rate=0.6,
        ),
        _row(7, task="maze30", data=MAZE_DATA, name="dave", model="trm", parameters=None, exact_accuracy=0.4),
    ]


class _Tables(HTMLParser):
    """Collects every ``table.board``: its attributes, headers and rows (row attrs + cells' data-value and text)."""

    def __init__(self):
        super().__init__()
        self.tables: list[dict] = []
        self._cell: dict | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "board" in (a.get("class") or "").split():
            self.tables.append({"attrs": a, "headers": [], "rows": []})
        elif not self.tables:
            return
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and not self._in_head:
            self.tables[-1]["rows"].append({"attrs": a, "cells": []})
        elif tag in ("td", "th"):
            self._cell = {"attrs": a, "text": ""}

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            if tag == "th":
                self.tables[-1]["headers"].append(self._cell["text"].strip())
            else:
                self.tables[-1]["rows"][-1]["cells"].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._in_head = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def parse_tables(page: str) -> list[dict]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def column(table: dict, header: str, what: str = "text") -> list[str]:
    i = [h.rstrip("▲▼") for h in table["headers"]].index(header)
    return [r["cells"][i]["text"] if what == "text" else r["cells"][i]["attrs"]["data-value"] for r in table["rows"]]


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(sample_rows(), generated_at="2025-06-02T00:00:00+00:00")


def test_one_table_per_group_with_heading(page):
    tables = parse_tables(page)
    assert [t["attrs"]["data-task"] for t in tables] == ["maze30", "sudoku6"]
    assert [len(t["rows"]) for t in tables] == [2, 5]
    assert f"sudoku6 @ v1 — {SUDOKU_DATA}" in page and f"maze30 @ v1 — {MAZE_DATA}" in page
    assert "2025-06-02T00:00:00+00:00" in page and "bootstrap standard" in page
    # a version or data set of its own is a group of its own
    tables = parse_tables(render_html([_row(1), _row(2, task_version=2), _row(3, data="sha256:ff")]))
    assert len(tables) == 3 and all(len(t["rows"]) == 1 for t in tables)


def test_malicious_name_is_escaped(page):
    assert EVIL not in page  # never raw markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own script
    # and it reads back as the literal text
    sudoku = parse_tables(page)[1]
    assert any(text.startswith(EVIL) for text in column(sudoku, "Name"))
    # the page's Content-Security-Policy allows exactly its own inline script (by hash) and no network at all
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    # the other untrusted strings too: heading, source, title
    evil_page = render_html([_row(1, task=EVIL, data=EVIL, source=EVIL, kind="reported", model=EVIL)], title=EVIL)
    assert EVIL not in evil_page and evil_page.count("<script>") == 1


def test_ranked_by_exact_accuracy(page):
    sudoku = parse_tables(page)[1]
    assert [r["attrs"]["data-id"] for r in sudoku["rows"]] == ["3", "1", "5", "2", "4"]
    assert column(sudoku, "#") == ["1", "2", "3", "4", "5"]
    accs = [float(v) for v in column(sudoku, "Exact acc. (%)", "data-value")]
    assert accs == sorted(accs, reverse=True)
    assert column(sudoku, "Exact acc. (%)")[1] == "73.8 ± 2.0"
    # ties share a rank
    tied = parse_tables(
        render_html([_row(1, exact_accuracy=0.5), _row(2, exact_accuracy=0.5), _row(3, exact_accuracy=0.1)])
    )
    assert column(tied[0], "#") == ["1", "1", "3"]


def test_reported_baseline_and_limit_rows_marked(page):
    rows = {r["attrs"]["data-id"]: r for r in parse_tables(page)[1]["rows"]}
    assert "reported" in rows["3"]["attrs"]["class"].split()
    assert re.search(r'class="badge reported" title="reported, not measured here: TRM paper, Table 1"', page)
    assert "TRM paper, Table 1" in [c["text"] for c in rows["3"]["cells"]]  # the Source column
    assert "limit" in rows["5"]["attrs"]["class"].split() and "--limit" in rows["5"]["cells"][1]["text"]
    assert "baseline" in rows["4"]["cells"][1]["text"]
    assert "badge" not in "".join(c["text"] for c in rows["1"]["cells"])  # a plain measured row has no badge


def test_cells_formatting_and_data_values(page):
    sudoku = parse_tables(page)[1]
    assert column(sudoku, "Params") == ["7.00M", "6.83M", "—", "263K", "0"]
    assert column(sudoku, "Params", "data-value") == ["7000000", "6830000", "", "263000", "0"]
    assert "Valid path (%)" not in sudoku["headers"]  # all empty for sudoku: dropped
    assert "Valid path (%)" in parse_tables(page)[0]["headers"]
    # columns that are empty for every row of a group are dropped (rank, name, exact accuracy always stay)
    filled = {k for r in sample_rows() if r["task"] == "sudoku6" for k, v in r.items() if v is not None}
    expected = [h for k, h, _ in COLUMNS if k in filled | {"rank"}]
    assert "Valid path (%)" not in expected and "Source" in expected
    assert [h.rstrip("▲") for h in sudoku["headers"]] == expected
    assert sudoku["headers"][0] == "#▲"  # initial sort shown
    assert (human_params(263_000), human_params(6_830_000), human_params(999_999)) == ("263K", "6.83M", "1.00M")
    ticks = [export._tick_label(v) for v in (500, 2e5, 1e6, 2.5e6, 1e8)]
    assert ticks == ["500", "200K", "1M", "2.5M", "100M"]


def test_plot_embedded_per_group(page):
    imgs = re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 2
    for data in imgs:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"Not plotted \(no parameter count for a log axis\): copy, bob\.", page)
    assert "Not plotted (no parameter count for a log axis): dave." in page
    assert "http://" not in page and "https://" not in page  # self-contained
    # a group with no parameter counts at all has no plot but still renders
    no_params = render_html([_row(1, parameters=None), _row(2, parameters=0)])
    assert "<img" not in no_params and "nothing to plot" in no_params


def test_mathtext_in_name_does_not_break_plot():
    render_html([_row(1, name="$\\frac{$ 50% _^"), _row(2, name="x" * 200)])


def test_empty_board():
    page = render_html([], generated_at="now")
    assert "leaderboard is empty" in page and parse_tables(page) == []


def test_csv_round_trip(tmp_path):
    rows = sample_rows()
    rows[0]["extra_note"] = "first, with a comma"
    write_csv(rows, tmp_path / "board.csv")
    df = pd.read_csv(tmp_path / "board.csv")
    assert list(df.columns) == [*ROW_KEYS, "extra_note"]
    assert df["name"].tolist() == [r["name"] for r in rows]
    assert df["exact_accuracy"].tolist() == [r["exact_accuracy"] for r in rows]
    assert df["parameters"].isna().tolist() == [r["parameters"] is None for r in rows]
    assert "6830000," in (tmp_path / "board.csv").read_text()  # ints stay ints ("6830000.0" would be wrong)
    assert df.loc[0, "extra_note"] == "first, with a comma" and df["extra_note"].isna().sum() == len(rows) - 1
    write_csv([], tmp_path / "empty.csv")
    assert list(pd.read_csv(tmp_path / "empty.csv").columns) == ROW_KEYS


def test_json_round_trip(tmp_path):
    rows = sample_rows()
    write_json(rows, tmp_path / "board.json", generated_at="2025-06-02T00:00:00+00:00")
    doc = json.loads((tmp_path / "board.json").read_text(encoding="utf-8"))
    assert doc == {"generated_at": "2025-06-02T00:00:00+00:00", "rows": rows}
    write_json([_row(1, exact_accuracy=float("nan"))], tmp_path / "nan.json")  # stays strict JSON
    doc = json.loads((tmp_path / "nan.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert doc["rows"][0]["exact_accuracy"] is None and doc["generated_at"]


def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "board.html"
    write_html(sample_rows(), target)
    before = target.read_text(encoding="utf-8")
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)  # readable, unlike a bare mkstemp file

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "replace", boom)
    for write in (write_html, write_csv, write_json):
        with pytest.raises(OSError, match="disk full"):
            write([], target)
    assert target.read_text(encoding="utf-8") == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.html"]  # no temporary files left behind


# --- in a real browser -------------------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _browser(tmp_path, monkeypatch):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"browser test needs {CHROMIUM} and {CHROMEDRIVER}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("browser test needs selenium (pip install selenium)")
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,900",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium manager never looks for (or downloads) one
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def test_page_in_browser(tmp_path, monkeypatch):
    path = tmp_path / "leaderboard.html"
    write_html(sample_rows(), path, generated_at="2025-06-02T00:00:00+00:00")
    driver = _browser(tmp_path, monkeypatch)  # skips without a browser
    try:
        from selenium.common.exceptions import NoAlertPresentException
        from selenium.webdriver.common.by import By

        driver.set_page_load_timeout(10)
        driver.get(path.as_uri())
        tables = driver.find_elements(By.CSS_SELECTOR, "table.board")
        assert [t.get_attribute("data-task") for t in tables] == ["maze30", "sudoku6"]
        table = driver.find_element(By.CSS_SELECTOR, 'table.board[data-task="sudoku6"]')
        assert table.is_displayed()
        assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 5

        imgs = driver.find_elements(By.CSS_SELECTOR, "img.plot")
        assert len(imgs) == 2
        for img in imgs:
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0

        headers = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")]
        i = next(k for k, h in enumerate(headers) if h.startswith("Params"))

        def params_order():
            cells = table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({i + 1})")
            return [c.get_attribute("data-value") for c in cells]

        assert params_order() == ["7000000", "6830000", "", "263000", "0"]  # ranked by accuracy
        header = table.find_elements(By.CSS_SELECTOR, "thead th")[i]
        header.click()
        assert params_order() == ["0", "263000", "6830000", "7000000", ""]  # ascending, empty last
        assert header.text.endswith("▲") and header.get_attribute("aria-sort") == "ascending"
        assert not table.find_element(By.CSS_SELECTOR, "thead th").text.endswith("▲")  # rank header lost its arrow
        header.click()
        assert params_order() == ["7000000", "6830000", "263000", "0", ""]  # reversed, empty still last
        assert header.text.endswith("▼") and header.get_attribute("aria-sort") == "descending"
        name_header = table.find_elements(By.CSS_SELECTOR, "thead th")[1]
        name_header.click()
        names = [c.get_attribute("data-value") for c in table.find_elements(By.CSS_SELECTOR, "tbody td.name")]
        assert names == sorted(names, key=str.lower)

        # the malicious name is shown as text and never ran
        assert EVIL in table.text
        with pytest.raises(NoAlertPresentException):
            _ = driver.switch_to.alert.text
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors  # no JS errors, no CSP violations, no failed loads

        # back to the ranking for the picture, then a screenshot of the whole page
        table.find_element(By.CSS_SELECTOR, "thead th").click()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 120, 4000))
        shot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if out := os.environ.get("LEADERBOARD_SCREENSHOT_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / shot.name)
