"""Each version's pydantic models, generated from the head's and the field instructions.

Walking down from the head, every :class:`~.changes.FieldChange` of a
version is undone to get its predecessor's fields; a model is rebuilt (same
name, config, docstring and validators of the fields it keeps) only where its
fields differ from the head's or it holds a rebuilt model, so an unchanged
schema stays the very head class. Request validation (422 with *that*
version's field names) and each version's OpenAPI document come from here.
Pydantic has no "model minus a field"; :func:`pydantic.create_model` is the
supported way to build one, and this module only decides what to give it.

Kept on a generated model: the config, the docstring, the constraints of
every field it keeps, field validators whose fields it still has, and model
validators only if it has every field of the head's model. Not supported: a
change inside a recursive model (it keeps the head's shape below its first
level).
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Union

from pydantic import BaseModel, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from ..errors import ConfigurationError
from .changes import FieldChange, VersionChange
from .versions import Label

__all__ = ["SchemaVersions", "models_in"]

Fields = dict[str, tuple[Any, FieldInfo]]


def _is_model(value: Any) -> bool:
    return inspect.isclass(value) and issubclass(value, BaseModel)


def models_in(annotation: Any, found: set[type[BaseModel]] | None = None) -> set[type[BaseModel]]:
    """Every pydantic model ``annotation`` holds, itself and inside its fields."""
    found = set() if found is None else found
    if _is_model(annotation):
        if annotation not in found:
            found.add(annotation)
            for info in annotation.model_fields.values():
                models_in(info.annotation, found)
        return found
    for arg in typing.get_args(annotation):
        models_in(arg, found)
    return found


def _head_fields(model: type[BaseModel]) -> Fields:
    return {name: (info.annotation, info) for name, info in model.model_fields.items()}


class SchemaVersions:
    """The models of every version of a chain, keyed by the head model.

    :param chain: ``(label, changes)`` from the head down to the oldest
        version; each version's changes lead to it from the next entry.
    :param universe: the head models the routes use (nested ones included).
    :raises ConfigurationError: an instruction that does not fit its schema,
        naming the change.
    """

    def __init__(
        self,
        chain: Sequence[tuple[Label, Sequence[type[VersionChange]]]],
        universe: Iterable[type[BaseModel]],
    ) -> None:
        models: set[type[BaseModel]] = set()
        for model in universe:
            models_in(model, models)
        self.universe = frozenset(models)
        self.head = chain[0][0]
        #: Label -> head model -> that version's model.
        self.models: dict[Label, dict[type[BaseModel], type[BaseModel]]] = {}
        current: dict[type[BaseModel], Fields] = {m: _head_fields(m) for m in models}
        for index, (label, _changes) in enumerate(chain):
            self.models[label] = self._build(current)
            if index + 1 < len(chain):
                for change in reversed(chain[index][1]):
                    for instruction in reversed(change.field_changes):
                        self._undo(current, instruction, change, label)

    def model(self, label: Label, head: type[BaseModel]) -> type[BaseModel]:
        """``head``'s model in version ``label``."""
        return self.models[label].get(head, head)

    def annotation(self, label: Label, annotation: Any) -> Any:
        """``annotation`` (``list[UserOut]``, a model, ...) in version ``label``."""
        mapping = self.models[label]
        return _rewrite(annotation, lambda model: mapping.get(model, model))

    def _undo(
        self,
        current: dict[type[BaseModel], Fields],
        instruction: FieldChange,
        change: type[VersionChange],
        label: Label,
    ) -> None:
        model, name = instruction.model, instruction.name
        where = f"{change.__name__} (version {label})"
        if model not in current:
            raise ConfigurationError(
                f"{where}: {model.__name__} is not a request, query or response schema of "
                "any route of the head, nor inside one"
            )
        fields = current[model]
        kind = instruction.kind
        if kind == "removed":
            if name in fields:
                raise ConfigurationError(
                    f"{where}: {model.__name__}.{name} was removed, but version {label} still "
                    "has it (removed() names the field the older version had)"
                )
            fields[name] = (instruction.annotation, _field_info(instruction, None))
            return
        if name not in fields:
            raise ConfigurationError(
                f"{where}: {model.__name__} has no field {name!r} in version {label} "
                f"({kind}() names the field as the newer version has it)"
            )
        if kind == "added":
            del fields[name]
        elif kind == "renamed":
            old = instruction.old_name
            assert old is not None
            if old in fields:
                raise ConfigurationError(
                    f"{where}: {model.__name__}.{name} was renamed from {old!r}, but version "
                    f"{label} already has a field {old!r}"
                )
            annotation, info = fields[name]
            # The older name is what goes on the wire: the newer's alias is not it.
            renamed = copy.copy(info)
            renamed.alias = renamed.validation_alias = renamed.serialization_alias = None
            current[model] = {
                (old if key == name else key): ((annotation, renamed) if key == name else value)
                for key, value in fields.items()
            }
        else:  # retyped
            fields[name] = (instruction.annotation, _field_info(instruction, fields[name][1]))

    def _build(
        self, current: dict[type[BaseModel], Fields]
    ) -> dict[type[BaseModel], type[BaseModel]]:
        built: dict[type[BaseModel], type[BaseModel]] = {}
        building: set[type[BaseModel]] = set()

        def build(model: type[BaseModel]) -> type[BaseModel]:
            if model in built:
                return built[model]
            if model in building or model not in current:
                return model  # recursive, or not ours: left as the head has it
            building.add(model)
            fields = current[model]
            head = model.model_fields
            changed = list(fields) != list(head)
            rebuilt: Fields = {}
            for name, (annotation, info) in fields.items():
                new = _rewrite(annotation, build)
                if new is not annotation or name not in head or info is not head[name]:
                    changed = True
                rebuilt[name] = (new, info)
            building.discard(model)
            result = _create(model, rebuilt) if changed else model
            built[model] = result
            return result

        for model in current:
            build(model)
        return {head: model for head, model in built.items() if head is not model}


def _field_info(instruction: FieldChange, newer: FieldInfo | None) -> FieldInfo:
    """The older field's info: its default (or the newer's), its description."""
    if instruction.has_default:
        default = instruction.default
    elif newer is not None and not newer.is_required():
        default = newer.default
    else:
        default = ...
    description = instruction.description or (newer.description if newer else None)
    info: FieldInfo = FieldInfo(default=default, description=description)
    return info


def _create(model: type[BaseModel], fields: Fields) -> type[BaseModel]:
    """``model`` with ``fields``: same name, config, docstring, and the
    validators whose fields it still has."""
    validators: dict[str, Any] = {}
    decorators = model.__pydantic_decorators__
    for name, decorator in decorators.field_validators.items():
        wanted = decorator.info.fields
        if all(field_name in fields for field_name in wanted):
            validators[name] = field_validator(*wanted, mode=decorator.info.mode)(
                _unbound(decorator.func)
            )
    # A model validator reads fields by name: only a model that kept all of the
    # head's fields keeps it (a version change must not run it on other names).
    keeps_all = set(model.model_fields) <= set(fields)
    for name, model_decorator in decorators.model_validators.items() if keeps_all else ():
        mode: Any = model_decorator.info.mode
        validators[name] = model_validator(mode=mode)(_unbound(model_decorator.func))  # type: ignore[no-untyped-call]
    definitions: dict[str, Any] = {
        name: (annotation, copy.copy(info)) for name, (annotation, info) in fields.items()
    }
    created: type[BaseModel] = create_model(
        model.__name__,
        __config__=model.model_config,
        __doc__=model.__doc__,
        __module__=model.__module__,
        __validators__=validators,
        **definitions,
    )
    created.__qualname__ = model.__qualname__
    return created


def _unbound(func: Any) -> Any:
    """A validator function as the class body had it (a bound classmethod back
    to a ``classmethod``)."""
    inner = getattr(func, "__func__", None)
    return classmethod(inner) if inner is not None else func


def _rewrite(annotation: Any, swap: Callable[[type[BaseModel]], type[BaseModel]]) -> Any:
    """``annotation`` with every model swapped (inside lists, unions, dicts, ...)."""
    if _is_model(annotation):
        return swap(annotation)
    args = typing.get_args(annotation)
    if not args:
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return annotation
    if origin is Annotated:
        inner = _rewrite(args[0], swap)
        if inner is args[0]:
            return annotation
        return Annotated[(inner, *annotation.__metadata__)]
    new = tuple(_rewrite(arg, swap) for arg in args)
    if all(a is b for a, b in zip(args, new, strict=True)):
        return annotation
    if origin is Union or origin is types.UnionType:
        return Union[new]  # noqa: UP007
    if isinstance(annotation, types.GenericAlias):
        return types.GenericAlias(origin, new)
    copy_with = getattr(annotation, "copy_with", None)
    if copy_with is not None:
        return copy_with(new)
    return annotation
