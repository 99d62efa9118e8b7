"""sessions_frame speed and memory: 100k seed-shaped records against pandas.json_normalize,
bytes per row, and the peak RSS of building a 1,000,000-row frame (in a subprocess)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pandas as pd

from . import best_of

_OFFSETS = ["Z", "+00:00", "+02:00"]
_STATUSES = ["NORMAL_EXIT", "NORMAL_EXIT", "NORMAL_EXIT", "ERROR", "CLOSED_BY_ENGINE", "TIMEOUT"]
_HOSTS = [f"connect-{region}.anam.ai/v1/webrtc/engines/anam-engine-{rs}-{pod}"
          for region in ("eu", "us", "ap")
          for rs in ("7dddcb9ccd", "5f6b8c9d4") for pod in ("db8v9", "x2k4q", "m7p2z", "q9w8e")]


def seed_shaped_records(count: int, seed: int = 1) -> Iterator[dict]:
    """Records shaped like the OpenAPI example, parsed from JSON one 100-record page at a time
    (as the client receives them)."""
    page: list[dict] = []
    for record in _records(count, seed):
        page.append(record)
        if len(page) == 100:
            yield from json.loads(json.dumps(page))
            page = []
    yield from json.loads(json.dumps(page))


def _records(count: int, seed: int) -> Iterator[dict]:
    rng = random.Random(seed)
    end = datetime(2026, 4, 20, tzinfo=UTC)
    personas = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20)] + [None] * 5
    keys = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(5)]
    org = str(uuid.UUID(int=rng.getrandbits(128)))
    for n in range(count):
        start = end - timedelta(seconds=n * 3 + rng.random())
        active = n < 20
        length = rng.randrange(5_000, 1_800_000)
        offset = rng.choice(_OFFSETS)
        stamp = start if offset != "+02:00" else start + timedelta(hours=2)
        text = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + offset
        ended = None if active else (start + timedelta(milliseconds=length)).isoformat()
        yield {
            "id": str(uuid.UUID(int=rng.getrandbits(128))), "personaId": rng.choice(personas),
            "clientLabel": rng.choice(["anam-lab-chat", "kiosk", "support-bot"]),
            "startTime": text, "endTime": ended, "sessionLengthMs": None if active else length,
            "exitStatus": None if active else rng.choice(_STATUSES),
            "engineHost": rng.choice(_HOSTS), "engineProtocol": "https",
            "engineVersion": rng.choice(["v5.1.0", "v5.2.0"]),
            "clientMetadata": {"userAgent": "Mozilla/5.0"},
            "personaConfig": {
                "type": "ephemeral", "name": "Cara", "metadata": {"client": "js-sdk"},
                "llmConfig": {"id": "a7cf662c-2ace-4de1-a21e-ef0fbf144bb7", "modelName": "gpt-4o",
                              "format": "openai", "urls": [{"url": "https://api.openai.com/v1",
                                                            "region": "default"}],
                              "maxTokens": 4096, "temperature": 0.7, "metadata": {},
                              "secret_iv": "[REDACTED]", "encrypted_secret": "[REDACTED]",
                              "createdByOrganizationId": None},
                "systemPrompt": "You are a helpful assistant.", "personality": "",
                "languageCode": "en", "skipGreeting": False, "zeroDataRetention": False,
                "ttsProvider": "ELEVENLABS", "ttsProviderVoiceId": "lcMyyd2HUfFzxdCaC4Ta",
                "ttsProviderModelId": "eleven_flash_v2_5", "ttsProviderOptions": {},
                "avatarEngineKey": "cara_home", "avatarVersion": "cara-3", "disableBrains": False,
                "fillerPhrases": [], "useFillerPhrases": False, "enableAudioPassthrough": False,
                "voiceDetectionOptions": {}, "voiceGenerationOptions": {},
                "maxSessionLengthSeconds": 1000000, "fps": 25},
            "apiKeyId": rng.choice(keys), "organizationId": org,
            "createdAt": text, "updatedAt": ended or text,
        }


_BIG_BUILD = """
import sys
sys.path[:0] = {paths!r}
from bench import peak_rss_bytes
from bench.bench_frames import seed_shaped_records
from anam_notebooks.data.sessions import sessions_frame
frame = sessions_frame(seed_shaped_records({rows}))
assert len(frame) == {rows}
print(peak_rss_bytes(), frame.memory_usage(deep=True).sum())
"""


def _peak_rss_of_build(rows: int) -> tuple[int, int]:
    code = _BIG_BUILD.format(paths=sys.path, rows=rows)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    peak, deep = out.stdout.split()
    return int(peak), int(deep)


def _store_round_trip(frame: pd.DataFrame) -> tuple[float, float, int]:
    """Seconds to merge the frame into an empty store and to load it back; file size."""
    from anam_notebooks.data.store import SessionStore

    with tempfile.TemporaryDirectory() as directory:
        store = SessionStore(directory, base_url="https://api.anam.ai", organization_id="bench")
        write = best_of(1, lambda: store.merge(frame))
        read = best_of(3, store.load)
        return write, read, sum(p.stat().st_size for p in store.path.rglob("*.parquet"))


def main() -> None:
    from anam_notebooks.data.sessions import sessions_frame

    records = list(seed_shaped_records(100_000))
    baseline = best_of(1, partial(pd.json_normalize, records))
    ours = best_of(3, partial(sessions_frame, records))
    frame = sessions_frame(records)
    per_row = frame.memory_usage(deep=True).sum() / len(frame)
    print(f"100k records: json_normalize {baseline:.2f}s, sessions_frame {ours:.3f}s "
          f"(ratio {ours / baseline:.3f}, target <= 0.150)")
    print(f"deep memory: {per_row:.0f} bytes/row (target <= 700)")
    store_write, store_read, size = _store_round_trip(frame)
    print(f"store: write {store_write:.3f}s, load {store_read:.3f}s for 100k rows "
          f"({size / 2**20:.1f} MiB on disk); load is {store_read / ours:.2f}x the time of "
          "rebuilding the frame from records")
    del records, frame
    peak, deep = _peak_rss_of_build(1_000_000)
    print(f"1,000,000 rows from a record stream: peak RSS {peak / 2**30:.2f} GiB (target <= 1.5 GB), "
          f"frame {deep / 2**20:.0f} MiB deep")


if __name__ == "__main__":
    main()
