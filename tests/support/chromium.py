"""Open an HTML file in headless Chromium: take a screenshot, and read back what an inline check script saw
(images loaded, resource / CSP / script errors, the values of every ``data-key`` element, the sections whose tables
are wider than their box and scroll sideways)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHECK_SCRIPT = """
<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || 'unknown'));
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  window.__errors.push('blocked: ' + e.blockedURI + ' (' + e.violatedDirective + ')');
});
window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    var box = img.parentElement;
    return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth, shownWidth: img.getBoundingClientRect().width,
            boxWidth: box.getBoundingClientRect().width, boxOverflowX: getComputedStyle(box).overflowX};
  });
  var wide = Array.prototype.filter.call(document.querySelectorAll('.scroll'), function (box) {
    return box.scrollWidth > box.clientWidth + 1;
  }).map(function (box) { return box.closest('section') ? box.closest('section').querySelector('h2').textContent : '?'; });
  var keys = {};
  Array.prototype.forEach.call(document.querySelectorAll('[data-key]'), function (el) { keys[el.dataset.key] = el.textContent.trim(); });
  var pre = document.createElement('pre');
  pre.id = '__check';
  pre.textContent = JSON.stringify({images: images, errors: window.__errors, keys: keys, wideTables: wide,
                                    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});
  document.body.appendChild(pre);
  if (window.parent !== window) { window.parent.document.body.appendChild(pre.cloneNode(true)); }
});
</script>
"""
# Headless Chromium makes no window narrower than this: a narrower width is checked in an iframe of that width.
MIN_WINDOW_WIDTH = 500
CHECK_OUTPUT = re.compile(r'<pre id="__check">(.*?)</pre>', re.S)


def chromium() -> str:
    """The Chromium binary; a test that needs it skips outside CI when it is absent and fails in CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (.ci/run installs it: apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this test")


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(html: Path, png: Path, width: int, height: int) -> Path:
    result = _run([f"--screenshot={png}", f"--window-size={width},{height}", "--virtual-time-budget=5000", html.resolve().as_uri()])
    assert png.is_file(), result.stderr[-3000:]
    return png


def inspect(html: Path, scratch: Path, width: int = 1366, height: int = 900) -> dict:
    """Load a copy of ``html`` with the check script (its CSP widened to run that one inline script), in a window
    ``width`` wide, or in a frame that wide within a wider window where Chromium makes none so narrow."""
    page = html.read_text(encoding="utf-8")
    page = page.replace("script-src 'none'", "script-src 'unsafe-inline'")
    page = page.replace("<head>", "<head>" + CHECK_SCRIPT, 1)
    copy = scratch / f"check-{html.stem}-{width}.html"
    copy.write_text(page, encoding="utf-8")
    shown = copy
    if width < MIN_WINDOW_WIDTH:  # the page in a frame of that width (its media queries follow the frame's width)
        shown = scratch / f"check-{html.stem}-{width}-frame.html"
        shown.write_text(f'<!DOCTYPE html><html><body style="margin:0"><iframe src="{copy.name}" '
                         f'style="width:{width}px;height:{height}px;border:0"></iframe></body></html>', encoding="utf-8")
    result = _run([f"--window-size={max(width, MIN_WINDOW_WIDTH)},{height}", "--allow-file-access-from-files",
                   "--virtual-time-budget=5000", "--dump-dom", shown.resolve().as_uri()])
    found = CHECK_OUTPUT.search(result.stdout)
    assert found, f"the check script did not run: {result.stderr[-3000:]}"
    check = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"'))
    check["console_errors"] = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    return check
