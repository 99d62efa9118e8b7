"""The column contract: each frame column and its dtype, the one definition every layer relies on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

STRING = pd.StringDtype("pyarrow")
UTC_TIME = pd.DatetimeTZDtype("us", "UTC")
TIMEDELTA = np.dtype("timedelta64[us]")
CATEGORY = "category"

# Column → dtype: the contract every layer above relies on (order is the frame's column order).
SESSION_COLUMNS: dict[str, Any] = {
    "persona_id": STRING,
    "client_label": STRING,
    "api_key_id": STRING,
    "organization_id": STRING,
    "start_time": UTC_TIME,
    "end_time": UTC_TIME,
    "created_at": UTC_TIME,
    "updated_at": UTC_TIME,
    "session_length_ms": pd.Int64Dtype(),
    "duration": TIMEDELTA,
    "exit_status": CATEGORY,
    "is_active": np.dtype(bool),
    "stale_active": np.dtype(bool),  # derived: see sessions.STALE_AFTER
    "engine_host": CATEGORY,
    "engine_protocol": CATEGORY,
    "engine_version": CATEGORY,
    "engine_region": CATEGORY,
    "engine_replicaset": CATEGORY,
    "engine_pod": CATEGORY,
    "persona_name": CATEGORY,
    "persona_type": CATEGORY,
    "llm_model": CATEGORY,
    "tts_provider": CATEGORY,
    "avatar_version": CATEGORY,
    "avatar_key": CATEGORY,
    "language_code": CATEGORY,
    "zero_data_retention": pd.BooleanDtype(),
    "user_agent": CATEGORY,
    "sdk_version": CATEGORY,
}

TRANSCRIPT_COLUMNS: dict[str, Any] = {
    "role": CATEGORY,
    "text": STRING,
    "timestamp": UTC_TIME,
    "offset": TIMEDELTA,
    "speaking_duration": TIMEDELTA,
    "interrupted": pd.BooleanDtype(),
}
