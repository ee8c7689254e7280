"""A small registry of encoders: register / get / list, a duplicate name refused.

Each entry pairs a module builder with its preparer builder; both take the same settings
dataclass, so the settings stored in a checkpoint or manifest rebuild either side alone
(the TorchServe handler rebuilds only the preparation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from encoders.base import Encoder, EncoderKind, Modality, Preparer
from encoders.media import VideoPreparer


@dataclass(frozen=True)
class EncoderEntry:
    """What the registry knows of one encoder name.

    Attributes:
        name: Registry name, e.g. ``"minilm"`` or ``"resnet18"``.
        modality: The ad field the encoder reads.
        kind: ``"learned"`` (embedding) or ``"analyzer"`` (named measurements).
        settings: Dataclass type of the encoder's settings (JSON-serialisable fields).
        build: ``settings -> Encoder``.
        preparer: ``settings -> Preparer``.
        defaults: Settings this name fixes (e.g. the backbone of ``"resnet18"``).
    """

    name: str
    modality: Modality
    kind: EncoderKind
    settings: type
    build: Callable[[Any], Encoder]
    preparer: Callable[[Any], Preparer | VideoPreparer]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def make_settings(self, **overrides: Any) -> Any:
        """Settings for this name; unknown keys are refused with the accepted ones listed."""
        known = {f.name for f in dataclasses.fields(self.settings)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(
                f"encoder {self.name!r}: unknown settings {sorted(unknown)}; "
                f"accepted: {sorted(known)}"
            )
        return self.settings(**{**self.defaults, **overrides})


_REGISTRY: dict[str, EncoderEntry] = {}


def register_encoder(entry: EncoderEntry) -> EncoderEntry:
    """Add an entry; a name already registered is refused."""
    if entry.name in _REGISTRY:
        raise ValueError(f"an encoder named {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> EncoderEntry:
    """The entry of a registered name, or a KeyError listing the registered ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no encoder named {name!r}; registered: {list_encoders()}") from None


def get_encoder(name: str, **settings: Any) -> Encoder:
    """Build the encoder registered as ``name`` with the given settings."""
    entry = get_entry(name)
    return entry.build(entry.make_settings(**settings))


def get_preparer(name: str, **settings: Any) -> Preparer | VideoPreparer:
    """Build only the preparation of the encoder registered as ``name``."""
    entry = get_entry(name)
    return entry.preparer(entry.make_settings(**settings))


def list_encoders(*, modality: str | None = None, kind: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by modality and kind."""
    _load_builtins()
    return sorted(
        name
        for name, entry in _REGISTRY.items()
        if (modality is None or entry.modality == modality) and (kind is None or entry.kind == kind)
    )


def _load_builtins() -> None:
    """Import the built-in encoder modules, which register themselves on import."""
    import encoders.builtin  # noqa: F401
