"""Outbound webhooks: organizations' endpoints, and the events sent to them signed per
Standard Webhooks.

- ``payloads``: which stream events become which webhook event, and their bodies (pure);
- ``addresses``: which URLs and resolved addresses may be called (SSRF rules, pure + DNS);
- ``schedule``: retry times and when an endpoint is disabled (pure);
- ``signing``: secrets and the ``webhook-*`` headers (the ``standardwebhooks`` package);
- ``repository``: endpoints and the delivery log in PostgreSQL;
- ``recorder``: the stream consumer that records one delivery per event and endpoint;
- ``sender`` / ``dispatcher``: the attempts, off the pipeline's path, per-endpoint bounded;
- ``handlers``: the request/reply API the gateway and the CLI use;
- ``service``: the wiring the catalog starts and stops.
"""
