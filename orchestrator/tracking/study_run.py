"""What the study's parent run holds: at the start the spec (flattened as params, and as
``spec.yaml``), sampler, scheduler and the Ray cluster; at the end the best configuration
(``best.*`` params), its metrics (``best.*`` metrics), ``best_config.yaml``, the trial counts, a
summary note and the study plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import yaml

from orchestrator.credentials import redact
from orchestrator.keys import Tag
from orchestrator.tracking import naming, records
from orchestrator.tracking.records import Record
from orchestrator.tracking.values import numeric, params
from orchestrator.training.lr_scaling import LR_SCALING_KEY

PARENT = naming.PARENT_REF


def cluster_info() -> dict[str, Any]:
    """Alive nodes, CPUs and GPUs of the Ray cluster this driver is connected to."""
    import ray

    if not ray.is_initialized():
        return {}
    resources = ray.cluster_resources()
    alive = [node for node in ray.nodes() if node.get("Alive")]
    return {"nodes": len(alive), "cpus": _whole(resources.get("CPU", 0)), "gpus": _whole(resources.get("GPU", 0))}


def _whole(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def config_view(spec: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A trial's configuration -> as its run shows it (``stepsize best``'s view: with
    ``lr_scaling`` on, the effective ``learning_rate`` and the rule)."""
    from orchestrator.training.lr_scaling import copyable_config

    rule, reference = spec.lr_scaling.rule, spec.lr_scaling.reference_batch_size
    return lambda config: copyable_config(config, rule, reference)


def parent_tags(spec: Any) -> dict[str, str]:
    return {
        Tag.WORKLOAD: str(spec.workload),
        Tag.SAMPLER: spec.sampler.name,
        Tag.SCHEDULER: spec.scheduler.name,
        Tag.OBJECTIVE: f"{spec.objective.metric} ({spec.objective.mode})",
    }


def start_records(spec: Any, cluster: dict[str, Any], staging: Path) -> list[Record]:
    """The spec as params and ``spec.yaml``; the cluster as ``ray.*`` params."""
    data = spec.to_dict(urls=redact)
    staging.mkdir(parents=True, exist_ok=True)
    spec_file = staging / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    values = params(data)
    values.update(params(cluster, "ray."))
    return [
        records.params(PARENT, values),
        records.tags(PARENT, {**parent_tags(spec), **{f"ray.{k}": str(v) for k, v in cluster.items()}}),
        records.artifact(PARENT, str(spec_file)),
    ]


def end_records(summary: Any, spec: Any, staging: Path, plot_files: list[Path], notes: list[str]) -> list[Record]:
    """Best configuration and metrics, counts, ``best_config.yaml``, plots and the summary note."""
    out: list[Record] = []
    counts = dict(summary.counts)
    count_metrics = {
        "trials.total": summary.total,
        "trials.complete": counts.get("COMPLETE", 0),
        "trials.pruned": counts.get("PRUNED", 0),
        "trials.failed": counts.get("FAIL", 0),
        "trials.diverged": summary.diverged,
    }
    out.append(records.metrics(PARENT, 0, count_metrics))
    tags = {Tag.NOTE: _note(summary, spec, notes)}
    if summary.best_number is not None:
        out.append(records.params(PARENT, params(summary.best_config, "best.")))
        best_metrics = {f"best.{k}": float(v) for k, v in summary.best_metrics.items() if numeric(v)}
        if summary.best_value is not None and math.isfinite(summary.best_value):
            best_metrics[f"best.{summary.metric}"] = float(summary.best_value)
        out.append(records.metrics(PARENT, 0, best_metrics))
        tags[Tag.BEST_TRIAL] = str(summary.best_number)
        out.append(records.tags(naming.trial_ref(summary.best_number), {Tag.BEST: "true"}))
        best_file = staging / "best_config.yaml"
        header = (f"# study {summary.name}: best trial {summary.best_number} "
                  f"({summary.metric} {summary.best_value:.6g}, mode {summary.mode})\n")
        if LR_SCALING_KEY in summary.best_config:
            header += (f"# learning_rate is the rate the trial trained at, for its batch size "
                       f"(lr_scaling {summary.best_config[LR_SCALING_KEY]}); train with it as it is\n")
        best_file.write_text(header + yaml.safe_dump(summary.best_config, sort_keys=False), encoding="utf-8")
        out.append(records.artifact(PARENT, str(best_file)))
    out.append(records.tags(PARENT, tags))
    out.extend(records.artifact(PARENT, str(path), "plots") for path in plot_files)
    if notes:
        notes_file = staging / "plots" / "skipped.txt"
        notes_file.parent.mkdir(parents=True, exist_ok=True)
        notes_file.write_text("\n".join(notes) + "\n", encoding="utf-8")
        out.append(records.artifact(PARENT, str(notes_file), "plots"))
    return out


def _note(summary: Any, spec: Any, notes: list[str]) -> str:
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.counts.items())) or "no trials"
    lines = [
        f"**Study {summary.name}**: {summary.total} trials ({states}"
        + (f"; {summary.diverged} diverged" if summary.diverged else "") + ").",
        f"Workload `{spec.workload}`, sampler `{spec.sampler.name}`, scheduler `{spec.scheduler.name}`, "
        f"objective {summary.metric} ({summary.mode}).",
    ]
    if summary.best_number is not None:
        lines.append(f"Best: trial {summary.best_number} ({naming.trial_run_name(summary.best_number)}), "
                     f"{summary.metric} {summary.best_value:.6g}; configuration in `best_config.yaml`.")
    else:
        lines.append("No trial completed, so there is no best configuration.")
    if notes:
        lines.append("Plots skipped: " + "; ".join(notes))
    return "\n\n".join(lines)
