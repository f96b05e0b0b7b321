"""Statistics of the experiment report (scripts/report.py): errors summarised over seeds, the rule that calls a
difference between two experiments real, and the sentences derived from the numbers by fixed rules (no caffe
import).

Convention: every metric is an error, so lower is better. An experiment's figure for one seed is a statistic
(the mean, or the median) of its per-pair test errors; over S seeds it is summarised by the mean and the sample
standard deviation (ddof 1; 0 for a single seed). Two experiments a and b differ when the difference of their
seed means exceeds SIGNIFICANCE_SE standard errors of that difference (Welch's, unequal variances):

    se = sqrt(std_a^2 / S_a + std_b^2 / S_b),    a differs from b  <=>  |mean_a - mean_b| > 2 se,

i.e. when Welch's t statistic (scipy.stats.ttest_ind(a, b, equal_var=False)) exceeds 2 in magnitude. This is a
fixed threshold on t, not on a p-value: with 3 seeds per experiment (Welch's degrees of freedom between 2 and 4)
|t| = 2 corresponds to a two-sided p between 0.18 and 0.12. With a single seed on either side there is no
spread to compare against, and nothing counts as a difference.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

SIGNIFICANCE_SE = 2.0  # a difference counts when it exceeds this many standard errors


class SeedStats(NamedTuple):
    """One experiment's figure over seeds: per_seed (S,), their mean and sample standard deviation (ddof 1)."""

    per_seed: np.ndarray
    mean: float
    std: float


def seed_summary(values: Sequence[float]) -> SeedStats:
    """Mean and sample standard deviation (ddof 1, 0 for one seed) of one value per seed (S,)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"need one value per seed (S,) with S >= 1, got shape {v.shape}")
    return SeedStats(v, float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)


def seed_stats(errors: Mapping, names: Iterable[str], seeds: Sequence[int], metric: str,
               stat: Callable = np.mean) -> dict:
    """Summaries over seeds of each experiment's per-pair errors.

    Args:
        errors: {(experiment name, seed): {metric: per-pair errors (N,)}}.
        names: experiment names.
        seeds: the seeds to summarise.
        metric: which error.
        stat: how one seed's per-pair errors become one value (np.mean, np.median).

    Returns:
        {name: SeedStats of stat(errors[(name, seed)][metric]) over the seeds}.
    """
    return {name: seed_summary([stat(errors[(name, s)][metric]) for s in seeds]) for name in names}


def welch_standard_error(a: SeedStats, b: SeedStats) -> float:
    """Standard error of mean_a - mean_b with unequal variances: sqrt(std_a^2 / S_a + std_b^2 / S_b)."""
    return float(np.sqrt(a.std ** 2 / len(a.per_seed) + b.std ** 2 / len(b.per_seed)))


def significant(stats: Mapping[str, SeedStats], a: str, b: str) -> int:
    """Whether experiment a's error is lower or higher than b's beyond the seed spread.

    Args:
        stats: {name: SeedStats} of one metric.
        a, b: experiment names.

    Returns:
        -1 if a's seed mean is lower than b's by more than SIGNIFICANCE_SE Welch standard errors, +1 if higher by
        more than that, 0 otherwise (and always 0 when either has fewer than 2 seeds).
    """
    sa, sb = stats[a], stats[b]
    if len(sa.per_seed) < 2 or len(sb.per_seed) < 2:
        return 0
    diff = sa.mean - sb.mean
    if abs(diff) <= SIGNIFICANCE_SE * welch_standard_error(sa, sb):
        return 0
    return -1 if diff < 0 else 1


def compare(stats: Mapping[str, SeedStats], a: str, b: str, what: str, unit: str) -> str:
    """A sentence comparing experiment a with b on one metric: both seed means, the difference relative to b's
    mean, and the verdict of `significant` with the threshold (SIGNIFICANCE_SE standard errors) in `unit`."""
    sa, sb = stats[a], stats[b]
    diff = sa.mean - sb.mean
    threshold = SIGNIFICANCE_SE * welch_standard_error(sa, sb)
    relative_pct = 100 * diff / sb.mean if sb.mean > 0 else 0.0
    direction = significant(stats, a, b)
    unit = f" {unit}" if unit else ""  # (a ratio has none)
    if direction:
        verdict = (f"**{'lower' if direction < 0 else 'higher'}** (beyond {SIGNIFICANCE_SE:g} standard errors over "
                   f"seeds, {threshold:.3g}{unit})")
    else:
        verdict = f"not different beyond the seed spread ({SIGNIFICANCE_SE:g} standard errors: {threshold:.3g}{unit})"
    return f"{what}: {sa.mean:.3g} vs {sb.mean:.3g}{unit} ({relative_pct:+.0f}%), {verdict}"


def seeds_better(entry: SeedStats, baseline: float) -> int:
    """How many seeds have an error strictly lower than `baseline`."""
    return int(np.sum(entry.per_seed < baseline))


def best_baseline_means(baselines: Mapping[str, Mapping[str, np.ndarray]], metrics: Iterable[str]) -> dict:
    """{metric: the lowest mean error over the trivial baselines} (the better baseline for each metric).

    Args:
        baselines: {baseline name: {metric: per-pair errors (N,)}}.
        metrics: which metrics.
    """
    return {m: min(float(np.mean(errors[m])) for errors in baselines.values()) for m in metrics}


def conclusions(stats: Mapping[str, Mapping[str, SeedStats]], names: Sequence[str], best_baseline: Mapping[str, float],
                photometric: Iterable[str]) -> list[str]:
    """Statements derived from the numbers by fixed rules (so they stay true when the report is re-run).

    Args:
        stats: {metric: {name: SeedStats}} with at least "rotation_deg" and "translation_m".
        names: the experiments of the report, in table order (the rules use the report's experiment names:
            {late,early}_{imagenet,random}, late_imagenet_frozen, late_{imagenet,random}_correlation,
            late_imagenet_correlation_frozen).
        best_baseline: {metric: the better trivial baseline's mean error} (best_baseline_means).
        photometric: the names trained without the ground-truth pose.

    Returns:
        Markdown list items: ImageNet vs random initialisation per fusion (where both ran), frozen vs fine-tuned
        features (and frozen vs random, by correlation), the photometric experiments whose rotation error beats the
        better baseline in every seed, the experiments whose translation error does, and the ranking by mean rotation
        error (lowest first).
    """
    present = set(names)
    photometric = set(photometric)
    effect = {-1: "lowers", 1: "raises", 0: "does not measurably change"}
    relation = {-1: "lower", 1: "higher", 0: "no different"}
    rotation, translation = stats["rotation_deg"], stats["translation_m"]
    out = []
    for a, b, what in (("late_imagenet", "late_random", "Late fusion"),
                       ("early_imagenet", "early_random", "Early fusion"),
                       ("late_imagenet_correlation", "late_random_correlation", "Late fusion by correlation")):
        if a in present and b in present:
            r, t = significant(rotation, a, b), significant(translation, a, b)
            out.append(f"- {what}: ImageNet initialisation {effect[r]} the rotation error and "
                       f"{effect[t]} the translation error against random initialisation.")
    for a, b, what in (("late_imagenet_frozen", "late_imagenet", "Frozen ImageNet features (pose head only) against "
                        "fine-tuning, late fusion"),
                       ("late_imagenet_correlation_frozen", "late_imagenet_correlation", "Frozen ImageNet features "
                        "matched by correlation (what follows them learns) against fine-tuning"),
                       ("late_imagenet_correlation_frozen", "late_random_correlation", "Frozen ImageNet features "
                        "matched by correlation against the same net trained from random initialisation")):
        if {a, b} <= present:
            r, t = significant(rotation, a, b), significant(translation, a, b)
            out.append(f"- {what}: rotation {relation[r]}, translation {relation[t]}.")
    def in_every_seed(entry: SeedStats, baseline: float) -> bool:
        return seeds_better(entry, baseline) == len(entry.per_seed)

    beats_rotation = [n for n in names
                      if n in photometric and in_every_seed(rotation[n], best_baseline["rotation_deg"])]
    out.append("- Photometric experiments whose rotation error beats the better trivial baseline in every seed: "
               + (", ".join(beats_rotation) or "none") + ".")
    beats_translation = [n for n in names if in_every_seed(translation[n], best_baseline["translation_m"])]
    out.append("- Experiments whose translation error beats the better trivial baseline (the mean training pose for "
               "this driving motion) in every seed: " + (", ".join(beats_translation) or "none") + ".")
    ranked = sorted(names, key=lambda n: rotation[n].mean)
    out.append("- Ranked by rotation error: " + " < ".join(f"{n} ({rotation[n].mean:.2f})" for n in ranked) + ".")
    return out
