"""The topology provider (CONTRACT-05): which identities may message which.

``domain`` holds the port; ``policy`` reads the ``[topology]`` configuration;
``edges`` computes the canonical edges row by row and ``provider`` pages them.
"""
