"""tunesmith: fine-tune pre-trained language models on your own data."""

__version__ = "0.1.0"

from tunesmith.compat import limit_onednn_kernel_cache, quiet_optional_kernel_notice  # noqa: E402

quiet_optional_kernel_notice()
limit_onednn_kernel_cache()
