"""Split an Anam `engineHost` into gateway region, Kubernetes ReplicaSet and pod name.

`connect-eu.anam.ai/v1/webrtc/engines/anam-engine-7dddcb9ccd-db8v9` →
region "eu", replicaset "anam-engine-7dddcb9ccd", pod "anam-engine-7dddcb9ccd-db8v9".
A Deployment's pod is named `<deployment>-<pod-template-hash>-<suffix>`; the hash changes with
every rollout, so the ReplicaSet name ties a session to one rollout of one deployment.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# `<deployment>-<hash>-<suffix>`: hash 5..10 and suffix exactly 5 lower-case alphanumerics.
_DEPLOYMENT_POD = re.compile(
    r"(?P<replicaset>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?-[a-z0-9]{5,10})-[a-z0-9]{5}", re.ASCII
)
# Any single DNS-1123 label (what Kubernetes accepts as a pod name).
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,251}[a-z0-9])?", re.ASCII)
# Regional gateway: `connect-<region>.<domain>`, e.g. connect-eu.anam.ai, connect-us-east-1.anam.ai.
_GATEWAY = re.compile(r"connect-(?P<region>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)", re.ASCII)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.ASCII | re.IGNORECASE)


class EngineHost(NamedTuple):
    """Parsed parts of one engineHost; a part is None when it cannot be read from the value."""

    region: str | None
    replicaset: str | None
    pod: str | None


NOT_PARSED = EngineHost(None, None, None)


def parse_engine_host(value: object) -> EngineHost:
    """Parse one engineHost value; anything unreadable yields None parts, never an error."""
    if not isinstance(value, str):
        return NOT_PARSED
    text = _SCHEME.sub("", value.strip())
    if not text or any(c.isspace() for c in text):
        return NOT_PARSED
    authority, _, path = text.partition("/")
    segments = [s for s in path.split("/") if s]
    if not segments:
        # A bare pod name (no domain, no path) is accepted when it has the Deployment shape.
        if "." not in authority and ":" not in authority:
            return _pod_parts(None, authority, require_deployment_shape=True)
        return EngineHost(_region(authority), None, None)
    # The pod is the segment after `engines/` when present, else the last path segment.
    after_engines = "engines" in segments[:-1]
    candidate = segments[segments.index("engines") + 1] if after_engines else segments[-1]
    return _pod_parts(_region(authority), candidate, require_deployment_shape=not after_engines)


def _region(authority: str) -> str | None:
    host = authority.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    first_label = host.split(".", 1)[0]
    match = _GATEWAY.fullmatch(first_label)
    return match.group("region") if match else None


def _pod_parts(region: str | None, name: str, *, require_deployment_shape: bool) -> EngineHost:
    deployment = _DEPLOYMENT_POD.fullmatch(name)
    if deployment:
        return EngineHost(region, deployment.group("replicaset"), name)
    if not require_deployment_shape and _DNS_LABEL.fullmatch(name):
        # A pod that is not from a Deployment (e.g. a StatefulSet's `engine-0`): no ReplicaSet.
        return EngineHost(region, None, name)
    return EngineHost(region, None, None)
