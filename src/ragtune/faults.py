"""Named points where a test can kill the whole process group, as a power cut or the OOM killer would.

``RAGTUNE_KILL_AT=ingest.deleted`` makes the process die with SIGKILL when it reaches that point. Off unless the
variable is set; the fault tests use it to prove that a build killed midway leaves the publication serving.
"""

from __future__ import annotations

import os
import signal


def checkpoint(name: str) -> None:
    if os.environ.get("RAGTUNE_KILL_AT") == name:
        os.killpg(os.getpgid(0), signal.SIGKILL)
