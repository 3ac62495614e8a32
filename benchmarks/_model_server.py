"""A loopback OpenAI-compatible model answering at once (``FakeOpenAI``'s default
reply), run as a child process so it takes no time from the benchmark's client."""

from __future__ import annotations

import sys
import threading

from mobkit.testing.fake_openai import FakeOpenAI


def main() -> None:
    with FakeOpenAI() as model:
        print(f"serving {model.base_url}", file=sys.stderr, flush=True)
        threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
