"""Shared fixtures: offline Hugging Face, the ../shared data path, tiny models, media files."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (data, IRIS references), found through ADPOLICY_SHARED, which .ci/run sets."""
    value = os.environ.get("ADPOLICY_SHARED")
    if not value or not Path(value).is_dir():
        pytest.skip("ADPOLICY_SHARED is not set to the shared data directory")
    return Path(value)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, saved as a local model directory."""
    import torch
    from transformers import BertConfig, BertModel

    from encoders.text import DEFAULT_TEXT_MODEL, resolve_model_dir

    out = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng():  # the same weights whichever test asks first
        torch.manual_seed(0)
        BertModel(config).save_pretrained(out)
    source = resolve_model_dir(DEFAULT_TEXT_MODEL)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(source / name, out / name)
    return out


@pytest.fixture(scope="session")
def sample_media() -> Path:
    """The generated sample media of examples/ (made here if `make samples` has not run)."""
    from examples import make_samples

    make_samples.make()
    return make_samples.MEDIA
