"""``hf:NAME_OR_PATH`` — a local Hugging Face transformers causal language model.

The model runs on CUDA when present (bfloat16 where supported), else on CPU in float32. When the
tokenizer carries a chat template, chat messages are rendered with it; otherwise they are joined
as plain text (see :func:`kgllm.llm.base.messages_to_text`). Models are only read locally: a
name that is not a directory must already be in the Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kgllm.exceptions import ConfigError, LLMError
from kgllm.llm.base import BaseLLM, Generation, Message, StopTrimmer, messages_to_text

__all__ = ["HFLLM", "StopOnText"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def _dtype_arg() -> str:
    """``from_pretrained`` took ``torch_dtype`` before transformers 4.56 and ``dtype`` since."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class StopOnText:
    """Ends generation once a stop string appears in the *generated* text.

    transformers' own ``stop_strings`` also match across the prompt's end, which stops too early.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.prompt_length = prompt_length
        self.window = max(len(s) for s in self.stop) + 2  # tokens are at least one character

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = []
        for row in input_ids:
            new = row[self.prompt_length:][-self.window:]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            done.append(any(s in text for s in self.stop))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class HFLLM(BaseLLM):
    """A transformers causal LM behind the :class:`~kgllm.llm.base.LLM` protocol.

    Args:
        model: a local model directory, or a model name already in the Hugging Face cache.
        device: ``cuda``, ``cuda:1``, ``cpu``...; default CUDA when present, else CPU.
        dtype: a torch dtype name (``float32``, ``bfloat16``, ``float16``); default by device.
        trust_remote_code: passed to transformers (off by default: runs code from the model dir).

    Raises:
        ConfigError: the path does not exist, or holds no tokenizer or no model weights.
    """

    backend = "hf"

    def __init__(self, model: str | Path, *, device: str | None = None, dtype: str | None = None,
                 trust_remote_code: bool = False) -> None:
        super().__init__(str(model))
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = Path(self.model).expanduser()
        looks_like_path = path.is_absolute() or self.model.startswith((".", "~")) or path.exists()
        if looks_like_path and not path.is_dir():
            raise ConfigError(f"hf:{self.model}: no such model directory")
        if path.is_dir():
            if not any((path / f).is_file() for f in _TOKENIZER_FILES):
                raise ConfigError(f"hf:{self.model}: the model directory has no tokenizer "
                                  f"(expected one of {', '.join(_TOKENIZER_FILES)}); save it beside the "
                                  "weights with tokenizer.save_pretrained(dir)")
            if not (path / "config.json").is_file():
                raise ConfigError(f"hf:{self.model}: the model directory has no config.json")
        self.device = device or _auto_device()
        if dtype is None:
            use_bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
            dtype = "bfloat16" if use_bf16 else "float32"
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; expected float32, bfloat16 or float16")
        dtype_arg = _dtype_arg()
        source = str(path) if path.is_dir() else self.model  # ``~/models/x`` expanded: transformers does not
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # loading is quiet unless the caller asks for progress
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                source, trust_remote_code=trust_remote_code, **{dtype_arg: torch_dtype})
        except (OSError, ValueError) as exc:
            raise ConfigError(f"hf:{self.model}: cannot load the model or tokenizer: {exc}") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self._model: Any = loaded.to(self.device)
        self._model.eval()
        self._lock = threading.Lock()  # one generate at a time: HF models are not re-entrant
        # The weights' precision changes the text too (bfloat16 on CUDA by default, float32 on CPU).
        self._identity = f"{self._fingerprint(path) if path.is_dir() else self.model}#{dtype}"

    # -- properties ------------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        return self._identity

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def context_length(self) -> int | None:
        config = self._model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", None)
        return limit if isinstance(limit, int) and limit < 10**7 else None

    @staticmethod
    def _fingerprint(path: Path) -> str:
        """Path plus the config and weight files' sizes and times: a changed model gets new cache keys."""
        digest = hashlib.sha256(str(path.resolve()).encode())
        for f in sorted(path.iterdir()):
            if f.suffix in (".json", ".safetensors", ".bin") and f.is_file():
                st = f.stat()
                digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return f"{path.resolve()}#{digest.hexdigest()[:16]}"

    # -- tokens ----------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: Sequence[Message]) -> str:
        if not self.has_chat_template:
            return messages_to_text(messages)
        try:
            return self._apply_template(messages)
        except Exception as exc:  # noqa: BLE001 - jinja2 errors raised by the model's own template
            if messages[0]["role"] != "system":
                raise LLMError(f"{self.name}: the chat template failed: {exc}") from exc
        # Some templates (Gemma, early Mistral) refuse a system role: fold it into the first user turn.
        rest = list(messages[1:])
        system = messages[0]["content"]
        if rest and rest[0]["role"] == "user":
            rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
        else:
            rest.insert(0, {"role": "user", "content": system})
        try:
            return self._apply_template(rest)
        except Exception as exc:  # noqa: BLE001
            raise LLMError(f"{self.name}: the chat template failed: {exc}") from exc

    def _apply_template(self, messages: Sequence[Message]) -> str:
        return str(self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))

    def count_message_tokens(self, messages: Sequence[Message]) -> int:
        return len(self._encode(messages)["input_ids"][0])

    def _encode(self, messages: Sequence[Message]) -> Any:
        text = self.render(messages)
        # A chat template writes its own special tokens (BOS etc.); do not add them twice.
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=not self.has_chat_template)

    # -- generation ------------------------------------------------------------------------------
    def _generate_kwargs(self, inputs: Any, max_tokens: int, temperature: float,
                         stop: list[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(inputs)
        kwargs["max_new_tokens"] = max_tokens
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            from transformers import StoppingCriteriaList

            prompt_length = int(inputs["input_ids"].shape[1])
            kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnText(self.tokenizer, stop, prompt_length)])
        pad = self.tokenizer.pad_token_id
        kwargs["pad_token_id"] = pad if pad is not None else self.tokenizer.eos_token_id
        return kwargs

    def _prepare(self, messages: list[Message], max_tokens: int) -> Any:
        inputs = self._encode(messages).to(self.device)
        n_prompt = int(inputs["input_ids"].shape[1])
        limit = self.context_length
        if limit is not None and n_prompt + max_tokens > limit:
            raise LLMError(f"{self.name}: prompt of {n_prompt} tokens plus max_tokens={max_tokens} exceeds "
                           f"the model's context of {limit} tokens; lower the fusion budget or max_tokens")
        return inputs

    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str]) -> Generation:
        import torch

        inputs = self._prepare(messages, max_tokens)
        n_prompt = int(inputs["input_ids"].shape[1])
        with self._lock, torch.inference_mode():
            output = self._model.generate(**self._generate_kwargs(inputs, max_tokens, temperature, stop))
        return self.reply(output[0][n_prompt:], n_prompt, max_tokens, stop)

    def reply(self, new_tokens: Any, prompt_tokens: int, max_tokens: int, stop: list[str]) -> Generation:
        """The generated token ids as a :class:`Generation`: decoded, cut at a stop string, and why it ended."""
        text = str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        trimmed = StopTrimmer(stop).trim(text)
        eos = self.tokenizer.eos_token_id
        if trimmed != text or (stop and len(new_tokens) < max_tokens):
            reason = "stop"
        elif len(new_tokens) and eos is not None and int(new_tokens[-1]) == eos:
            reason = "stop"
        else:
            reason = "length"
        return Generation(text=trimmed, prompt_tokens=prompt_tokens, completion_tokens=int(len(new_tokens)),
                          finish_reason=reason)

    def _stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
                stop: list[str]) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        inputs = self._prepare(messages, max_tokens)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600.0)
        kwargs = self._generate_kwargs(inputs, max_tokens, temperature, stop)
        kwargs["streamer"] = streamer
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self._model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the caller's thread below
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="kgllm-hf-generate", daemon=True)
        worker.start()
        try:
            yield from streamer
        finally:
            worker.join()
        if errors:
            raise LLMError(f"{self.name}: generation failed: {errors[0]}") from errors[0]

    def close(self) -> None:
        # The model may be shared (resolve_llm reuses loaded models): free only cached GPU blocks.
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
