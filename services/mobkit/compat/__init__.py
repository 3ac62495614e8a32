"""Adapters that let other systems use MobKit's services through their own provider APIs.

Each subpackage targets one foreign API and needs that API's package (an extra):
``mobkit.compat.meerkat`` needs ``pip install mobkit[meerkat]``.
"""
