"""The options of every ``retrosearch train`` command, derived once from the trainers' config models.

Each option sets one field: of :class:`TrainConfig` (how to run: steps, workers, storage; the same
in every trainer) or of the method's config model (what to train). Its type, help and default come
from that field. Not given is None, so a value from the ``--config`` file's ``train`` and ``method``
sections stands unless the command line names one; the file is the one every command reads.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from retrosearch.core import cli_options as opt
from retrosearch.core.config_file import read_config_file
from retrosearch.trainers.harness.config import TrainConfig


def empty_is_none(value: Any) -> Any:
    """'' on the command line means "none" (``--title-field ''``: the corpus has no titles)."""
    return value or None


def comma_list(value: str) -> Any:
    """``a,b,c`` -> ['a', 'b', 'c']; the keyword ``all-linear`` stays as it is."""
    return value if value == "all-linear" else [part.strip() for part in value.split(",") if part.strip()]


def gpus_per_train_worker(value: float) -> bool:
    """``--gpus-per-worker`` of a trainer as ``TrainConfig.use_gpu``: Ray Train gives a worker one GPU or none."""
    if value not in (0, 1):
        raise ValueError(f"--gpus-per-worker {value:g}: a training worker uses 0 or 1 GPU (more GPUs: more --workers)")
    return value == 1


@dataclass(frozen=True)
class FieldOption:
    """One command-line option that sets the field at ``path`` (dotted into nested models).

    ``flags`` default to ``--<last-part>``; ``help`` replaces the field's description; ``type`` is
    the command-line type where the field's own cannot be parsed (a union); ``parse`` turns the
    given value into the field's value; a ``required`` option must be on the command line (what
    every run names: where the model goes, what it trains on); ``deprecated`` are old spellings
    (:func:`retrosearch.core.cli_options.deprecated`).
    """

    path: str
    flags: tuple[str, ...] = ()
    help: str | None = None
    type: Any = None
    parse: Callable[[Any], Any] | None = None
    required: bool = False
    deprecated: tuple[opt.Deprecated, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The option's names: ``flags``, else ``--<last part of the path>``."""
        return self.flags or ("--" + self.path.rsplit(".", 1)[-1].replace("_", "-"),)

    @property
    def param(self) -> str:
        """The keyword the command's wrapper receives it under."""
        return self.path.replace(".", "__")

    def annotation(self, model: type[BaseModel], panel: str, default: Any = PydanticUndefined) -> Any:
        """The ``Annotated`` option type, from ``model``'s field (``default`` overrides the one shown)."""
        info = copy.copy(_field_info(model, self.path))  # the model's own field stays as it is
        if default is not PydanticUndefined:
            info.default = default
        if self.type is not None:
            info.annotation = self.type
        return opt.field_option(info, self.names, self.help, panel, self.required, self.deprecated)

    def parameter(self, annotation: Any) -> inspect.Parameter:
        """The keyword-only parameter Typer reads this option from."""
        default = inspect.Parameter.empty if self.required else None
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _field_info(model: type[BaseModel], path: str) -> Any:
    *parents, name = path.split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    return model.model_fields[name]


#: What every trainer takes: the :class:`TrainConfig` fields a user sets per run.
RUN_OPTIONS: tuple[FieldOption, ...] = (
    FieldOption("out", help="Folder to write the trained model to", required=True),
    FieldOption("steps"),
    FieldOption("epochs"),
    FieldOption("workers", help="Ray Train workers (DDP)"),
    FieldOption("use_gpu", ("--gpus-per-worker",), "GPUs per Ray Train worker: 0 (CPU) or 1 (nccl, mixed "
                "precision) [default: 0]", type=float, parse=gpus_per_train_worker,
                deprecated=(*opt.deprecated("--use-gpu", value=1), *opt.deprecated("--no-gpu", value=0))),
    FieldOption("batch_size", ("--train-batch-size",), deprecated=opt.deprecated("--batch-size")),
    FieldOption("grad_accum"),
    FieldOption("lr", help="Peak learning rate"),
    FieldOption("warmup_ratio"),
    FieldOption("scheduler"),
    FieldOption("precision"),
    FieldOption("seed", help="Seed of the data order and of every mask"),
    FieldOption("checkpoint_every"),
    FieldOption("log_every", help="Steps between progress lines"),
    FieldOption("storage_path", ("--storage",)),
    FieldOption("name", help="Run name under the storage folder (re-run it to resume)"),
    FieldOption("threads"),
    FieldOption("ray_address"),
)


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[name] = value


def _merge(section: Mapping[str, Any], options: Sequence[FieldOption], values: Mapping[str, Any]) -> dict[str, Any]:
    """The file's section with the given options laid over it (nested sections merged, not replaced)."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in section.items()}
    for option in options:
        value = values[option.param]
        if value is not None:
            _set_path(merged, option.path, option.parse(value) if option.parse else value)
    return merged


def _validation_message(section: str, error: ValidationError, options: Sequence[FieldOption]) -> str:
    """One line per problem, naming the config key and the option that sets it."""
    by_path = {o.path: o.names[0].split("/")[0] for o in options}
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        where = f"{section}.{path}" if path else section
        flag = by_path.get(path)
        lines.append(f"{where}{f' ({flag})' if flag else ''}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def build(model: type[BaseModel], section: str, file_section: Mapping[str, Any], options: Sequence[FieldOption],
          values: Mapping[str, Any]) -> Any:
    """``model`` from a config file section and the options given, or ValueError naming the field."""
    try:
        return model.model_validate(_merge(file_section, options, values))
    except ValidationError as exc:
        raise ValueError(_validation_message(section, exc, options)) from None


def with_train_config(method_model: type[BaseModel], method_options: Sequence[FieldOption],
                      run_defaults: Mapping[str, Any] | None = None):
    """Give a train command the run options, ``method_options`` and ``--config``.

    The command declares ``train: TrainConfig`` and ``method: <method_model>`` parameters besides
    its own options and receives both validated; ``run_defaults`` are the method's own defaults of
    run fields (fine-tuning's smaller learning rate), below the file and the command line.
    """
    run_defaults = dict(run_defaults or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        added = [
            *(o.parameter(o.annotation(TrainConfig, "Run", run_defaults.get(o.path, PydanticUndefined)))
              for o in RUN_OPTIONS),
            *(o.parameter(o.annotation(method_model, "Method")) for o in method_options),
            inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=opt.ConfigFile),
        ]

        def build_configs(values: dict[str, Any]) -> dict[str, Any]:
            config: Path | None = values.pop("config")
            try:
                sections = read_config_file(config)
                method = build(method_model, "method", sections.get("method", {}), method_options, values)
                train = build(TrainConfig, "train", {**run_defaults, **sections.get("train", {})}, RUN_OPTIONS,
                              values)
            except ValueError as exc:
                raise opt.fail(str(exc)) from None
            return {"train": train, "method": method}

        return opt.rewrite_command(command, ("train", "method"), added, build_configs, "train")

    return decorate
