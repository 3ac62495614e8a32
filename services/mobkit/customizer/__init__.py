"""The agent customizer (CONTRACT-04): changes a build draft before a session is built.

``domain`` holds the port; ``rules`` is the built-in declarative customizer
configured by ``[customizer]``; ``client`` reaches any AgentCustomizerService,
e.g. a user's own written in another language (see clients/customizer-node).
"""
