"""Rating engine: price plans to exact charges, per record or vectorised in bulk, with rerating.

    catalog = load_catalog("catalog.yaml")          # validated once; errors name plan and field
    state = RatingState()                           # allowances across batches (persist it, see state.py)
    result = rate_usage(records, catalog, rated_at_ms=now, state=state)
    result.rated, result.failures                   # RatedUsage list, (index, reason) list

Money is ``Decimal`` at the edges and exact integers inside; never a float.
"""

from rating.catalog import Catalog, Plan, Subscription, load_catalog, parse_catalog
from rating.engine import AMOUNT_SCALE, decimal_amounts, rate_columns, rate_usage, rated_from_columns
from rating.errors import CatalogError, ColumnsError, RatingError
from rating.rated import RatingResult
from rating.recurring import RecurringFee, recurring_fees
from rating.reference import rate_reference
from rating.rerate import AccountDifference, RerateResult, rerate
from rating.state import PeriodCounters, RatingState, state_key

__all__ = [
    "AMOUNT_SCALE",
    "AccountDifference",
    "Catalog",
    "CatalogError",
    "ColumnsError",
    "PeriodCounters",
    "Plan",
    "RatingError",
    "RatingResult",
    "RatingState",
    "RecurringFee",
    "RerateResult",
    "Subscription",
    "decimal_amounts",
    "load_catalog",
    "parse_catalog",
    "rate_columns",
    "rate_reference",
    "rate_usage",
    "rated_from_columns",
    "recurring_fees",
    "rerate",
    "state_key",
]
