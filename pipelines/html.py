"""Self-contained HTML pages (the model card, the version comparison): inline CSS, pictures embedded as
base64 data URIs, no scripts and no external references, so a page opens offline, attached to a mail
or as an MLflow artifact, exactly as it was written."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Iterable

from ganmodels.io import atomic_write

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.status { display: inline-block; padding: 0.1rem 0.6rem; border-radius: 1rem; color: white; font-weight: 600; }
.status.registered { background: #1a7f37; } .status.rejected { background: #bf8700; }
.status.failed { background: #cf222e; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; vertical-align: top; }
figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #d0d7de; }
figcaption { font-size: 0.85rem; color: #57606a; max-width: 520px; }
.grid { display: flex; flex-wrap: wrap; gap: 0.5rem; } .grid figure img { width: 200px; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 1rem; }
code, pre { background: #f6f8fa; font-size: 0.85rem; } pre { padding: 0.6rem; overflow-x: auto; }
ul.summary { background: #f6f8fa; padding: 0.8rem 0.8rem 0.8rem 2rem; border-radius: 6px; }
""".strip()


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(path: str | os.PathLike, mime: str = "image/png") -> str:
    """The file's bytes as a data: URI, so the page needs nothing beside it."""
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def figure(path: str | os.PathLike, caption: str, alt: str | None = None) -> str:
    return (f'<figure><img src="{data_uri(path)}" alt="{escape(alt or caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], numeric: Iterable[int] = ()) -> str:
    """A table of pre-escaped cells (use ``escape`` on text); ``numeric`` columns are right-aligned."""
    numeric = set(numeric)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def verdict(passed: bool) -> str:
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def number(value: object) -> str:
    """A metric value as people read it: four significant digits, or the text when it is not a number."""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return escape(value if value is not None else "—")


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_page(text: str, path: str | os.PathLike) -> Path:
    """Atomic write: a reader (a browser, MLflow's upload) never sees half a page."""
    path = Path(path)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
