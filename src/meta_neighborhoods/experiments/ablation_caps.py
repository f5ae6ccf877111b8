"""Ablation values the fitted dictionary made into other values: a dictionary size above the rows a fit trains on
(capped at them), a top-k of every key there is (full attention). ``ablate``'s report and figure say where that
happened, so that equal results of two such values do not read as a finding."""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..significance import shown_p


class _Cap(NamedTuple):
    """How the fitted dictionary can make an ablated value another: when a fold's key count does, and how the
    report, the figure's point and its caption say so."""

    applies: Callable[[object, int], bool]  # (value, keys of a fold) -> the fold ran it as another value
    report: str  # the report's paragraph, {} for the values
    value: str  # one value in it: {label}, {keys}, {folds}
    point: str  # above the value's point: {keys}
    legend: str  # the caption's key to the points' notes


CAPS = {
    "dictionary_size": _Cap(lambda value, keys: keys < value,
                            "The dictionary holds at most one key per row a fit trains on: {}, so values above that "
                            "cap fit the same network there.", "{label} ran with {keys} keys{folds}", "{keys} keys",
                            "'N keys': the dictionary's size there, capped at the rows a fit trains on"),
    "top_k": _Cap(lambda value, keys: value is not None and 0 < keys <= value,
                  "A top-k of at least the dictionary's keys is full attention: {}.", "{label} (of {keys} keys{folds})",
                  "full: {keys} keys", "'full': a top-k of all the dictionary's keys, i.e. full attention"),
}


def capped_values(param: str, values: list, sizes: list) -> list[tuple[int, int, int, int] | None]:
    """Per value, where the fitted dictionary made it another value (``CAPS``): the fewest and most keys of those
    folds, their number and the folds' (None where no fold did). Equal results of such values would otherwise read
    as a finding, and unequal ones as a contradiction."""
    cap, capped = CAPS.get(param), []
    for value, got in zip(values, sizes):
        hit = [keys for keys in got if cap is not None and cap.applies(value, keys)]
        capped.append((min(hit), max(hit), len(hit), len(got)) if hit else None)
    return capped


def _keys(lo: int, hi: int, between: str) -> str:
    return f"{lo}{between}{hi}" if hi > lo else f"{lo}"


def capped_note(param: str, shown: list, capped: list) -> str:
    """``capped_values`` as a paragraph of the report ('' if it found nothing)."""
    said = [CAPS[param].value.format(label=label, keys=_keys(lo, hi, " to "),
                                     folds=f" in {hit} of {total} folds" if hit < total else "")
            for label, one in zip(shown, capped) if one for lo, hi, hit, total in [one]]
    return f"\n{CAPS[param].report.format('; '.join(said))}\n" if said else ""


def point_notes(param: str, p_values: list, capped: list) -> list[str]:
    """What the ablation figure writes above each value's point: its p against the first value and, on lines of
    their own, the keys it ran with where the dictionary capped it (``CAPS``' legend says what they mean)."""
    notes = []
    for p, one in zip(p_values, capped):
        shown = shown_p(p, 2)  # '< 0.0001' reads as it is, a value after '='
        lines = ["" if p is None else f"p {shown}" if shown.startswith("<") else f"p = {shown}"]
        if one:
            lo, hi, hit, total = one
            lines += [CAPS[param].point.format(keys=_keys(lo, hi, "–")), f"in {hit}/{total} folds" if hit < total else ""]
        notes.append("\n".join(filter(None, lines)))
    return notes
