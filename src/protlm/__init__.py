"""protlm: protein language models pre-trained on single proteins and label-agnostic binding pairs."""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a protlm model directory: `protlm.load(DIR).embed(...)`, `.predict(...)`, `.fill(...)`."""
    from protlm.api import load as _load

    return _load(path, device)
