"""Encoders of the ad-policy ensemble: one file per family, a registry, shared preparation."""

from encoders.base import MODALITIES, Encoder, InputError, InputSpec, Preparer
from encoders.registry import (
    EncoderEntry,
    get_encoder,
    get_entry,
    get_preparer,
    list_encoders,
    register_encoder,
)

__all__ = [
    "MODALITIES",
    "Encoder",
    "EncoderEntry",
    "InputError",
    "InputSpec",
    "Preparer",
    "get_encoder",
    "get_entry",
    "get_preparer",
    "list_encoders",
    "register_encoder",
]
