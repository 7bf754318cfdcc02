"""Price-plan catalog: loaded from YAML, validated once, with errors that name the plan and field."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")

UNIT_BYTES = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
ROUNDING_MODES = {"ROUND_HALF_EVEN", "ROUND_HALF_UP", "ROUND_UP", "ROUND_DOWN", "ROUND_CEILING", "ROUND_FLOOR"}


class CatalogError(ValueError):
    """The catalog is invalid; ``where`` names the plan and field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class Charge:
    model: str
    unit: str
    price: Decimal


@dataclass(frozen=True)
class Plan:
    name: str
    version: int
    effective_from_ms: int
    currency: str
    rounding: str
    charges: tuple[Charge, ...]


@dataclass(frozen=True)
class Subscription:
    plan: str
    from_ms: int
    account: str | None = None
    account_prefix: str | None = None

    def matches(self, account: str) -> bool:
        if self.account is not None:
            return account == self.account
        return self.account_prefix is not None and account.startswith(self.account_prefix)


@dataclass(frozen=True)
class Catalog:
    plans: tuple[Plan, ...]
    subscriptions: tuple[Subscription, ...]
    scale: int = 6  # decimal places kept on amounts (ClickHouse Decimal(18, 6))
    _by_name: dict[str, list[Plan]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for plan in self.plans:
            self._by_name.setdefault(plan.name, []).append(plan)
        for versions in self._by_name.values():
            versions.sort(key=lambda p: p.effective_from_ms)

    def plan_for(self, account: str, at_ms: int) -> Plan | None:
        """The plan version in force for ``account`` at ``at_ms``, or None."""
        subscription = None
        for sub in self.subscriptions:
            if sub.matches(account) and sub.from_ms <= at_ms and (
                subscription is None or sub.from_ms >= subscription.from_ms
            ):
                subscription = sub
        if subscription is None:
            return None
        chosen = None
        for plan in self._by_name.get(subscription.plan, ()):
            if plan.effective_from_ms <= at_ms:
                chosen = plan
        return chosen


def _date_ms(value: Any, where: str) -> int:
    try:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    except ValueError:
        raise CatalogError(where, f"not an ISO date: {value!r}") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, float):
        raise CatalogError(where, f"write money as a quoted string, not a float: {value!r}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise CatalogError(where, f"not a decimal amount: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise CatalogError(where, f"must be a finite, non-negative amount: {value!r}")
    return result


def parse_catalog(doc: dict[str, Any]) -> Catalog:
    """Validate a catalog document (as loaded from YAML)."""
    if not isinstance(doc, dict):
        raise CatalogError("catalog", "must be a mapping with 'plans' and 'subscriptions'")
    default_currency = doc.get("currency", "EUR")
    plans = []
    for i, raw in enumerate(doc.get("plans") or []):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"plans[{i}]" + (f" ({name})" if name else "")
        if not name:
            raise CatalogError(where, "plan needs a 'name'")
        currency = str(raw.get("currency", default_currency))
        if len(currency) != 3:
            raise CatalogError(f"{where}.currency", f"not an ISO 4217 code: {currency!r}")
        rounding = str(raw.get("rounding", ROUND_HALF_EVEN))
        if rounding not in ROUNDING_MODES:
            raise CatalogError(f"{where}.rounding", f"one of {sorted(ROUNDING_MODES)}, not {rounding!r}")
        charges = []
        for j, ch in enumerate(raw.get("charges") or []):
            cwhere = f"{where}.charges[{j}]"
            model = ch.get("model")
            if model != "per_unit":
                raise CatalogError(f"{cwhere}.model", f"unknown charge model {model!r} (known: per_unit)")
            unit = ch.get("unit", "GB")
            if unit not in UNIT_BYTES:
                raise CatalogError(f"{cwhere}.unit", f"one of {sorted(UNIT_BYTES)}, not {unit!r}")
            charges.append(Charge(model, unit, _decimal(ch.get("price"), f"{cwhere}.price")))
        if not charges:
            raise CatalogError(where, "plan has no charges")
        plans.append(
            Plan(
                name=name,
                version=int(raw.get("version", 1)),
                effective_from_ms=_date_ms(raw.get("effective_from", "1970-01-01"), f"{where}.effective_from"),
                currency=currency,
                rounding=rounding,
                charges=tuple(charges),
            )
        )
    names = {p.name for p in plans}
    subs = []
    for i, raw in enumerate(doc.get("subscriptions") or []):
        where = f"subscriptions[{i}]"
        if raw.get("plan") not in names:
            raise CatalogError(f"{where}.plan", f"unknown plan {raw.get('plan')!r}")
        if not (raw.get("account") or raw.get("account_prefix")):
            raise CatalogError(where, "needs 'account' or 'account_prefix'")
        subs.append(
            Subscription(
                plan=raw["plan"],
                from_ms=_date_ms(raw.get("from", "1970-01-01"), f"{where}.from"),
                account=raw.get("account"),
                account_prefix=raw.get("account_prefix"),
            )
        )
    return Catalog(plans=tuple(plans), subscriptions=tuple(subs))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file; ``None`` loads the embedded default."""
    source = Path(path) if path else DEFAULT_CATALOG
    try:
        doc = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise CatalogError(str(source), f"cannot read catalog: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(str(source), f"invalid YAML: {exc}") from None
    return parse_catalog(doc)
