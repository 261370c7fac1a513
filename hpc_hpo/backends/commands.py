"""Running a batch system's command-line tools (sbatch, squeue, qsub, qstat ...): argv only, never a shell."""
from __future__ import annotations

import subprocess

from ..errors import BackendError

COMMAND_TIMEOUT_S = 60.0


class CommandError(BackendError):
    """A batch-system command that failed, with everything needed to see why."""

    def __init__(self, argv: list[str], code: int | None, stdout: str, stderr: str) -> None:
        self.argv, self.code, self.stdout, self.stderr = argv, code, stdout, stderr
        how = "timed out" if code is None else f"exited with {code}"
        detail = (stderr.strip() or stdout.strip())[-500:]
        super().__init__(f"`{' '.join(argv)}` {how}: {detail or '(no output)'}")


def run_command(argv: list[str], env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Run one command and return its stdout; raise CommandError if it fails, times out or cannot start."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, None, _text(exc.stdout), _text(exc.stderr)) from None
    except OSError as exc:
        raise CommandError(argv, 127, "", f"{argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stdout, done.stderr)
    return done.stdout


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""
