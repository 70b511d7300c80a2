"""The summary of a generated world: sizes, label rates, and the oracle's AUC.

The oracle scores every impression with its true probability, so its AUC on the evaluation
days is the ceiling for any model trained on this world; it is reported overall, on new
(cold) items launched within ``new_item_days`` of the impression, and on the other (warm) ones.
"""
from __future__ import annotations

import numpy as np

from ppm_tf.data.synthetic.catalog import Catalog
from ppm_tf.data.synthetic.config import WorldConfig
from ppm_tf.data.synthetic.impressions import DayLog
from ppm_tf.metrics import roc_auc


class WorldStats:
    """Accumulates label counts over all days and the oracle figures of the eval days."""

    def __init__(self, config: WorldConfig, catalog: Catalog):
        self.config = config
        self.catalog = catalog
        self.first_eval_day = config.pretrain_days + config.train_days
        self.impressions = self.requests = self.clicks = self.orders = 0
        self.expected_clicks = self.expected_orders = 0.0
        self.impressions_per_split = {"pretrain": 0, "train": 0, "eval": 0}
        self._eval_parts: list[tuple[np.ndarray, ...]] = []

    def _split_of(self, day: int) -> str:
        if day < self.config.pretrain_days:
            return "pretrain"
        return "train" if day < self.first_eval_day else "eval"

    def add_day(self, day: int, log: DayLog) -> None:
        self.impressions += len(log)
        self.requests += len(log) // self.config.impressions_per_request
        self.clicks += int(log.click.sum())
        self.orders += int(log.order.sum())
        self.expected_clicks += float(log.p_click.sum())
        self.expected_orders += float(log.p_order.sum())
        self.impressions_per_split[self._split_of(day)] += len(log)
        if day >= self.first_eval_day:
            is_new = day - self.catalog.launch_day[log.item] < self.config.new_item_days
            self._eval_parts.append((log.click, log.order, log.p_click, log.p_order, is_new))

    def summary(self, world: dict) -> dict:
        click, order, p_click, p_order, is_new = (np.concatenate(part)
                                                  for part in zip(*self._eval_parts))
        slices = {"overall": np.ones_like(is_new), "cold": is_new, "warm": ~is_new}
        oracle = {
            "click_auc": {name: roc_auc(click[rows], p_click[rows]) for name, rows in slices.items()},
            "order_auc": {name: roc_auc(order[rows], p_order[rows]) for name, rows in slices.items()},
        }
        return {
            "preset": world["preset"],
            "seed": world["seed"],
            "sizes": world["sizes"],
            "days": self.config.num_days,
            "impressions_per_split": dict(self.impressions_per_split),
            "click_rate": self.clicks / self.impressions,
            "order_rate": self.orders / self.impressions,
            "orders_per_click": self.orders / max(self.clicks, 1),
            "expected_click_rate": self.expected_clicks / self.impressions,
            "expected_order_rate": self.expected_orders / self.impressions,
            "eval_cold_share": float(is_new.mean()),
            "oracle_eval": oracle,
        }


def format_summary(summary: dict) -> str:
    """The table ``ppm generate`` prints."""
    sizes = summary["sizes"]
    splits = summary["impressions_per_split"]
    oracle = summary["oracle_eval"]
    lines = [
        f"synthetic world: preset={summary['preset']} seed={summary['seed']} "
        f"days={summary['days']}",
        f"  users {sizes['users']:,}  items {sizes['items']:,}  requests {sizes['requests']:,}  "
        f"impressions {sizes['impressions']:,}  queries {sizes['queries']:,}",
        f"  impressions per split: pretrain {splits['pretrain']:,}  train {splits['train']:,}  "
        f"eval {splits['eval']:,}",
        f"  click rate {summary['click_rate']:.4f} (oracle mean {summary['expected_click_rate']:.4f})"
        f"  order rate {summary['order_rate']:.4f}  orders per click "
        f"{summary['orders_per_click']:.3f}",
        f"  eval impressions on items launched within the last 7 days: "
        f"{summary['eval_cold_share']:.1%}",
        "  oracle AUC on eval days     overall   cold     warm",
    ]
    for task in ("click_auc", "order_auc"):
        values = oracle[task]
        lines.append(f"    {task:<25} {values['overall']:.4f}    {values['cold']:.4f}   "
                     f"{values['warm']:.4f}")
    return "\n".join(lines)
