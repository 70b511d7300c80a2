"""The replayed A/B test as text: a summary row per arm, then every metric with its 95% CI and
each arm's difference from the control. Reads ab.json's content only (no TensorFlow)."""
from __future__ import annotations

import textwrap

METRIC_LABELS = {"user_ctr": "user CTR", "user_cvr": "user CVR",
                 "clicks_per_request": "clicks/req", "orders_per_request": "orders/req",
                 "cold_share": "cold share", "cold_ctr": "cold CTR"}
TRANSPORT_NAMES = {"grpc": "gRPC", "rest": "REST"}
WIDTH = 100


def _value(value, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _interval(bounds, signed: bool = False) -> str:
    low, high = bounds
    if low is None:
        return "–"
    return f"[{_value(low, signed)}, {_value(high, signed)}]"


def _milliseconds(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _day_span(days: list[int]) -> str:
    return f"day {days[0]}" if len(days) == 1 else f"days {days[0]}-{days[-1]}"


def ab_table_lines(result: dict) -> list[str]:
    comparison = result["comparison"]
    control = comparison["control"]
    days = result["eval_days"]
    first_day, end_day = result["world_eval_days"]
    heading = (f"A/B test replayed through the served models: {result['requests']:,} requests "
               f"of {comparison['users']:,} users on {len(days)} of the {end_day - first_day} "
               f"eval days ({_day_span(days)}), pool {result['pool']}, "
               f"top {result['slots']} shown, served over "
               f"{TRANSPORT_NAMES.get(result['transport'], result['transport'])}. Expected "
               f"outcomes from the world's true probabilities. Not modelled: "
               f"{result['not_modelled']}.")
    lines = [*textwrap.wrap(heading, WIDTH, break_on_hyphens=False),
             f"{'arm':<12}" + "".join(f"{label:>11}" for label in METRIC_LABELS.values())
             + f"{'errors':>11}{'p50 ms':>8}{'p99 ms':>8}"]
    for arm in result["arms"]:
        metrics = comparison["arms"][arm]
        errors = result["errors"][arm]
        latency = result["latency_ms"].get(arm, {})
        failed = f"{errors['failed_requests']:,}/{errors['requests']:,}"
        lines.append(f"{arm:<12}" + "".join(f"{_value(metrics[name]['value']):>11}"
                                             for name in METRIC_LABELS)
                     + f"{failed:>11}{_milliseconds(latency.get('p50')):>8}"
                     + f"{_milliseconds(latency.get('p99')):>8}")
    lines += ["", f"95% CIs (paired bootstrap over users, {comparison['resamples']:,} "
                  f"resamples); differences are arm - {control}",
              f"{'':<14}{'value':>8}  {'95% CI':<18}{'vs ' + control:>9} {'relative':>9}  "
              "95% CI"]
    for arm in result["arms"]:
        lines.append(arm)
        for name, label in METRIC_LABELS.items():
            metric = comparison["arms"][arm][name]
            difference = comparison["differences"].get(arm, {}).get(name)
            line = f"  {label:<12}{_value(metric['value']):>8}  {_interval(metric['ci']):<18}"
            if difference is not None:
                base = comparison["arms"][control][name]["value"]
                relative = (f"{difference['value'] / base:+.1%}" if base and
                            difference["value"] is not None else "–")
                line += (f"{_value(difference['value'], True):>9} {relative:>9}  "
                         f"{_interval(difference['ci'], True)}")
            lines.append(line.rstrip())
    for arm in result["arms"]:
        examples = result["errors"][arm]["examples"]
        if examples:
            lines.append(f"{arm} errors by code {result['errors'][arm]['by_code']}, e.g. "
                         f"{examples[0]}")
    if result.get("excluded_requests"):
        lines.append(f"{result['excluded_requests']:,} replayed requests are not in the "
                     "preprocessed eval split (dead-lettered) and were left out of every arm")
    return lines
