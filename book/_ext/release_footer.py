"""The book's footer: the release (kdlib's version), the git commit it was built from, and the
licences of the code (MIT, ``LICENSE``) and of the text and figures (CC BY 4.0,
``LICENSE-CONTENT``).

It fills the theme's ``extra_footer`` when the configuration is read, so every page of the HTML
book (and of the student edition, built from a copy of ``book/``) carries the same line.
"""

from __future__ import annotations

import html


def footer_html() -> str:
    """One line of HTML: version, commit and licences, linked to the repository."""
    try:
        import kdlib
        from kdlib.results import git_commit

        version, repository, commit = kdlib.__version__, kdlib.REPOSITORY, git_commit()
    except Exception:  # kdlib not importable: the footer still names the licences
        version, repository, commit = "unknown", "", "unknown"
    clean = commit.removesuffix("+dirty")
    ref = clean if clean != "unknown" else "main"
    if clean != "unknown" and repository:
        shown = f'<a href="{html.escape(repository)}/commit/{clean}">{clean[:7]}</a>'
        shown += " (with uncommitted changes)" if commit.endswith("+dirty") else ""
    else:
        shown = "unknown"

    def link(name: str, text: str) -> str:
        return (
            f'<a href="{html.escape(repository)}/blob/{ref}/{name}">{text}</a>'
            if repository
            else text
        )

    return (
        f"<p>Version {html.escape(version)}, commit {shown}. "
        f"Code: {link('LICENSE', 'MIT licence')}; text and figures: "
        f"{link('LICENSE-CONTENT', 'CC BY 4.0')}.</p>"
    )


def add_footer(app, config) -> None:
    options = dict(config.html_theme_options or {})
    options["extra_footer"] = footer_html()
    config.html_theme_options = options


def setup(app):
    app.connect("config-inited", add_footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
