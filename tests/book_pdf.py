"""One PDF of the whole book, printed by Chromium from the built HTML (what `make pdf` runs).

    python tests/book_pdf.py [--html _build/html] [--out _build/pdf/book.pdf]

Every page of the table of contents is loaded in headless Chromium (the same browser, local
MathJax and small HTTP server as ``tests/browser_check.py``, so nothing is fetched from the
network), its equations are typeset, its folded solutions opened, its navigation hidden, and it
is printed to A4 with Chromium's own PDF printer; pypdf then joins the pages in the book's order
and adds a bookmark per page. Links between pages point at the published site.

Why this way: it needs only what the browser check already installs (Debian's chromium and
chromium-driver, npm's mathjax@3, pypdf), takes seconds per page, and prints exactly the
equations, figures and tables of the HTML book. Jupyter Book's LaTeX build would need a TeX
distribution of several GB and minutes per run.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from browser_check import browser, load, serve  # noqa: E402

import kdlib  # noqa: E402
from kdlib.course.editions import ROOT, toc_files  # noqa: E402

PRINT_CSS = """
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article, .prev-next-area,
.bd-footer, .bd-footer-article, .bd-footer-content, footer, .headerlink, .skip-link,
.search-button-field, #pst-back-to-top, .theme-switch-button, .dropdown-download-buttons,
.launch-buttons, .article-header-buttons { display: none !important; }
.bd-main, .bd-content, .bd-article-container, .bd-page-width, .bd-container, .bd-article {
  max-width: 100% !important; width: 100% !important; padding: 0 !important; margin: 0 !important; }
body { font-size: 10.5pt; }
pre, .output pre { white-space: pre-wrap !important; word-break: break-word; font-size: 8pt; }
table { max-width: 100% !important; font-size: 8pt; table-layout: auto; }
table td, table th { word-break: break-word; padding: 2px 4px !important; }
img, figure, svg { max-width: 100% !important; height: auto; break-inside: avoid; }
figure, table, .cell_output { break-inside: avoid; }
mjx-container[display="true"] { overflow: visible !important; }
h1, h2, h3 { break-after: avoid; }
"""

MM = 1 / 25.4  # inches per millimetre


def site_url(repository: str = kdlib.REPOSITORY) -> str:
    """The address GitHub Pages publishes the book at: https://<owner>.github.io/<name>/."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", repository)
    if match is None:
        raise ValueError(
            f"kdlib.REPOSITORY should be https://github.com/<owner>/<name>, not {repository}"
        )
    return f"https://{match.group(1)}.github.io/{match.group(2)}/"


def pages(html: Path, root: Path = ROOT) -> list[tuple[str, Path]]:
    """(source path, built HTML page) of every page, in the order of the table of contents."""
    found = []
    for source in toc_files(root):
        page = html / source.relative_to(root).with_suffix(".html")
        if not page.exists():
            raise FileNotFoundError(
                f"{page} is missing: build the book first (make book)"
            )
        found.append((source.relative_to(root).as_posix(), page))
    return found


def print_page(driver, url: str, base: str, site: str) -> tuple[bytes, str]:
    """The PDF of one page and its title (the page's first heading)."""
    load(driver, url, 1000)
    title = driver.execute_script(
        "const css = document.createElement('style'); css.textContent = arguments[0];"
        "document.head.appendChild(css);"
        "for (const a of document.querySelectorAll('a[href]'))"
        "  if (a.href.startsWith(arguments[1])) a.href = arguments[2] + a.href.slice(arguments[1].length);"
        "const h = document.querySelector('main h1, article h1, h1');"
        "return h ? h.textContent.replace(/[#¶]/g, '').trim() : document.title;",
        PRINT_CSS,
        base + "/",
        site,
    )
    pdf = driver.execute_cdp_cmd(
        "Page.printToPDF",
        {
            "paperWidth": 210 * MM,
            "paperHeight": 297 * MM,
            "marginTop": 15 * MM,
            "marginBottom": 15 * MM,
            "marginLeft": 15 * MM,
            "marginRight": 15 * MM,
            "printBackground": True,
            "preferCSSPageSize": False,
            "displayHeaderFooter": True,
            "headerTemplate": "<span></span>",
            "footerTemplate": (
                '<div style="font-size:8px;width:100%;text-align:center;color:#666">'
                f'{kdlib.__version__} &middot; <span class="title"></span> &middot; '
                '<span class="pageNumber"></span></div>'
            ),
        },
    )
    return base64.b64decode(pdf["data"]), title


def build_pdf(html: Path, out: Path, mathjax: Path) -> Path:
    """Print every page of the book at ``html`` and join them into ``out`` (atomically)."""
    from pypdf import PdfReader, PdfWriter

    if not (mathjax / "tex-mml-chtml.js").exists():
        raise FileNotFoundError(
            f"no MathJax at {mathjax}: npm install --prefix _build/mathjax mathjax@3"
        )
    found = pages(html)
    server, base = serve(html, mathjax.resolve())
    driver = browser()
    writer = PdfWriter()
    try:
        for source, page in found:
            data, title = print_page(
                driver, f"{base}/{page.relative_to(html).as_posix()}", base, site_url()
            )
            start = len(writer.pages)
            writer.append(PdfReader(io.BytesIO(data)))
            writer.add_outline_item(title=title, page_number=start)
            print(f"{source}: {len(writer.pages) - start} pages ({title})", flush=True)
    finally:
        driver.quit()
        server.shutdown()
    writer.add_metadata(
        {
            "/Title": "Exploring Knowledge Distillation",
            "/Subject": f"version {kdlib.__version__}",
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=out.parent, prefix=f".{out.name}.", suffix=".tmp", delete=False
    ) as handle:
        writer.write(handle)
    Path(handle.name).replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument(
        "--mathjax", type=Path, default=Path("_build/mathjax/node_modules/mathjax/es5")
    )
    parser.add_argument("--out", type=Path, default=Path("_build/pdf/book.pdf"))
    args = parser.parse_args(argv)
    try:
        out = build_pdf(args.html, args.out, args.mathjax)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
