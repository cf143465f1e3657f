"""What a person reads on the console: the lines of it that warn (a Python warning, a logger's WARNING, a library's
notice). Tests of the commands a user types assert there are none: a warning the user did not cause is noise."""

from __future__ import annotations

import re

WARNING = re.compile(r"^.*(?:\bwarn(?:ing|ings|ed)?\b|\w+Warning\b).*$", re.IGNORECASE | re.MULTILINE)


def console_warnings(text: str) -> list[str]:
    return [line.strip() for line in WARNING.findall(text)]
