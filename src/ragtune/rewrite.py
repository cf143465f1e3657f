"""Query rewriting through the configuration's LLM generator (``retrieval.rewrite``):

- ``hyde`` (Gao et al. 2022, "Precise Zero-Shot Dense Retrieval without Relevance Labels"): the model writes a
  passage that would answer the question; the vector leg searches with the normalised sum of the question's vector
  and that passage's (embedded as a passage). The full-text leg keeps the question's words.
- ``multi-query``: the model writes ``rewrite_queries`` rephrasings; the question and each rephrasing are searched,
  and the rankings fused by reciprocal rank (k = 60).

Replies at temperature 0 are cached like answers, so a rerun of an evaluation asks the model nothing. The tokens
a rewrite takes are added to the answer's in the token counts and the cost per query.
"""

from __future__ import annotations

from ragtune.generation import load_prompt

HYDE_PROMPT, MULTI_PROMPT = "rewrite-hyde-v1", "rewrite-multi-v1"


class Rewriter:
    def __init__(self, method: str, generator, n: int = 3):
        self.method, self.generator, self.n = method, generator, n

    def passage(self, question: str) -> tuple[str, dict]:
        """HyDE: a passage that would answer the question, and the tokens it took."""
        template, _ = load_prompt(HYDE_PROMPT)
        return self.generator.complete(template.format(question=question))

    def variants(self, question: str) -> tuple[list[str], dict]:
        """Multi-query: up to ``n`` distinct rephrasings (blank lines, list marks and repeats of the question
        dropped), and the tokens they took."""
        template, _ = load_prompt(MULTI_PROMPT)
        reply, usage = self.generator.complete(template.format(question=question, n=self.n))
        seen, out = {question.strip().lower()}, []
        for line in reply.splitlines():
            line = line.strip().lstrip("-*•0123456789.) ").strip()
            if line and line.lower() not in seen:
                seen.add(line.lower())
                out.append(line)
        return out[: self.n], usage
