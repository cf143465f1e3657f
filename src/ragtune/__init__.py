"""ragtune: measure, compare and promote retrieval-augmented generation configurations."""

from ragtune.config import RagConfig
from ragtune.types import Answer, Chunk, Document, Hit, Query

__version__ = "0.1.0"
__all__ = ["Answer", "Chunk", "Document", "Hit", "Query", "RagConfig", "__version__"]
