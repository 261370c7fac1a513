"""Part of Driver (core.py): `hpc-hpo stop` requests, taken from the experiment directory at every sweep
(hpc_hpo/stop_request.py says how the request reaches the driver and what `stop` and `stop --final` mean)."""
from __future__ import annotations

from ..stop_request import take_request
from .common import log

EXIT_STOPPED = 143  # as on SIGTERM: this driver was stopped, the experiment goes on with the next run


class StopRequests:
    def _check_stop_request(self) -> None:
        """One rename per sweep. A request for another driver is stale (that driver ended before taking
        it) and is dropped; one for this driver stops it like SIGINT, in every backend mode."""
        request = take_request(self.config.experiment_dir)
        if request is None:
            return
        if request.token != self.lease.info.get("token"):
            log.info("dropped a stop request meant for an earlier driver")
            return
        if self.stop_reason is None:
            self.exit_code = 0 if request.final else EXIT_STOPPED
            self._begin_stop(request.reason, final=request.final)
        elif request.final and not self.stop_final:
            self.stop_final = True  # the stop under way now ends the experiment for good
            self.progress.say(f"{request.reason}: the experiment ends for good once the trials have stopped")
