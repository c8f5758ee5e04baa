"""Frozen value classes, declared like dataclasses but made without generating code.

``@dataclass(frozen=True)`` writes five or six methods as source text for each class
and compiles them when its module is imported: about 0.7 ms a class, 10.6 ms for the
15 classes every ``slurmc run`` imports, a tenth of the whole command
(docs/performance.md). A :class:`Value` subclass is declared the same way (annotated
fields, defaults, :func:`field`), and type checkers treat it as a frozen dataclass
(PEP 681 ``dataclass_transform``), but its methods exist once, here: construction,
equality, hashing, ``repr`` and :func:`replace` read the field list that
``__init_subclass__`` collects, which costs what defining a plain class costs.

What differs from a dataclass: no ``dataclasses.fields``/``asdict`` (use
:func:`fields`, :func:`replace`), and ``__post_init__`` runs after every construction,
:func:`replace` included, as with dataclasses.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda cls: cls


_MISSING: Any = object()
V = TypeVar("V", bound="Value")


class _Field:
    __slots__ = ("default", "factory", "repr")

    def __init__(self, default: Any, factory: Any, repr: bool) -> None:
        self.default = default
        self.factory = factory
        self.repr = repr

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.factory is _MISSING


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] = _MISSING,
    repr: bool = True,
) -> Any:
    """A field's default or default factory, or ``repr=False`` to keep it out of repr."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr)


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a value (as ``dataclasses.FrozenInstanceError``)."""


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


@dataclass_transform(frozen_default=True, eq_default=True, field_specifiers=(field,))
class Value:
    """Base of frozen value classes: subclass it and annotate the fields."""

    _value_fields: tuple[str, ...] = ()
    _value_specs: dict[str, _Field] = {}  # noqa: RUF012 (replaced per class, never mutated)
    _value_repr: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls._value_fields)
        specs = dict(cls._value_specs)
        for name, annotation in inspect.get_annotations(cls).items():
            if _is_classvar(annotation):
                continue
            if name not in names:
                names.append(name)
            value = cls.__dict__.get(name, _MISSING)
            spec = value if isinstance(value, _Field) else _Field(value, _MISSING, True)
            specs[name] = spec
            if isinstance(value, _Field):  # the class attribute is the default, as in dataclasses
                if spec.default is _MISSING:
                    delattr(cls, name)
                else:
                    type.__setattr__(cls, name, spec.default)
        seen_default = ""
        for name in names:  # the same rule as dataclasses, for the same reason (positions)
            if not specs[name].required:
                seen_default = name
            elif seen_default:
                raise TypeError(
                    f"non-default argument {name!r} follows default argument {seen_default!r}"
                )
        cls._value_fields = tuple(names)
        cls._value_specs = specs
        cls._value_repr = tuple(n for n in names if specs[n].repr)
        type.__setattr__(cls, "__match_args__", cls._value_fields)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._value_fields
        kind = type(self).__name__
        if len(args) > len(names):
            raise TypeError(f"{kind}() takes {len(names)} positional arguments, {len(args)} given")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in self._value_specs:
                raise TypeError(f"{kind}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{kind}() got multiple values for argument {key!r}")
            values[key] = value
        for name in names:
            if name in values:
                value = values[name]
            else:
                spec = self._value_specs[name]
                if spec.required:
                    raise TypeError(f"{kind}() missing required argument: {name!r}")
                value = spec.default if spec.factory is _MISSING else spec.factory()
            object.__setattr__(self, name, value)
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    def _value_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._value_fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._value_tuple() == other._value_tuple()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value_tuple())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._value_repr)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def fields(value: Value | type[Value]) -> tuple[str, ...]:
    """The names of a value's fields, in order."""
    return value._value_fields


def replace(value: V, /, **changes: Any) -> V:
    """A copy of *value* with *changes* (``__post_init__`` checks it again)."""
    current = {name: getattr(value, name) for name in value._value_fields}
    return type(value)(**{**current, **changes})
