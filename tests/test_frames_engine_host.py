"""The engineHost parser on the documented form and on odd-but-readable ones."""

from __future__ import annotations

import pytest

from anam_notebooks import sessions_frame
from anam_notebooks.data.engine_host import EngineHost, parse_engine_host

POD = "anam-engine-7dddcb9ccd-db8v9"
RS = "anam-engine-7dddcb9ccd"


@pytest.mark.parametrize("host, expected", [
    (f"connect-eu.anam.ai/v1/webrtc/engines/{POD}", ("eu", RS, POD)),
    (f"https://connect-eu.anam.ai/v1/webrtc/engines/{POD}", ("eu", RS, POD)),
    (f"wss://connect-eu.anam.ai/v1/webrtc/engines/{POD}/", ("eu", RS, POD)),
    (f"connect-eu.anam.ai:443/v1/webrtc/engines/{POD}", ("eu", RS, POD)),
    (f"connect-us-east-1.anam.ai/v1/webrtc/engines/{POD}", ("us-east-1", RS, POD)),
    (f"Connect-EU.Anam.AI/v1/webrtc/engines/{POD}", ("eu", RS, POD)),
    ("connect-ap.anam.ai/v1/webrtc/engines/anam-engine-canary-5f6b8c9d4-x2k4q",
     ("ap", "anam-engine-canary-5f6b8c9d4", "anam-engine-canary-5f6b8c9d4-x2k4q")),
    (f"connect-eu.anam.ai/v2/engines/{POD}?debug=1".split("?")[0], ("eu", RS, POD)),
    (POD, (None, RS, POD)),
    (f"  {POD}  ", (None, RS, POD)),
    (f"connect.anam.ai/v1/webrtc/engines/{POD}", (None, RS, POD)),
    ("connect-eu.anam.ai/v1/webrtc/engines/engine-0", ("eu", None, "engine-0")),
    ("connect-eu.anam.ai", ("eu", None, None)),
    ("connect-eu.anam.ai/v1/webrtc/engines/", ("eu", None, None)),
    ("10.10.0.17:8443", (None, None, None)),
    ("", (None, None, None)),
    ("not a host at all", (None, None, None)),
    ("<script>alert(1)</script>", (None, None, None)),
    ("engine", (None, None, None)),
    (None, (None, None, None)),
    (12345, (None, None, None)),
])
def test_parse_engine_host(host, expected):
    assert parse_engine_host(host) == EngineHost(*expected)


def test_frame_keeps_the_raw_host_when_it_does_not_parse():
    records = [{"id": "a", "engineHost": "10.10.0.17:8443"},
               {"id": "b", "engineHost": f"connect-eu.anam.ai/v1/webrtc/engines/{POD}"},
               {"id": "c", "engineHost": None}]
    df = sessions_frame(records)
    assert df.loc["a", "engine_host"] == "10.10.0.17:8443"
    assert df[["engine_region", "engine_replicaset", "engine_pod"]].loc["a"].isna().all()
    assert df.loc["b", "engine_pod"] == POD and df.loc["b", "engine_region"] == "eu"
    assert df.loc["c"][["engine_host", "engine_pod"]].isna().all()


def test_pods_of_one_replicaset_share_it():
    hosts = [f"connect-eu.anam.ai/v1/webrtc/engines/{RS}-{suffix}" for suffix in ("db8v9", "x2k4q", "m7p2z")]
    df = sessions_frame([{"id": str(i), "engineHost": h} for i, h in enumerate(hosts)])
    assert df.engine_replicaset.nunique() == 1 and df.engine_pod.nunique() == 3
