"""amortinv: amortised invariance learning for contrastive self-supervision."""

__version__ = "0.1.0"
