"""Reading this process's Prometheus samples in tests: how much a series moved while a
block ran (counters are process-wide, so tests compare before and after)."""

from __future__ import annotations

from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Moved:
    """`with Moved() as moved: ...` then `moved("nexus_jobs_created_total", job_type="x")`."""

    def __init__(self) -> None:
        self._before: dict[str, float] = {}

    def __enter__(self) -> Moved:
        self._before = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in REGISTRY.collect()
            for s in family.samples
        }
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __call__(self, name: str, **labels: str) -> float:
        before = self._before.get((name, tuple(sorted(labels.items()))), 0.0)
        return sample(name, **labels) - before
