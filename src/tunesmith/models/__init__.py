"""Models: the catalog of fetchable models, the local cache, and loading by catalog name, folder or Hub id."""

from tunesmith.models.cache import cache_dir
from tunesmith.models.catalog import CATALOG, CatalogEntry
from tunesmith.models.pull import pull
from tunesmith.models.resolve import load_causal_lm, load_tokenizer, model_source, resolve_model

__all__ = [
    "CATALOG",
    "CatalogEntry",
    "cache_dir",
    "load_causal_lm",
    "load_tokenizer",
    "model_source",
    "pull",
    "resolve_model",
]
