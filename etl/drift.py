"""Schema drift: incoming field names against a source's mapping.

A mapped field that no longer arrives is matched to the closest new field by rapidfuzz;
confident matches are used (and reported as `renamed`), the rest are reported missing.
Fields that arrive but are neither mapped nor matched are reported as `new`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process


def normalise_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


@dataclass(frozen=True)
class Drift:
    kind: str  # renamed | missing | missing_required | new
    field: str
    matched_to: str = ""
    confidence: float | None = None
    message: str = ""


@dataclass
class MappingPlan:
    effective: dict[str, str]  # unified field -> incoming field name, for this run
    events: list[Drift] = field(default_factory=list)


def plan_mapping(
    *,
    mapping: dict[str, str],
    incoming: set[str],
    required: list[str],
    threshold: float,
    known: set[str] = frozenset(),
) -> MappingPlan:
    by_normal = {normalise_name(name): name for name in incoming}
    effective: dict[str, str] = {}
    events: list[Drift] = []
    claimed: set[str] = set()
    missing: list[tuple[str, str]] = []

    for unified, source_field in mapping.items():
        exact = by_normal.get(normalise_name(source_field))
        if exact is not None:
            effective[unified] = exact
            claimed.add(exact)
        else:
            missing.append((unified, source_field))

    for unified, source_field in missing:
        candidates = {normalise_name(name): name for name in incoming if name not in claimed}
        best = process.extractOne(normalise_name(source_field), list(candidates), scorer=fuzz.WRatio)
        if best is not None and best[1] >= threshold:
            matched = candidates[best[0]]
            effective[unified] = matched
            claimed.add(matched)
            similarity = f"similarity {best[1]:.0f}%"
            message = f"{source_field!r} is missing; using {matched!r} for {unified} ({similarity})"
            events.append(Drift("renamed", source_field, matched, round(best[1], 1), message))
            continue
        kind = "missing_required" if unified in required else "missing"
        hint = f"; closest was {candidates[best[0]]!r} at {best[1]:.0f}%" if best else ""
        events.append(
            Drift(
                kind,
                source_field,
                confidence=round(best[1], 1) if best else None,
                message=f"{source_field!r} (mapped to {unified}) is missing from the incoming items{hint}",
            )
        )
        effective[unified] = source_field  # absent: every item will lack it

    for name in sorted(incoming - claimed - set(known)):
        events.append(Drift("new", name, message=f"new field {name!r} is not mapped; it is kept in extra"))
    return MappingPlan(effective=effective, events=events)
