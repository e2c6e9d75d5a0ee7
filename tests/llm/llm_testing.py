"""Test helpers: tiny causal LMs built on the spot, a small real backend that counts its calls, and a local
chat-completions HTTP server."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kgllm.llm import BaseLLM, Generation
from kgllm.llm.base import StopTrimmer

CORPUS = [
    "Tom Hanks starred in Forrest Gump, which was directed by Robert Zemeckis.",
    "Question: who directed the films that Tom Hanks acted in? Answer: Robert Zemeckis [1] [2].",
    "Facts: [1] Forrest Gump starred actors Tom Hanks. [2] Forrest Gump directed by Robert Zemeckis.",
    "You answer questions with the help of facts from a knowledge graph. Cite every fact as [n].",
    "Kismet was directed by William Dieterle and released in 1944. Candidate answers from the graph.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_causal_lm(directory: Path, *, chat_template: str | None = None, arch: str = "gpt2",
                         n_positions: int = 512, seed: int = 0, init_std: float = 0.02) -> Path:
    """A random-weight causal LM and a BPE tokenizer trained here on a few sentences, saved to ``directory``.

    ``init_std``: the weights' spread; at the default the model's next-token distribution barely depends
    on its input, so a soft prompt could not steer it (0.2 makes it depend)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(directory)
    ids = {"bos_token_id": fast.bos_token_id, "eos_token_id": fast.eos_token_id, "pad_token_id": fast.pad_token_id}
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=n_positions,
                             initializer_range=init_std, **ids)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=len(fast), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                            initializer_range=init_std, **ids)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(directory)
    return directory


def build_tiny_sentence_encoder(directory: Path, *, dim: int = 32, seed: int = 0) -> Path:
    """A random-weight BERT sentence encoder (mean pooling) with a character-level WordPiece vocabulary,
    saved as a sentence-transformers model: for machines without the bundled MiniLM."""
    import string

    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    bert = directory / "bert"
    bert.mkdir(parents=True, exist_ok=True)
    characters = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *(f"##{c}" for c in characters)]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(bert / "vocab.txt")).save_pretrained(bert)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=dim, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * dim, max_position_embeddings=512)
    BertModel(config).save_pretrained(bert)
    word = models.Transformer(str(bert), max_seq_length=256)
    SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension())]).save(str(directory))
    return directory


class Reverser(BaseLLM):
    """A real (if simple) backend: answers with the prompt reversed. Counts its calls."""

    backend = "reverse"

    def __init__(self) -> None:
        super().__init__("rev-1")
        self.calls = 0

    def _generate(self, messages, *, max_tokens, temperature, stop):
        self.calls += 1
        text = messages[-1]["content"][::-1][:max_tokens]
        return Generation(text=StopTrimmer(stop).trim(text), prompt_tokens=len(messages[-1]["content"]),
                          completion_tokens=len(text))


# -- a local OpenAI-compatible server -------------------------------------------------------------

@dataclass
class Reply:
    """One scripted server reply."""

    status: int = 200
    body: Any = None                       # JSON body; None: a completion echoing the last user message
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                     # seconds to wait before answering
    body_delay: float = 0.0                # seconds between the headers and the body
    cut: bool = False                      # close the connection halfway through the body
    events: list[Any] | None = None        # SSE events (dicts, or raw strings sent as-is)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    time: float


class ChatServer:
    """A threaded HTTP server speaking chat completions; replies follow ``script``, then echo."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Reply] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                    body, time.monotonic()))
                    reply = server.script.pop(0) if server.script else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    if reply.events is not None:
                        self._sse(reply)
                    else:
                        self._json(reply, body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def _json(self, reply: Reply, request: dict[str, Any]) -> None:
                payload = reply.body
                if payload is None:
                    last = request["messages"][-1]["content"]
                    payload = {"id": "cmpl-1", "object": "chat.completion", "model": request.get("model"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": f"echo: {last}"}}],
                               "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
                data = json.dumps(payload).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if reply.body_delay:
                    self.wfile.flush()
                    time.sleep(reply.body_delay)
                self.wfile.write(data[: len(data) // 2] if reply.cut else data)
                if reply.cut:
                    self.wfile.flush()
                    self.close_connection = True

            def _sse(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for event in reply.events or []:
                    line = event if isinstance(event, str) else f"data: {json.dumps(event)}\n\n"
                    self.wfile.write(line.encode())
                    self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
