"""Who the sessions belong to: the organisation, its API keys, client labels and personas.

Persona configs follow the shape of the API's example record (LLM config with redacted
secrets, TTS provider, avatar, system prompt, zeroDataRetention ...).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Client labels as apps set them; None is "no label given". The last one is hostile on purpose.
CLIENT_LABELS = ("anam-lab-chat", "support-widget", "kiosk-frontdesk", "sales-demo",
                 "onboarding-coach", None, 'Café "kiosk" <beta> & co')
LABEL_WEIGHTS = (0.30, 0.22, 0.12, 0.10, 0.08, 0.16, 0.02)
LLM_MODELS = ("gpt-4o", "gpt-4.1-mini", "claude-3-5-sonnet", "llama-3.3-70b", "CUSTOMER_CLIENT_V1")
TTS = (("ELEVENLABS", "eleven_flash_v2_5"), ("CARTESIA", "sonic-2"), ("ELEVENLABS", "eleven_turbo_v2_5"))
AVATARS = (("cara_home", "cara-3"), ("leo_desk", "leo-2"), ("mia_studio", "mia-4"),
           ("astrid_office", "astrid-1"), ("kenji_lab", "kenji-2"))
STATEFUL_NAMES = ("Cara", "Leo", "Mia", "Astrid", "Kenji", "Support Desk", "Compliance Line")
EPHEMERAL_NAMES = ("Cara", "Alex", "Nova", "Tutor", "Zoë")
PROMPTS = ("You are a helpful assistant.",
           "You are a friendly receptionist. Keep answers short.",
           "You help customers with billing questions. Never ask for card numbers.",
           "You are a language tutor. Correct mistakes gently.")
USER_AGENTS = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15",
               "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
               "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
               "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
SDK_VERSIONS = ("3.4.1", "3.5.0", "3.5.2")


def random_uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def nanoid(rng: np.random.Generator, length: int = 21) -> str:
    return "".join(NANOID_ALPHABET[i] for i in rng.integers(0, 64, size=length))


@dataclass(frozen=True)
class Persona:
    id: str | None            # None for ephemeral personas
    name: str
    llm_id: str
    model: str
    tts: int
    voice_id: str
    avatar: int
    prompt: int
    zero_data_retention: bool
    fps: int


@dataclass(frozen=True)
class Cast:
    """Everything about who: one organisation, a few API keys, personas and labels."""

    organization_id: str
    api_keys: tuple[str, ...]
    api_key_weights: np.ndarray
    stateful: tuple[Persona, ...]
    ephemeral: tuple[Persona, ...]


def _persona(rng: np.random.Generator, name: str, stateful: bool, zdr: bool) -> Persona:
    return Persona(
        id=random_uuid(rng) if stateful else None,
        name=name,
        llm_id=random_uuid(rng),
        model=LLM_MODELS[rng.integers(len(LLM_MODELS))],
        tts=int(rng.integers(len(TTS))),
        voice_id=nanoid(rng, 20).replace("-", "x").replace("_", "y"),
        avatar=int(rng.integers(len(AVATARS))),
        prompt=int(rng.integers(len(PROMPTS))),
        zero_data_retention=zdr,
        fps=int(rng.choice([25, 25, 30])),
    )


def build_cast(rng: np.random.Generator) -> Cast:
    org = random_uuid(rng) if rng.random() < 0.5 else nanoid(rng)
    keys = tuple(random_uuid(rng) for _ in range(4))
    stateful = tuple(_persona(rng, name, True, name == "Compliance Line") for name in STATEFUL_NAMES)
    # Every ephemeral name twice: once keeping transcripts, and a rarer zero-retention variant.
    ephemeral = tuple(_persona(rng, name, False, False) for name in EPHEMERAL_NAMES) + (
        _persona(rng, "Nova", False, True),)
    return Cast(org, keys, np.array([0.55, 0.25, 0.15, 0.05]), stateful, ephemeral)


def persona_config(p: Persona) -> dict:
    """A fresh snapshot of the persona's config, shaped like the API's example."""
    tts_provider, tts_model = TTS[p.tts]
    engine_key, avatar_version = AVATARS[p.avatar]
    config: dict[str, Any] = {
        "type": "stateful" if p.id else "ephemeral",
        "name": p.name,
        "metadata": {"client": "js-sdk"},
        "llmConfig": {
            "id": p.llm_id,
            "modelName": p.model,
            "format": "openai",
            "urls": [{"url": "https://api.openai.com/v1", "region": "default"}],
            "maxTokens": 4096,
            "temperature": 0.7,
            "metadata": {},
            "secret_iv": "[REDACTED]",
            "encrypted_secret": "[REDACTED]",
            "createdByOrganizationId": None,
        },
        "systemPrompt": PROMPTS[p.prompt],
        "personality": "",
        "languageCode": "en",
        "skipGreeting": False,
        "zeroDataRetention": p.zero_data_retention,
        "ttsProvider": tts_provider,
        "ttsProviderVoiceId": p.voice_id,
        "ttsProviderModelId": tts_model,
        "ttsProviderOptions": {},
        "avatarEngineKey": engine_key,
        "avatarVersion": avatar_version,
        "disableBrains": False,
        "fillerPhrases": [],
        "useFillerPhrases": False,
        "enableAudioPassthrough": False,
        "voiceDetectionOptions": {},
        "voiceGenerationOptions": {},
        "maxSessionLengthSeconds": 1800,
        "fps": p.fps,
    }
    if p.id:
        config = {"id": p.id, **config}
    return config


def client_metadata(agent: int, sdk: int, flavour: float) -> dict:
    """What the browser SDK reports; a few clients send nothing or extra keys."""
    if flavour < 0.04:
        return {}
    meta: dict[str, Any] = {"userAgent": USER_AGENTS[agent], "sdkVersion": f"@anam-ai/js-sdk@{SDK_VERSIONS[sdk]}"}
    if flavour > 0.97:
        meta["experiment"] = {"bucket": "b", "note": "ünïcödé ✓"}
    return meta
