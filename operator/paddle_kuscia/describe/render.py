"""A Description as text for a terminal (colour optional) or as JSON for scripts. Pure."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .tree import FAILED, MISSING, OK, PROGRESSING, Description, Node

_COLOURS = {OK: "32", PROGRESSING: "33", MISSING: "33", FAILED: "31"}
_MARKS = {OK: "✓", PROGRESSING: "…", MISSING: "?", FAILED: "✗"}


def to_json(description: Description) -> str:
    return json.dumps(dataclasses.asdict(description), indent=2, sort_keys=False)


class _Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def state(self, text: str, state: str) -> str:
        return self.paint(text, _COLOURS.get(state, "0"))

    def bold(self, text: str) -> str:
        return self.paint(text, "1")


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]


def _fields(d: Description) -> list[str]:
    f = d.fields
    lines = []
    generation = f.get("generation")
    observed = f.get("observedGeneration")
    head = []
    if f.get("backend"):
        head.append(f"Backend: {f['backend']}")
    if f.get("phase"):
        head.append(f"Phase: {f['phase']}")
    if generation is not None:
        head.append(f"Generation: {generation} (status observed {observed if observed is not None else '-'})")
    if head:
        lines.append("   ".join(head))
    if f.get("url"):
        lines.append(f"URL: {f['url']}")
    for t in f.get("traffic") or []:
        url = f"  {t['url']}" if t.get("url") else ""
        lines.append(f"Traffic: {t.get('tag') or '-'} {t.get('percent', 0)}% -> {t.get('revisionName')}{url}")
    if f.get("replicas") is not None:
        lines.append(f"Replicas: {f['replicas']}")
    kuscia: dict[str, Any] = f.get("kuscia") or {}
    if kuscia:
        lines.append(f"Kuscia serving: {kuscia.get('servingId', '')}  state {kuscia.get('state') or '-'}")
    if f.get("remoteId"):
        lines.append(
            f"Kuscia id: {f['remoteId']}" + (f"  via {f['connection']}" if f.get("connection") else "")
        )
    return lines


def _tree(
    node: Node, style: _Style, highlight: str | None, prefix: str = "", last: bool = True, top: bool = True
) -> list[str]:
    branch = "" if top else ("└─ " if last else "├─ ")
    mark = style.state(_MARKS.get(node.state, " "), node.state)
    ref = style.bold(node.ref) if node.ref == highlight else node.ref
    line = f"{prefix}{branch}{mark} {ref}  {node.summary}".rstrip()
    if node.ref == highlight:
        line += "  " + style.state("<-- first problem", FAILED)
    lines = [line]
    more = node.fields.get("olderRevisionsNotShown")
    child_prefix = prefix + ("" if top else ("   " if last else "│  "))
    for i, child in enumerate(node.children):
        if more and child.kind == "Route":  # after the revisions
            lines.append(f"{child_prefix}├─ ({more} older revisions not shown)")
        lines += _tree(child, style, highlight, child_prefix, i == len(node.children) - 1, False)
    return lines


def to_text(d: Description, *, colour: bool = False) -> str:
    style = _Style(colour)
    ready = next((c for c in d.conditions if c.get("type") == "Ready"), None)
    state = (
        OK
        if ready and ready.get("status") == "True"
        else FAILED
        if ready and ready.get("status") == "False"
        else PROGRESSING
    )
    head = f"{d.kind} {d.namespace}/{d.name}"
    if ready:
        head += "  " + style.state(f"Ready={ready.get('status')}", state) + f" ({ready.get('reason', '')})"
    else:
        head += "  " + style.state("no Ready condition", PROGRESSING)
    out = [style.bold(head) if not colour else head, *(f"  {line}" for line in _fields(d)), ""]
    out.append(style.bold("Conditions:"))
    if d.conditions:
        rows = [["TYPE", "STATUS", "REASON", "MESSAGE"]]
        rows += [
            [c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")]
            for c in d.conditions
        ]
        table = _table(rows)
        out.append("  " + table[0])
        for c, line in zip(d.conditions, table[1:], strict=True):
            cstate = {"True": OK, "False": FAILED}.get(c.get("status", ""), PROGRESSING)
            out.append("  " + (style.state(line, cstate) if cstate != OK else line))
    else:
        out.append("  (none)")
    out += ["", style.bold("Tree:")]
    highlight = d.finding.ref if d.finding else None
    out += [f"  {line}" for line in _tree(d.tree, style, highlight)]
    out += ["", style.bold("Diagnosis:")]
    if d.finding is None:
        out.append("  " + style.state("Nothing is wrong.", OK))
    else:
        f = d.finding
        out.append("  " + style.state(f"{_MARKS[f.severity]} {f.ref}: {f.problem}", f.severity))
        if f.advice:
            out.append(f"  What to do: {f.advice}")
    return "\n".join(out) + "\n"
