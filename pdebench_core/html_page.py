"""Self-contained HTML pages: shared by the leaderboard and the run report.

Pages carry their CSS (and, for tables that sort and filter, a short script) inline and load
nothing from the network, so a file opens anywhere, offline. Every value is escaped.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

BASE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d2430; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
h3 { font-size: 1rem; }
p.note { color: #4a5568; font-size: .9rem; max-width: 60rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .6rem 0 1rem; }
th, td { border-bottom: 1px solid #d9dee7; padding: .3rem .6rem; text-align: left; white-space: nowrap; }
th { background: #eef1f6; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.local td { background: #eaf7ee; }
table.sortable th { cursor: pointer; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
input.filter { font: inherit; padding: .3rem .5rem; width: 24rem; margin-top: 1rem; }
ul.sources { font-size: .85rem; color: #4a5568; }
"""

# Sorting: a click on a header sorts by that column (numbers as numbers, empty cells last),
# a second click reverses. Filtering: every word typed must appear in a row for it to stay.
INTERACTIVE_JS = """
(function () {
  function key(row, index) {
    var cell = row.cells[index];
    return cell ? (cell.getAttribute('data-value') || cell.textContent.trim()) : '';
  }
  function compare(a, b) {
    if (a === '' || b === '') { return (a === '') - (b === ''); }
    var x = parseFloat(a), y = parseFloat(b);
    if (!isNaN(x) && !isNaN(y)) { return x - y; }
    if (!isNaN(x) || !isNaN(y)) { return isNaN(x) ? 1 : -1; }
    return a.localeCompare(b);
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var headers = table.tHead.rows[0].cells, body = table.tBodies[0];
    Array.prototype.forEach.call(headers, function (th, index) {
      th.addEventListener('click', function () {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ka = key(a, index), kb = key(b, index);
          if (ka === '' || kb === '') { return compare(ka, kb); }
          return ascending ? compare(ka, kb) : compare(kb, ka);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('input.filter'), function (input) {
    var table = document.getElementById(input.getAttribute('data-table'));
    var counter = document.getElementById(input.getAttribute('data-counter'));
    input.addEventListener('input', function () {
      var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = row.textContent.toLowerCase();
        row.hidden = !words.every(function (word) { return text.indexOf(word) >= 0; });
        shown += row.hidden ? 0 : 1;
      });
      if (counter) { counter.textContent = shown + ' of ' + table.tBodies[0].rows.length + ' rows'; }
    });
  });
})();
"""


def esc(value: Any) -> str:
    """HTML-escaped text of a value (``None`` is empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: Sequence[str], css: str = "", script: str = "") -> str:
    """A complete HTML page: ``body`` parts (already HTML) after a heading, CSS and script inline."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
             f"<style>{BASE_CSS}{css}</style></head><body>", f"<h1>{esc(title)}</h1>", *body]
    if script:
        parts.append(f"<script>{script}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def looks_numeric(text: Any) -> bool:
    """Whether a cell's text starts with a number (it is then right-aligned)."""
    head = str(text).split(" ")[0]
    try:
        float(head)
        return True
    except ValueError:
        return False


def cell(value: Any, strong: bool = False, sort_value: Any = None) -> str:
    """One ``<td>``: floats to 4 significant digits, numbers right-aligned, ``sort_value`` as the
    key the sorting script uses."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = "" if value is None else str(value)
    inner = f"<strong>{esc(text)}</strong>" if strong and text else esc(text)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    attrs = ' class="num"' if number or looks_numeric(text) else ""
    if sort_value is not None:
        attrs += f' data-value="{esc(sort_value)}"'
    return f"<td{attrs}>{inner}</td>"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], css_class: str = "", table_id: str = "",
          row_classes: Sequence[str] | None = None) -> str:
    """A ``<table>`` of rows whose cells are already ``<td>`` HTML (see :func:`cell`)."""
    head = ("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>") if header else ""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    out = [f'<table class="{esc(css_class)}"{ident}>{head}<tbody>']
    if not rows and header:
        out.append(f'<tr><td colspan="{len(header)}">no results</td></tr>')
    for position, cells in enumerate(rows):
        kind = f' class="{esc(row_classes[position])}"' if row_classes else ""
        out.append(f"<tr{kind}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def filter_box(table_id: str, total: int) -> str:
    """A text box that filters the rows of table ``table_id`` (with :data:`INTERACTIVE_JS`)."""
    counter = f"{table_id}-count"
    return (f'<input class="filter" type="search" placeholder="filter rows: words that must all appear" '
            f'data-table="{esc(table_id)}" data-counter="{esc(counter)}"> '
            f'<span class="note" id="{esc(counter)}">{total} rows</span>')
