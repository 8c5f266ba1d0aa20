"""`mailbatch preview --serve`: every message in a browser, as sent, live; nothing is sent.

The server is exercised with an HTTP client, and in a real browser (Debian's chromium and
chromium-driver driven by Selenium) where one is installed:
`apt install chromium chromium-driver && pip install selenium && pytest tests/cli/test_serve.py`.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from mailbatch.cli.serve import PreviewServer
from tests.helpers import smtp_block, write_job

JOB = """
    from: "Reports <reports@example.org>"
    subject: "Figures for {{ name }}"
    text_template: body.txt.j2
    html_template: body.html.j2
    recipients: people.csv
"""
FILES = {
    "body.txt.j2": "Hello {{ name }}, version one.\n",
    "body.html.j2": "<p>Hello <b>{{ name }}</b>, version one.</p>\n",
    "people.csv": "email,name\nann@example.org,Ann\nbob@example.org,<script>alert(1)</script>\n",
}


@pytest.fixture
def served(tmp_path, smtp_server, ca_file, password_env) -> Iterator[PreviewServer]:
    write_job(tmp_path, JOB + smtp_block(smtp_server, ca_file), FILES)
    server = PreviewServer(tmp_path / "job.yaml")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)
    assert smtp_server.connections == 0  # a preview never talks to the mail server


def get(server: PreviewServer, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def page(server: PreviewServer, path: str = "/") -> str:
    status, _, body = get(server, path)
    assert status == 200
    return body.decode("utf-8")


def test_the_server_listens_on_loopback_only(served):
    assert served.server_address[0] == "127.0.0.1"
    assert served.url.startswith("http://127.0.0.1:")


def test_the_page_shows_the_chosen_recipients_headers_envelope_and_both_parts(served):
    first, second = page(served), page(served, "/?r=2")

    assert "Figures for Ann" in first and "Hello Ann, version one." in first
    assert "ann@example.org" in first and '<iframe sandbox src="/html?r=1"' in first
    assert "bob@example.org" in second and '<iframe sandbox src="/html?r=2"' in second
    assert second.count("<option") == 2  # the picker lists every recipient


def test_recipient_data_is_escaped_in_the_page(served):
    shown = page(served, "/?r=2")

    assert "<script>alert(1)</script>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown


def test_the_html_part_is_served_alone_under_a_policy_that_runs_no_script(served):
    status, headers, body = get(served, "/html?r=1")

    assert status == 200 and body.decode() == "<p>Hello <b>Ann</b>, version one.</p>\n"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]


def test_the_message_downloads_as_the_exact_eml_that_would_be_sent(served):
    status, headers, body = get(served, "/eml?r=2")

    assert status == 200 and headers["Content-Type"] == "message/rfc822"
    message = email.message_from_bytes(body, policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "bob@example.org"
    assert not message.defects


def test_an_edited_template_changes_the_version_and_the_page(served, tmp_path):
    before = page(served)
    version = get(served, "/version")[2]
    (tmp_path / "body.txt.j2").write_text("Hello {{ name }}, version two.\n", encoding="utf-8")
    os.utime(tmp_path / "body.txt.j2", ns=(time.time_ns(), time.time_ns() + 10**9))

    assert get(served, "/version")[2] != version
    assert "version one" in before and "Hello Ann, version two." in page(served)


def test_a_broken_job_file_is_shown_as_its_error_and_the_server_keeps_serving(served, tmp_path):
    job = tmp_path / "job.yaml"
    good = job.read_text(encoding="utf-8")
    job.write_text(good.replace("subject:", "subject: [", 1), encoding="utf-8")

    broken = page(served)

    assert 'class="error"' in broken and "YAML syntax error" in broken
    job.write_text(good, encoding="utf-8")
    assert "Figures for Ann" in page(served)


def test_an_unknown_recipient_is_explained_on_the_page(served):
    shown = page(served, "/?r=9")

    assert "there is no recipient number 9" in shown
    assert get(served, "/html?r=9")[0] == 404


def test_the_command_prints_its_address_serves_and_stops_on_ctrl_c(tmp_path, smtp_server, ca_file,
                                                                  password_env):
    job = write_job(tmp_path, JOB + smtp_block(smtp_server, ca_file), FILES)
    process = subprocess.Popen([sys.executable, "-m", "mailbatch", "preview", str(job),
                                "--serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline()
        url = line.split(" at ", 1)[1].split("?", 1)[0]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert "Figures for Ann" in response.read().decode()
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
    assert line.startswith(f"previewing {job} at http://127.0.0.1:")
    assert smtp_server.connections == 0


# -- in a real browser ---------------------------------------------------------------------------

def _browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    return (chromium, driver) if chromium and driver else None


@pytest.mark.skipif(_browser() is None, reason="needs chromium, chromedriver and selenium")
def test_in_a_browser_the_page_shows_the_message_and_reloads_when_a_template_changes(
        served, tmp_path):
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoSuchElementException,
        NoSuchFrameException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, driver_path = _browser()  # type: ignore[misc]
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(served.url + "?r=1")
        assert "Figures for Ann" in browser.find_element(By.TAG_NAME, "table").text
        browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
        assert browser.find_element(By.TAG_NAME, "b").text == "Ann"
        browser.switch_to.default_content()

        (tmp_path / "body.html.j2").write_text("<p>Hi <i>{{ name }}</i>, version two.</p>\n",
                                               encoding="utf-8")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:  # the page may reload between any two of these steps
                browser.switch_to.default_content()
                browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
                found = browser.find_elements(By.TAG_NAME, "i")
                if found and found[0].text == "Ann":
                    break
            except (StaleElementReferenceException, NoSuchElementException,
                    NoSuchFrameException):
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the page did not reload with the edited template")
    finally:
        browser.quit()

