"""The report page's HTML: escaping and number formatting, the building blocks, the style sheet and
the page itself (inline style, images as ``data:`` URIs, a Content-Security-Policy that forbids
loading anything from elsewhere)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(x: Any) -> str:
    return html.escape(str(x))


def fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, spec)
    return esc(v)


def fmt_ci(v: Any, ci: Any, spec: str = ".4f") -> str:
    if ci is None or not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return fmt(v, spec)
    return f'{fmt(v, spec)} <span class="ci">[{fmt(ci[0], spec)}, {fmt(ci[1], spec)}]</span>'


def not_run(what: str, why: str) -> str:
    return f'<p class="notrun"><strong>{esc(what)}: not run</strong> — {esc(why)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def figure(png: bytes | None, alt: str, caption: str = "", wide: bool = False) -> str:
    if png is None:
        return ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    cls = ' class="wide"' if wide else ""
    return f"<figure{cls}>{img_tag(png, alt)}{cap}</figure>"


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table from already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


STYLE = """
.warn{background:#fff4e5;border-left:4px solid #d9822b;padding:8px 12px}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
header{background:#1f3b57;color:#fff;padding:22px 28px}
header h1{margin:0 0 4px;font-size:24px} header p{margin:0;opacity:.85;font-size:14px}
nav{font-size:13px;margin:10px 0 0} nav a{color:#cfe3ff;margin-right:14px}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:14px 20px;margin:18px 0}
h2{font-size:19px;margin:4px 0 12px;color:#1f3b57} h3{font-size:15px;margin:16px 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #e1e5ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6} table.metrics td{font-variant-numeric:tabular-nums}
table.nowrap td:not(:first-child){white-space:nowrap} .scroll{overflow-x:auto}
table.examples td{max-width:260px} .text{white-space:pre-wrap;word-break:break-word}
details summary{cursor:pointer;white-space:pre-wrap}
.ci{color:#5b6672;font-size:12px} .small{color:#5b6672;font-size:12px}
.notrun{color:#6b5b00;background:#fff8db;border:1px solid #f0e1a0;padding:8px 12px;border-radius:6px}
.grid{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;flex:1 1 520px} figure.wide{flex-basis:100%}
figure img{max-width:100%;height:auto;border:1px solid #eef0f2}
figcaption{font-size:12px;color:#5b6672;margin-top:2px}
ul.headline{padding-left:20px} ul.headline li{margin:6px 0}
.verdict{font-weight:600;padding:1px 6px;border-radius:4px}
.verdict.good{background:#dff5e3;color:#135c22} .verdict.bad{background:#fde2e1;color:#8a1c15}
.verdict.neutral{background:#eceff3;color:#3a4550} .role{color:#5b6672;font-size:12px}
pre{background:#f6f8fa;border:1px solid #e1e5ea;padding:10px;overflow:auto;font-size:12px}
"""


def render_page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "\n".join(section(a, t, b) for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p><nav>{nav}</nav></header>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
