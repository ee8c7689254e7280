"""The encoder registry, after torchvision's model registry: a decorator on each encoder
class registers it under one or more names; a duplicate name is refused.

An entry pairs the class (its ``modality``, ``kind``, ``preparer`` and, for an analyzer,
its ``rule`` head are read from the class) with its settings dataclass and the settings the
name fixes. Both sides take the same settings, so the settings stored in a checkpoint or
manifest rebuild either side alone (the TorchServe handler rebuilds only the preparation)::

    @register_encoder("my_text", settings=TextSettings)
    class MyTextEncoder(Encoder):
        modality = "text"
        ...
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from encoders.base import Encoder, EncoderKind, Modality, PolicyHead, Preparer
from encoders.media import VideoPreparer

E = TypeVar("E", bound=type[Encoder])

# The modules whose classes register the built-in encoders (imported on first look-up).
BUILTIN_MODULES = (
    "encoders.text",
    "encoders.image",
    "encoders.audio",
    "encoders.video",
    "encoders.flash",
    "encoders.loudness",
    "encoders.quality",
)


@dataclass(frozen=True)
class EncoderEntry:
    """What the registry knows of one encoder name.

    Attributes:
        name: Registry name, e.g. ``"minilm"`` or ``"resnet18"``.
        cls: The encoder class; ``cls(settings)`` builds it.
        settings: Dataclass type of the encoder's settings (JSON-serialisable fields).
        defaults: Settings this name starts from (e.g. the backbone of ``"resnet18"``).
        fixed: Those of ``defaults`` the name itself says (``"resnet18"``'s backbone): a
            config may not give another.
    """

    name: str
    cls: type[Encoder]
    settings: type
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: frozenset[str] = frozenset()

    @property
    def modality(self) -> Modality:
        """The ad field the encoder reads."""
        return self.cls.modality

    @property
    def kind(self) -> EncoderKind:
        """``"learned"`` (embedding) or ``"analyzer"`` (named measurements)."""
        return self.cls.kind

    @property
    def rule(self) -> type[PolicyHead] | None:
        """An analyzer's rule head class (``rule(encoder, policy_index, rules)``)."""
        return self.cls.rule

    def build(self, settings: Any) -> Encoder:
        """The encoder for these settings."""
        return self.cls(settings)

    def preparer(self, settings: Any) -> Preparer | VideoPreparer:
        """Only the preparation, for these settings."""
        return self.cls.preparer(settings)

    def make_settings(self, **overrides: Any) -> Any:
        """Settings for this name; unknown keys are refused with the accepted ones listed."""
        known = {f.name for f in dataclasses.fields(self.settings)}
        unknown = set(overrides) - known
        if unknown:
            raise UnknownSettingsError(
                f"encoder {self.name!r}: unknown settings {sorted(unknown)}; "
                f"accepted: {sorted(known)}"
            )
        for key in self.fixed & set(overrides):
            if overrides[key] != self.defaults[key]:
                raise UnknownSettingsError(
                    f"encoder {self.name!r} is {key} {self.defaults[key]!r} (given "
                    f"{overrides[key]!r}): name the encoder that is the one you want"
                )
        return self.settings(**{**self.defaults, **overrides})


class UnknownEncoderError(KeyError, ValueError):
    """A name no encoder is registered under: a KeyError (a lookup) and a ValueError (a bad
    config value, which the CLI reports in one line)."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError's own would quote the message


class UnknownSettingsError(TypeError, ValueError):
    """Settings an encoder does not take: a TypeError (unexpected arguments) and a
    ValueError (a bad config value)."""


_REGISTRY: dict[str, EncoderEntry] = {}


def register_encoder(
    *names: str,
    settings: type,
    defaults: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None,
) -> Callable[[E], E]:
    """Class decorator registering an encoder class under ``names``.

    Args:
        names: Registry names (one entry each).
        settings: The settings dataclass both the class and its preparer take.
        defaults: Settings the names start from: a mapping, or ``name -> mapping`` (a
            backbone family registered once per backbone), whose settings each name fixes.

    Raises:
        ValueError: A name already registered, no name, or an analyzer without a ``rule``
            head (it could never score a policy).
    """
    if not names:
        raise ValueError("register_encoder needs at least one name")

    def register(cls: E) -> E:
        if cls.kind == "analyzer" and cls.rule is None:
            raise ValueError(f"analyzer {cls.__name__} has no rule head (set its ``rule``)")
        for name in names:
            if name in _REGISTRY:
                raise ValueError(f"an encoder named {name!r} is already registered")
            named = defaults(name) if callable(defaults) else defaults
            fixed = frozenset(named or {}) if callable(defaults) else frozenset()
            _REGISTRY[name] = EncoderEntry(name, cls, settings, dict(named or {}), fixed)
        return cls

    return register


def get_entry(name: str) -> EncoderEntry:
    """The entry of a registered name, or an :class:`UnknownEncoderError` listing the registered
    ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEncoderError(
            f"no encoder named {name!r}; registered: {list_encoders()}"
        ) from None


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
    """Import the built-in encoder modules, whose classes register themselves."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
