"""The web page in headless Chromium (Debian's, via selenium) against a real uvicorn on loopback:
pick a file and see the prediction; draw a stroke and see one; the gallery of test images."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from browser import chromium, console_errors, wait_until

pytest_plugins = ["conftest_model"]
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("one_torch_thread")]


@contextlib.contextmanager
def serving(run, fashion_dir):
    """``fmnist serve``'s app for ``run`` on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    from fmnist.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(run, data_dir=fashion_dir), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def server_url(run_dir, fashion_dir):
    """The served model; the gallery's test images come from wherever `fmnist data fetch` put the data."""
    with serving(run_dir, fashion_dir) as url:
        yield url


@pytest.fixture(scope="module")
def page(server_url, tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        driver.get(server_url + "/")
        wait_until(driver, lambda d: "Model fastcnn" in d.find_element("id", "model-info").text)
        yield driver


def bars(driver) -> list[tuple[str, str]]:
    return [
        (li.get_attribute("data-class"), li.find_element("css selector", ".pct").text)
        for li in driver.find_elements("css selector", "#bars .bar")
    ]


def test_gallery_shows_test_images_with_true_and_predicted_labels(page):
    wait_until(page, lambda d: len(d.find_elements("css selector", "#gallery .card")) == 12)
    card = page.find_elements("css selector", "#gallery .card")[0]
    assert "true: " in card.text and "predicted: " in card.text
    assert card.find_element("tag name", "img").get_attribute("src").startswith("data:image/png;base64,")
    assert "right" in page.find_element("id", "gallery-status").text
    assert not console_errors(page)


def test_pick_a_file_and_see_the_prediction(page, tmp_path, test_images, test_proba, loaded):
    i = int(np.flatnonzero(test_proba.argmax(1) == 7)[0])  # an image the model calls Sneaker
    photo = Image.fromarray(np.kron(255 - test_images[i], np.ones((8, 8), np.uint8))).convert("RGB")
    path = tmp_path / "sneaker-photo.jpg"
    photo.save(path, quality=92)  # a 224x224 dark-on-white "photo": inverted and fitted by the server
    page.find_element("id", "file").send_keys(str(path))
    wait_until(page, lambda d: "sneaker-photo.jpg:" in d.find_element("id", "status").text)
    shown = bars(page)
    assert len(shown) == 3 and all(p.endswith("%") for _, p in shown)
    assert shown[0][0] == loaded.classes[7] == page.find_element("id", "result").get_attribute("data-label")
    assert page.find_element("id", "processed").get_attribute("src").startswith("data:image/png;base64,")


def test_draw_a_stroke_and_see_a_prediction(page, tmp_path):
    screenshot_dir = tmp_path
    from selenium.webdriver.common.action_chains import ActionChains

    page.find_element("id", "clear").click()
    assert not page.find_element("id", "result").is_displayed() and not bars(page)
    canvas = page.find_element("id", "canvas")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    before = page.find_element("id", "status").text
    # A trouser-like shape: two vertical legs joined at the top.
    actions = ActionChains(page, duration=20)
    actions.move_to_element_with_offset(canvas, -40, -100).click_and_hold()
    for dx, dy in ((40, 0), (40, 0), (0, 50), (0, 50), (0, 50), (0, 50)):
        actions.move_by_offset(dx, dy)
    actions.release().perform()
    wait_until(
        page,
        lambda d: (
            "drawing.png:" in d.find_element("id", "status").text
            and d.find_element("id", "status").text != before
        ),
    )
    status = page.find_element("id", "status")
    assert status.get_attribute("class") != "error", status.text
    shown = bars(page)
    assert len(shown) == 3 and page.find_element("id", "result").is_displayed()
    assert page.find_element("id", "result").get_attribute("data-label") == shown[0][0]
    page.save_screenshot(str(screenshot_dir / "page-after-drawing.png"))


def test_a_bad_file_shows_the_servers_message(page, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture at all")
    page.find_element("id", "file").send_keys(str(path))
    wait_until(page, lambda d: "not an image" in d.find_element("id", "status").text)
    assert page.find_element("id", "status").get_attribute("class") == "error"


def test_the_page_says_none_of_these_and_still_shows_the_guesses(run_dir, fashion_dir, tmp_path, test_images):
    """A model whose calibration abstains below 0.99: the page says so above the three bars."""
    import shutil

    from fmnist.models.calibration import Calibration, read_calibration, write_calibration
    from fmnist.models.record import model_digest

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    saved, _ = read_calibration(run, model_digest(run / "model.pt"))
    write_calibration(
        run,
        Calibration(saved.temperature, 0.99, "max_probability", saved.model_sha256),
    )
    path = tmp_path / "shirt.png"
    Image.fromarray(test_images[1]).save(path)
    with serving(run, fashion_dir) as url, chromium(tmp_path / "chromium") as driver:
        driver.get(url + "/")
        wait_until(driver, lambda d: "Model fastcnn" in d.find_element("id", "model-info").text)
        driver.find_element("id", "file").send_keys(str(path))
        wait_until(driver, lambda d: "shirt.png:" in d.find_element("id", "status").text)
        assert "not one of the ten classes?" in driver.find_element("id", "status").text
        assert driver.find_element("id", "abstain").is_displayed()
        assert driver.find_element("id", "result").get_attribute("data-abstain") == "yes"
        assert len(bars(driver)) == 3
        assert not console_errors(driver)
