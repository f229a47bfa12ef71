"""``python -m pipeline screenshot``: a PNG of a report page, drawn by a headless Chromium."""

from __future__ import annotations

import argparse
import sys

from pipeline.report.screenshot import ScreenshotError, screenshot


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("html", help="the page, e.g. exp/sa/report/report.html")
    p.add_argument("png", help="the picture to write")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2000)


def run(args: argparse.Namespace) -> int:
    try:
        print(screenshot(args.html, args.png, width=args.width, height=args.height))
    except ScreenshotError as e:
        print(f"screenshot: error: {e}", file=sys.stderr)
        return 1
    return 0
