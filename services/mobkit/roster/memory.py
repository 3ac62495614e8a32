"""An in-process roster set by code: fast domain tests and embedding applications."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mobkit.core.errors import RosterInvalid
from mobkit.core.types import DurableAgentSpec
from mobkit.roster.document import parse_entries, spec_to_entry
from mobkit.roster.domain import RosterDocument, RosterProblem
from mobkit.roster.state import RosterState


class MemoryRoster(RosterState):
    """Each :meth:`set` is validated like a file and, if valid, becomes the next revision."""

    def __init__(
        self,
        specs: Iterable[DurableAgentSpec] = (),
        profiles: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__("memory")
        self._counter = 0
        self.set(specs, profiles)

    def set(
        self, specs: Iterable[DurableAgentSpec], profiles: Mapping[str, str] | None = None
    ) -> int:
        """Replace the roster; a bad one is rejected (and raised) like a bad file edit.

        ``profiles`` defaults to every profile the specs use, each its own agent kind.
        """
        specs = tuple(specs)
        if profiles is None:
            profiles = {s.profile: s.profile for s in specs}
        try:
            checked = parse_entries(
                [(f"agents[{i}]", spec_to_entry(s)) for i, s in enumerate(specs)], profiles
            )
        except RosterInvalid as exc:
            self.reject(RosterProblem.from_error(exc))
            raise
        self._counter += 1
        self.accept(RosterDocument(checked, dict(profiles)), revision=self._counter)
        return self.revision
