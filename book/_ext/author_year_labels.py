"""Author-year labels in the bibliography, to match the author-year citations in the text.

sphinxcontrib-bibtex cites "Hinton et al., 2015" in the text (``bibtex_reference_style:
author_year``), but its default bibliography style labels the list "[HVD15]". This extension
registers a pybtex style, ``author_year``, whose labels read like the citations.
"""

from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


class AuthorYearLabelStyle(BaseLabelStyle):
    """"Surname, year", "Surname and Surname, year" or "Surname et al., year" ("n.d." without a year)."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            persons = entry.persons.get("author") or entry.persons.get("editor") or []
            surnames = [" ".join(name.render_as("text") for name in person.rich_last_names) for person in persons]
            if len(surnames) == 1:
                names = surnames[0]
            elif len(surnames) == 2:
                names = f"{surnames[0]} and {surnames[1]}"
            else:
                names = f"{surnames[0]} et al." if surnames else entry.key
            yield f"{names}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "author_year_labels"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year_labels", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
