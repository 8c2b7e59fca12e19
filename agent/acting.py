"""The agent loop's actions: carrying out a container plan — create, replace, start, stop, remove, files written,
images pulled — and the failures and backoff of what did not work (mixed into :class:`dsfleet.agent.loop.Agent`).

- Removals of unwanted instances run first (they free names and volumes); then the actions of one instance run in
  order, instances in parallel (:data:`APPLY_WORKERS`); an instance's actions stop at the first that is not done.
- Before a container is created the image must be on the host; a missing one is pulled in the background (the
  instance reports ``Pulling``, the loop keeps reporting).
- A failed action is recorded per instance (:mod:`dsfleet.agent.conditions`): logged once at WARNING, reported as a
  condition, retried with backoff (the plan holds the instance meanwhile). A replacement that cannot be started
  is removed and the old container runs again.
- What was applied is recorded per instance and kept in ``<state-dir>/applied.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import ParamSpec, TypeVar

from dsfleet.agent import filestore
from dsfleet.agent.admission import ADMISSION_DENIED, admit, denial_message
from dsfleet.agent.conditions import SECRET_MISSING, failure_reason, is_holding, record_failure
from dsfleet.agent.containerrequests import container_request
from dsfleet.agent.containers import (
    RUNNING_STATES,
    ActionKind,
    ContainerAction,
    FileState,
    ObservedContainer,
    Plan,
    container_name,
    engine_volume_for,
    next_name,
    volume_labels,
)
from dsfleet.agent.drift import Applied
from dsfleet.agent.errors import FileWriteError, ImageNotFoundError, NameConflictError, SecretError
from dsfleet.agent.loopstate import ImagePull, first_line
from dsfleet.agent.reporting import ReportingMixin
from dsfleet.agent.streamsync import HotCamerasMixin
from dsfleet.schemas.errors import DsfleetError
from dsfleet.schemas.labels import LABEL_INSTANCE, LABEL_NODE
from dsfleet.schemas.nodeconfigs import InstanceConfig
from dsfleet.schemas.redaction import redact

__all__ = ["APPLY_WORKERS", "ActingMixin"]

log = logging.getLogger("dsfleet.agent")
P = ParamSpec("P")
T = TypeVar("T")
APPLY_WORKERS = 4


class _Outcome(Enum):
    DONE = "done"
    FAILED = "failed"
    DEFERRED = "deferred"
    """Waiting for something that happens in the background (an image pull)."""


class _StepFailed(Exception):
    def __init__(self, step: str, error: Exception) -> None:
        super().__init__(str(error))
        self.step = step
        self.error = error


class ActingMixin(HotCamerasMixin, ReportingMixin):
    # -- files and holding, before planning -------------------------------------------------------------------

    def _file_state(self, inst: InstanceConfig) -> FileState:
        """Compare the instance's files on disk with the desired ones; the file plan (secrets filled in once per
        tick) is kept for :meth:`_write_files` to carry out. An instance this host's admission refuses is left
        as it is (nothing read, written or resolved)."""
        denials = admit(
            inst,
            self.settings.admission,
            state_dir=os.path.abspath(self.state_dir),
            realpath=os.path.realpath,
        )
        if denials:
            self._file_plans.pop(inst.name, None)
            return FileState(error=denial_message(denials), reason=ADMISSION_DENIED)
        try:
            plan, existing = filestore.instance_file_plan(self.state_dir, inst, self.secrets)
        except SecretError as exc:
            self._file_plans.pop(inst.name, None)
            return FileState(error=first_line(exc), reason=SECRET_MISSING, refs=exc.refs)
        except FileWriteError as exc:
            self._file_plans.pop(inst.name, None)
            return FileState(error=first_line(exc), reason="FilesUnwritable")
        except DsfleetError as exc:
            self._file_plans.pop(inst.name, None)
            return FileState(error=first_line(exc), reason="ConfigError")
        self._file_plans[inst.name] = plan
        return FileState(writes=tuple(w.path for w in plan.writes), removals=plan.removals, existing=existing)

    def _write_files(self, inst: InstanceConfig) -> None:
        """Write the instance's files as this tick planned them (planned again only if it was not)."""
        plan = self._file_plans.pop(inst.name, None)
        if plan is None:
            filestore.write_instance_files(self.state_dir, inst, self.secrets)
        elif not plan.empty:
            filestore.apply_file_plan(self.state_dir, inst.name, plan)

    def _holding(self, desired: Sequence[InstanceConfig]) -> set[str]:
        now = self.clock.monotonic()
        by_name = {inst.name: inst for inst in desired}
        for name in list(self._failures):
            inst = by_name.get(name)
            if inst is None or self._failures[name].config_hash != inst.configHash:
                del self._failures[name]  # a new desired config starts again from the first attempt
        for name in list(self._pulling):
            inst = by_name.get(name)
            if inst is None or inst.container.image != self._pulling[name]:
                del self._pulling[name]
        images = {inst.container.image for inst in desired}
        with self._pull_lock:
            for image in [i for i, p in self._pulls.items() if p.done.is_set() and i not in images]:
                del self._pulls[image]  # a pull nobody waits for any more
        return {name for name, f in self._failures.items() if is_holding(f, by_name[name].configHash, now)}

    # -- carrying out a plan ----------------------------------------------------------------------------------

    def _carry_out(
        self, plan: Plan, by_name: Mapping[str, InstanceConfig], generation: int | None
    ) -> list[ContainerAction]:
        """Apply the plan's actions (an engine volume kept as in use is not tried again before the next resync);
        returns the actions tried."""
        actions = [
            a
            for a in plan.actions
            if not (a.kind is ActionKind.REMOVE_VOLUME and a.volume in self._kept_volumes)
        ]
        acted = {a.instance for a in actions}
        for name in list(self._failures):
            if name not in acted and name not in plan.waiting:
                del self._failures[name]  # nothing left to do: converged
                self._errors.pop(name, None)
        # removals of unwanted instances first (they free names and volumes); then each instance's actions in
        # order, instances in parallel
        removals = [a for a in actions if a.instance not in by_name]
        groups: dict[str, list[ContainerAction]] = {}
        for a in actions:
            if a.instance in by_name:
                groups.setdefault(a.instance, []).append(a)
        outcomes = [self._apply(a, None, generation) for a in removals]
        runs = [(by_name[name], group) for name, group in groups.items()]
        if len(runs) > 1:
            with ThreadPoolExecutor(max_workers=APPLY_WORKERS, thread_name_prefix="apply") as pool:
                for result in pool.map(lambda r: self._apply_group(r[0], r[1], generation), runs):
                    outcomes.extend(result)
        else:
            for inst, group in runs:
                outcomes.extend(self._apply_group(inst, group, generation))
        self._status_dirty = True
        if _Outcome.DONE in outcomes or _Outcome.FAILED in outcomes:
            self._dirty = (
                True  # look again at once: the status shows the result (a failure then waits its retry)
            )
        return actions

    def _settled(
        self, plan: Plan, actions: Sequence[ContainerAction], by_name: Mapping[str, InstanceConfig]
    ) -> bool:
        """Whether the host runs the desired config: nothing found, waited for, failing or pulled, and nothing
        done this tick but removing old engine volumes."""
        return (
            not plan.findings
            and not plan.waiting
            and all(a.kind is ActionKind.REMOVE_VOLUME for a in actions)
            and not any(name in by_name for name in self._failures)
            and not self._pulling
        )

    def _keep_applied(self) -> None:
        if self.applied != self._saved_applied:
            try:
                filestore.save_applied(self.state_dir, self.applied)
                self._saved_applied = dict(self.applied)
            except DsfleetError as exc:
                log.error("cannot keep applied.json: %s", exc)

    def _apply_group(
        self, inst: InstanceConfig, actions: Sequence[ContainerAction], generation: int | None
    ) -> list[_Outcome]:
        outcomes = []
        for action in actions:
            outcome = self._apply(action, inst, generation)
            outcomes.append(outcome)
            if outcome is not _Outcome.DONE:
                break
        return outcomes

    def _container(self, container_id: str | None) -> ObservedContainer | None:
        return next((c for c in self._observed if c.id == container_id), None)

    def _forget_container(self, name: str, container_id: str) -> None:
        """The agent removed this container itself: its absence is no drift."""
        record = self.applied.get(name)
        if record is not None and record.container_id == container_id:
            del self.applied[name]

    def _apply(
        self, action: ContainerAction, inst: InstanceConfig | None, generation: int | None
    ) -> _Outcome:
        name = action.instance
        log.info(
            "%s instance=%s container=%s%s%s reason=%s",
            action.kind,
            name,
            (action.container_id or "")[:12],
            f" next={action.next_id[:12]}" if action.next_id else "",
            f" volume={action.volume}" if action.volume else "",
            action.reason,
        )
        step = str(action.kind)
        try:
            if action.kind is ActionKind.REMOVE:
                assert action.container_id is not None
                step = "remove"
                self.runtime.remove(action.container_id)
                if inst is None and name:
                    for vol in self._volumes:
                        if vol.labels.get(LABEL_INSTANCE) == name and vol.labels.get(LABEL_NODE) == self.node:
                            self.runtime.remove_volume(vol.name)
                    filestore.remove_instance_dir(self.state_dir, name)
                    self.applied.pop(name, None)
                    self._drift.pop(name, None)
                    self._failures.pop(name, None)
                elif name:
                    self._forget_container(name, action.container_id)
                return _Outcome.DONE
            if action.kind is ActionKind.REMOVE_VOLUME:
                assert action.volume is not None
                try:
                    self.runtime.remove_volume(action.volume)
                except DsfleetError as exc:
                    self._kept_volumes.add(action.volume)
                    log.info("engine volume kept volume=%s: %s", action.volume, first_line(exc))
                return _Outcome.DONE
            if inst is None:
                return _Outcome.DONE
            outcome = self._act(action, inst, generation)
        except _StepFailed as exc:
            return self._failed(action, inst, exc.step, exc.error)
        except NameConflictError as exc:
            self._clashes.add(exc.name)
            self._errors[name] = str(exc)
            log.warning("instance=%s %s", name, exc)
            return _Outcome.FAILED
        except DsfleetError as exc:
            return self._failed(action, inst, step, exc)
        if outcome is _Outcome.DONE and action.kind is not ActionKind.ROLLBACK:
            self._errors.pop(name, None)
            for kind in action.heals:
                self._mark_healed(name, kind)
        return outcome

    # -- failures -----------------------------------------------------------------------------------------------

    def _failed(
        self, action: ContainerAction, inst: InstanceConfig | None, step: str, error: Exception
    ) -> _Outcome:
        name = action.instance
        message = first_line(error)
        self._errors[name] = message
        if inst is None:
            log.warning("%s failed instance=%s step=%s error=%s", action.kind, name, step, message)
            return _Outcome.FAILED
        self._record_failure(inst, failure_reason(step, error), f"{step}: {message}", action)
        return _Outcome.FAILED

    def _record_failure(
        self, inst: InstanceConfig, reason: str, message: str, action: ContainerAction
    ) -> None:
        failure = record_failure(
            self._failures.get(inst.name),
            inst.name,
            reason=reason,
            message=message,
            config_hash=inst.configHash,
            now=self.clock.monotonic(),
            wall=self.clock.time(),
        )
        self._failures[inst.name] = failure
        self._pulling.pop(inst.name, None)
        log.warning(
            "%s failed instance=%s reason=%s attempt=%d retry_in=%.1fs error=%s",
            action.kind,
            inst.name,
            reason,
            failure.attempts,
            failure.retry_at - self.clock.monotonic(),
            redact(message, self._secret_values),
        )

    # -- actions --------------------------------------------------------------------------------------------

    @staticmethod
    def _run(step: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args)``; an error is the failure of ``step`` (a name clash stays what it is)."""
        try:
            return fn(*args, **kwargs)
        except NameConflictError:
            raise
        except DsfleetError as exc:
            raise _StepFailed(step, exc) from exc

    def _image_ready(self, inst: InstanceConfig) -> bool:
        """Whether the instance's image is on the host; a missing one is pulled in the background (False until
        it is there). Raises ``_StepFailed`` when it cannot be had."""
        with self._pull_lock:  # two instances of one image: one pull
            return self._image_ready_locked(inst)

    def _image_ready_locked(self, inst: InstanceConfig) -> bool:
        image = inst.container.image
        pull = self._pulls.get(image)
        if pull is not None:
            if not pull.done.is_set():
                self._pulling[inst.name] = image
                return False
            del self._pulls[image]
            if pull.error is not None:
                self._pulling.pop(inst.name, None)
                raise _StepFailed("image", pull.error)
        try:
            present = self.runtime.has_image(image)
        except DsfleetError as exc:
            raise _StepFailed("image", exc) from exc
        if present:
            if self._pulling.pop(inst.name, None) is not None:
                log.info("image pulled instance=%s image=%s", inst.name, image)
            return True
        if pull is not None:
            raise _StepFailed("image", ImageNotFoundError(image, "still absent after a pull"))
        log.info("pulling instance=%s image=%s", inst.name, image)
        self._pulls[image] = ImagePull(self.runtime, image, self._pull_done)
        self._pulling[inst.name] = image
        return False

    def _secret_env(self, inst: InstanceConfig) -> dict[str, str]:
        secret_env: dict[str, str] = {}
        problems: list[SecretError] = []
        for var, ref in sorted(inst.container.envSecrets.items()):
            try:
                cred = self.secrets.get(ref.secretRef)
            except SecretError as exc:
                problems.append(exc)
                continue
            value = cred.username if ref.key == "username" else cred.password
            secret_env[var] = value or ""
        if problems:
            raise SecretError.combine(problems)
        return secret_env

    def _create(self, inst: InstanceConfig, generation: int | None, name: str) -> str:
        """Files written, engine volume ensured, secret env files written (``<state-dir>/envsecrets/<name>/``,
        the variables pointing at them), the container created (not started) under ``name``."""
        assert self.node is not None
        self._run("files", self._write_files, inst)
        volume = engine_volume_for(inst, self._volumes, self.node)
        self._run("volume", self.runtime.ensure_volume, volume, volume_labels(inst, self.node))
        secret_env = self._run("secrets", self._secret_env, inst)
        secrets_dir = self._run("secrets", filestore.write_env_secrets, self.state_dir, inst.name, secret_env)
        nvidia = bool(self.runtime_info and self.runtime_info.nvidia)
        request = container_request(
            inst,
            self.node,
            generation,
            str(filestore.instance_dir(self.state_dir, inst.name)),
            os.path.abspath(secrets_dir) if secret_env else None,
            nvidia=nvidia,
            name=name,
            engine_volume=volume,
        )
        return self._run("create", self.runtime.create, request)

    def _previous_image(self, inst: InstanceConfig, old: ObservedContainer | None) -> str | None:
        record = self.applied.get(inst.name)
        if old is not None and old.image and old.image != inst.container.image:
            return old.image
        return record.previous_image if record else None

    def _act(self, action: ContainerAction, inst: InstanceConfig, generation: int | None) -> _Outcome:
        name = inst.name
        kind = action.kind
        stop_timeout = self.settings.stop_timeout
        if kind is ActionKind.CREATE:
            if not self._image_ready(inst):
                return _Outcome.DEFERRED
            previous = self.applied.get(name)
            cid = self._create(inst, generation, container_name(name))
            self.applied[name] = Applied(
                cid, inst.specHash, inst.filesHash, generation, previous.previous_image if previous else None
            )
            if action.start:
                self._run("start", self.runtime.start, cid)
            return _Outcome.DONE
        if kind is ActionKind.RECREATE:
            assert action.container_id is not None
            if not self._image_ready(inst):
                return _Outcome.DEFERRED
            old = self._container(action.container_id)
            previous_image = self._previous_image(inst, old)
            self._run("remove", self.runtime.remove, action.container_id)
            self._forget_container(name, action.container_id)
            cid = self._create(inst, generation, container_name(name))
            self.applied[name] = Applied(cid, inst.specHash, inst.filesHash, generation, previous_image)
            if action.start:
                self._run("start", self.runtime.start, cid)
            return _Outcome.DONE
        if kind in (ActionKind.REPLACE, ActionKind.START_NEXT):
            assert action.container_id is not None
            old = self._container(action.container_id)
            nid = action.next_id
            if nid is None:
                if not self._image_ready(inst):
                    return _Outcome.DEFERRED
                nid = self._create(inst, generation, next_name(name))
            else:
                self._run("files", self._write_files, inst)
            if kind is ActionKind.START_NEXT:
                self._start_next(nid, old, stop_old=False)
                return _Outcome.DONE
            if action.start:
                self._start_next(nid, old, stop_old=True)
            self._finish(inst, action.container_id, nid, old, generation, start=False)
            return _Outcome.DONE
        if kind is ActionKind.FINISH:
            assert action.next_id is not None
            nxt = self._container(action.next_id)
            start = action.start and nxt is not None and nxt.state == "created"
            self._finish(
                inst,
                action.container_id,
                action.next_id,
                self._container(action.container_id),
                generation,
                start=start,
            )
            return _Outcome.DONE
        if kind is ActionKind.ROLLBACK:
            assert action.next_id is not None and action.container_id is not None
            self._run("remove", self.runtime.remove, action.next_id)
            old = self._container(action.container_id)
            if action.start and (old is None or old.state not in RUNNING_STATES):
                self._run("start", self.runtime.start, action.container_id)
            self._errors[name] = action.reason
            self._record_failure(inst, action.condition or "StartFailed", action.reason, action)
            return _Outcome.DONE
        assert action.container_id is not None
        cid = action.container_id
        if kind is ActionKind.RESTART:
            if self._apply_hot(inst, cid, self._file_plans.get(name)):  # only cameras changed: no restart
                self._file_plans.pop(name, None)
                self.applied[name] = self._applied_now(inst, cid, generation)
                return _Outcome.DONE
            self._run("files", self._write_files, inst)
            self._run("restart", self.runtime.restart, cid, stop_timeout)
            self.applied[name] = self._applied_now(inst, cid, generation)
        elif kind is ActionKind.WRITE_FILES:
            self._run("files", self._write_files, inst)
            self.applied[name] = self._applied_now(inst, cid, generation)
        elif kind is ActionKind.START:
            self._run("start", self.runtime.start, cid)
            self._mark_paused(name, cid, False)
        elif kind is ActionKind.STOP:
            self._run("stop", self.runtime.stop, cid, stop_timeout)
            self._mark_paused(name, cid, inst.paused)
        return _Outcome.DONE

    def _mark_paused(self, name: str, cid: str, paused: bool) -> None:
        """Remember whether the agent itself stopped the container for a pause (the plan starts it again)."""
        record = self.applied.get(name)
        if record is not None and record.container_id == cid and record.paused != paused:
            self.applied[name] = dataclasses.replace(record, paused=paused)

    def _applied_now(self, inst: InstanceConfig, cid: str, generation: int | None) -> Applied:
        record = self.applied.get(inst.name)
        return Applied(
            cid,
            inst.specHash,
            inst.filesHash,
            generation,
            record.previous_image if record else None,
            paused=record is not None and record.container_id == cid and record.paused,
        )

    def _start_next(self, nid: str, old: ObservedContainer | None, *, stop_old: bool) -> None:
        """Start the replacement (the old one stopped first when ``stop_old``); on failure the replacement is
        removed and the old one runs again."""
        old_running = old is not None and old.state in RUNNING_STATES
        if stop_old and old is not None and old_running:
            self._run("stop", self.runtime.stop, old.id, self.settings.stop_timeout)
        try:
            self.runtime.start(nid)
        except DsfleetError as exc:
            try:
                self.runtime.remove(nid)
                if stop_old and old is not None and old_running:
                    self.runtime.start(old.id)
            except DsfleetError as again:
                log.error(
                    "rollback failed container=%s: %s", (old.id if old else nid)[:12], first_line(again)
                )
            raise _StepFailed("start", exc) from exc

    def _finish(
        self,
        inst: InstanceConfig,
        old_id: str | None,
        nid: str,
        old: ObservedContainer | None,
        generation: int | None,
        *,
        start: bool,
    ) -> None:
        """The replacement takes over: the old container removed, the new one renamed (and started when asked)."""
        name = inst.name
        previous_image = self._previous_image(inst, old)
        if old_id is not None:
            self._run("remove", self.runtime.remove, old_id)
            self._forget_container(name, old_id)
        self._run("rename", self.runtime.rename, nid, container_name(name))
        plan = self._file_plans.get(name)
        files_hash = inst.filesHash if plan is None or plan.empty else ""
        self.applied[name] = Applied(nid, inst.specHash, files_hash, generation, previous_image)
        if start:
            self._run("start", self.runtime.start, nid)
