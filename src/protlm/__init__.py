"""protlm: protein language models pre-trained on single proteins and label-agnostic binding pairs."""

__version__ = "0.1.0"
