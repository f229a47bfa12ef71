"""Headless-browser screenshot of a report, to check that it renders.

``python -m pipeline screenshot report.html report.png [--width 1280 --height 2000]``
needs a Chromium binary (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ScreenshotError(RuntimeError):
    """No browser, or the browser did not produce the image."""


def find_browser() -> str | None:
    """Path of the first Chromium-like browser on PATH (or $CHROMIUM), else None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: str | os.PathLike, png: str | os.PathLike, *, width: int = 1280, height: int = 2000,
               timeout: float = 120.0) -> Path:
    """Render ``html`` headless (no network, throw-away profile) and save the viewport as ``png``."""
    browser = find_browser()
    if browser is None:
        raise ScreenshotError(f"no Chromium found on PATH (tried {', '.join(BROWSERS)}); "
                              "install it, e.g. `apt-get install chromium`")
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise ScreenshotError(f"{html}: file not found")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-shot-") as profile:
        tmp_png = Path(profile) / "shot.png"
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}/profile", f"--window-size={width},{height}",
               f"--screenshot={tmp_png}", html.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ScreenshotError(f"{browser} did not finish within {timeout:.0f} s") from e
        if proc.returncode != 0 or not tmp_png.is_file():
            raise ScreenshotError(f"{browser} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        shutil.move(str(tmp_png), png)  # across filesystems too; the browser wrote it whole
    return png
