"""slurmc.values behaves as frozen dataclasses do, checked against the standard library's
own @dataclass(frozen=True) declared the same way (the oracle), and costs less to make."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Mapping

import pytest

from slurmc.values import FrozenInstanceError, Value, field, fields, replace


class Point(Value):
    """A value with a required field, defaults, a factory and a hidden field."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default=())
    env: Mapping[str, str] = field(default_factory=dict)
    secret: str = field(default="", repr=False)


@dataclasses.dataclass(frozen=True)
class DPoint:
    """The same declaration as a standard frozen dataclass."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = dataclasses.field(default=())
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    secret: str = dataclasses.field(default="", repr=False)


class Base(Value):
    name: str = ""
    size: int = 1

    def describe(self) -> str:
        return f"{self.name}:{self.size}"


class Derived(Base):
    name: str = "derived"  # a new default keeps the field's place
    extra: bool = False


CALLS = [
    ((1,), {}),
    ((1, 2), {}),
    ((), {"x": 3, "tags": ("a",), "secret": "pw"}),
    ((4,), {"env": {"A": "1"}}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_construction_equality_hash_repr_match_dataclasses(args, kwargs):
    ours, theirs = Point(*args, **kwargs), DPoint(*args, **kwargs)
    assert fields(ours) == tuple(f.name for f in dataclasses.fields(theirs))
    assert {n: getattr(ours, n) for n in fields(ours)} == dataclasses.asdict(theirs)
    assert repr(ours).replace("Point", "DPoint", 1) == repr(theirs)
    assert ours == Point(*args, **kwargs) and ours != Point(99)
    assert ours != theirs  # another class is never equal, as in dataclasses
    for obj in (ours, theirs):  # a dict field: neither is hashable
        with pytest.raises(TypeError, match="unhashable"):
            hash(obj)
    assert Point.__match_args__ == DPoint.__match_args__


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, (), {}, "", 5), {}), ((1,), {"x": 2}), ((1,), {"nope": 1})],
)
def test_bad_construction_is_a_type_error_like_dataclasses(args, kwargs):
    with pytest.raises(TypeError):
        DPoint(*args, **kwargs)
    with pytest.raises(TypeError):
        Point(*args, **kwargs)


def test_hash_is_the_dataclass_hash():
    @dataclasses.dataclass(frozen=True)
    class DBase:
        name: str = ""
        size: int = 1

    assert hash(Base("a", 2)) == hash(DBase("a", 2)) == hash(("a", 2))
    assert len({Base("a", 2), Base("a", 2), Base("b", 2)}) == 2


def test_frozen_like_dataclasses():
    ours, theirs = Point(1), DPoint(1)
    for obj, error in ((ours, FrozenInstanceError), (theirs, dataclasses.FrozenInstanceError)):
        with pytest.raises(error):
            obj.x = 2
        with pytest.raises(error):
            del obj.y
    assert issubclass(FrozenInstanceError, AttributeError)


def test_a_factory_makes_a_new_object_each_time():
    assert Point(1).env == {} and Point(1).env is not Point(1).env


def test_replace_checks_again_like_dataclasses_replace():
    class Checked(Value):
        n: int = 0

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    value = Checked(1)
    assert replace(value, n=2) == Checked(2) and value.n == 1
    with pytest.raises(ValueError, match="negative"):
        replace(value, n=-1)
    with pytest.raises(TypeError):
        replace(value, m=1)
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_subclasses_extend_and_override_defaults():
    assert fields(Derived) == ("name", "size", "extra")
    d = Derived()
    assert (d.name, d.size, d.extra, d.describe()) == ("derived", 1, False, "derived:1")
    assert Derived("x", 2, True) == Derived(name="x", size=2, extra=True)
    assert Base() != Derived(name="", size=1)  # different classes
    assert Base.name == "" and Derived.name == "derived"  # defaults stay class attributes


def test_a_required_field_after_a_default_is_refused_like_dataclasses():
    with pytest.raises(TypeError, match="non-default argument"):

        @dataclasses.dataclass(frozen=True)
        class D:
            a: int = 0
            b: int

    with pytest.raises(TypeError, match="non-default argument"):

        class V(Value):
            a: int = 0
            b: int


def test_copies_and_pickles():
    value = Point(1, 2, ("t",), {"A": "B"}, "pw")
    assert copy.copy(value) == value and copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(value)) == value


def test_the_password_stays_out_of_repr():
    from slurmc.runtimes.base import Login

    login = Login("registry.example", "user", "hunter2")
    assert "hunter2" not in repr(login) and login.password == "hunter2"
