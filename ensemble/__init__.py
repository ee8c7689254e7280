"""The ad-policy ensemble: one parent module over text, image, audio and video encoders.

Offline scoring::

    import ensemble
    scorer = ensemble.load()                      # the embedded default model
    results = scorer.score([{"id": "a1", "text": "Buy now!"}])
"""

from ensemble.builder import build_ensemble
from ensemble.config import ModelConfig, Policy, load_config
from ensemble.model import AdPolicyEnsemble, EnsembleOutput
from ensemble.pretrained import from_pretrained, save_pretrained
from ensemble.scoring import Scorer, load

__all__ = [
    "AdPolicyEnsemble",
    "EnsembleOutput",
    "ModelConfig",
    "Policy",
    "Scorer",
    "build_ensemble",
    "from_pretrained",
    "load",
    "load_config",
    "save_pretrained",
]
