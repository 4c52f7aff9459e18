"""Command-line options shared by every layer's commands, and how they become :class:`Settings`."""

from __future__ import annotations

import copy
import enum
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.console import Console

from retrosearch.core.config import Settings
from retrosearch.core.config_file import read_config_file
from retrosearch.core.errors import PartialFailure, UserError
from retrosearch.core.index import BackendName, SearchMode

# -- old spellings of renamed options: accepted for one release, hidden, with a deprecation line --
_NO_VALUE: Any = object()


@dataclass(frozen=True)
class Deprecated:
    """An old spelling of an option, kept for one release after a rename.

    Put it in the option's ``Annotated[...]`` beside ``typer.Option``; :func:`accept_deprecated`
    (applied by :func:`with_settings` and the trainers' options) turns it into a hidden option that
    sets the new one and prints one deprecation line on stderr. ``value`` makes the old spelling a
    bare flag standing for that value of the new option (``--json`` for ``--json-out -``).
    """

    name: str
    value: Any = _NO_VALUE

    @property
    def is_flag(self) -> bool:
        """Whether the old spelling is a bare flag standing for ``value``."""
        return self.value is not _NO_VALUE

    def instead(self, option: str, negative: str) -> str:
        """What to write instead: ``option``, with the value an old bare flag stands for (a boolean
        one: the option itself or its ``negative``)."""
        if not self.is_flag:
            return option
        if isinstance(self.value, bool):
            return option if self.value else negative
        return f"{option} {self.value}"


@dataclass(frozen=True)
class AliasParam:
    """One hidden parameter standing for a deprecated spelling of ``target``'s option (``option``;
    ``instead`` is what the deprecation line tells the user to write)."""

    target: str
    option: str
    alias: Deprecated
    required: bool
    default: Any = None
    instead: str = ""


def deprecated(*names: str, value: Any = _NO_VALUE) -> tuple[Deprecated, ...]:
    """Old spellings of one option (``deprecated("--input", "-i")``)."""
    return tuple(Deprecated(name, value) for name in names)


def _long_names(info: Any, parameter: str) -> tuple[str, str]:
    """The option's first long name and its boolean negative (Typer keeps the first name given in
    ``default`` under Annotated; a boolean without a declared negative gets ``--no-<name>``)."""
    given = [getattr(info, "default", None), *(getattr(info, "param_decls", None) or ())]
    decls = [d for d in given if isinstance(d, str) and d.startswith("--")]
    name = decls[0].split("/")[0] if decls else "--" + parameter.replace("_", "-")
    negative = decls[0].split("/")[1] if decls and "/" in decls[0] else "--no-" + name[2:]
    return name, negative


def _option_info(metadata: Sequence[Any]) -> Any:
    return next((m for m in metadata if type(m).__name__ == "OptionInfo"), None)


REQUIRED_NOTE = "[required]"


def _still_shown(metadata: Any, required: bool, default: Any) -> Any:
    """A copy of an ``OptionInfo`` that still says on ``--help`` what its parameter default (now
    None) no longer does: Typer's ``[required]`` note, or the default."""
    if type(metadata).__name__ != "OptionInfo":
        return metadata
    marked = copy.copy(metadata)
    if required:  # escaped: Rich would take a bare [required] for markup
        marked.help = f"{(metadata.help or '').rstrip()} \\{REQUIRED_NOTE}".strip()
    elif default not in (None, [], False) and not isinstance(metadata.show_default, str):
        marked.show_default = shown_default(default, [d for d in (metadata.default, *metadata.param_decls)
                                                      if isinstance(d, str) and d.startswith("--")])
    return marked


def accept_deprecated(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with a hidden option for each :class:`Deprecated` spelling in its annotations.

    Built once here so that every command keeps its old spellings the same way: the old option
    is absent from ``--help``, sets the new option's parameter (the new one wins when both are
    given) and prints ``warning: OLD is deprecated; use NEW`` on stderr. The new option's parameter
    defaults to None so that "not given" is known (its real default is applied here and still shown
    by ``--help``), and a required one is checked here, since either spelling may give it. The
    hidden parameters are listed in the returned command's ``deprecated_aliases``.
    """
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    params: list[inspect.Parameter] = []
    hidden_params: list[inspect.Parameter] = []  # keyword-only, so after every other parameter
    aliases: dict[str, AliasParam] = {}
    for p in signature.parameters.values():
        annotation = hints.get(p.name, p.annotation)
        metadata = getattr(annotation, "__metadata__", ())
        olds = [m for m in metadata if isinstance(m, Deprecated)]
        if not olds:
            params.append(p.replace(annotation=annotation))
            continue
        kept = [m for m in metadata if not isinstance(m, Deprecated)]
        base = annotation.__origin__
        required = p.default is inspect.Parameter.empty
        default = None if required else p.default
        kept = [_still_shown(m, required, default) for m in kept]
        params.append(p.replace(annotation=Annotated[(Optional[base], *kept)], default=None))
        new_name, negative = _long_names(_option_info(kept), p.name)
        for old in olds:
            name = f"{p.name}__{old.name.lstrip('-').replace('-', '_')}"
            instead = old.instead(new_name, negative)
            hidden = typer.Option(old.name, hidden=True, help=f"Deprecated: {instead}.")
            kind = bool if old.is_flag else Optional[base]
            hidden_params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                            default=False if kind is bool else None,
                                            annotation=Annotated[kind, hidden]))
            aliases[name] = AliasParam(p.name, new_name, old, required, default, instead)
    if not aliases:
        return command
    params += hidden_params

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        return command(**resolve_deprecated(aliases, kwargs))

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    run.deprecated_aliases = aliases  # type: ignore[attr-defined]
    del run.__wrapped__  # Typer must read the new signature
    return run


def resolve_deprecated(aliases: dict[str, AliasParam], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (parameter -> value, as Typer parsed them) with each deprecated spelling given
    folded into its new option, one deprecation line per spelling used."""
    values = dict(values)
    for name, alias in aliases.items():
        given = values.pop(name, None)
        if given is None or given is False or given == []:
            continue
        old = alias.alias
        typer.secho(f"warning: {old.name} is deprecated and will be removed; use {alias.instead}",
                    fg=typer.colors.YELLOW, err=True)
        if values.get(alias.target) in (None, []):
            values[alias.target] = old.value if old.is_flag else given
    for alias in aliases.values():
        if alias.required and values.get(alias.target) in (None, []):
            raise fail(f"missing option {alias.option}")
        if values.get(alias.target) is None:
            values[alias.target] = alias.default
    return values


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
    deprecated: tuple[Deprecated, ...] = ()
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
                  "service's batches and the encoder's micro-batches; the service uses 8192 when unset"),
    SettingOption("max_queued_texts"), SettingOption("max_queued_tokens"),
    SettingOption("max_texts"), SettingOption("max_chars"), SettingOption("max_k"), SettingOption("embeddings_mode"),
    SettingOption("api_key_env"), SettingOption("search_threads"), SettingOption("ray", ("--ray",)),
    SettingOption("ray_address"),
    SettingOption("num_replicas", ("--serve-replicas",), deprecated=deprecated("--replicas")),
    SettingOption("min_replicas"), SettingOption("max_replicas"),
    SettingOption("num_gpus", ("--gpus-per-worker",), "GPUs per Ray Serve replica", deprecated("--num-gpus")),
    SettingOption("num_cpus", ("--cpus-per-worker",), "CPUs per Ray Serve replica", deprecated("--num-cpus")),
    SettingOption("max_replicas_per_node"), SettingOption("proxy_location"),
    SettingOption("ray_ingress"),
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
                                      "num_cpus", "max_replicas_per_node", "proxy_location", "ray_ingress"))


def _field(name: str) -> Any:
    for group in Settings.model_fields.values():
        fields = group.annotation.model_fields
        if name in fields:
            return fields[name]
    raise KeyError(f"no settings field {name!r}")


_DEFAULT_NOTE = re.compile(r"\s*\[default: ([^\]]*)\]")


def shown_default(value: Any, names: Sequence[str] = ()) -> str:
    """``value`` as ``--help`` shows a default (a flag pair's default as the flag's own name)."""
    if isinstance(value, bool) and names and "/" in names[0]:
        return names[0].split("/")[0 if value else 1].lstrip("-")
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def split_default(text: str) -> tuple[str, str | None]:
    """A help text without its ``[default: x]`` note, and x (None without one).

    Field descriptions name a default that depends on the run ("16 on CPU, 128 on GPU") that way;
    the option shows it through Typer's own ``show_default``, so every default on ``--help`` looks
    alike (Typer's ``[default: x]``) and no help text carries one of its own.
    """
    found = _DEFAULT_NOTE.search(text)
    if not found:
        return text, None
    return _DEFAULT_NOTE.sub("", text).rstrip(" ."), found.group(1)


def field_option(info: FieldInfo, names: tuple[str, ...], help: str | None = None, panel: str | None = None,
                 required: bool = False, deprecated: Sequence[Deprecated] = ()) -> Any:
    """The ``Annotated`` type of an option that sets a pydantic field (default None: not given).

    Type, help text and the default shown come from the field unless ``help`` is given, so an
    option reads the same wherever the field is set from the command line. A ``required`` option
    has no None default: the command line must name it. ``deprecated`` are its old spellings.
    """
    base = info.annotation
    if typing.get_origin(base) in (typing.Union, types.UnionType):  # X | None: the option's type is X
        kinds = [a for a in typing.get_args(base) if a is not type(None)]
        base = kinds[0] if len(kinds) == 1 else base
    text, shown = split_default(help or info.description or "")
    text = text.rstrip(".") + "."
    if shown is None and all(info.default is not v for v in (None, False, PydanticUndefined)):
        shown = shown_default(info.default, names)
    option = typer.Option(*names, help=text, rich_help_panel=panel, show_default=shown if shown is not None else True)
    return Annotated[(base if required else Optional[base], option, *deprecated)]


def setting_help(name: str) -> str:
    """The help text of the option that sets Settings field ``name`` (for commands that take the same value elsewhere)."""
    return SETTING_OPTIONS[name].help or _field(name).description or ""


def setting_option(name: str, panel: str | None = None) -> Any:
    """The ``Annotated`` type of the option that sets Settings field ``name`` (default None: not given)."""
    spec = SETTING_OPTIONS[name]
    option = field_option(_field(name), spec.names, spec.help, panel, deprecated=spec.deprecated)
    if spec.repeatable:
        return Annotated[Optional[list[str]], *typing.get_args(option)[1:]]
    return option


def _joined(name: str, value: Any) -> Any:
    """A repeatable option's values as the one comma-separated text its field holds."""
    # A list from a command, a tuple from a bare parse (`serve`'s options given as argv by Ray Serve).
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
    return accept_deprecated(run)


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

def choice_enum(name: str, names: Sequence[str]) -> type[enum.Enum]:
    """A str Enum of ``names``, for a repeatable option with fixed choices (Typer takes ``list[Enum]``,
    not ``list[Literal]``); :func:`chosen_names` turns what it parsed back into the names."""
    return enum.Enum(name, {n: n for n in names}, type=str)  # type: ignore[return-value]


def chosen_names(chosen: Sequence[Any]) -> list[str]:
    """The names of repeatable choices parsed by a :func:`choice_enum` option."""
    return [getattr(c, "value", c) for c in chosen]


BackendChoice = choice_enum("BackendChoice", typing.get_args(BackendName))
SearchModeChoice = choice_enum("SearchModeChoice", typing.get_args(SearchMode))
Backend = Annotated[BackendName, typer.Option("--backend", "-b", help="Index backend (the registry's names).")]
SEARCH_MODE_HELP = ("dense (our vectors, any backend); with OpenSearch also neural (OpenSearch embeds the query "
                    "with our connected model), bm25 or hybrid (bm25 + dense).")
SearchModeOpt = Annotated[SearchMode, typer.Option("--mode", help=SEARCH_MODE_HELP)]
ConfigFile = Annotated[
    Optional[Path],
    typer.Option("--config", help="JSON or YAML file, one section per settings group (encoder, faiss, opensearch, "
                 "serve; train and method for training); command-line options win over it."),
]
JSON_OUT_HELP = "Also write the figures as JSON to this file ('-': to stdout instead of the tables)."
#: ``--json-out PATH``: every command that can write JSON takes it so; ``-`` is stdout.
JsonOut = Annotated[Optional[Path], typer.Option("--json-out", help=JSON_OUT_HELP), *deprecated("--json")]


def json_out_option(help: str, flag_was: bool = False) -> Any:
    """``--json-out`` with a command's own help; ``flag_was``: the old spelling was a bare ``--json``
    flag (printing to stdout), kept as ``--json-out -``."""
    old = deprecated("--json", value="-") if flag_was else deprecated("--json")
    return Annotated[(Optional[Path], typer.Option("--json-out", help=help), *old)]


def to_stdout(path: Path | None) -> bool:
    """Whether a ``--json-out`` value means stdout (:func:`retrosearch.core.retrieval.report.write_json` writes it there)."""
    return path is not None and str(path) == "-"
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


def result_console() -> Console:
    """The console a command prints its result lines on.

    Soft wrap: a result line (paths, backend, dimension, rates) stays one line at any terminal width,
    so logs and scripts that read it find each figure where it was printed. Tables still fit the width.
    """
    return Console(soft_wrap=True)
