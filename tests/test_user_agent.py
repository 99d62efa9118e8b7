"""Browser, OS and device type come from the user agent, parsed with ua-parser, null when unknown."""

from __future__ import annotations

import pandas as pd

from anam_notebooks.data.sessions import sessions_frame


def record(i: int, agent: object) -> dict:
    meta = {} if agent is None else {"userAgent": agent, "sdkVersion": "@anam-ai/js-sdk@3.6.0"}
    return {"id": f"00000000-0000-4000-8000-{i:012d}", "startTime": "2024-05-01T10:00:00Z",
            "clientMetadata": meta, "personaConfig": {"ttsProvider": "CARTESIA",
                                                      "ttsProviderModelId": "sonic-2"}}


def test_user_agent_columns():
    agents = ["Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
              "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Safari/604.1",
              "Googlebot/2.1 (+http://www.google.com/bot.html)", "<script>", None]
    df = sessions_frame([record(i, a) for i, a in enumerate(agents)])
    assert df["browser"].tolist()[:2] == ["Mobile Safari UI/WKWebView", "Chrome 131"]
    assert df["os"].tolist()[:2] == ["iOS 18", "Windows 10"]
    assert df["device_type"].tolist()[:4] == ["mobile", "desktop", "tablet", "bot"]
    assert df.iloc[4:][["browser", "os", "device_type"]].isna().all().all()
    assert all(isinstance(df[c].dtype, pd.CategoricalDtype) for c in ("browser", "os", "device_type"))
    assert set(df["tts_model"]) == {"sonic-2"}
