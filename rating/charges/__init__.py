"""Charge models, one module each, chosen by name from the catalog's ``model:`` field.

| name          | prices                                                                  |
| ------------- | ----------------------------------------------------------------------- |
| ``flat``      | a recurring fee per month for holding the subscription (not usage)      |
| ``per_unit``  | every chargeable unit at one price                                      |
| ``graduated`` | tiers, each pricing the units inside it, per record or per period       |
| ``volume``    | all units of a record at the price of the tier the total falls into     |
| ``package``   | a price per started block of N units                                    |
| ``time_of_day``| a price per time band (peak, off-peak, weekend, holiday)               |
| ``zone``      | the longest matching destination prefix picks a zone (and band) price   |

Modifiers that any usage model accepts live beside them: :mod:`rating.charges.allowance`
(``included`` units free per period) and :mod:`rating.charges.fees` (``connect_fee``, ``minimum``);
billing increments are in :mod:`rating.units`. A new model registers with :func:`register_model`.
"""

from __future__ import annotations

from rating.charges import flat, graduated, package, per_unit, time_of_day, volume, zone
from rating.charges.base import (
    ChargeModel,
    LineArrays,
    LineQuantities,
    ParseContext,
    PartArrays,
    Pricing,
    Rate,
    RecurringCharge,
    UsageCharge,
)

CHARGE_MODELS: dict[str, ChargeModel] = {}


def register_model(model: ChargeModel) -> None:
    """Make ``model`` selectable as ``model: <model.name>`` in a catalog."""
    if model.name in CHARGE_MODELS:
        raise ValueError(f"charge model {model.name!r} registered twice")
    CHARGE_MODELS[model.name] = model


for _module in (flat, per_unit, graduated, volume, package, time_of_day, zone):
    register_model(_module.MODEL)

__all__ = [
    "CHARGE_MODELS",
    "ChargeModel",
    "LineArrays",
    "LineQuantities",
    "ParseContext",
    "PartArrays",
    "Pricing",
    "Rate",
    "RecurringCharge",
    "UsageCharge",
    "register_model",
]
