"""REST transport (:mod:`.client`) and aggregates parsing (:mod:`.aggs`)."""

from .aggs import AggsPage, parse_aggs
from .client import RestClient, RetryPolicy

__all__ = ["AggsPage", "RestClient", "RetryPolicy", "parse_aggs"]
