"""The live web dashboard: its bundled page, the HTTP server for it, and Envoy for grpc-web.

- :mod:`runstream.dashboard.server`: serves the page (built from src/clients/web by esbuild
  and shipped in ``static/``, so serving it needs no Node).
- :mod:`runstream.dashboard.envoy`: renders the Envoy configuration and runs Envoy.
- :mod:`runstream.dashboard.cli`: the ``runstream dashboard`` command that ties them together.
"""
