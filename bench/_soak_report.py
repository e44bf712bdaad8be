"""The soak's figures: answer times per minute, RSS per process with its slope after the warm-up,
and the checks, each printed with its target the way the other benchmarks print theirs."""

from __future__ import annotations

from dataclasses import dataclass

from bench._soak_load import Answer, Samples

TARGET_SLOPE_MIB_PER_MIN = 2.0
# The processes held to the slope target; the sandbox, Temporal's dev server and PostgreSQL keep
# everything in memory or in caches by design (the sandbox its DM log, the dev server its
# in-memory database) and are shown for reference only.
HELD = ("api-1", "api-2", "worker-1", "worker-2")


@dataclass(frozen=True)
class Check:
    name: str
    shown: str
    target: str
    ok: bool


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of MiB over time, in MiB per minute (None under three points)."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (m - mean_m) for t, m in points)
    return 60 * cov / var


def is_5xx(answer: Answer) -> bool:
    return answer.status >= 500


def minute_table(answers: list[Answer], minutes: int) -> None:
    header = (
        f"{'min':>4}{'webhooks':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'reads':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'5xx':>5}{'no answer':>10}"
    )
    print(header)
    print("-" * len(header))
    for minute in range(minutes):
        here = [a for a in answers if minute * 60 <= a.at < (minute + 1) * 60]
        hooks = [a.ms for a in here if a.kind == "webhook"]
        reads = [a.ms for a in here if a.kind == "read"]
        print(
            f"{minute + 1:>4}{len(hooks):>9}{quantile(hooks, 0.5):>8.0f}"
            f"{quantile(hooks, 0.95):>8.0f}{quantile(hooks, 0.99):>8.0f}{len(reads):>7}"
            f"{quantile(reads, 0.5):>8.0f}{quantile(reads, 0.95):>8.0f}"
            f"{quantile(reads, 0.99):>8.0f}{sum(map(is_5xx, here)):>5}"
            f"{sum(1 for a in here if a.status == 0):>10}"
        )
    hooks = [a.ms for a in answers if a.kind == "webhook"]
    reads = [a.ms for a in answers if a.kind == "read"]
    print(
        f"{'all':>4}{len(hooks):>9}{quantile(hooks, 0.5):>8.0f}{quantile(hooks, 0.95):>8.0f}"
        f"{quantile(hooks, 0.99):>8.0f}{len(reads):>7}{quantile(reads, 0.5):>8.0f}"
        f"{quantile(reads, 0.95):>8.0f}{quantile(reads, 0.99):>8.0f}"
        f"{sum(map(is_5xx, answers)):>5}{sum(1 for a in answers if a.status == 0):>10}"
    )
    by_route: dict[str, list[float]] = {}
    for a in answers:
        if a.kind == "read":  # /api/v1/mkt-x/<route>/...
            by_route.setdefault(a.path.split("?")[0].split("/")[4], []).append(a.ms)
    print(
        "reads by route (p50 / p95 / p99 ms): "
        + ", ".join(
            f"{route} {quantile(v, 0.5):.0f} / {quantile(v, 0.95):.0f} / {quantile(v, 0.99):.0f}"
            for route, v in sorted(by_route.items())
        )
    )
    writes = [a.ms for a in answers if a.kind == "write"]
    if writes:
        print(
            f"writes (campaign start, enrolments): {len(writes)}, p50 "
            f"{quantile(writes, 0.5):.0f} ms, max {max(writes):.0f} ms"
        )


def rss_tables(samples: Samples, warmup: float, end: float) -> list[Check]:
    """Start, end, min, max and the slope after the warm-up per process; then RSS by minute."""
    header = (
        f"{'process':<10}{'start MiB':>10}{'end MiB':>9}{'max MiB':>9}"
        f"{'slope MiB/min':>15}{'samples':>9}   target"
    )
    print(header)
    print("-" * len(header))
    checks = []
    for name, points in samples.rss.items():
        after = [(t, m) for t, m in points if warmup <= t <= end]
        slope = slope_per_minute(after)
        held = name in HELD
        shown = f"{slope:+.2f}" if slope is not None else "n/a"
        verdict = "(shown)"
        if held:
            ok = slope is not None and slope < TARGET_SLOPE_MIB_PER_MIN
            verdict = f"< {TARGET_SLOPE_MIB_PER_MIN:.0f}  {'met' if ok else 'MISSED'}"
            checks.append(
                Check(f"RSS slope {name}", shown, f"< {TARGET_SLOPE_MIB_PER_MIN:.0f}", ok)
            )
        gone = f"  GONE at {samples.gone[name]:.0f}s" if name in samples.gone else ""
        print(
            f"{name:<10}{points[0][1]:>10.1f}{points[-1][1]:>9.1f}"
            f"{max(m for _, m in points):>9.1f}{shown:>15}{len(after):>9}   {verdict}{gone}"
        )
    for name in samples.pids:
        if name in samples.gone:
            checks.append(Check(f"{name} alive", "exited", "running", False))
    names = list(samples.rss)
    cached = list(samples.cached)
    print(
        "at the end of each minute: RSS (MiB) of "
        + ", ".join(names)
        + (f"; workflows cached by {', '.join(cached)}" if cached else "")
    )
    minutes = int(end // 60) + (1 if end % 60 > 1 else 0)
    for minute in range(1, minutes + 1):
        row = [_at(samples.rss[name], minute) for name in names]
        caches = [_at(samples.cached[name], minute) for name in cached]
        print(f"  {minute:>3}: " + " / ".join(row) + (f"; {' / '.join(caches)}" if caches else ""))
    return checks


def _at(points: list[tuple[float, float]], minute: int) -> str:
    """The last value sampled by the end of `minute`."""
    upto = [value for t, value in points if t <= minute * 60 + 1]
    return f"{upto[-1]:.0f}" if upto else "-"


def verdict(checks: list[Check]) -> int:
    for check in checks:
        print(
            f"{check.name:<34}{check.shown:>14}   target {check.target:<12} "
            f"{'met' if check.ok else 'MISSED'}"
        )
    met = all(check.ok for check in checks)
    print(f"targets: {'MET' if met else 'MISSED'}")
    return 0 if met else 1
