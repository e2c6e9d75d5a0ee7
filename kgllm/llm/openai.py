"""``openai:MODEL@BASE_URL`` — any OpenAI-compatible chat-completions server over HTTP.

Works with vLLM, llama.cpp's server, Ollama (``/v1``), LM Studio and hosted APIs. Requests go to
``{BASE_URL}/chat/completions`` with httpx. Failures are retried with exponential backoff on
429 and 5xx responses, timeouts and refused connections; a server's ``Retry-After`` header is
honoured. Streaming uses server-sent events (``"stream": true``).

The API key is the ``api_key`` argument, else the environment variable named by ``api_key_env``
(``OPENAI_API_KEY``), read when the backend is created; local servers usually need none.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx

from kgllm.exceptions import ConfigError, LLMError
from kgllm.llm.base import BaseLLM, Generation, Message, approx_token_count

__all__ = ["OpenAICompatibleLLM", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds a server asked us to wait (``Retry-After`` as seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unparseable: fall back to our own backoff
    return max(0.0, parsed.timestamp() - time.time())


def _redacted(url: httpx.URL) -> str:
    """The URL as names, errors and cache keys show it: a password and query values (``?api-key=``)
    are secrets, so they appear as ``***``."""
    user = f"{url.username}{':***' if url.password else ''}@" if url.username else ""
    query = "&".join(f"{key}=***" for key in url.params.keys())
    return f"{url.scheme}://{user}{url.netloc.decode('ascii')}{url.path.rstrip('/')}" + (f"?{query}" if query else "")


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"].get("message") or body["error"])
        return json.dumps(body)[:300]
    except ValueError:
        return response.text[:300]


def _content_text(content: Any) -> str:
    """A message's content as text: a string, null, or (some servers) a list of ``{"type": "text"}`` parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text") or "") for p in content if p.get("type", "text") == "text")
    raise TypeError(f"message content is {type(content).__name__}, not text")


class OpenAICompatibleLLM(BaseLLM):
    """Chat completions from an OpenAI-compatible HTTP endpoint.

    Args:
        model: the model name the server knows (e.g. ``Qwen/Qwen2.5-7B-Instruct`` for vLLM).
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        api_key: bearer token; default the ``api_key_env`` environment variable, if set.
        api_key_env: the environment variable holding the key.
        timeout: seconds per request (connect, read and write).
        max_retries: retries after the first attempt on 429/5xx, timeouts and connection errors.
        backoff: first retry delay in seconds, doubled per retry (with jitter), capped at ``max_backoff``.
        max_backoff: the longest wait between attempts, also the cap on ``Retry-After``.
        tokenizer: an optional local Hugging Face tokenizer (path or name) to count tokens exactly;
            without it a conservative estimate is used.
        extra_body: more JSON fields sent with every request (e.g. ``{"top_p": 0.9}``).
        transport: an httpx transport (for custom networking).

    Raises:
        ConfigError: a malformed base URL or invalid settings.
    """

    backend = "openai"

    def __init__(self, model: str, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0, max_retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 30.0, tokenizer: str | None = None,
                 extra_body: dict[str, Any] | None = None, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(model)
        if not model:
            raise ConfigError("openai: the model name is empty; use openai:MODEL@BASE_URL")
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigError(f"invalid base URL {base_url!r}: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"invalid base URL {base_url!r}: expected http(s)://HOST[:PORT]/PATH")
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ConfigError(f"timeout must be > 0 and max_retries, backoff >= 0; got {timeout!r}, "
                              f"{max_retries!r}, {backoff!r}")
        self.base_url = str(base_url).rstrip("/")
        # Requests go to the API root's /chat/completions, keeping a query (Azure's ?api-version=...).
        self._endpoint = url.copy_with(path=url.path.rstrip("/") + "/chat/completions")
        self._shown_url = _redacted(url)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.extra_body = dict(extra_body or {})
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers, transport=transport)
        self._tokenizer: Any = None
        if tokenizer:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(tokenizer)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load tokenizer {tokenizer!r} for counting tokens: {exc}") from exc

    @property
    def name(self) -> str:
        return f"openai:{self.model}@{self._shown_url}"

    @property
    def identity(self) -> str:
        # extra_body (top_p, seed, a LoRA adapter name...) changes the completions: part of the cache key.
        if not self.extra_body:
            return f"{self.model}@{self._shown_url}"
        body = json.dumps(self.extra_body, sort_keys=True, ensure_ascii=False, default=repr)
        return f"{self.model}@{self._shown_url}#{hashlib.sha256(body.encode()).hexdigest()[:16]}"

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        return approx_token_count(text)

    def close(self) -> None:
        self._client.close()

    def __del__(self) -> None:
        # A backend resolved from a spec string per question is dropped without close(): do not leak
        # its pooled connections (and their ResourceWarnings).
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - never raise from a finalizer
                pass

    # -- HTTP ------------------------------------------------------------------------------------
    def _payload(self, messages: list[Message], max_tokens: int, temperature: float, stop: list[str],
                 stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {**self.extra_body, "model": self.model, "messages": messages,
                                   "max_tokens": max_tokens, "temperature": float(temperature)}
        if stop:
            payload["stop"] = list(stop)
        if stream:
            payload["stream"] = True
        return payload

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            asked = _retry_after(response)
            if asked is not None:
                return min(asked, self.max_backoff)
        base = self.backoff * (2**attempt)
        return min(base + random.uniform(0, base / 4), self.max_backoff)

    def _send(self, payload: dict[str, Any]) -> httpx.Response:
        """POST with retries; returns a response with a 2xx status, open for streaming when asked.

        A non-streamed body is read here, so a body that times out or breaks off is retried too.
        """
        url = _redacted(self._endpoint)  # for messages; the request goes to self._endpoint
        last: str = ""
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                request = self._client.build_request("POST", self._endpoint, json=payload)
                response = self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self._client.timeout.read}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"cannot reach {url}: {exc or type(exc).__name__}"
            else:
                if response.is_success and payload.get("stream"):
                    return response
                try:
                    response.read()
                except httpx.TimeoutException as exc:
                    last = f"timed out after {self._client.timeout.read}s reading the response ({type(exc).__name__})"
                except httpx.TransportError as exc:
                    last = f"the response from {url} broke off: {exc or type(exc).__name__}"
                else:
                    if response.is_success:
                        return response
                    last = f"HTTP {response.status_code}: {_error_detail(response)}"
                    if response.status_code == 404:  # most often a base URL that is not the API root
                        last += (f" (POST {url}; the base URL must be the API root, such as "
                                 "http://127.0.0.1:8000/v1)")
                    if response.status_code not in _RETRY_STATUS:
                        raise LLMError(f"{self.name}: {last}")
                finally:
                    response.close()  # the body is read: json() and text still work
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, response))
        raise LLMError(f"{self.name}: request failed after {self.max_retries + 1} attempt(s): {last}")

    # -- hooks -----------------------------------------------------------------------------------
    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str]) -> Generation:
        payload = self._payload(messages, max_tokens, temperature, stop, stream=False)
        response = self._send(payload)
        try:
            body = response.json()
            choice = body["choices"][0]
            text = _content_text(choice["message"].get("content"))
            usage = body.get("usage") or {}
            if not isinstance(usage, dict):
                raise TypeError("usage is not an object")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"{self.name}: malformed chat-completions response: {response.text[:300]!r}") from exc
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        # Some servers omit usage: fall back to counting locally so cost is always reported.
        if not isinstance(prompt_tokens, int):
            prompt_tokens = self.count_message_tokens(messages)
        if not isinstance(completion_tokens, int):
            completion_tokens = self.count_tokens(text)
        return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          finish_reason=choice.get("finish_reason"))

    def _stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
                stop: list[str]) -> Iterator[str]:
        payload = self._payload(messages, max_tokens, temperature, stop, stream=True)
        response = self._send(payload)
        finished = False  # a [DONE] or a finish_reason: the server completed the text
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # SSE comments, event names and keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise LLMError(f"{self.name}: malformed stream event: {data[:200]!r}") from exc
                if isinstance(event, dict) and event.get("error"):
                    raise LLMError(f"{self.name}: server error in stream: {event['error']}")
                for choice in (event.get("choices") or []) if isinstance(event, dict) else []:
                    finished = finished or bool(choice.get("finish_reason"))
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except httpx.TimeoutException as exc:
            raise LLMError(f"{self.name}: stream timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise LLMError(f"{self.name}: stream interrupted: {exc}") from exc
        finally:
            response.close()
        if not finished:  # the connection closed mid-answer: an error, not a (cacheable) short text
            raise LLMError(f"{self.name}: the stream ended before the server finished the completion "
                           "(no finish_reason and no [DONE])")
