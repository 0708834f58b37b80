"""tunesmith: fine-tune pre-trained language models on your own data."""

__version__ = "0.1.0"

from tunesmith.compat.environment import (  # noqa: E402
    limit_onednn_kernel_cache,
    no_hub_kernels_by_default,
    quiet_optional_kernel_notice,
)

quiet_optional_kernel_notice()
limit_onednn_kernel_cache()
no_hub_kernels_by_default()
