"""tunesmith: fine-tune pre-trained language models on your own data."""

__version__ = "0.1.0"
