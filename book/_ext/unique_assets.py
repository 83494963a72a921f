"""Drop duplicate script tags from every page.

sphinx-thebe and sphinx-togglebutton add their inline configuration scripts once per
``env-before-read-docs`` event, and in this book's build they end up twice on each page; the
second ``const THEBE_JS_URL`` is a JavaScript error in the reader's console. This extension
keeps the first copy of each identical script.
"""

from __future__ import annotations


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
