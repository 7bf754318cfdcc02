"""Catalog loading and validation: every error names the plan and the field at fault."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from rating import CatalogError, load_catalog, parse_catalog
from rating.catalog import DEFAULT_CATALOG, EXAMPLE_CATALOG


def base() -> dict[str, Any]:
    return {
        "plans": [
            {
                "name": "p",
                "version": 1,
                "effective_from": "2024-01-01",
                "charges": [{"name": "d", "model": "per_unit", "unit": "GB", "price": "0.50"}],
            }
        ],
        "subscriptions": [{"account_prefix": "A-", "plan": "p"}],
    }


def with_charge(**fields: Any) -> dict[str, Any]:
    doc = base()
    doc["plans"][0]["charges"][0].update(fields)
    return doc


def with_plan(**fields: Any) -> dict[str, Any]:
    doc = base()
    doc["plans"][0].update(fields)
    return doc


def second_version(**fields: Any) -> dict[str, Any]:
    doc = base()
    doc["plans"].append({**copy.deepcopy(doc["plans"][0]), **fields})
    return doc


TOD = {"model": "time_of_day", "unit": "minute"}
CASES = [
    (with_charge(price=0.5), "plans[0] (p).charges[0] (d).price", "quoted string"),
    (with_charge(price="-1"), "plans[0] (p).charges[0] (d).price", "non-negative"),
    (with_charge(price=None), "plans[0] (p).charges[0] (d).price", "missing"),
    (with_charge(model="magic"), "plans[0] (p).charges[0].model", "unknown charge model"),
    (with_charge(unit="parsec"), "plans[0] (p).charges[0] (d).unit", "unknown unit"),
    (with_charge(meter="duration"), "plans[0] (p).charges[0] (d).meter", "does not measure"),
    (with_charge(increments="0/60"), "plans[0] (p).charges[0] (d).increments", "at least one"),
    (with_charge(increments="1.5 B"), "plans[0] (p).charges[0] (d).increments.first", "whole number"),
    (with_charge(included="lots"), "plans[0] (p).charges[0] (d).included", "quantity"),
    (with_charge(period="year"), "plans[0] (p).charges[0] (d).period", "one of"),
    (with_charge(split="random"), "plans[0] (p).charges[0] (d).split", "one of"),
    (with_charge(connect_fee="0.0000001"), "plans[0] (p).charges[0] (d).connect_fee", "precision"),
    (
        with_charge(model="graduated", tiers=[{"up_to": 10, "price": "1"}, {"up_to": 5, "price": "1"}, {"price": "1"}]),
        "plans[0] (p).charges[0] (d).tiers[1].up_to",
        "increase",
    ),
    (
        with_charge(model="graduated", tiers=[{"up_to": 10, "price": "1"}]),
        "plans[0] (p).charges[0] (d).tiers[0].up_to",
        "unbounded",
    ),
    (
        with_charge(model="graduated", scope="period", included="1 GB", tiers=[{"price": "1"}]),
        "plans[0] (p).charges[0] (d).included",
        "period tiers",
    ),
    (
        with_charge(model="volume", scope="period", tiers=[{"price": "1"}]),
        "plans[0] (p).charges[0] (d).scope",
        "per record",
    ),
    (with_charge(model="package", block="0 MB"), "plans[0] (p).charges[0] (d).block", "at least one"),
    (
        with_charge(**TOD, bands=[{"name": "peak", "hours": ["08:00-20:00"], "price": "1"}]),
        "plans[0] (p).charges[0] (d).bands[0]",
        "default",
    ),
    (
        with_charge(**TOD, bands=[{"name": "n", "hours": ["20:00-08:00"], "price": "1"}, {"name": "o", "price": "1"}]),
        "plans[0] (p).charges[0] (d).bands[0].hours[0]",
        "midnight",
    ),
    (
        with_charge(**TOD, bands=[{"name": "n", "days": ["funday"], "price": "1"}, {"name": "o", "price": "1"}]),
        "plans[0] (p).charges[0] (d).bands[0].days",
        "days are among",
    ),
    (
        with_charge(**TOD, calendar="mars", bands=[{"name": "o", "price": "1"}]),
        "plans[0] (p).charges[0] (d).calendar",
        "unknown calendar",
    ),
    (
        with_charge(model="zone", zones=[{"name": "x", "prefixes": ["+3a"], "price": "1"}]),
        "plans[0] (p).charges[0] (d).zones[0].prefixes",
        "digit prefix",
    ),
    (
        with_charge(
            model="zone",
            zones=[{"name": "x", "prefixes": ["1"], "price": "1"}, {"name": "y", "prefixes": ["1"], "price": "1"}],
        ),
        "plans[0] (p).charges[0] (d).zones[1].prefixes",
        "another zone",
    ),
    (
        with_charge(
            model="zone",
            bands=[{"name": "a", "hours": ["08:00-09:00"]}, {"name": "b"}],
            zones=[{"name": "x", "prefixes": ["1"], "prices": {"a": "1"}}],
        ),
        "plans[0] (p).charges[0] (d).zones[0].prices",
        "one price per band",
    ),
    (with_plan(rounding="ROUND_RANDOM"), "plans[0] (p).rounding", "one of"),
    (with_plan(precision=7), "plans[0] (p).precision", "0 to 6"),
    (with_plan(currency="euro"), "plans[0] (p).currency", "ISO 4217"),
    (with_plan(timezone="Mars/Olympus"), "plans[0] (p).timezone", "unknown time zone"),
    (with_plan(effective_from="someday"), "plans[0] (p).effective_from", "ISO date"),
    (with_plan(charges=[]), "plans[0] (p).charges", "no charges"),
    (second_version(), "plans[1] (p).version", "defined twice"),
    (second_version(version=2, effective_from="2023-01-01"), "plans[1] (p).effective_from", "after version 1"),
    ({**base(), "subscriptions": [{"account_prefix": "A-", "plan": "q"}]}, "subscriptions[0].plan", "unknown plan"),
    ({**base(), "subscriptions": [{"plan": "p"}]}, "subscriptions[0]", "exactly one"),
    (
        {**base(), "subscriptions": [{"account": "A", "plan": "p", "from": "2024-02-01", "until": "2024-01-01"}]},
        "subscriptions[0].until",
        "after",
    ),
    ({**base(), "calendars": {"fr": ["2024-13-01"]}}, "calendars.fr[0]", "ISO date"),
    ({"plans": []}, "plans", "non-empty"),
]


@pytest.mark.parametrize(("doc", "where", "message"), CASES, ids=[c[1] + ":" + c[2] for c in CASES])
def test_errors_name_plan_and_field(doc: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(doc)
    assert caught.value.where == where
    assert message in caught.value.message


def test_embedded_and_example_catalogs_load() -> None:
    default = load_catalog()
    assert [p.label for p in default.plans] == ["data-flat v1"]
    example = load_catalog(EXAMPLE_CATALOG)
    models = {charge.model for plan in example.plans for charge in plan.charges}
    assert models == {"per_unit", "graduated", "volume", "package", "time_of_day", "zone"}
    assert {charge.name for plan in example.plans for charge in plan.recurring} == {"subscription", "fee"}
    assert yaml.safe_load(DEFAULT_CATALOG.read_text())["plans"][0]["name"] == "data-flat"


def test_unreadable_catalog_names_the_file(tmp_path: Any) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("plans: [unclosed")
    with pytest.raises(CatalogError, match="invalid YAML"):
        load_catalog(bad)


def test_subscription_resolution_prefers_exact_account_then_latest() -> None:
    doc = base()
    doc["plans"].append({"name": "q", "charges": [{"name": "d", "model": "per_unit", "unit": "GB", "price": "1"}]})
    doc["subscriptions"] = [
        {"account_prefix": "A-", "plan": "p", "from": "2024-01-01"},
        {"account": "A-7", "plan": "q", "from": "2024-03-01", "until": "2024-04-01"},
    ]
    catalog = parse_catalog(doc)
    march, april = 1709856000000, 1712620800000  # 2024-03-08, 2024-04-09
    assert catalog.plan_for("A-7", march).name == "q"  # type: ignore[union-attr]
    assert catalog.plan_for("A-7", april).name == "p"  # type: ignore[union-attr]
    assert catalog.plan_for("A-1", march).name == "p"  # type: ignore[union-attr]
    assert catalog.plan_for("B-1", march) is None
    assert catalog.refusal("B-1", march).startswith("no active subscription for account 'B-1' at 2024-03-08")
    assert catalog.account_timeline("A-7") == ((0, 1704067200000, 1709251200000, 1711929600000), (-1, 0, 1, 0))
