"""Price-plan catalog: loaded from YAML, validated once, with errors that name the plan and field.

A catalog holds versioned plans and the subscriptions that bind accounts to them::

    currency: EUR              # defaults for every plan
    timezone: Europe/Paris     # wall clock of time bands and allowance periods
    precision: 6               # decimals kept on rated amounts (at most 6)
    rounding: ROUND_HALF_EVEN
    calendars:
      fr: ["2024-12-25", "2025-01-01"]
    plans:
      - name: mobile
        version: 2
        effective_from: "2024-06-01"
        charges:
          - {name: fee, model: flat, amount: "9.99"}
          - {name: data, model: per_unit, unit: GB, price: "0.50", included: "10 GB", increments: "1 KB"}
    subscriptions:
      - {account_prefix: "ACC-", plan: mobile, from: "2024-01-01"}

Fields common to every usage charge: ``name`` (unique in the plan; also names its allowance
counter), ``model`` (see :mod:`rating.charges`), ``unit``, ``meter`` (bytes, bytes_up, bytes_down,
duration, events; defaults from the unit), ``event_type``/``service`` filters (a name or a list),
``increments``, ``included`` and ``period`` (month, day), ``connect_fee``, ``minimum`` and
``split`` (``proportional``: a record crossing a time-band edge is shared by time; ``start``: the
band at its start prices it all), ``counter`` (the allowance counter's name: by default
``<plan>/<charge>``, shared by the plan's versions; give two charges one name to share a bundle,
as long as a record never matches both). See ``rating/catalog.example.yaml`` for every model.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN
from pathlib import Path
from typing import Any

import yaml

from rating.calendar import PERIOD_KINDS, LocalClock, parse_holidays
from rating.charges import CHARGE_MODELS, ParseContext, RecurringCharge, UsageCharge
from rating.errors import CatalogError
from rating.money import MAX_PRECISION, ROUNDING_MODES
from rating.units import DEFAULT_METER, METERS, Increments, parse_increments, parse_quantity, unit_of

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
EXAMPLE_CATALOG = Path(__file__).with_name("catalog.example.yaml")
SPLIT_RULES = ("proportional", "start")


@dataclass(frozen=True, eq=False)
class Plan:
    """One version of a price plan."""

    name: str
    version: int
    effective_from_ms: int
    currency: str
    rounding: str
    precision: int
    clock: LocalClock
    charges: tuple[UsageCharge, ...]
    recurring: tuple[RecurringCharge, ...] = ()
    _applicable: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    def charges_for(self, event_type: str, service: str) -> tuple[int, ...]:
        """Indexes of the usage charges that apply to a record of this event type and service."""
        key = (event_type, service)
        found = self._applicable.get(key)
        if found is None:
            found = tuple(i for i, charge in enumerate(self.charges) if charge.applies_to(event_type, service))
            self._applicable[key] = found
        return found


@dataclass(frozen=True)
class Subscription:
    """An account (or every account with a prefix) on a plan from ``from_ms`` until ``until_ms``."""

    plan: str
    from_ms: int
    until_ms: int | None = None
    account: str | None = None
    account_prefix: str | None = None

    def matches(self, account: str) -> bool:
        if self.account is not None:
            return account == self.account
        return self.account_prefix is not None and account.startswith(self.account_prefix)

    def active_at(self, at_ms: int) -> bool:
        return self.from_ms <= at_ms and (self.until_ms is None or at_ms < self.until_ms)

    @property
    def specificity(self) -> tuple[int, int]:
        """An exact account beats any prefix; a longer prefix beats a shorter one."""
        if self.account is not None:
            return (1, len(self.account))
        return (0, len(self.account_prefix or ""))


@dataclass(frozen=True, eq=False)
class Catalog:
    """Plans (every version) and subscriptions; resolves the plan version for an account and instant."""

    plans: tuple[Plan, ...]
    subscriptions: tuple[Subscription, ...]
    scale: int = 6  # decimals of amounts on the wire (ClickHouse Decimal(18, 6)); plans round to <= this
    _by_name: dict[str, list[int]] = field(default_factory=dict, compare=False, repr=False)
    _timelines: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    _exact: dict[str, list[Subscription]] = field(default_factory=dict, compare=False, repr=False)
    _prefixed: list[Subscription] = field(default_factory=list, compare=False, repr=False)
    # distinct timelines, and each account's index among them (for the kernel's bulk lookups)
    _timeline_table: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list, compare=False, repr=False
    )
    _timeline_number: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = field(
        default_factory=dict, compare=False, repr=False
    )
    _timeline_of: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for index, plan in enumerate(self.plans):
            self._by_name.setdefault(plan.name, []).append(index)
        for indexes in self._by_name.values():
            indexes.sort(key=lambda i: self.plans[i].effective_from_ms)
        for sub in self.subscriptions:
            if sub.account is not None:
                self._exact.setdefault(sub.account, []).append(sub)
            else:
                self._prefixed.append(sub)

    def subscriptions_of(self, account: str) -> list[Subscription]:
        """Every subscription that names ``account`` or a prefix of it, in catalog order."""
        matching = [sub for sub in self._prefixed if account.startswith(sub.account_prefix or "")]
        return self._exact.get(account, []) + matching

    def subscription_for(
        self, account: str, at_ms: int, among: list[Subscription] | None = None
    ) -> Subscription | None:
        """The most specific subscription of ``account`` active at ``at_ms`` (latest start on a tie)."""
        best: Subscription | None = None
        for sub in among if among is not None else self.subscriptions_of(account):
            if sub.active_at(at_ms) and (
                best is None or (sub.specificity, sub.from_ms) >= (best.specificity, best.from_ms)
            ):
                best = sub
        return best

    def plan_index_for(self, account: str, at_ms: int, among: list[Subscription] | None = None) -> int:
        """Index in :attr:`plans` of the version in force for ``account`` at ``at_ms``; -1 if none."""
        sub = self.subscription_for(account, at_ms, among)
        if sub is None:
            return -1
        chosen = -1
        for index in self._by_name.get(sub.plan, ()):
            if self.plans[index].effective_from_ms <= at_ms:
                chosen = index
        return chosen

    def plan_for(self, account: str, at_ms: int) -> Plan | None:
        """The plan version in force for ``account`` at ``at_ms``, or None."""
        index = self.plan_index_for(account, at_ms)
        return None if index < 0 else self.plans[index]

    def refusal(self, account: str, at_ms: int, among: list[Subscription] | None = None) -> str:
        """Why no plan prices ``account`` at ``at_ms`` (for dead letters)."""
        when = _iso(at_ms)
        sub = self.subscription_for(account, at_ms, among)
        if sub is None:
            return f"no active subscription for account {account!r} at {when}"
        return f"plan {sub.plan!r} has no version in force at {when}"

    def refusals(self, accounts: list[str], at_ms: list[int]) -> list[str]:
        """:meth:`refusal` for many records, looking each distinct account's subscriptions up once."""
        subscriptions: dict[str, list[Subscription]] = {}
        reasons = []
        for account, at in zip(accounts, at_ms, strict=True):
            mine = subscriptions.get(account)
            if mine is None:
                mine = subscriptions[account] = self.subscriptions_of(account)
            if mine:
                reasons.append(self.refusal(account, at, mine))
            else:
                reasons.append(f"no active subscription for account {account!r} at {_iso(at)}")
        return reasons

    def timeline_numbers(self, accounts: list[str]) -> tuple[list[int], list[tuple[tuple[int, ...], tuple[int, ...]]]]:
        """Each account's timeline (see :meth:`account_timeline`) as an index into a table of the distinct
        timelines, and that table: accounts sharing a subscription share one entry."""
        if len(self._timeline_of) > 1_000_000:  # bound the cache on catalogs serving huge account bases
            self._timeline_of.clear()
            self._timeline_number.clear()
            self._timeline_table.clear()
        numbers = list(map(self._timeline_of.get, accounts))
        if None in numbers:
            for index, account in enumerate(accounts):
                if numbers[index] is None:
                    timeline = self.account_timeline(account)
                    number = self._timeline_number.get(timeline)
                    if number is None:
                        number = self._timeline_number[timeline] = len(self._timeline_table)
                        self._timeline_table.append(timeline)
                    numbers[index] = self._timeline_of[account] = number
        return numbers, self._timeline_table  # type: ignore[return-value]

    def account_timeline(self, account: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Where the plan in force for ``account`` changes: (starts ms, plan index or -1), cached.

        The vectorised kernel looks records up in this with a search instead of resolving each one.
        """
        cached = self._timelines.get(account)
        if cached is not None:
            return cached
        account = str(account)
        mine = self.subscriptions_of(account)
        changes = {0}
        for sub in mine:
            changes.add(sub.from_ms)
            if sub.until_ms is not None:
                changes.add(sub.until_ms)
            changes.update(self.plans[i].effective_from_ms for i in self._by_name.get(sub.plan, ()))
        starts: list[int] = []
        indexes: list[int] = []
        for at in sorted(changes):
            index = self.plan_index_for(account, at, mine)
            if not indexes or indexes[-1] != index:
                starts.append(at)
                indexes.append(index)
        timeline = (tuple(starts), tuple(indexes))
        if len(self._timelines) > 1_000_000:  # bound the cache on catalogs serving huge account bases
            self._timelines.clear()
        self._timelines[account] = timeline
        return timeline

    def versions(self, name: str) -> list[Plan]:
        return [self.plans[i] for i in self._by_name.get(name, ())]


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def _instant_ms(value: Any, where: str) -> int:
    """An ISO date (midnight UTC) or date-time (UTC unless it carries an offset) as epoch ms."""
    try:
        if isinstance(value, dt.datetime):
            moment = value
        elif isinstance(value, dt.date):
            moment = dt.datetime(value.year, value.month, value.day)
        else:
            text = str(value).strip().replace("Z", "+00:00")
            moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CatalogError(where, f"not an ISO date or date-time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _name_set(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise CatalogError(where, f"a name or a non-empty list of names, not {value!r}")
    return frozenset(items)


def _int_field(raw: dict[str, Any], key: str, default: int, where: str, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CatalogError(f"{where}.{key}", f"an integer from {low} to {high}, not {value!r}")
    return value


def _parse_usage_charge(
    raw: dict[str, Any], name: str, model_name: str, ctx: ParseContext, where: str, plan_name: str
) -> UsageCharge:
    unit_name, dimension, unit_size = unit_of(raw.get("unit", "GB"), f"{where}.unit")
    ctx.unit, ctx.unit_size, ctx.dimension = unit_name, unit_size, dimension
    meter = str(raw.get("meter", DEFAULT_METER[dimension]))
    if meter not in METERS:
        raise CatalogError(f"{where}.meter", f"one of {sorted(METERS)}, not {meter!r}")
    if METERS[meter] is not dimension:
        raise CatalogError(f"{where}.meter", f"meter {meter!r} does not measure {dimension.value} (unit {unit_name})")
    pricing = CHARGE_MODELS[model_name].parse(raw, ctx, where)
    included = None
    if raw.get("included") is not None:
        included = parse_quantity(raw["included"], unit_name, dimension, f"{where}.included")
        if pricing.uses_position:
            raise CatalogError(f"{where}.included", "period tiers already price the period; use a free first tier")
    period = str(raw.get("period", "month"))
    if period not in PERIOD_KINDS:
        raise CatalogError(f"{where}.period", f"one of {list(PERIOD_KINDS)}, not {period!r}")
    split = str(raw.get("split", "proportional"))
    if split not in SPLIT_RULES:
        raise CatalogError(f"{where}.split", f"one of {list(SPLIT_RULES)}, not {split!r}")
    increments = parse_increments(raw.get("increments"), unit_name, dimension, f"{where}.increments")
    return UsageCharge(
        name=name,
        model=model_name,
        unit=unit_name,
        unit_size=unit_size,
        meter=meter,
        pricing=pricing,
        event_types=_name_set(raw.get("event_type", raw.get("event_types")), f"{where}.event_type"),
        services=_name_set(raw.get("service", raw.get("services")), f"{where}.service"),
        increments=increments if raw.get("increments") is not None else Increments(),
        included=included,
        period=period,
        connect_fee=ctx.fee(raw.get("connect_fee", "0"), f"{where}.connect_fee"),
        minimum=ctx.fee(raw.get("minimum", "0"), f"{where}.minimum"),
        split=split,
        bands=pricing.bands if pricing.uses_bands else None,
        counter=_counter_name(raw, f"{plan_name}/{name}", where),
    )


def _counter_name(raw: dict[str, Any], default: str, where: str) -> str:
    """Versions of a plan share a charge's counter; ``counter: NAME`` shares it wider (a bundle)."""
    value = raw.get("counter", default)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{where}.counter", f"a counter name, not {value!r}")
    return value


def _parse_plan(raw: Any, i: int, defaults: dict[str, Any], calendars: dict[str, Any]) -> Plan:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"plans[{i}]" + (f" ({name})" if name else "")
    if not isinstance(raw, dict):
        raise CatalogError(where, "a plan is a mapping")
    if not name or not isinstance(name, str):
        raise CatalogError(where, "plan needs a 'name'")
    currency = str(raw.get("currency", defaults["currency"]))
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise CatalogError(f"{where}.currency", f"not an ISO 4217 code: {currency!r}")
    rounding = str(raw.get("rounding", defaults["rounding"]))
    if rounding not in ROUNDING_MODES:
        raise CatalogError(f"{where}.rounding", f"one of {sorted(ROUNDING_MODES)}, not {rounding!r}")
    precision = _int_field(raw, "precision", defaults["precision"], where, 0, MAX_PRECISION)
    version = _int_field(raw, "version", 1, where, 1, 2**31 - 1)
    timezone = str(raw.get("timezone", defaults["timezone"]))
    try:
        clock = LocalClock(timezone)
    except CatalogError as exc:
        raise CatalogError(f"{where}.timezone", exc.message) from None
    ctx = ParseContext(plan_where=where, precision=precision, clock=clock, calendars=calendars)
    usage: list[UsageCharge] = []
    recurring: list[RecurringCharge] = []
    names: set[str] = set()
    raw_charges = raw.get("charges")
    if not isinstance(raw_charges, list) or not raw_charges:
        raise CatalogError(f"{where}.charges", "plan has no charges")
    for j, charge_raw in enumerate(raw_charges):
        cwhere = f"{where}.charges[{j}]"
        if not isinstance(charge_raw, dict):
            raise CatalogError(cwhere, "a charge is a mapping with a 'model'")
        model_name = charge_raw.get("model")
        if model_name not in CHARGE_MODELS:
            raise CatalogError(
                f"{cwhere}.model", f"unknown charge model {model_name!r} (known: {', '.join(sorted(CHARGE_MODELS))})"
            )
        charge_name = str(charge_raw.get("name") or model_name)
        cwhere = f"{cwhere} ({charge_name})"
        if charge_name in names:
            raise CatalogError(f"{cwhere}.name", f"charge name {charge_name!r} is used twice; give each a 'name'")
        names.add(charge_name)
        model = CHARGE_MODELS[model_name]
        if model.usage:
            usage.append(_parse_usage_charge(charge_raw, charge_name, str(model_name), ctx, cwhere, name))
        else:
            recurring.append(model.parse({**charge_raw, "name": charge_name}, ctx, cwhere))
    return Plan(
        name=name,
        version=version,
        effective_from_ms=_instant_ms(raw.get("effective_from", "1970-01-01"), f"{where}.effective_from"),
        currency=currency,
        rounding=rounding,
        precision=precision,
        clock=clock,
        charges=tuple(usage),
        recurring=tuple(recurring),
    )


def parse_catalog(doc: Any) -> Catalog:
    """Validate a catalog document (as loaded from YAML); raises :class:`CatalogError` naming the field."""
    if not isinstance(doc, dict):
        raise CatalogError("catalog", "must be a mapping with 'plans' and 'subscriptions'")
    defaults = {
        "currency": doc.get("currency", "EUR"),
        "rounding": doc.get("rounding", ROUND_HALF_EVEN),
        "precision": _int_field(doc, "precision", MAX_PRECISION, "catalog", 0, MAX_PRECISION),
        "timezone": doc.get("timezone", "UTC"),
    }
    calendars_raw = doc.get("calendars") or {}
    if not isinstance(calendars_raw, dict):
        raise CatalogError("calendars", "a mapping of calendar name to holiday dates")
    calendars = {str(k): parse_holidays(v, f"calendars.{k}") for k, v in calendars_raw.items()}
    plans_raw = doc.get("plans")
    if not isinstance(plans_raw, list) or not plans_raw:
        raise CatalogError("plans", "the catalog needs a non-empty list of plans")
    plans = [_parse_plan(raw, i, defaults, calendars) for i, raw in enumerate(plans_raw)]
    by_name: dict[str, list[tuple[int, Plan]]] = {}
    for i, plan in enumerate(plans):
        by_name.setdefault(plan.name, []).append((i, plan))
    for name, versions in by_name.items():
        seen: dict[int, int] = {}
        for i, plan in versions:
            if plan.version in seen:
                raise CatalogError(f"plans[{i}] ({name}).version", f"version {plan.version} is defined twice")
            seen[plan.version] = i
        ordered = sorted(versions, key=lambda item: item[1].version)
        for (_, earlier), (i, later) in itertools.pairwise(ordered):
            if later.effective_from_ms <= earlier.effective_from_ms:
                raise CatalogError(
                    f"plans[{i}] ({name}).effective_from",
                    f"version {later.version} must take effect after version {earlier.version}",
                )
    subs = []
    for i, raw in enumerate(doc.get("subscriptions") or []):
        where = f"subscriptions[{i}]"
        if not isinstance(raw, dict):
            raise CatalogError(where, "a subscription is a mapping")
        if raw.get("plan") not in by_name:
            raise CatalogError(f"{where}.plan", f"unknown plan {raw.get('plan')!r}")
        if bool(raw.get("account")) == bool(raw.get("account_prefix")):
            raise CatalogError(where, "needs exactly one of 'account' or 'account_prefix'")
        from_ms = _instant_ms(raw.get("from", "1970-01-01"), f"{where}.from")
        until_ms = _instant_ms(raw["until"], f"{where}.until") if raw.get("until") is not None else None
        if until_ms is not None and until_ms <= from_ms:
            raise CatalogError(f"{where}.until", "must be after 'from'")
        subs.append(
            Subscription(
                plan=raw["plan"],
                from_ms=from_ms,
                until_ms=until_ms,
                account=str(raw["account"]) if raw.get("account") else None,
                account_prefix=str(raw["account_prefix"]) if raw.get("account_prefix") else None,
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


__all__ = [
    "DEFAULT_CATALOG",
    "EXAMPLE_CATALOG",
    "Catalog",
    "CatalogError",
    "Plan",
    "Subscription",
    "load_catalog",
    "parse_catalog",
]
