"""The one registry of the ablation rows: what each row reads, which splits it trains on,
whether its head starts from pre-training and whether it can be exported.

The CLI's choices, the demo, the evaluation and export derive from it. It imports no
TensorFlow, so ``ppm --help`` stays fast; ``ablations.py`` builds and trains the models.
"""
from __future__ import annotations

import dataclasses

# Model kinds (``ablations.build_model`` maps each to its Keras class).
IDREC, IDREC_WITH_ITEM_VECTOR, PLUG_IN_HEAD, UNIFIED, LOGISTIC_REGRESSION, COUNT_RATES = (
    "idrec", "idrec_with_item_vector", "plug_in_head", "unified", "logistic_regression",
    "count_rates")


@dataclasses.dataclass(frozen=True)
class AblationRow:
    name: str
    summary: str
    model: str  # one of the model kinds above
    splits: tuple[str, ...] = ("train",)
    cached_inputs: bool = False  # reads precompute's WORK/cached instead of WORK/examples
    head_from_pretraining: bool = False  # the plug-in head starts from `ppm pretrain`
    fine_tuned: bool = True  # False: scores eval as it starts (zero-shot), never fitted
    exportable: bool = False  # `ppm export` can serve it

    @property
    def required_stages(self) -> tuple[str, ...]:
        """The stages whose outputs training this row reads, earliest first
        (``WorkLayout.require_stages``; precompute runs only after pretrain)."""
        return ("preprocess", *(("pretrain",) if self.head_from_pretraining else ()),
                *(("precompute",) if self.cached_inputs else ()))


ROWS: dict[str, AblationRow] = {row.name: row for row in (
    AblationRow("base", "IDRec on the recent window (the paper's Base)", IDREC,
                exportable=True),
    AblationRow("qm_ep", "IDRec + the candidate's frozen ME vector as a feature",
                IDREC_WITH_ITEM_VECTOR, cached_inputs=True),
    AblationRow("ppm", "PPM alone: the pre-trained head on cached user states, fine-tuned",
                PLUG_IN_HEAD, cached_inputs=True, head_from_pretraining=True),
    AblationRow("ppm_zero_shot", "PPM alone, zero-shot: the pre-trained head as it is, "
                "not fine-tuned on the recent window", PLUG_IN_HEAD, cached_inputs=True,
                head_from_pretraining=True, fine_tuned=False),
    AblationRow("urm", "IDRec + PPM's plug-in head, end to end (the paper's URM)", UNIFIED,
                cached_inputs=True, head_from_pretraining=True, exportable=True),
    AblationRow("base_long", "IDRec on the long span: the iteration-efficiency baseline",
                IDREC, splits=("pretrain", "train")),
    AblationRow("lr", "the floor: logistic regression on the same features (ids one-hot, "
                "numeric features), one linear layer", LOGISTIC_REGRESSION),
    AblationRow("counts", "no learning: the user's and the item's smoothed rates over "
                "everything before the request, summed as logits (the count baseline)",
                COUNT_RATES, fine_tuned=False),
)}
MODELS = tuple(ROWS)
EXPORTABLE = tuple(name for name, row in ROWS.items() if row.exportable)


def ablation_row(name: str) -> AblationRow:
    if name not in ROWS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return ROWS[name]
