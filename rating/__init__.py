"""Rating engine: price plans to exact charges."""

from rating.catalog import Catalog, CatalogError, load_catalog, parse_catalog
from rating.engine import RatingResult, rate_usage

__all__ = ["Catalog", "CatalogError", "RatingResult", "load_catalog", "parse_catalog", "rate_usage"]
