"""TLS / mutual TLS, the dev CA, and bearer-token authentication with scopes."""
