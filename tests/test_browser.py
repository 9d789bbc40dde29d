"""What a person sees, in a real browser: after a smoke run, ``ganpipe ui`` serves MLflow's UI on the
project's store and headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium) loads the registered model, its version, the training runs and the run's pages, then the
model card, both as a file and inside MLflow's artifact viewer.

MLflow's UI is a React app: every check waits for the content it looks for. Screenshots go to the
test's tmp directory, or to ``$GANPIPE_TEST_ARTIFACTS`` when set (CI keeps that folder).

The browser is a declared test dependency (``scripts/install.sh`` installs it with apt-get, and
``.ci/run`` insists): a missing one fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.test_pipeline_e2e import BIN, NAME, cli_env, explain, free_port, make_project

pytestmark = pytest.mark.slow

# Flags that start Chromium offline in a container: no sandbox (root), no GPU, no network side traffic.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT_S = 90  # React renders after its API calls; a loaded 2-core box needs tens of seconds


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver): $GANPIPE_CHROMIUM / $GANPIPE_CHROMEDRIVER, else found on PATH."""
    chromium = os.environ.get("GANPIPE_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = os.environ.get("GANPIPE_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("the browser tests need Chromium and its WebDriver: `bash scripts/install.sh` installs Debian's "
                    "chromium and chromium-driver (apt-get install chromium chromium-driver); or set "
                    "GANPIPE_CHROMIUM and GANPIPE_CHROMEDRIVER")
    return chromium, driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("GANPIPE_TEST_ARTIFACTS")
    path = Path(folder) / "browser" if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


class UI:
    """A smoke run's project with ``ganpipe ui`` serving it."""

    def __init__(self, project, summary: dict, address: str, process: subprocess.Popen, output: list[str]):
        self.project, self.summary, self.address, self.process, self.output = project, summary, address, process, output

    def url(self, route: str) -> str:
        return f"{self.address}/#{route}"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-project")
    project = make_project(root / "project", cli_env(root, PREFECT_HOME=str(root / "prefect")))
    result, summary = project.run("--preset", "smoke")
    assert result.returncode == 0, explain(result)
    port = free_port()
    process = subprocess.Popen([str(BIN / "ganpipe"), "ui", "--port", str(port), "--workers", "1"], cwd=project.root,
                               env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    ready = threading.Event()

    def read():
        for line in process.stdout:
            output.append(line)
            if "MLflow UI for" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(240):
            pytest.fail("ganpipe ui did not report its address:\n" + "".join(output[-60:]))
        yield UI(project, summary, f"http://127.0.0.1:{port}", process, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def visible_text(driver) -> str:
    """The page's visible text, each run of white space (line breaks, no-break spaces) as one space."""
    return re.sub(r"\s+", " ", driver.execute_script("return document.body ? document.body.innerText : ''"))


def wait_for_text(driver, *texts: str, timeout: float = WAIT_S) -> str:
    """The page's visible text once it contains every one of ``texts``."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        body = visible_text(d)
        return body if all(t in body for t in texts) else False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(ready)
    except Exception:
        body = visible_text(driver)
        missing = [t for t in texts if t not in body]
        pytest.fail(f"{driver.current_url}: no {missing} after {timeout} s; the page shows:\n{body[:3000]}")


def open_page(driver, url: str, shots: Path, name: str, *texts: str) -> str:
    driver.get("about:blank")  # a hash-only change would not reload MLflow's single-page app
    driver.get(url)
    try:
        return wait_for_text(driver, *texts)
    finally:
        driver.save_screenshot(str(shots / f"{name}.png"))


def test_ui_prints_links_that_open_the_registered_model_and_its_champion(ui, browser, shots):
    view = "?workflowType=machine_learning"
    printed = "".join(ui.output)
    model_link = f"{ui.address}/#/models/{NAME}{view}"
    assert model_link in printed, printed
    text = open_page(browser, model_link, shots, "registered-model", NAME, "Version 1", "@ champion",
                     "@ challenger", "Model registry")
    assert "metric.domain_fd" in text  # the values the gates judged, as version tags

    version = ui.summary["registry"]["version"]
    text = open_page(browser, ui.url(f"/models/{NAME}/versions/{version}{view}"), shots, "model-version",
                     f"Version {version}", "Description", "Verdict: registered as dcgan-digits version 1",
                     "Gates: none in force (preset smoke)")
    assert f"MLflow run {ui.summary['mlflow_run_id']}" in text  # the description links the version to its run


def test_training_runs_show_the_data_set_and_the_run_its_metrics_and_sample_grid(ui, browser, shots):
    from selenium.webdriver.support.ui import WebDriverWait

    experiment, run_id, run_name = ui.summary["experiment_id"], ui.summary["mlflow_run_id"], ui.summary["run_name"]
    data_version = ui.summary["data"]["data_hash"]
    printed = "".join(ui.output)
    runs_link = f"{ui.address}/#/experiments/{experiment}/runs?workflowType=machine_learning"
    assert runs_link in printed, printed
    # The runs table: the run, its Dataset column (name and digest = the data version).
    open_page(browser, runs_link, shots, "training-runs", run_name[:20], f"digits ({data_version[:12]}")

    metrics = json.loads((Path(ui.summary["run_dir"]) / "eval" / "metrics.json").read_text())
    text = open_page(browser, ui.url(f"/experiments/{experiment}/runs/{run_id}"), shots, "run",
                     run_name, "domain_fd", "class_coverage", "data_copying_ct")
    assert f"{metrics['domain_fd']}"[:6] in text  # the logged value, as MLflow prints it
    assert "ganpipe run" in text and "digits" in text  # source and dataset in the run's details
    assert "Verdict: registered as dcgan-digits version 1" in text  # the run's description

    # The sample grid artifact: MLflow's viewer loads it from the server and shows it as an image.
    open_page(browser, ui.url(f"/experiments/{experiment}/runs/{run_id}/artifacts/evaluation/samples.png"), shots,
              "sample-grid", "samples.png")
    loaded = WebDriverWait(browser, WAIT_S, poll_frequency=0.5).until(lambda d: d.execute_script(
        "return [...document.images].filter(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'))"
        ".map(i => [i.naturalWidth, i.naturalHeight])") or False)
    from PIL import Image

    with Image.open(Path(ui.summary["run_dir"]) / "eval" / "samples.png") as grid:
        assert [grid.width, grid.height] in loaded


def test_model_card_renders_with_every_image_loaded(ui, browser, shots):
    from selenium.webdriver.common.by import By

    report = Path(ui.summary["report"])
    open_page(browser, report.as_uri(), shots, "model-card", "Verdict: registered as dcgan-digits version 1",
              "Quality gates", "Lineage", "Registry decision")
    images = browser.execute_script(
        "return [...document.images].map(i => ({src: i.src.slice(0, 30), ok: i.complete && i.naturalWidth > 0}))")
    assert len(images) >= 6 and all(i["ok"] for i in images), images  # grid, walk, previews, curves
    assert all(i["src"].startswith("data:image/png;base64,") for i in images)
    # Nothing was fetched: no script, stylesheet or image left the page (data: URIs are not resources).
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    browser.find_element(By.TAG_NAME, "body").screenshot(str(shots / "model-card-full.png"))

    # The same card inside MLflow's artifact viewer (a sandboxed frame), where users open it.
    experiment, run_id = ui.summary["experiment_id"], ui.summary["mlflow_run_id"]
    open_page(browser, ui.url(f"/experiments/{experiment}/runs/{run_id}/artifacts/report.html"), shots,
              "model-card-in-mlflow", "report.html")
    from selenium.webdriver.support.ui import WebDriverWait

    frame = WebDriverWait(browser, WAIT_S, poll_frequency=0.5).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "iframe") or False)[0]
    browser.switch_to.frame(frame)
    try:
        WebDriverWait(browser, WAIT_S, poll_frequency=0.5).until(lambda d: d.execute_script(
            "const imgs = [...document.images];"
            "return document.body.innerText.includes('Registry decision') && imgs.length >= 6 &&"
            " imgs.every(i => i.complete && i.naturalWidth > 0)"))
    finally:
        browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "model-card-in-mlflow.png"))


def test_ui_stops_on_ctrl_c_and_frees_its_port(ui):
    import socket

    port = int(ui.address.rsplit(":", 1)[1])
    ui.process.send_signal(signal.SIGINT)
    assert ui.process.wait(timeout=60) == 0, "".join(ui.output[-40:])
    deadline = time.monotonic() + 30
    while True:  # the server's workers are gone too: nothing listens on the port (closed connections may linger)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
