"""The dashboard in a real browser (issue 11): headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) signs in, opens a folder with a completed and a failed
image, sees both thumbnails loaded, retries the failed one and watches its card turn completed
without a reload. Skips without Chromium, except under CI (scripts/test.sh installs it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures import images

pytestmark = pytest.mark.asyncio
KEY = "browser-key"

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(name="browser")
def _browser() -> Iterator[Any]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing (scripts/test.sh installs them)")
        pytest.skip("chromium and chromium-driver are not installed")
    with tempfile.TemporaryDirectory() as home:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or ""
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", f"--user-data-dir={home}/profile",
                    "--window-size=1280,900"):
            options.add_argument(arg)
        service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"),
                                          env={**os.environ, "XDG_CONFIG_HOME": home,
                                               "HOME": home})
        driver = webdriver.Chrome(options=options, service=service)
        try:
            yield driver
        finally:
            driver.quit()


async def until(check, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await asyncio.to_thread(check)
        except WebDriverException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.1)


async def test_sign_in_see_thumbnails_retry_and_watch(start_service, fake_openai, tmp_path,
                                                      browser):
    data = tmp_path / "data"
    folder = data / "imagedrop" / "shop"
    folder.mkdir(parents=True)
    (folder / "imagedrop.yaml").write_text("prompt: warmer\nsettle_seconds: 0\n")
    (folder / "first.png").write_bytes(images.png(320, 240))
    (folder / "<img src=x onerror=alert(1)>.png").write_bytes(images.png(30, 20))
    svc = await start_service({
        "IMAGEDROP_DATA_DIR": str(data), "IMAGEDROP_API_KEYS": KEY,
        "IMAGEDROP_SWEEP_INTERVAL": "0", "IMAGEDROP_CONCURRENCY": "1",
        "OPENAI_API_KEY": fake_openai.api_key, "OPENAI_BASE_URL": fake_openai.base_url})
    svc.headers = {"Authorization": f"Bearer {KEY}"}

    async def run_folder() -> None:
        status, doc = await svc.post("/trigger", {"prefix": "shop/"})
        assert status == 202, doc

        async def finished() -> bool:
            _, body = await svc.get(f"/jobs/{doc['job_id']}")
            return body.get("state") == "finished"

        deadline = time.monotonic() + 30
        while not await finished():
            assert time.monotonic() < deadline, "batch did not finish"
            await asyncio.sleep(0.05)

    (folder / "second.png").write_bytes(images.png(300, 200))
    fake_openai.script([400])  # the first edit is refused: that image fails, the others not
    await run_folder()

    # Sign in through the form, landing on the folder.
    await asyncio.to_thread(browser.get, svc.url + "/ui/folders?prefix=shop/")
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, "form input[name=key]"),
                what="the sign-in form")
    key_input = browser.find_element(By.CSS_SELECTOR, "form input[name=key]")
    await asyncio.to_thread(key_input.send_keys, KEY)
    await asyncio.to_thread(key_input.submit)
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, "article[data-job-id]"),
                what="the folder's cards")

    def card(state: str) -> Any:
        found = browser.find_elements(By.CSS_SELECTOR, f"article[data-state={state}]")
        return found[0] if found else None

    # The image named like markup is text: nothing ran (no alert), its name shows as typed.
    assert "<img src=x onerror=alert(1)>.png" in browser.find_element(
        By.CSS_SELECTOR, "[data-role=cards]").text
    assert not browser.execute_script(
        "return document.querySelectorAll('img:not([data-role])').length")
    try:
        alert = browser.switch_to.alert
        pytest.fail(f"a script ran: alert {alert.text!r}")
    except NoAlertPresentException:
        pass

    completed = await until(lambda: card("completed"), what="a completed card")
    failed = await until(lambda: card("failed"), what="a failed card")
    failed_id = failed.get_attribute("data-job-id")
    assert "400" in failed.text  # its error is shown

    # Both thumbnails of the completed card have loaded (decoded by the browser).
    def loaded(img: Any) -> bool:
        return bool(browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img))

    for role in ("before", "after"):
        img = completed.find_element(By.CSS_SELECTOR, f"img[data-role={role}]")
        await until(lambda img=img: loaded(img), what=f"the {role} thumbnail")

    # Retry: the card changes state in place, with no reload of the page.
    await asyncio.to_thread(browser.execute_script, "window.__stayed = true")
    button = failed.find_element(By.CSS_SELECTOR, "button[data-action=retry]")
    await asyncio.to_thread(button.click)
    selector = f"article[data-job-id='{failed_id}'][data-state=completed]"
    await until(lambda: browser.find_elements(By.CSS_SELECTOR, selector), timeout=30,
                what="the retried card completed")
    assert browser.execute_script("return window.__stayed === true")  # the same page
    assert len(fake_openai.calls) == 4  # three images (one refused), then the retry
