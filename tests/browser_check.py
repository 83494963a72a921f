"""Open every page of the built book in headless Chromium and fail on what a reader would see.

    python tests/browser_check.py [--html _build/html] [--mathjax DIR] [--shots _build/screenshots]

The book is served on 127.0.0.1 by a small HTTP server that substitutes a local copy of MathJax 3
(the npm package ``mathjax@3``; ``--mathjax`` points at its folder) for the CDN, which may be
unreachable. Each page is loaded afresh at 1400 px and at 400 px wide (a phone), with every
collapsed solution and dropdown opened, and a page fails on:

* at both widths: an equation, table, image, figure, code output block or (at 1400 px) code
  block wider than the text column or scrolling sideways (at 400 px a code block may scroll
  sideways, as on every documentation site, but not pass the column); an inline formula that
  passes the column, or the block it sits in (a paragraph, a list item, a table cell, an
  exercise box), or is cut off by its box; a page that scrolls sideways; a console error;
* a MathJax error, or raw directive text (``{exercise}``, ``{solution``, ``:label:``);
* visible nbval markers, or an absolute file-system path in the page text;
* a broken internal link or a broken image;
* an image in the text that is not a numbered figure with a caption, or whose alt text is missing
  or a file name;
* a top bar above the page at 1400 px (the theme's header, which would hold only a second
  search field).

The book as a whole fails when a generated page cannot be reached by following links from the
first page (search.html counts as reached through the search form).

A screenshot of the whole page at each width (solutions open) is saved as
``<page>_1400.png`` and ``<page>_400.png``: the window is made as tall as the page, and a page
taller than Chromium's window allows is shot in slices that are joined into one image.

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
WIDTHS = (1400, 400)
"""The widths every page is checked at: a desktop screen and a phone."""
PHONE = 400
MAX_SHOT_HEIGHT = 24000
"""The tallest window used for a screenshot (px); taller pages are shot in slices this tall."""

OPEN_EVERYTHING = """
for (const details of document.querySelectorAll('details')) details.open = true;
for (const item of document.querySelectorAll('.toggle-hidden')) item.classList.remove('toggle-hidden');
"""
LAYOUT_DONE = """
const done = arguments[arguments.length - 1];
const fonts = document.fonts ? document.fonts.ready : Promise.resolve();
fonts.then(() => requestAnimationFrame(() => requestAnimationFrame(() => done(true))));
"""
STILL_PAGE = """
// For a screenshot in slices: headers and sidebars stay where they are at the top of the page
// instead of following each slice, and the back-to-top button is not shown.
for (const el of document.querySelectorAll('body *'))
  if (getComputedStyle(el).position === 'sticky') el.style.setProperty('position', 'static', 'important');
const back = document.getElementById('pst-back-to-top');
if (back) back.style.setProperty('display', 'none', 'important');
"""
BLOCK_CHECKS = r"""
const phone = arguments[0];
const column = document.querySelector('article.bd-article') || document.querySelector('main');
if (!column) return [];  // a redirect page
const outer = column.getBoundingClientRect(), padding = getComputedStyle(column);
const columnBox = {  // the text column: the article without its padding
  right: outer.right - parseFloat(padding.paddingRight),
  width: outer.width - parseFloat(padding.paddingLeft) - parseFloat(padding.paddingRight)};
const limit = columnBox.right + 1;
const px = (x) => Math.round(x) + ' px';
const cut = (text, n) => Array.from(text.replace(/\s+/g, ' ').trim()).slice(0, n).join('');
const sources = new Map();  // a formula's box -> its TeX source
if (window.MathJax && MathJax.startup && MathJax.startup.document)
  for (const item of MathJax.startup.document.math) sources.set(item.typesetRoot, item.math);
const heading = (el) => {  // where the block is: its exercise or solution, else its section
  const box = el.closest('.admonition');
  let title = box && box.querySelector('.admonition-title');
  for (let section = el.closest('section'); !title && section; section = section.parentElement.closest('section'))
    title = section.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
  return title ? ' [in "' + cut(title.innerText.replace(/[#¶]/g, ''), 40) + '"]' : '';
};
const describe = (el) => cut(sources.get(el) || el.innerText || el.getAttribute('alt')
                             || el.getAttribute('src') || '', 70) + heading(el);
const visible = (el) => el.getClientRects().length > 0 && el.getBoundingClientRect().width > 0;
const flagged = [];  // [element, finding]
const kinds = [
  ['display equation', 'mjx-container[display="true"]'],
  ['table', 'table'],
  ['image', 'img'],
  ['figure', 'figure'],
  ['code output', 'div.cell_output pre, div.cell_output div.output'],
  ['code block', 'div.cell_input pre, div.highlight pre'],
];
const seen = new Set();
for (const [kind, selector] of kinds) {
  for (const el of column.querySelectorAll(selector)) {
    if (seen.has(el) || !visible(el)) continue;
    seen.add(el);
    const box = el.getBoundingClientRect();
    const scrolls = el.scrollWidth > el.clientWidth + 2 && getComputedStyle(el).overflowX !== 'visible';
    if (box.right > limit)
      flagged.push([el, kind + ' wider than the column (' + px(box.width) + ' in '
                        + px(columnBox.width) + '): ' + describe(el)]);
    else if (scrolls && !(phone && kind === 'code block'))  // on a phone, code may scroll
      flagged.push([el, kind + ' scrolls sideways (' + px(el.scrollWidth) + ' in '
                        + px(el.clientWidth) + '): ' + describe(el)]);
  }
}
for (const el of column.querySelectorAll('mjx-container:not([display="true"])')) {
  if (!visible(el)) continue;
  const box = el.getBoundingClientRect();
  let clipped = false;
  for (let box2, a = el.parentElement; a && a !== column.parentElement; a = a.parentElement) {
    if (getComputedStyle(a).overflowX === 'visible') continue;
    box2 = a.getBoundingClientRect();
    if (box.right > box2.right + 1 || box.left < box2.left - 1) { clipped = true; break; }
  }
  const formula = cut(sources.get(el) || el.textContent, 70);
  // the block the formula sits in (a paragraph, a list item, a table cell, an exercise box),
  // whose right edge inside its padding can lie left of the column's
  let block = el.parentElement;
  while (block && block !== column && getComputedStyle(block).display.startsWith('inline')) block = block.parentElement;
  const blockBox = block.getBoundingClientRect(), blockStyle = getComputedStyle(block);
  const blockRight = blockBox.right - parseFloat(blockStyle.paddingRight) - parseFloat(blockStyle.borderRightWidth);
  if (box.right > limit)
    flagged.push([el, 'inline formula passes the column (' + px(box.width) + ' wide): ' + formula + heading(el)]);
  else if (box.right > blockRight + 1)
    flagged.push([el, 'inline formula passes its ' + block.tagName.toLowerCase() + ' by '
                      + px(box.right - blockRight) + ': ' + formula + heading(el)]);
  else if (clipped)
    flagged.push([el, 'inline formula cut off (' + px(box.width) + ' wide): ' + formula + heading(el)]);
}
// Report the innermost block only: a wide table, not also the output box that holds it.
const found = flagged.filter(([el]) => !flagged.some(([other]) => other !== el && el.contains(other)))
    .map(([, finding]) => finding);
const page = document.scrollingElement;
if (page.scrollWidth > window.innerWidth + 1)
  found.push('the page scrolls sideways (' + px(page.scrollWidth) + ' in a ' + px(window.innerWidth) + ' window)');
return found;
"""
PAGE_CHECKS = r"""
const column = document.querySelector('article.bd-article') || document.querySelector('main');
if (!column) return [];  // a redirect page
const found = [];
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


def load(driver, url: str, width: int) -> None:
    """Load ``url`` afresh in a window ``width`` px wide, wait for MathJax, open every collapsed
    solution and dropdown, and wait for the layout to settle."""
    driver.set_window_size(width, 1000)
    driver.get(url)
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (window.MathJax && MathJax.startup) MathJax.startup.promise.then(() => done(true), () => done(false));"
        "else done(true);")
    driver.execute_script(OPEN_EVERYTHING)
    driver.execute_async_script(LAYOUT_DONE)


def screenshot(driver, width: int, path: Path) -> None:
    """Save the whole page as one image: the window is made as tall as the page (at most
    ``MAX_SHOT_HEIGHT``), and a taller page is shot in slices, scrolled one window at a time
    and joined."""
    import base64
    import io

    def shot() -> bytes:
        reply = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True})
        return base64.b64decode(reply["data"])

    driver.execute_script(STILL_PAGE)
    height, chrome = driver.execute_script(
        "return [document.scrollingElement.scrollHeight, window.outerHeight - window.innerHeight]")
    driver.set_window_size(width, min(height + chrome, MAX_SHOT_HEIGHT))
    driver.execute_async_script(LAYOUT_DONE)
    height, view = driver.execute_script(
        "return [document.scrollingElement.scrollHeight, window.innerHeight]")
    if height <= view:
        path.write_bytes(shot())
        return
    from PIL import Image

    image = None
    for top in range(0, height, view):
        driver.execute_script("window.scrollTo(0, arguments[0])", top)
        driver.execute_async_script(LAYOUT_DONE)
        shown = driver.execute_script("return window.scrollY")
        part = Image.open(io.BytesIO(shot())).convert("RGB")
        scale = part.height / view  # device pixels per CSS pixel
        if image is None:
            image = Image.new("RGB", (part.width, round(height * scale)), "white")
        image.paste(part, (0, round(shown * scale)))
    image.save(path, compress_level=1)


def check_page(driver, base: str, html: Path, page: Path, shots: Path,
               links: dict[Path, set[Path]]) -> list[str]:
    """What a reader of ``page`` would see wrong, at each of ``WIDTHS``; saves its screenshots
    and records the pages it links to in ``links``."""
    relative = page.relative_to(html).as_posix()
    name = relative.replace("/", "_").removesuffix(".html")
    findings = []
    for width in WIDTHS:
        load(driver, f"{base}/{relative}", width)
        found = driver.execute_script(BLOCK_CHECKS, width <= PHONE)
        if width == WIDTHS[0]:  # what does not depend on the width, once
            text = driver.execute_script(
                "return document.querySelector('main') ? document.querySelector('main').innerText"
                " : document.body.innerText")
            found += [f"raw directive text {d!r}" for d in RAW_DIRECTIVES if d in text]
            if "NBVAL" in text:
                found.append("visible nbval marker")
            found += [f"file-system path in the text: {m}" for m in sorted(set(PATHS.findall(text)))[:5]]
            if driver.execute_script("return document.querySelectorAll('mjx-merror, .MathJax_Error').length"):
                found.append("MathJax error")
            found += driver.execute_script(PAGE_CHECKS)
            found += internal_links(driver, html)
            links[page] = link_targets(driver, html)
        found += [f"console error: {e['message'][:160]}" for e in driver.get_log("browser")
                  if e["level"] == "SEVERE"]
        findings += [f"at {width} px: {finding}" for finding in found]
        screenshot(driver, width, shots / f"{name}_{width}.png")
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
