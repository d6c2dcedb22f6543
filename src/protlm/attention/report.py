"""Self-contained HTML reports of the attention analyses (one file; plots embedded as PNG).

Each figure is also written beside the report as `<report stem>_<name>.png`. The page carries a
small script that marks `<body data-rendered="ok">` once every embedded image has decoded
(`broken:N` otherwise) and counts script errors in `data-errors`: the test opens the report in
headless Chromium and reads both marks.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np

from protlm.attention.sites import DIRECTIONS, SitesResult
from protlm.io.atomic import atomic_open, write_text

_ERRORS = "<script>window.protlmErrors = 0; window.addEventListener('error', function () { window.protlmErrors++; });</script>"
_CHECK = """<script>
window.addEventListener('load', function () {
  document.body.dataset.errors = window.protlmErrors;
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.body.dataset.rendered = broken ? 'broken:' + broken : 'ok';
  document.body.dataset.images = imgs.length;
});
</script>"""
_STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}img{max-width:100%}p.note{color:#555}
</style>"""


def _fig():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class Report:
    """Sections of HTML and figures, written as one file plus the PNGs."""

    def __init__(self, path: str | Path, title: str):
        self.path, self.title, self.parts = Path(path), title, []

    def text(self, heading: str | None, body: str) -> None:
        self.parts.append((f"<h2>{html.escape(heading)}</h2>" if heading else "") + body)

    def table(self, header: list[str], rows: list[list]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def figure(self, fig, name: str, caption: str) -> None:
        plt = _fig()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        png = buf.getvalue()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)  # names come from chain ids: never a path
        with atomic_open(self.path.with_name(f"{self.path.stem}_{safe}.png"), "wb") as fh:
            fh.write(png)
        data = base64.b64encode(png).decode()
        self.parts.append(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def write(self) -> Path:
        body = "\n".join(self.parts)
        page = (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"{_ERRORS}{_STYLE}</head><body><h1>{html.escape(self.title)}</h1>\n{body}\n{_CHECK}</body></html>\n"
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, page)
        return self.path


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def head_heatmap(values: np.ndarray, title: str, vmin: float = 0.3, vmax: float = 0.7):
    """(2, layers, heads) -> one panel per direction."""
    plt = _fig()
    n_layers, n_heads = values.shape[1:]
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.5 * n_heads * 2, 1.5 + 0.35 * n_layers), squeeze=False)
    for ax, d, v in zip(axes[0], DIRECTIONS, values, strict=True):
        im = ax.imshow(v, cmap="RdBu_r", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_title(f"{title}: {d} partner")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(n_heads), [str(h + 1) for h in range(n_heads)])
        ax.set_yticks(range(n_layers), [str(layer + 1) for layer in range(n_layers)])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return fig


def attention_heatmap(block: np.ndarray, rows: np.ndarray, cols: np.ndarray, title: str, labels: tuple[str, str]):
    """Residue x residue attention of one head, interface residues marked along both axes."""
    plt = _fig()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(block, cmap="viridis", aspect="auto", interpolation="nearest")
    for r in np.flatnonzero(rows):
        ax.plot(-2.5, r, "s", color="crimson", markersize=2.5, clip_on=False)
    for c in np.flatnonzero(cols):
        ax.plot(c, -2.5, "s", color="crimson", markersize=2.5, clip_on=False)
    ax.set_xlim(-4, block.shape[1] - 0.5)
    ax.set_ylim(block.shape[0] - 0.5, -4)
    ax.set_xlabel(f"residues of {labels[1]} (red: interface)")
    ax.set_ylabel(f"residues of {labels[0]} (red: interface)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def sites_report(path, result: SitesResult, model, structures: dict, reference: SitesResult | None = None) -> Path:
    """Per-head AUC heat map, held-out table, random baseline, attention maps of the selected heads."""
    from protlm.attention.structures import interface

    summary = result.summary()
    rep = Report(path, f"Attention and binding sites: {Path(result.model).name}")
    rep.text(
        None,
        f"<p>Model <code>{html.escape(result.model)}</code>; {summary['n_cases']} cases (chain against partner) from "
        f"{len(summary['complexes'])} complexes: {html.escape(', '.join(summary['complexes']))}. Head selection: "
        f"{html.escape(summary['selection'])}.</p>",
    )
    ref = reference.summary() if reference is not None else None
    rows = [*_headline_rows("model (held-out head)", summary),
            *(_headline_rows(f"reference {Path(reference.model).name} (held-out head)", ref) if ref else []),
            ["random scores, by complex", summary["random_auc_by_complex"]["mean"],
             summary["random_auc_by_complex"]["std"], summary["random_p_at_k"]["mean"]],
            ["random scores, pooled over cases", summary["random_auc"]["mean"], summary["random_auc"]["std"],
             summary["random_p_at_k"]["mean"]]]  # fmt: skip
    rep.text("Interface ROC-AUC", "<p>By complex: the mean over complexes of each complex's mean over its "
             "cases, every complex weighing the same (the headline). Pooled: the mean over all cases, where "
             "a complex with many chain pairs weighs more.</p>")  # fmt: skip
    rep.table(["scores", "AUC mean", "AUC std", "precision at k"], rows)
    rep.text("Per complex", "")
    rep.table(["complex", "cases", "held-out head", "AUC", "P@k", "random AUC"],
              [[c["complex"], c["n_cases"], c["head"], c["auc"], c["p_at_k"], c["random_auc"]]
               for c in summary["per_complex"]])  # fmt: skip
    mean, _ = result.per_head("auc")
    rep.figure(head_heatmap(mean, "mean AUC"), "head_auc", "Interface ROC-AUC of every head, mean over cases.")
    if reference is not None:
        rep.figure(head_heatmap(reference.per_head("auc")[0], "reference AUC"), "head_auc_reference",
                   "The same for the reference model.")  # fmt: skip
    rep.text("Held-out cases", "")
    rep.table(["case", "head", "AUC", "P@k", "k", "random AUC"],
              [[h["case"], h["head"], h["auc"], h["p_at_k"], h["k"], h["random_auc"]] for h in summary["held_out"]])  # fmt: skip
    shown = set()
    for h in summary["held_out"]:  # one map per complex: its first case, in the head selected for it
        cid, pair = h["case"].split(":")
        if cid in shown or cid not in structures:
            continue
        shown.add(cid)
        a, b = pair.split("-")
        st = structures[cid]
        _, layer, head = _parse_head(h["head"])
        att = model((st.chain(a).sequence, st.chain(b).sequence), h["case"], (a, b))
        ia, ib = interface(st.chain(a), st.chain(b))
        title = f"{cid}: {a} -> {b}, layer {layer + 1} head {head + 1}"
        rep.figure(attention_heatmap(att.block(0, 1)[layer, head], ia, ib, title, (a, b)), f"attention_{cid}_{a}{b}",
                   f"Attention from residues of {a} to residues of {b} in the head selected for {h['case']}.")  # fmt: skip
    return rep.write()


def _headline_rows(name: str, summary: dict) -> list[list]:
    """A model's held-out AUC by complex (the headline) and pooled over cases."""
    return [[f"{name}, by complex", summary["held_out_auc_by_complex"]["mean"],
             summary["held_out_auc_by_complex"]["std"], summary["held_out_p_at_k_by_complex"]["mean"]],
            [f"{name}, pooled over cases", summary["held_out_auc"]["mean"], summary["held_out_auc"]["std"],
             summary["held_out_p_at_k"]["mean"]]]  # fmt: skip


def _parse_head(name: str) -> tuple[int, int, int]:
    d, lh = name.split()
    layer, head = lh[1:].split("H")
    return DIRECTIONS.index(d), int(layer) - 1, int(head) - 1


def contacts_report(path, title: str, chains: list[tuple[str, np.ndarray, np.ndarray, dict]], note: str) -> Path:
    """Per chain (name, scores, true contacts, precision table): the table and a map with the top-L
    predicted pairs (upper triangle, red where true) against the true contacts (lower triangle)."""
    from protlm.attention.contacts import pair_mask

    plt = _fig()
    rep = Report(path, f"Contacts from attention: {title}")
    rep.text(None, f"<p>{html.escape(note)}</p>")
    rep.table(["chain", "L", "range", "P@L", "P@L/2", "P@L/5"],
              [[name, len(scores), r, *t.values()] for name, scores, _, table in chains for r, t in table.items()])  # fmt: skip
    for name, scores, contacts, _ in chains:
        n = len(scores)
        mask = pair_mask(n)
        top = np.zeros((n, n), dtype=bool)
        if mask.any():
            cut = np.sort(scores[mask])[::-1][min(n, int(mask.sum())) - 1]
            top = mask & (scores >= cut)
        img = np.where(np.triu(np.ones((n, n), bool), 1), top, np.tril(contacts, -1)).astype(float)
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(img, cmap="Greys", interpolation="nearest")
        ii, jj = np.nonzero(top & contacts)
        ax.plot(jj, ii, "s", color="crimson", markersize=1.5)
        ax.set_title(f"{name}: top-L predicted (upper, red = true) vs true contacts (lower)")
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)
        rep.figure(fig, f"contacts_{safe}", f"{name}: predicted (upper triangle) against true Cbeta < 8 A (lower).")
    return rep.write()
