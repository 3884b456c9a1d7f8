"""`snakemake --report report.html` after a smoke run: self-contained, renders in headless Chromium,
and shows every figure built with its caption (paper, figure, scale, methods, seeds, rebuild).

Chromium is Debian's ``chromium`` package, installed by ``make browser`` (part of ``make test``, as
root with apt-get). Without it the browser tests skip with the reason, except in CI (``CI=true``),
where they fail.
The figures checked are those of ``smoke_run.FIGURES`` that the workflow defines.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from paper_repro import config as prconfig

from conftest import ROOT, snakemake
from smoke_run import SMOKE, figure_target, smoke_results

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PROBE_ID = "paper-repro-probe"

# Injected at the end of a copy of the report: once the report's React app has rendered, it opens
# every result (its caption in the side bar, then the file itself), then the run statistics, and
# writes what was on screen into <pre id="paper-repro-probe"> for --dump-dom to return.
PROBE = """
<script>
window.addEventListener("load", function () {
  const probe = {menu: "", results: {}, stats_rules: [], stats_charts: 0, errors: []};
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const text = () => document.querySelector("#app").innerText;
  (async () => {
    try {
      await wait(500);
      probe.menu = text();
      for (const path of Object.keys(results)) {
        const r = results[path];
        app.showResultInfo(path);
        await wait(300);
        const info = text();
        const kind = r.mime_type.startsWith("image/") ? "img" : (r.mime_type === "application/pdf" ? "pdf" : "html");
        app.setView({content: kind, contentPath: r.data_uri});
        await wait(500);
        const img = document.querySelector("#app img[src^='data:']");
        const frame = document.querySelector("#app iframe");
        probe.results[path] = {
          mime: r.mime_type, caption: r.caption, info: info, category_menu: probe.menu,
          data_uri: r.data_uri.slice(0, 30), data_len: r.data_uri.length,
          img_width: img ? img.naturalWidth : 0, iframe_src: frame ? frame.src.slice(0, 30) : "",
        };
      }
      app.setView({content: "stats"});
      await wait(1500);
      // the run statistics are vega charts (drawn on canvas): record the data and the charts drawn
      probe.stats_rules = runtimes_spec.data.values.map((v) => v.rule);
      probe.stats_charts = document.querySelectorAll("#runtimes canvas, #runtimes svg, #timeline canvas, #timeline svg").length;
    } catch (e) {
      probe.errors.push(String(e));
    }
    const pre = document.createElement("pre");
    pre.id = "%s";
    pre.textContent = JSON.stringify(probe);
    document.body.appendChild(pre);
  })();
});
</script>
""" % PROBE_ID


def find_browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium."""
    browser = find_browser()
    if browser is None:
        message = (f"headless Chromium not found (none of {', '.join(BROWSERS)} on PATH); "
                   "`make browser` installs Debian's chromium package (as root, with apt-get)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return browser


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[str]]:
    """(report.html, figures in it), made from the shared smoke run."""
    workdir, figures = smoke_results(tmp_path_factory)
    out = workdir / "report.html"
    snakemake(workdir, *SMOKE, "--report", str(out), "--", "all", *map(figure_target, figures), timeout=600)
    return out, figures


def run_probe(browser: str, report_html: Path, tmp: Path) -> dict:
    page = tmp / "probe.html"
    text = report_html.read_text()
    head, sep, tail = text.rpartition("</body>")  # the last one: the report's scripts contain others
    page.write_text(head + PROBE + sep + tail if sep else text + PROBE)
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=120000",  # ~0.8 s per result
        "--dump-dom", page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    found = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, f"the report did not render (no probe output); chromium said:\n{proc.stderr[-3000:]}"
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["errors"] == [], probe["errors"]
    return probe


@pytest.fixture(scope="module")
def probe(chromium, report, tmp_path_factory) -> dict:
    return run_probe(chromium, report[0], tmp_path_factory.mktemp("chromium"))


def smoke_config() -> dict:
    cfg = prconfig.load_yaml(ROOT / "config" / "config.yaml")
    return prconfig.resolve({**cfg, "scale": "smoke"}, ROOT)


def test_report_is_self_contained(report):
    text = report[0].read_text()
    external = re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']((?:https?:)?//[^\"']+)", text)
    assert external == [], f"the report loads files from the network: {external[:5]}"


@pytest.mark.browser
def test_report_renders_with_statistics(probe):
    assert "Workflow" in probe["menu"] and "Statistics" in probe["menu"], probe["menu"][:500]
    # the run statistics: runtimes of the jobs that ran, drawn as charts
    assert "task_tables" in probe["stats_rules"], probe["stats_rules"]
    assert probe["stats_charts"] >= 2, probe


@pytest.mark.browser
def test_report_shows_every_figure_with_its_caption(probe, report):
    _, figures = report
    cfg = smoke_config()
    shown = {Path(p).stem: r for p, r in probe["results"].items() if "/figures/" in p}
    assert set(figures) <= set(shown), f"figures missing from the report: {set(figures) - set(shown)}"
    for name in figures:
        r = shown[name]
        fig = cfg["figures"][name]
        caption = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", r["caption"])))
        methods = {m for e in fig["experiments"] for m in cfg["experiments"][e]["methods"]
                   if m in fig.get("methods", cfg["experiments"][e]["methods"])}  # those the figure draws
        expected = [fig["paper"], "scale", "smoke", "Seeds", figure_target(name), "Rebuild", *sorted(methods)]
        missing = [word for word in expected if word not in caption]
        assert not missing, f"{name}: caption lacks {missing}:\n{caption}"
        assert re.search(r"Fig(ure|ures)? \d|Table \d", caption), f"{name}: caption names no paper figure:\n{caption}"
        # the side bar shows the caption, and the file itself is embedded and displayed
        assert fig["paper"] in r["info"] and "Rebuild" in r["info"] and name in r["info"], r["info"][:1000]
        assert r["data_uri"].startswith("data:") and r["data_len"] > 1000, r
        if r["mime"].startswith("image/"):
            assert r["img_width"] > 0, f"{name}: the image did not render"
        else:
            assert r["iframe_src"].startswith("data:"), f"{name}: the document is not shown"


@pytest.mark.browser
def test_report_shows_every_figures_claims(probe, report):
    """Beside each figure, in its category, the report holds the figure's claims table with its caption."""
    _, figures = report
    shown = {Path(p).stem: r for p, r in probe["results"].items() if "/claims/" in p}
    assert set(figures) <= set(shown), f"claims missing from the report: {set(figures) - set(shown)}"
    for name in figures:
        r = shown[name]
        assert "verdict" in html.unescape(r["caption"]) and "holds" in html.unescape(r["caption"]), r["caption"][:500]
        assert r["mime"] == "text/csv" and r["data_uri"].startswith("data:") and r["data_len"] > 100, r
