"""The demo in a real browser: headless Chromium (Debian's `chromium`, installed by `make
browser`, which `make test` runs) driven by Playwright loads the page from `python -m
tfglow.demo` started on a free localhost port, uploads an image, moves a slider, blends,
samples, shows an upload error, and writes a screenshot."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from demo_helpers import tiny_export
from tfglow.data import load_numpy
from tfglow.demo import directions as dirs_mod
from tfglow.demo.uploads import decode_data_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """URL of `python -m tfglow.demo` serving the tiny model with its class directions."""
    root = tmp_path_factory.getbasetemp()
    export_dir, _ = tiny_export(root)
    directions = str(tmp_path_factory.mktemp("browser") / "directions.npz")
    assert dirs_mod.main(["--model", export_dir, "--data_dir", "digits", "--out", directions]) == 0
    port = free_port()
    log_path = root / f"demo_server_{port}.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tfglow.demo", "--model", export_dir,
                                 "--directions", directions, "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost only
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"demo server exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
            try:
                direct.open(url + "/api/info", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"demo server not up in 120 s: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pixels(page, selector):
    return decode_data_url(page.get_attribute(selector, "src"))


def wait_until(what, predicate, timeout=30.0):
    """Polls predicate() from Python (the page's Content-Security-Policy forbids the eval
    that Playwright's wait_for_function needs, and the test keeps that policy on)."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_src_change(page, selector, old):
    def changed():
        src = page.get_attribute(selector, "src") or ""
        return src if src.startswith("data:image/png") and src != old else None

    return wait_until(f"{selector} to show a new image", changed)


def wait_text(page, selector, text):
    wait_until(f"{selector} to read {text!r}", lambda: text in (page.text_content(selector) or ""))


@pytest.mark.slow
def test_browser_upload_slider_blend_sample(server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "no chromium: run `make browser` (apt-get install chromium)"
    digits = load_numpy("digits", "validation", 8)[0]
    # Uploads as a user would have them: larger, RGB, not square (the page crops them).
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    for path, digit in ((first, digits[0]), (second, digits[5])):
        big = np.kron(digit[..., 0], np.ones((12, 12), np.uint8))          # 96x96
        Image.fromarray(np.pad(big, ((0, 0), (10, 10)))).convert("RGB").save(path)
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not an image")
    shot = tmp_path / "demo.png"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-proxy-server"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page_errors = []
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator("#sliders input[type=range]").count() == 10
        assert "8x8x1" in page.text_content("#model-info")
        wait_src_change(page, "#sample", "")

        # Upload: input (cropped), its exact reconstruction, bits/dim, the unmoved result.
        page.set_input_files("#file-a", str(first))
        unmoved = wait_src_change(page, "#result", "")
        assert np.array_equal(pixels(page, "#recon-a"), pixels(page, "#input-a"))
        assert np.array_equal(pixels(page, "#result"), pixels(page, "#input-a"))
        info = page.text_content("#encode-info")
        assert "bits/dim" in info and "reconstruction exact" in info and "centre-cropped" in info

        # Move the class-3 slider with the keyboard, as a user would.
        page.focus("#slider-3")
        for _ in range(20):
            page.keyboard.press("ArrowRight")
        wait_text(page, "#slider-3 + output", "1.00")
        page.wait_for_selector("body[data-edit=idle]")        # the last slider value's answer
        wait_text(page, "#result-caption", "edited")
        moved = page.get_attribute("#result", "src")
        assert not np.array_equal(decode_data_url(moved), decode_data_url(unmoved))
        assert page.get_attribute("#download-result", "href") == moved
        with page.expect_download() as download:               # the Download PNG button
            page.click("#download-result")
        saved = tmp_path / "downloaded.png"
        download.value.save_as(saved)
        assert download.value.suggested_filename.endswith(".png")
        assert np.array_equal(np.asarray(Image.open(saved))[..., None], decode_data_url(moved))
        assert "ms" in page.text_content("#latency")

        # Blend with a second image.
        assert page.is_disabled("#blend")
        page.set_input_files("#file-b", str(second))
        wait_until("the blend slider", lambda: page.is_enabled("#blend"))
        page.focus("#blend")
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        wait_text(page, "#blend-value", "0.50")
        page.wait_for_selector("body[data-edit=idle]")
        blended = page.get_attribute("#result", "src")
        assert not np.array_equal(decode_data_url(blended), decode_data_url(moved))

        # Sample at another temperature.
        sample = page.get_attribute("#sample", "src")
        page.focus("#temperature")
        for _ in range(6):
            page.keyboard.press("ArrowLeft")
        wait_text(page, "#temperature-value", "0.40")
        page.wait_for_selector("body[data-sample=idle]")
        wait_text(page, "#sample-caption", "T = 0.40")
        assert not np.array_equal(pixels(page, "#sample"), decode_data_url(sample))
        assert page.get_attribute("#download-sample", "href") == page.get_attribute("#sample", "src")

        page.screenshot(path=str(shot), full_page=True)

        # A bad upload: the server's 415 is shown on the page.
        page.set_input_files("#file-a", str(not_an_image))
        page.wait_for_selector("#error:not([hidden])")
        assert "415" in page.text_content("#error") and "not an image" in page.text_content("#error")
        page.screenshot(path=str(tmp_path / "demo_error.png"), full_page=True)
        browser.close()

    assert not page_errors, page_errors
    assert shot.stat().st_size > 10000
    print(f"screenshot: {shot}")
