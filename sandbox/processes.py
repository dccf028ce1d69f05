"""Process helpers shared by the sandbox launchers (``running_powerschool``, ``running_learning``)."""

from __future__ import annotations

import signal
import subprocess


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """End a sandbox server: SIGTERM (uvicorn shuts down cleanly), then SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
