"""Command-line options shared by every layer's commands, and how they become :class:`Settings`."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from retrosearch.core.config import Settings
from retrosearch.core.config_file import read_config_file
from retrosearch.core.errors import PartialFailure, UserError


# -- options that set a Settings field: declared once, derived from the field ---------------------
@dataclass(frozen=True)
class SettingOption:
    """How the command line names one Settings field.

    The type, the help text and the default shown come from the field itself (its annotation,
    description and default); a given value is applied to every settings group that has a field
    of that name (``--hnsw-m`` sets M for FAISS and OpenSearch alike). Not given is None, so a
    ``--config`` file's value stands unless the command line names one.
    """

    field: str
    flags: tuple[str, ...] = ()
    help: str | None = None
    #: A text field the option may give several times; the values are joined with commas.
    repeatable: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The option's names: ``flags``, else ``--field-name``."""
        return self.flags or ("--" + self.field.replace("_", "-"),)


#: Every Settings field the command line can set, with the option names users already know.
SETTING_OPTIONS: dict[str, SettingOption] = {o.field: o for o in (
    SettingOption("model", ("--model", "-m")),
    SettingOption("device"), SettingOption("dtype"), SettingOption("batch_size"), SettingOption("threads"),
    SettingOption("runtime"), SettingOption("quantize"), SettingOption("dimensions"),
    SettingOption("pooling"), SettingOption("max_length"), SettingOption("query_template"),
    SettingOption("passage_template"),
    SettingOption("hnsw_m"), SettingOption("hnsw_ef_construction", ("--ef-construction",)),
    SettingOption("hnsw_ef_search", ("--ef-search",)), SettingOption("ivf_nlist", ("--nlist",)),
    SettingOption("ivf_nprobe", ("--nprobe",)), SettingOption("pq_m"),
    SettingOption("oversample"), SettingOption("rescore", ("--rescore/--no-rescore",)),
    SettingOption("url", ("--opensearch-url",), repeatable=True), SettingOption("index", ("--index-name",)),
    SettingOption("engine"), SettingOption("knn_encoder"), SettingOption("space_type"),
    SettingOption("shards"), SettingOption("replicas"),
    SettingOption("force_merge", ("--force-merge/--no-force-merge",)),
    SettingOption("hybrid_dense_weight", ("--hybrid-weight",)), SettingOption("hybrid_normalization"),
    SettingOption("host"), SettingOption("port"), SettingOption("max_batch_size"), SettingOption("max_wait_ms"),
    SettingOption("max_batch_tokens", help="padded positions (texts x longest) per forward pass: the "
                  "service's batches and the encoder's micro-batches (default 8192)"),
    SettingOption("max_queued_texts"), SettingOption("max_queued_tokens"),
    SettingOption("max_texts"), SettingOption("max_chars"), SettingOption("max_k"), SettingOption("embeddings_mode"),
    SettingOption("api_key_env"), SettingOption("search_threads"), SettingOption("ray", ("--ray",)),
    SettingOption("ray_address"), SettingOption("num_replicas", ("--replicas",)), SettingOption("min_replicas"),
    SettingOption("max_replicas"), SettingOption("num_gpus"), SettingOption("num_cpus"),
    SettingOption("max_replicas_per_node"), SettingOption("proxy_location"),
)}


@dataclass(frozen=True)
class OptionGroup:
    """Settings fields that commands take together, shown under one heading of ``--help``."""

    title: str
    fields: tuple[str, ...]


MODEL = OptionGroup("Encoder", ("model",))
ENCODER_RUNTIME = OptionGroup("Encoder", ("device", "dtype", "batch_size", "threads", "runtime", "quantize",
                                          "dimensions"))
ENCODER = OptionGroup("Encoder", ("model", *ENCODER_RUNTIME.fields))
ENCODER_SPEC = OptionGroup("Encoder spec overrides", ("pooling", "max_length", "query_template", "passage_template"))
FAISS_BUILD = OptionGroup("Index build", ("hnsw_m", "hnsw_ef_construction", "ivf_nlist", "pq_m"))
INDEX_SEARCH = OptionGroup("Index search", ("hnsw_ef_search", "ivf_nprobe", "oversample", "rescore"))
OPENSEARCH_URL = OptionGroup("OpenSearch", ("url",))
OPENSEARCH = OptionGroup("OpenSearch", ("url", "index"))
OPENSEARCH_BUILD = OptionGroup("OpenSearch index build", ("engine", "knn_encoder", "space_type", "shards",
                                                          "replicas", "force_merge"))
HYBRID = OptionGroup("Hybrid search", ("hybrid_dense_weight", "hybrid_normalization"))
SERVICE = OptionGroup("Service", ("host", "port", "max_batch_size", "max_batch_tokens", "max_wait_ms",
                                  "max_queued_texts", "max_queued_tokens", "max_texts", "max_chars", "max_k",
                                  "embeddings_mode", "api_key_env", "search_threads"))
SCALE_OUT = OptionGroup("Ray Serve", ("ray", "ray_address", "num_replicas", "min_replicas", "max_replicas", "num_gpus",
                                      "num_cpus", "max_replicas_per_node", "proxy_location"))


def _field(name: str) -> Any:
    for group in Settings.model_fields.values():
        fields = group.annotation.model_fields
        if name in fields:
            return fields[name]
    raise KeyError(f"no settings field {name!r}")


def field_option(info: FieldInfo, names: tuple[str, ...], help: str | None = None, panel: str | None = None,
                 required: bool = False) -> Any:
    """The ``Annotated`` type of an option that sets a pydantic field (default None: not given).

    Type, help text and the default shown come from the field unless ``help`` is given, so an
    option reads the same wherever the field is set from the command line. A ``required`` option
    has no None default: the command line must name it.
    """
    kinds = [a for a in typing.get_args(info.annotation) if a is not type(None)] or [info.annotation]
    base = kinds[0] if len(kinds) == 1 else info.annotation
    text = (help or info.description or "").rstrip(".") + "."
    if all(info.default is not v for v in (None, False, PydanticUndefined)) and "default" not in text:
        text += f" (default {info.default})"
    return Annotated[base if required else Optional[base], typer.Option(*names, help=text, rich_help_panel=panel)]


def setting_help(name: str) -> str:
    """The help text of the option that sets Settings field ``name`` (for commands that take the same value elsewhere)."""
    return SETTING_OPTIONS[name].help or _field(name).description or ""


def setting_option(name: str, panel: str | None = None) -> Any:
    """The ``Annotated`` type of the option that sets Settings field ``name`` (default None: not given)."""
    spec = SETTING_OPTIONS[name]
    option = field_option(_field(name), spec.names, spec.help, panel)
    if spec.repeatable:
        return Annotated[Optional[list[str]], *typing.get_args(option)[1:]]
    return option


def _joined(name: str, value: Any) -> Any:
    """A repeatable option's values as the one comma-separated text its field holds."""
    # A list from Typer, a tuple from click itself (``parse_argv`` of the Ray Serve config entry point).
    if isinstance(value, (list, tuple)) and name in SETTING_OPTIONS and SETTING_OPTIONS[name].repeatable:
        return ",".join(value) if value else None
    return value


def settings_from(values: dict[str, Any], config: Path | None = None) -> Settings:
    """:func:`build_settings` from option values keyed by field (a lone ``--flag`` bool not given is False)."""
    given = {k: (None if v is False and "/" not in SETTING_OPTIONS[k].names[0] else _joined(k, v))
             for k, v in values.items()}
    return build_settings(config, **given)


def rewrite_command(command: Callable[..., Any], receivers: Sequence[str], added: Sequence[inspect.Parameter],
                    build: Callable[[dict[str, Any]], dict[str, Any]], what: str) -> Callable[..., Any]:
    """``command`` as Typer should see it: its own options plus ``added``, whose values ``build`` turns
    into the ``receivers`` arguments (built settings, validated configs) the command is called with."""
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    missing = [name for name in receivers if name not in signature.parameters]
    if missing:
        raise TypeError(f"{command.__name__} needs {', '.join(map(repr, missing))} parameters to receive the {what}")
    own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
           if p.name not in receivers]
    clash = {p.name for p in own} & {p.name for p in added}
    if clash:
        raise TypeError(f"{command.__name__}: own parameters {sorted(clash)} hide {what} options")
    names = [p.name for p in added]

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        return command(**build(values), **kwargs)

    params = [*own, *added]
    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    del run.__wrapped__  # Typer must read the new signature, not the command's own
    return run


def with_settings(*groups: OptionGroup, config: bool = True):
    """Give a command the options of ``groups`` (and ``--config``); it receives the built ``settings``.

    The command declares a ``settings: Settings`` parameter and its own options; the groups'
    options are added to its signature for Typer, so the same options read the same way in every
    command and ``duplicates`` finds no option blocks to copy.
    """
    fields = list(dict.fromkeys(f for group in groups for f in group.fields))
    panels = {f: group.title for group in reversed(groups) for f in group.fields}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        added = [inspect.Parameter(f, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=setting_option(f, panels[f])) for f in fields]
        if config:
            added.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                                           annotation=ConfigFile))

        def build(values: dict[str, Any]) -> dict[str, Any]:
            return {"settings": settings_from({f: values[f] for f in fields}, values.get("config"))}

        run = rewrite_command(command, ("settings",), added, build, "settings")
        run.settings_fields = tuple(fields)  # type: ignore[attr-defined]
        return run

    return decorate


# Single options of commands that pass them on rather than build Settings (the trainers' own
# configuration, `bench report` handing them to each benchmark).
Model = setting_option("model")
OpenSearchUrl = setting_option("url")  # a list: join with commas to pass it on
Threads = setting_option("threads")
RayAddress = setting_option("ray_address")
PoolingOpt = setting_option("pooling")
QueryTemplate = setting_option("query_template")
PassageTemplate = setting_option("passage_template")

Backend = Annotated[str, typer.Option("--backend", "-b", help="faiss-flat, faiss-hnsw, faiss-ivfpq or opensearch.")]
SearchModeOpt = Annotated[
    str,
    typer.Option("--mode", help="dense (our vectors, any backend); with OpenSearch also neural (OpenSearch embeds the "
                 "query with our connected model), bm25 or hybrid (bm25 + dense)."),
]
ConfigFile = Annotated[
    Optional[Path],
    typer.Option("--config", help="JSON or YAML file, one section per settings group (encoder, faiss, opensearch, "
                 "serve; train and method for training); command-line options win over it."),
]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def build_settings(config: Path | None = None, **options: Any) -> Settings:
    """Settings from an optional config file's sections, overridden by the options given on the command line.

    Each option is applied to every settings group that has a field of that name (so ``hnsw_m``
    sets M for FAISS and OpenSearch alike); ``None`` means "not given", which is why every
    option's default is None: a value from the file is kept unless the command line names one.
    """
    try:
        sections = read_config_file(config)
        base = Settings.model_validate({k: v for k, v in sections.items() if k in Settings.model_fields})
    except ValueError as exc:  # unreadable file, bad JSON/YAML, unknown key, wrong type
        raise fail(str(exc) if str(exc).startswith("--config") else f"--config {config}: {exc}") from None
    groups = {name: type(getattr(base, name)) for name in Settings.model_fields}
    known = {field for model in groups.values() for field in model.model_fields}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    merged = {}
    for name, model in groups.items():
        given = {k: v for k, v in options.items() if k in model.model_fields and v is not None}
        try:
            merged[name] = model.model_validate({**getattr(base, name).model_dump(), **given})
        except ValueError as exc:
            raise fail(f"bad option value: {exc}") from None
    return Settings(**merged)


def domain_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the user's input or setup is wrong", not a bug.

    Each names the file, field, model or server at fault in its message, so a command reports
    it as one line and exit status 2, never as a traceback.
    """
    return (UserError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn :func:`domain_errors` raised inside the block into a one-line error and exit 2
    (a :class:`PartialFailure`: exit 1)."""
    try:
        yield
    except typer.Exit:
        raise
    except PartialFailure as exc:
        raise fail(str(exc), 1) from None
    except Exception as exc:
        if isinstance(exc, domain_errors()):
            raise fail(str(exc)) from None
        raise


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error (no traceback) and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
