"""Open every page of the built book in headless Chromium and fail on what a reader would see.

    python tests/browser_check.py [--html _build/html] [--mathjax DIR] [--shots _build/screenshots]

The book is served on 127.0.0.1 by a small HTTP server that substitutes a local copy of MathJax 3
(the npm package ``mathjax@3``; ``--mathjax`` points at its folder) for the CDN, which may be
unreachable. Each page is loaded at 1400 px and at 400 px wide; a screenshot of each is saved.
At 1400 px a page fails on:

* a MathJax error, or raw directive text (``{exercise}``, ``{solution``, ``:label:``);
* visible nbval markers, or an absolute file-system path in the page text;
* an equation, table, figure or code block wider than the content column (or scrolling sideways);
* a console error, a broken internal link or a broken image;
* an image in the text that is not a numbered figure with a caption, or whose alt text is missing
  or a file name;
* a top bar above the page (the theme's header, which here would hold only a second search field).

The book as a whole fails when a generated page cannot be reached by following links from the
first page (search.html counts as reached through the search form).

Driven by Selenium with the distribution's ``chromium`` and ``chromium-driver`` packages.
Exits 1 and lists every finding when a page fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/")
RAW_DIRECTIVES = ("{exercise}", "{solution", ":label:", "```{")
PATHS = re.compile(r"(?<![\w.$~])/(?:work|home|root|tmp|usr|srv|opt|mnt)/[\w./-]+")
WIDTH_CHECKS = """
const column = document.querySelector('article.bd-article') || document.querySelector('main');
if (!column) return [];  // a redirect page
const limit = column.getBoundingClientRect().right + 1;
const found = [];
const describe = (el) => el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
    ? '.' + el.className.split(' ')[0] : '') + ': ' + (el.innerText || el.getAttribute('alt') || '').slice(0, 60);
for (const el of column.querySelectorAll('mjx-container[display="true"], table, img, figure, div.cell_input pre')) {
  if (el.closest('.dropdown, details') && el.getClientRects().length === 0) continue;  // folded away
  const box = el.getBoundingClientRect();
  if (box.width === 0) continue;
  if (box.right > limit) found.push('wider than the column: ' + describe(el));
  else if (el.scrollWidth > el.clientWidth + 2 && getComputedStyle(el).overflowX !== 'visible')
    found.push('scrolls sideways: ' + describe(el));
}
for (const img of column.querySelectorAll('img')) {
  const src = img.getAttribute('src'), alt = img.getAttribute('alt') || '';
  if (img.complete && img.naturalWidth === 0) found.push('broken image: ' + src);
  if (!alt.trim() || alt.includes('/') || /\.(png|jpe?g|svg|gif)$/i.test(alt)) found.push('no alt text: ' + src);
  const figure = img.closest('figure');
  if (!figure || !figure.querySelector('figcaption .caption-number'))
    found.push('image not a numbered figure with a caption: ' + src);
}
const header = document.querySelector('header.bd-header');
if (header && header.getBoundingClientRect().height > 0) found.push('a top bar above the page');
return found;
"""


class BookHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built book, with MathJax from a local folder under /_mathjax/."""

    mathjax: Path

    def translate_path(self, path: str) -> str:
        parsed = unquote(urlparse(path).path)
        if parsed.startswith("/_mathjax/"):
            return str(self.mathjax / parsed[len("/_mathjax/"):])
        return super().translate_path(path)

    def send_head(self):  # noqa: ANN201 - http.server API
        path = Path(self.translate_path(self.path))
        if path.suffix == ".html" and path.is_file():
            body = CDN.sub("/_mathjax/", path.read_text()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return _Bytes(body)
        return super().send_head()

    def log_message(self, *args: object) -> None:
        pass


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, *args: object) -> bytes:
        data, self.data = self.data, b""
        return data

    def close(self) -> None:
        pass


def serve(html: Path, mathjax: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(type("Handler", (BookHandler,), {"mathjax": mathjax}), directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def internal_links(driver, html: Path) -> list[str]:
    """Links to files of the book that do not exist (resolved from the page actually shown,
    which for the root index.html is the page it redirects to)."""
    shown = html / unquote(urlparse(driver.current_url).path).lstrip("/")
    broken = []
    for href in driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"):
        if re.match(r"^(https?:|mailto:|#|javascript:)", href):
            continue
        target = (shown.parent / unquote(href.split("#")[0])).resolve()
        if href.split("#")[0] and not target.exists():
            broken.append(f"broken link: {href}")
    return broken


def link_targets(driver, html: Path) -> set[Path]:
    """The book's files that the page shown links to (links and form actions), and the page shown
    itself (which differs from the one asked for when that one redirects)."""
    shown = html / unquote(urlparse(driver.current_url).path).lstrip("/")
    hrefs = driver.execute_script(
        "return [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"
        ".concat([...document.querySelectorAll('form[action]')].map(f => f.getAttribute('action')))")
    return {shown.resolve()} | {(shown.parent / unquote(h.split("#")[0].split("?")[0])).resolve() for h in hrefs
                                if h.split("#")[0] and not re.match(r"^(https?:|mailto:|javascript:)", h)}


def unreachable(links: dict[Path, set[Path]], start: Path, pages: list[Path]) -> list[Path]:
    """The pages that following ``links`` (page -> pages it links to) from ``start`` never reaches."""
    seen, todo = {start}, [start]
    while todo:
        for target in links.get(todo.pop(), set()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return [page for page in pages if page not in seen]


def check_page(driver, base: str, html: Path, page: Path, shots: Path,
               links: dict[Path, set[Path]]) -> list[str]:
    relative = page.relative_to(html).as_posix()
    driver.set_window_size(1400, 1000)
    driver.get(f"{base}/{relative}")
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (window.MathJax && MathJax.startup) MathJax.startup.promise.then(() => done(true), () => done(false));"
        "else done(true);")
    findings = []
    text = driver.execute_script("return document.querySelector('main') ? document.querySelector('main').innerText"
                                 " : document.body.innerText")
    findings += [f"raw directive text {d!r}" for d in RAW_DIRECTIVES if d in text]
    if "NBVAL" in text:
        findings.append("visible nbval marker")
    findings += [f"file-system path in the text: {m}" for m in sorted(set(PATHS.findall(text)))[:5]]
    if driver.execute_script("return document.querySelectorAll('mjx-merror, .MathJax_Error').length"):
        findings.append("MathJax error")
    findings += driver.execute_script(WIDTH_CHECKS)
    findings += internal_links(driver, html)
    links[page] = link_targets(driver, html)
    findings += [f"console error: {e['message'][:160]}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    name = relative.replace("/", "_").removesuffix(".html")
    total = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(total, 16000))
    driver.save_screenshot(str(shots / f"{name}_1400.png"))
    driver.set_window_size(400, 1000)
    total = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(400, min(total, 16000))
    driver.save_screenshot(str(shots / f"{name}_400.png"))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--mathjax", type=Path, default=Path("_build/mathjax/node_modules/mathjax/es5"))
    parser.add_argument("--shots", type=Path, default=Path("_build/screenshots"))
    args = parser.parse_args(argv)
    if not (args.mathjax / "tex-mml-chtml.js").exists():
        print(f"no MathJax at {args.mathjax}: npm install --prefix _build/mathjax mathjax@3", file=sys.stderr)
        return 2
    args.shots.mkdir(parents=True, exist_ok=True)
    html = args.html.resolve()
    generated = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)
    pages = [p for p in generated if p.name != "search.html"]
    server, base = serve(html, args.mathjax.resolve())
    driver = browser()
    failed = 0
    links: dict[Path, set[Path]] = {}
    try:
        for page in pages:
            findings = check_page(driver, base, html, page, args.shots, links)
            status = "ok" if not findings else f"{len(findings)} finding(s)"
            print(f"{page.relative_to(html)}: {status}")
            for finding in findings:
                print(f"    {finding}")
            failed += bool(findings)
    finally:
        driver.quit()
        server.shutdown()
    print(f"{len(pages) - failed} passed, {failed} failed")
    lost = unreachable(links, html / "index.html", generated)
    for page in lost:
        print(f"{page.relative_to(html)}: no link from the book leads here")
    return 1 if failed or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
