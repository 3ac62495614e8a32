"""The operator console: a small web app over the orchestrator's gRPC API.

Every page is read over gRPC (:mod:`mobkit.console.reader`) with the caller's own
bearer token, so the orchestrator's scope check applies; the console checks scopes
too (:mod:`mobkit.console.auth`) so a page never offers what the token may not do.
Live updates come from ``WatchEvents`` (:mod:`mobkit.console.live`). The console
keeps no state of its own: there is no second source of truth.
"""
