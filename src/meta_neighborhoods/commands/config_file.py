"""``--config FILE``: a command's options from a TOML, YAML or JSON file, or from the record of an earlier run.

Keys are the command's long option names (``max-epochs`` or ``max_epochs``). The values become the parser's
defaults, so argparse keeps its precedence: a flag on the command line wins over the file. argparse neither
converts nor checks a default, so each value is checked here against its option: its type (true or false for a
flag, a list for a list option, whose items may be numbers: ``values = [16, 64]``) and its choices. A JSON file
with a ``config`` or ``version`` key (neither is an option) is the record of a run (``config.json``,
``results.json``, ...): the command's ``options_from_record`` turns it into options, checked the same way.
Ranges are checked when the command runs, as for the command line; a refusal then names the file (``source``).

The file is untrusted: its size is bounded, YAML is read with a safe loader only (``yaml.safe_load``'s,
libyaml's where present), and every refusal is one line naming the file and the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io import once_each, parse_json
from ..validation import NONE, ConfigError, beyond_float, is_int, is_real, shown

MAX_BYTES = 1 << 20  # options fit in far less; a larger file is a mistake, not a configuration
NOT_IN_FILES = ("help", "config")  # a file naming another file would chain untrusted reads
ASKED_ONLY = ("overwrite", "resume")  # replacing or continuing a run: asked on the command line, never by a file


def int_or_none(value: str | int) -> int | str:
    """An option's type for a whole number or NONE (--top-k none: top_k=None, full attention; None itself, as the
    option's value, would read as not given), from the command line's text or a file's number (never as text: str()
    refuses an integer of over 4,300 digits, which a TOML file may hold)."""
    if is_int(value):
        return int(value)
    return _or_none(value, int, "an integer")


def float_or_none(value: str | float) -> float | str:
    """An option's type for a number or NONE (--refine-factor none: one phase of training), as ``int_or_none``."""
    if is_real(value):
        return float(value)
    return _or_none(value, float, "a number")


EMPTY_PATH = "an empty path (an unset shell variable?): give a file or folder"


def path(text: str) -> str:
    """A file or folder option's type: an empty value (an unset shell variable, ``--out "$OUT"``) would be the
    current folder, where a run would then write."""
    if not text.strip():
        raise argparse.ArgumentTypeError(EMPTY_PATH)
    return text


def _or_none(value, kind: type, what: str):
    """``value`` read as ``kind``, or NONE; otherwise argparse's error naming what the option takes (not this
    function's name)."""
    text = str(value)
    if text.lower() == NONE:
        return NONE
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what} or {NONE!r}, got {text!r:.40}") from None


SCALARS = {int: ("an integer", is_int), float: ("a number", is_real),
           None: ("a string", lambda value: isinstance(value, str)),
           int_or_none: (f"an integer or {NONE!r}", lambda value: is_int(value) or str(value).lower() == NONE),
           float_or_none: (f"a number or {NONE!r}", lambda value: is_real(value) or str(value).lower() == NONE),
           path: ("a file or folder's path", lambda value: isinstance(value, str) and value.strip() != "")}


def add_option(parser: argparse.ArgumentParser, records: tuple[str, ...]) -> None:
    """--config; ``records``: the files of its runs the command reads too (none: it reads no record)."""
    record = (f", or the record of an earlier run of this command ({' or '.join(records)})") if records else ""
    parser.add_argument("--config", metavar="FILE",
                        help=f"read options from a .toml, .yaml or .json file (keys: the long option names){record}; "
                             "options given here win over the file")


def parse(parser: argparse.ArgumentParser, argv: list[str], command: argparse.ArgumentParser | None = None,
          from_record=None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with the options of the file ``--config`` names in ``command``'s arguments
    as defaults; ``from_record`` turns a run record into options (None: the command reads none)."""
    path = _config_path(argv) if command is not None else None
    if path is None:
        return _parse(parser, argv, command)
    values, record = _read_options(Path(path), from_record)
    values = _checked(command, values, path)
    defaults = {dest: command.get_default(dest) for dest in values}
    command.set_defaults(**values)
    for action in command._actions:  # given by the file: no longer required on the command line
        action.required = action.required and action.dest not in values
    for group in command._mutually_exclusive_groups:
        group.required = group.required and not any(action.dest in values for action in group._group_actions)
        if group.required and "target" in values and not _given(group, argv):  # said before argparse's message
            raise ConfigError(f"{path} is the record of a run on a CSV file, whose path a rerun never takes from a "
                              "record (it describes the table only): give the file again with --data-file")
    args = _parse(parser, argv, command)
    _settle_exclusive(command, args, values, defaults)
    args.config_gave = {dest: path for dest, value in values.items()  # `is`: a NaN the file gave is not == itself
                        if getattr(args, dest) is value or getattr(args, dest) == value}
    args.config_record = Path(path) if record is not None else None  # a run's record, which a command may check
    args.config_recorded = record  # more of, as read
    return args


def _given(group, argv: list[str]) -> bool:
    """Whether ``argv`` gives an option of the mutually exclusive ``group`` (``--data-file x``, ``--data-file=x``)."""
    return any(arg.split("=")[0] in action.option_strings for action in group._group_actions for arg in argv)


def _parse(parser: argparse.ArgumentParser, argv: list[str], command: argparse.ArgumentParser | None):
    """``parser.parse_args(argv)``, where arguments no option takes are refused by the command's own parser, which
    names the command (``meta-neighborhoods fit: error: unrecognized arguments: --bogus``)."""
    if command is None:
        return parser.parse_args(argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        misplaced = any(extra.split("=")[0] in command._option_string_actions for extra in extras)
        command.error(f"unrecognized arguments: {' '.join(extras)}"
                      + (f" (the command's options go after its name: {command.prog} ...)" if misplaced else ""))
    return args


def source(error: ConfigError, args: argparse.Namespace) -> str:
    """``"FILE: "`` where the setting ``error`` refuses took its value from the --config FILE, else ``""``: a
    value is checked for its range only when the command runs, and the message should name the file it came from."""
    setting = (error.setting or "").split(" (")[0].lstrip("-").replace("-", "_").replace(" ", "_")
    return f"{args.config_gave[setting]}: " if setting in getattr(args, "config_gave", {}) else ""


def _config_path(argv: list[str]) -> str | None:
    """The FILE of ``--config FILE`` (abbreviations as argparse takes them); None when absent or malformed, which
    the real parse then reports."""
    finder = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    finder.add_argument("--config")
    try:
        return finder.parse_known_args(argv)[0].config
    except argparse.ArgumentError:
        return None


def _settle_exclusive(command, args, values: dict, defaults: dict) -> None:
    """A flag on the command line replaces the file's choice in its mutually exclusive group (``--data-file`` the
    file's ``dataset``, ``-v`` its ``quiet``): argparse cannot see that clash, the file's value being a default."""
    for group in command._mutually_exclusive_groups:
        members = group._group_actions
        if any(a.dest not in values and getattr(args, a.dest) != a.default for a in members):
            for action in members:
                if action.dest in values:
                    setattr(args, action.dest, defaults[action.dest])


# ---------------------------------------------------------------------------------------------------
# Reading


def _read_options(path: Path, from_record) -> tuple[dict, dict | None]:
    """The file's mapping, given as the options it ran with where it is a run's record, and that record (None: a
    file of options)."""
    values = _read(path)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values, got {type(values).__name__}")
    if path.suffix.lower() == ".json" and ("config" in values or "version" in values):
        if from_record is None:
            raise ConfigError(f"{path}: the record of a run, which this command cannot read; give a file of options")
        try:
            return from_record(values), values
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    return values, None


def _read(path: Path):
    readers = {".toml": _toml, ".yaml": _yaml, ".yml": _yaml, ".json": parse_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"{path}: unknown kind of config file; --config reads .toml, .yaml, .yml or .json")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist or is not a regular file")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // 1024} KiB, too large for a config file")
    try:
        return reader(data)
    except ConfigError as error:  # a missing reader
        raise ConfigError(f"{path}: {error}") from None
    except (ValueError, RecursionError) as error:  # TOMLDecodeError, JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {' '.join(str(error).split())}") \
            from None


def _toml(data: bytes):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, a dependency there
        import tomli as tomllib
    return tomllib.loads(data.decode("utf-8-sig"))  # a byte-order mark, as JSON's reader takes it


def _yaml(data: bytes):
    try:
        import yaml
    except ModuleNotFoundError:
        raise ConfigError("reading YAML needs PyYAML: pip install pyyaml, or use a TOML or JSON file") from None
    safe = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's where present: fast, its nesting bounded
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(data, Loader=safe)):
            raise ValueError("it uses an alias (*name), which a config file does not need: write the value out")
        loader = safe(data)  # what yaml.safe_load does, with the faster loader: plain data only, no Python objects
        try:
            node = loader.get_single_node()
            if isinstance(node, yaml.MappingNode):  # the options: each once
                once_each([(key.value, None) for key, _ in node.value if isinstance(key, yaml.ScalarNode)])
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ValueError(error) from None


# ---------------------------------------------------------------------------------------------------
# Checking


def _checked(command: argparse.ArgumentParser, values: dict, path) -> dict:
    """The file's values by destination, each checked against its option."""
    options = {option: action for action in command._actions if action.dest not in NOT_IN_FILES
               for option in action.option_strings if option.startswith("--")}
    checked, seen = {}, set()
    for key, value in values.items():
        action = options.get("--" + key.replace("_", "-")) if isinstance(key, str) else None
        if action is not None and action.dest in ASKED_ONLY and value not in (None, False):
            raise ConfigError(f"{path}: {key} is asked on the command line only (--{action.dest}), never by a file")
        if action is None:
            known = ", ".join(sorted(option[2:] for option, known in options.items() if known.dest not in ASKED_ONLY))
            raise ConfigError(f"{path}: unknown option {shown(key)} for {command.prog}; its options: {known}")
        if action.dest in seen:
            raise ConfigError(f"{path}: option {key} is given twice")
        seen.add(action.dest)
        if value is None and action.default is None:  # null: not given
            continue
        checked[action.dest] = _value(action, value, f"{path}: {key}")
    for group in command._mutually_exclusive_groups:
        both = [a.option_strings[-1] for a in group._group_actions if checked.get(a.dest, a.default) != a.default]
        if len(both) > 1:
            raise ConfigError(f"{path}: {' and '.join(both)} exclude each other")
    return checked


def _value(action: argparse.Action, value, where: str):
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {shown(value)}")
        return action.const if value else action.default
    if action.nargs is None:
        return _scalar(action, value, where)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list, got {shown(value)}")
    return [_scalar(action, str(item) if action.type is None and is_real(item) else item, where) for item in value]


def _scalar(action: argparse.Action, value, where: str):
    kind, accepts = SCALARS[action.type]
    if not accepts(value):  # a number past float's range (10**400) is none: float() would overflow
        raise ConfigError(f"{where} must be {'a finite number' if beyond_float(value) else kind}, got {shown(value)}")
    value = value if action.type is None else action.type(value)
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, action.choices))}; got {shown(value)}")
    return value
