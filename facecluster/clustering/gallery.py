"""A static page of the people found: ``index.html`` beside ``faces.csv``, opened from disk without a server.

One row per person, largest first, with the face thumbnails (JPEG files in ``thumbs/`` beside the page, each linking
to its photo), the number of faces and the faces the model was least sure of marked; the people seen once come
last, in one compact block.

**Least sure** (:func:`membership_support`, :func:`least_sure`): a face's *support* is the strongest edge the model
keeps between it and another face of its person: the weight the model's graph rule gives Infomap (edge probability,
Top-K Jaccard and SDT, as the model file sets them; edges at or under the model's threshold are pruned), 0 when it has
none. Among the faces of people with two or more faces, the :data:`LEAST_SURE_FRACTION` (10%) with the weakest
support are marked: the faces most likely to belong to someone else.
"""
from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

__all__ = ["membership_support", "least_sure", "GalleryFace", "render_gallery", "LEAST_SURE_FRACTION",
           "LEAST_SURE_RULE"]

LEAST_SURE_FRACTION = 0.1
LEAST_SURE_RULE = ("a face is marked ? when its support, the strongest link the model keeps between it and "
                   "another face of its person (the edge weight given to Infomap), is among the weakest "
                   f"{LEAST_SURE_FRACTION:.0%} of the faces of people seen more than once")
MAX_SHOWN_PER_PERSON = 40      # thumbnails per row; the least sure ones are always among them
MAX_SHOWN_SINGLETONS = 2000


def membership_support(pipe, feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each face's support in its cluster: ``(N,)`` float32, the strongest kept edge weight between the face and
    another face with the same label (0 when none; identical faces support each other with 1).

    The weights are those of the model's graph rule on the kNN graph of the distinct faces (as
    :meth:`~clustering.pipeline.ClusteringPipeline.cluster` builds it), whatever made ``labels`` (a full run or
    :func:`~clustering.incremental.assign_new_faces`).

    Args:
        pipe: the :class:`~clustering.pipeline.ClusteringPipeline`.
        feats: ``(N, d)`` raw embeddings.
        labels: ``(N,)`` their cluster ids (identical faces must share one).
    """
    from .mapequation import knn_edges
    from .preprocess import preprocess, unique_rows
    from .refine import edge_weights

    n = feats.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    first, inverse = unique_rows(preprocess(feats, pipe.mean))
    support = np.zeros(len(first), dtype=np.float32)
    if len(first) > 1:
        x, nbrs, sims = pipe.graph_inputs(feats[first])
        k, pair_prob, p = pipe.scores(x, nbrs, sims, rule=pipe.graph)
        w = edge_weights(nbrs, sims, pipe.graph, k=k, pair_prob=pair_prob, jaccard_prob=p)
        rows, cols, ww = knn_edges(nbrs, w, pipe.graph.threshold)
        lab = np.asarray(labels)[first]
        same = lab[rows] == lab[cols]
        np.maximum.at(support, rows[same], ww[same])
        np.maximum.at(support, cols[same], ww[same])
    twins = np.bincount(inverse, minlength=len(first)) > 1
    support[twins] = np.maximum(support[twins], 1.0)
    return support[inverse]


def least_sure(support: np.ndarray, labels: np.ndarray, fraction: float = LEAST_SURE_FRACTION) -> np.ndarray:
    """``(N,)`` bool: among faces whose label is shared by another face, the ``fraction`` with the weakest support
    (``ceil(fraction * n)`` faces, and every face tied with the last of them)."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape[0], dtype=bool)
    if labels.size == 0:
        return out
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    grouped = np.flatnonzero(counts[inv] > 1)
    if grouped.size == 0 or fraction <= 0:
        return out
    m = min(grouped.size, math.ceil(fraction * grouped.size))
    cut = np.sort(support[grouped])[m - 1]
    out[grouped[support[grouped] <= cut]] = True
    return out


@dataclass
class GalleryFace:
    """One row of ``faces.csv`` as the page shows it. ``thumb``: the thumbnail's path relative to the page;
    ``photo``: the photo's path relative to the page (``None``: no link); ``file``: the name shown."""

    face_id: str
    file: str
    person: int
    support: float
    unsure: bool
    thumb: str
    photo: str | None


def _url(path: str) -> str:
    """A relative path as a URL (any character a file name may hold, percent-encoded)."""
    return quote(os.fsencode(path.replace(os.sep, "/")), safe=b"/")


def _text(s: str) -> str:
    """Text for the page: escaped, and a file name that is not valid UTF-8 shown with replacement characters."""
    return html.escape(os.fsencode(s).decode("utf-8", "replace"), quote=True)


def _figure(f: GalleryFace, small: bool = False) -> str:
    tip = f"{f.file}\nsupport {f.support:.3f}" + ("\nleast sure" if f.unsure else "")
    img = (f'<img src="{_url(f.thumb)}" alt="{_text(f.face_id)}" loading="lazy" '
           f'width="{56 if small else 96}" height="{56 if small else 96}">')
    mark = '<span class="mark">?</span>' if f.unsure else ""
    cls = "face unsure" if f.unsure else "face"
    body = f'{img}{mark}'
    if f.photo is not None:
        body = f'<a href="{_url(f.photo)}">{body}</a>'
    return f'<figure class="{cls}" title="{_text(tip)}" data-face="{_text(f.face_id)}">{body}</figure>'


_CSS = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em} .summary,.rule{color:#555;margin:.2em 0;max-width:70em}
section{margin:1.2em 0;padding:.6em .8em;background:#fff;border:1px solid #ddd;border-radius:6px}
h2{font-size:1.05em;margin:0 0 .5em} h2 .count{color:#666;font-weight:normal}
.faces{display:flex;flex-wrap:wrap;gap:4px} figure{position:relative;margin:0;line-height:0}
figure img{border-radius:4px;border:2px solid transparent;object-fit:cover}
figure.unsure img{border-color:#d33} .mark{position:absolute;top:2px;right:4px;background:#d33;color:#fff;
font:bold 12px/16px sans-serif;border-radius:8px;padding:0 5px} .more{color:#666;margin:.4em 0 0}
"""


def render_gallery(faces: list[GalleryFace], *, title: str, summary: list[str]) -> tuple[str, list[GalleryFace]]:
    """The page: ``(html text, the faces it shows)`` (the caller writes their thumbnails).

    People (faces sharing ``person``) with two or more faces come first, largest first (ties: smaller id first),
    each showing at most :data:`MAX_SHOWN_PER_PERSON` thumbnails, strongest support first, the least sure ones
    always among them; then every face seen once, in one block (at most :data:`MAX_SHOWN_SINGLETONS`)."""
    people: dict[int, list[GalleryFace]] = {}
    for f in faces:
        people.setdefault(f.person, []).append(f)
    order = sorted(people, key=lambda p: (-len(people[p]), p))
    shown: list[GalleryFace] = []
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_text(title)}</title>"
             f"<style>{_CSS}</style></head><body>\n<h1>{_text(title)}</h1>\n"]
    parts += [f'<p class="summary">{_text(line)}</p>\n' for line in summary]
    parts.append(f'<p class="rule">Least sure: {_text(LEAST_SURE_RULE)}. Every face, its box, support and '
                 f'person: <a href="faces.csv">faces.csv</a>.</p>\n')
    singles = [people[p][0] for p in order if len(people[p]) == 1]
    for p in order:
        members = people[p]
        if len(members) == 1:
            continue
        unsure = [f for f in members if f.unsure]
        ranked = sorted(members, key=lambda f: -f.support)
        room = max(MAX_SHOWN_PER_PERSON - len(unsure), 0)
        show = [f for f in ranked if not f.unsure][:room] + sorted(unsure, key=lambda f: -f.support)
        shown += show
        n_unsure = f", {len(unsure)} least sure" if unsure else ""
        parts.append(f'<section class="person" id="person-{p}" data-person="{p}" data-size="{len(members)}">'
                     f'<h2>Person {p} <span class="count">{len(members)} faces{n_unsure}</span></h2>\n'
                     f'<div class="faces">{"".join(_figure(f) for f in show)}</div>')
        if len(show) < len(members):
            parts.append(f'<p class="more">and {len(members) - len(show)} more (faces.csv)</p>')
        parts.append("</section>\n")
    if singles:
        show = singles[:MAX_SHOWN_SINGLETONS]
        shown += show
        parts.append(f'<section class="singletons" data-size="1" data-count="{len(singles)}">'
                     f'<h2>Seen once <span class="count">{len(singles)} people</span></h2>\n'
                     f'<div class="faces">{"".join(_figure(f, small=True) for f in show)}</div>')
        if len(show) < len(singles):
            parts.append(f'<p class="more">and {len(singles) - len(show)} more (faces.csv)</p>')
        parts.append("</section>\n")
    if not faces:
        parts.append('<p class="summary">No faces found.</p>\n')
    parts.append("</body></html>\n")
    return "".join(parts), shown
