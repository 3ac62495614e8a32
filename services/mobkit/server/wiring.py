"""Settings -> the operational parts of a server: TLS, bearer-token auth, metrics.

``start_services`` passes every server config through :func:`secure_and_observe`,
so ``mobkit serve`` and ``mobkit up`` get the same behaviour from the same flags
(``--tls-cert``/``--tls-key``/``--tls-client-ca``, ``--auth-tokens-file``,
``--metrics-listen``).
"""

from __future__ import annotations

import dataclasses
import logging

from mobkit.observability import metrics
from mobkit.security.auth import TokenRegistry
from mobkit.security.tls import server_credentials_from
from mobkit.server.app import ServerConfig
from mobkit.server.config import Settings
from mobkit.server.resources import Resources

log = logging.getLogger("mobkit.server")


async def secure_and_observe(
    config: ServerConfig, settings: Settings, resources: Resources
) -> ServerConfig:
    """``config`` with credentials, authorizer and metrics observer from ``settings``.

    Starts the ``/metrics`` endpoint when ``metrics_listen`` is set; it and the
    etcd round-trip tracking end with ``resources.close()``.
    """
    credentials = server_credentials_from(settings)
    authorizer = None
    if settings.auth_tokens_file:
        registry = TokenRegistry.load(settings.auth_tokens_file)
        authorizer = registry.authorize
        if credentials is None:
            log.warning("bearer-token auth without TLS: tokens cross the network in clear text")
    untrack = metrics.track_etcd_round_trips(lambda: _round_trips(resources))

    async def stop_tracking() -> None:
        untrack()

    resources.on_close(stop_tracking)
    if settings.metrics_listen:
        endpoint = await metrics.start_metrics_server(settings.metrics_listen)
        resources.on_close(endpoint.close)
    return dataclasses.replace(
        config,
        credentials=credentials if credentials is not None else config.credentials,
        authorizer=authorizer if authorizer is not None else config.authorizer,
        observers=[*config.observers, metrics.observe_rpc],
    )


def _round_trips(resources: Resources) -> int:
    client = resources._etcd  # only read: never open a connection just for a scrape
    return client.round_trips if client is not None else 0
