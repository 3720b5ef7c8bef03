"""Schema drift: incoming field names against a source's mapping.

A mapped field that no longer arrives is matched to the closest new field by rapidfuzz;
confident matches are used (and reported as `renamed`), the rest are reported missing.
Fields that arrive but are neither mapped nor matched are reported as `new`. Every batch
of a run is checked (RunDrift), not only the first; each drift is reported once per run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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


MISSING_KINDS = ("missing", "missing_required")


class RunDrift:
    """The mapping of one run, for every shape of item it meets, in whichever batch.

    Items of one stream need not share their field names: a source may rename a field
    part-way (older items keep the old name) or leave empty fields out. Each distinct set
    of field names is compared with the mapping when it first appears and its items are
    read with the plan made for it, so a field renamed in batch 7 is matched in batch 7.
    Each drift is reported once per run: `renamed` per (field, match), `new` per field, and
    `missing` only when no item of a batch carries the field under any name (a field that
    some items leave out is not missing). Used by one thread only (the batch producer).
    """

    def __init__(
        self,
        *,
        mapping: dict[str, str],
        required: list[str],
        threshold: float,
        known: Iterable[str] = (),
        reported: Iterable[tuple[str, str, str]] | None = None,
    ):
        self.mapping = mapping
        self.required = required
        self.threshold = threshold
        self.known = frozenset(known)  # fields seen by earlier runs: not new any more
        self._plans: dict[frozenset[str], MappingPlan] = {}
        self._matched: set[str] = set()  # incoming names used for a renamed field this run
        # (kind, field, matched_to) already stored for this run, by this or an earlier slice.
        self._reported: set[tuple[str, str, str]] = set(reported or ())

    def effective(self, fields: frozenset[str]) -> dict[str, str]:
        """unified field -> incoming field name, for items with exactly these fields."""
        plan = self._plans.get(fields)
        if plan is None:
            plan = plan_mapping(
                mapping=self.mapping,
                incoming=set(fields),
                required=self.required,
                threshold=self.threshold,
                known=self.known,
            )
            self._plans[fields] = plan
        return plan.effective

    def batch_events(self, shapes: Iterable[frozenset[str]]) -> list[Drift]:
        """The drift of a batch whose items had these sets of fields (each passed to
        `effective` first), leaving out what this run has already reported."""
        plans = [self._plans[shape] for shape in shapes]
        present = {normalise_name(name) for shape in shapes for name in shape}
        renamed_here = {e.field for plan in plans for e in plan.events if e.kind == "renamed"}
        self._matched |= {e.matched_to for plan in plans for e in plan.events if e.kind == "renamed"}
        found: list[Drift] = []
        for plan in plans:
            for event in plan.events:
                if event.kind in MISSING_KINDS and (
                    normalise_name(event.field) in present or event.field in renamed_here
                ):
                    continue
                if event.kind == "new" and event.field in self._matched:
                    continue
                key = (event.kind, event.field, event.matched_to)
                if key not in self._reported:
                    self._reported.add(key)
                    found.append(event)
        return found
