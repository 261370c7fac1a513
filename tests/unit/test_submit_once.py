"""submit_once: what sbatch and qsub submission does after a failure (retry only when transient, and
never before looking whether the failed call submitted after all)."""
from __future__ import annotations

import pytest

from hpc_hpo.backends import batch
from hpc_hpo.backends.batch import SUBMIT_ATTEMPTS, submit_once
from hpc_hpo.backends.commands import CommandError

TIMEOUT = CommandError(["sbatch", "job.sh"], None, "", "")  # code None: the call timed out
REJECTED = CommandError(["sbatch", "job.sh"], 1, "", "sbatch: error: invalid partition specified: gpu")


def is_transient(exc: CommandError) -> bool:
    return exc.code is None


class Calls:
    def __init__(self, outcomes: list) -> None:
        self.outcomes, self.count = list(outcomes), 0

    def __call__(self) -> str:
        self.count += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(batch.time, "sleep", slept.append)
    return slept


def test_a_timed_out_submission_that_went_through_is_found_by_name_not_submitted_again():
    submit = Calls([TIMEOUT, "999"])
    assert submit_once(submit, lambda: ["123"], is_transient, "sbatch") == "123"
    assert submit.count == 1


def test_a_transient_failure_is_tried_again_with_a_growing_pause(no_sleep):
    submit = Calls([TIMEOUT, TIMEOUT, "456"])
    assert submit_once(submit, lambda: [], is_transient, "sbatch") == "456"
    assert submit.count == 3 and no_sleep == [1, 2]


def test_a_rejected_job_is_not_tried_again():
    submit = Calls([REJECTED, "never"])
    with pytest.raises(CommandError) as caught:
        submit_once(submit, lambda: [], is_transient, "sbatch")
    assert caught.value is REJECTED and submit.count == 1


def test_transient_failures_give_up_after_the_last_attempt():
    submit = Calls([TIMEOUT] * SUBMIT_ATTEMPTS)
    with pytest.raises(CommandError):
        submit_once(submit, lambda: [], is_transient, "sbatch")
    assert submit.count == SUBMIT_ATTEMPTS
