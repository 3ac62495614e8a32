"""Hypothesis strategies shared by the tests: one definition of a valid identity."""

from __future__ import annotations

from hypothesis import strategies as st


def identities(*, max_size: int = 30, max_codepoint: int | None = None) -> st.SearchStrategy[str]:
    """Valid identities (at most ``max_size`` characters, never over the byte bound)."""
    # Whitespace, controls, format characters and surrogates are refused in identities
    # (mobkit.core.identity); "/" too.
    chars = st.characters(
        blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cf", "Cs"),
        blacklist_characters="/",
        min_codepoint=33 if max_codepoint is not None else None,
        max_codepoint=max_codepoint,
    )
    return st.text(chars, min_size=1, max_size=min(max_size, 64)).filter(
        lambda s: not any(c.isspace() for c in s)
    )
