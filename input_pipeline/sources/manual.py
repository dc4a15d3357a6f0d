"""Datasets a user must download by hand (terms to accept): where the file goes and how it reads.

A :class:`ManualSource` knows its official download page, the exact file
names it accepts (plain or as distributed, see :mod:`input_pipeline.raw_files`),
the layout of each, its action codes and its literature defaults. Finding the
file is a directory listing, so a missing file is reported at once, before
TensorFlow is even imported.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Mapping, Optional

from input_pipeline.errors import DataUnavailableError
from input_pipeline.raw_files import candidate_names, find_raw_file
from input_pipeline.schema import Interactions
from input_pipeline.sources.rows import RowCollector

Reader = Callable[[BinaryIO, RowCollector, Optional[frozenset]], Iterator[Interactions]]


@dataclass(frozen=True)
class RawFormat:
    """One accepted file: its exact name, how to read it, and what its timestamps mean."""

    data_file: str
    read: Reader
    time_unit: str
    description: str
    distributed_as: tuple[str, ...] = ()

    @property
    def accepted_names(self) -> list[str]:
        """The plain file, its compressed forms, and the archives it is published in."""
        return candidate_names(self.data_file) + list(self.distributed_as)


@dataclass(frozen=True)
class ManualOptions:
    """Everything that changes what preparation produces from one raw file.

    ``actions`` None = every action. :attr:`name` spells out the non-default
    options, so differently prepared data get different folders.
    """

    category: Optional[str]
    k_core: int
    dedupe: bool
    skip_bad_rows: bool
    actions: Optional[tuple[str, ...]]
    default_k_core: int

    @property
    def name(self) -> str:
        parts = [self.category.lower() if self.category else "default"]
        if self.k_core != self.default_k_core:
            parts.append(f"k{self.k_core}")
        if not self.dedupe:
            parts.append("keepdups")
        if self.skip_bad_rows:
            parts.append("skipbad")
        if self.actions is not None:
            parts.append("actions" + "".join(self.actions))
        return "-".join(parts)


@dataclass(frozen=True)
class ManualSource:
    """A dataset behind a licence click-through: found in the manual folder, never downloaded."""

    name: str
    title: str
    homepage: str
    how_to_get: str
    formats: Callable[[Optional[str]], list[RawFormat]]
    default_k_core: int
    actions: Optional[Mapping[str, str]] = None  # code -> meaning; None: the layout has no action column
    needs_category: bool = False

    def options(
        self,
        *,
        category: Optional[str] = None,
        k_core: Optional[int] = None,
        dedupe: bool = True,
        skip_bad_rows: bool = False,
        actions: Optional[frozenset[str]] = None,
    ) -> "ManualOptions":
        """Validated options; ``k_core`` None = this source's default; ValueError for bad ones."""
        if self.needs_category != bool(category):
            raise ValueError(
                f"{self.name} needs a category, e.g. --dataset={self.name}/beauty" if self.needs_category
                else f"{self.name} has no categories; use --dataset={self.name}"
            )
        self.check_actions(actions)
        if actions is not None and set(actions) == set(self.actions):
            actions = None
        return ManualOptions(
            category=category.lower() if category else None,
            k_core=self.default_k_core if k_core is None else k_core,
            dedupe=dedupe,
            skip_bad_rows=skip_bad_rows,
            actions=tuple(sorted(actions)) if actions is not None else None,
            default_k_core=self.default_k_core,
        )

    def instructions(self, manual_dir: pathlib.Path, category: Optional[str] = None) -> str:
        """What to download and where to put it (also the builder's MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        raw_formats = self.formats(category or "<Category>")
        names = [raw.data_file for raw in raw_formats]
        accepted = "; ".join(f"{raw.data_file} (or {', '.join(raw.accepted_names[1:])})" for raw in raw_formats)
        return (
            f"{self.title}: download it from {self.homepage} ({self.how_to_get}) and place "
            f"{' or '.join(names)} in {manual_dir}/ . Accepted (names matched case-insensitively): {accepted}."
        )

    def locate(self, manual_dir: pathlib.Path, category: Optional[str] = None) -> tuple[pathlib.Path, RawFormat]:
        """The raw file and its format; DataUnavailableError (with instructions) if absent."""
        for raw in self.formats(category):
            path = find_raw_file(manual_dir, raw.accepted_names)
            if path is not None:
                return path, raw
        raise DataUnavailableError(f"no raw file for {self.name}. {self.instructions(manual_dir, category)}")

    def check_actions(self, actions: Optional[frozenset]) -> None:
        """ValueError unless ``actions`` are codes this source has."""
        if actions is None:
            return
        if self.actions is None:
            raise ValueError(f"{self.name} has no action types; leave actions unset")
        unknown = sorted(set(actions) - set(self.actions))
        if unknown or not actions:
            known = ", ".join(f"{code} = {meaning}" for code, meaning in self.actions.items())
            raise ValueError(f"{self.name} actions must be a non-empty subset of: {known} (got {sorted(actions)})")
