"""Many agents at once: `sbexportd export a.zip zoo/ more/ --to ... --out DIR`.

Every SB2 file found (folders are searched recursively; VecNormalize statistics are
not agents) is exported by `export()` into DIR/<agent>/<target>/, on a pool of worker
processes on this machine (`workers`), or as Ray tasks on a cluster (`ray_address`).
The serving targets gather every agent into one repository each, which is what their
engines load: DIR/tfserving/ (NAME/1/ per agent, one models.config listing them all)
and DIR/triton/ (NAME/ per agent), each agent's manifest.json in its NAME/ folder.

An agent that fails (unreadable, unsupported, a target whose parity check fails, a
worker process that died) is a row of the summary; the others go on. The summary,
one row per agent and target with the parity figures, is returned, printed as a
table and written as DIR/summary.json."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ExportError, OutputExists
from .core import resolve_targets
from .transaction import sweep

SUMMARY = "summary.json"
AGENT_SUFFIXES = (".zip", ".pkl")
# Files beside agents that are not agents: the zoo's VecNormalize statistics.
NOT_AGENTS = {"vecnormalize.pkl", "obs_rms.pkl", "ret_rms.pkl"}
REPOSITORY_TARGETS = ("tfserving", "triton")
ATTEMPTS = 2  # an agent whose worker process died is tried once more, alone in a fresh pool


@dataclass
class Job:
    """One agent to export: where it is, what its folder and repository name are."""
    id: str       # its path relative to the inputs' common folder, without suffix: DIR/<id>/
    path: str
    name: str     # its model name in the serving repositories
    attempts: int = 0  # times its worker process died under it
    # targets whose output (DIR/<id>/<target>/) was there before the run: replaced only
    # with force. Any other output there is this run's own, installed by an attempt
    # whose worker then died, and a retry replaces it.
    existed: list[str] = field(default_factory=list)


@dataclass
class Options:
    to: list[str]
    out: str
    force: bool = False
    verify: bool = True
    vecnormalize: str | None = None
    frame_stack: str | None = None
    algo: str | None = None
    activation: str | None = None


@dataclass
class Summary:
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    executor: str = ""
    targets: list[str] = field(default_factory=list)
    agents: int = 0
    repositories: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["ok"]]

    def as_dict(self) -> dict[str, Any]:
        return {"format": "sbexportd-export-summary", "format_version": 1, "sbexportd_version": __version__,
                "executor": self.executor, "seconds": round(self.seconds, 3), "agents": self.agents,
                "targets": self.targets, "exports": len(self.rows), "failed": len(self.failed),
                "repositories": self.repositories, "rows": self.rows}


# --- finding agents ------------------------------------------------------------------------
def find_agents(inputs: list[str | Path]) -> list[Job]:
    """The agents under `inputs` (files, or folders searched recursively), each once,
    with unique folder ids and repository names. An agent's id is its path in the
    folder given (prefixed with the folder's name when several inputs are given), or
    its file's stem (its folder's name for a generic model.zip)."""
    from .targets._serving import _GENERIC_STEMS
    found: list[tuple[str, Path]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            prefix = [given.resolve().name] if len(inputs) > 1 else []
            for p in sorted(given.rglob("*")):
                rel = p.relative_to(given)
                if (p.is_file() and p.suffix in AGENT_SUFFIXES and p.name not in NOT_AGENTS
                        and not any(part.startswith(".") for part in rel.parts)):
                    found.append(("/".join(prefix + list(rel.with_suffix("").parts)), p))
        elif given.exists():
            generic = given.stem.lower() in _GENERIC_STEMS and given.resolve().parent.name
            found.append((f"{given.resolve().parent.name}/{given.stem}" if generic else given.stem, given))
        else:
            raise FileNotFoundError(2, "No such file or directory", str(given))
    seen: set[Path] = set()
    unique = []
    for i, p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append((i, p))
    if not unique:
        raise ExportError(f"no SB2 agent (.zip, .pkl) found in {', '.join(map(str, inputs))}")
    ids = [i for i, _ in unique]
    # two files of one stem (agent.zip and agent.pkl) keep their suffixes apart
    ids = [f"{i}_{p.suffix[1:]}" if ids.count(i) > 1 else i for i, (_, p) in zip(ids, unique, strict=True)]
    ids = [i if ids.count(i) == 1 else f"{i}-{n}" for n, i in enumerate(ids, 1)]
    return [Job(i, str(p.resolve()), n) for i, (_, p), n in zip(ids, unique, _names(ids), strict=True)]


def _names(ids: list[str]) -> list[str]:
    """Repository names: the file's stem (its folder's name for a generic model.zip),
    with the algorithm folder the zoo keeps it in (ppo2/CartPole-v1 ->
    ppo2_CartPole-v1), and more of the path only where two agents would share a name
    (zoo-more_agents_ppo2_CartPole-v1 beside zoo_agents_ppo2_CartPole-v1)."""
    from ..understand.context import ALGORITHMS
    from .targets._serving import _GENERIC_STEMS, safe_name
    parts = {}
    for i in ids:
        p = i.split("/")
        stem, _, suffix = p[-1].rpartition("_")
        if len(p) > 1 and p[-1].lower() in _GENERIC_STEMS:
            p = p[:-1]
        elif len(p) > 1 and stem.lower() in _GENERIC_STEMS and suffix in ("zip", "pkl"):  # model.zip + model.pkl
            p = p[:-2] + [f"{p[-2]}_{suffix}"]
        parts[i] = p
    depth = {i: 2 if len(p) > 1 and p[-2].lower() in ALGORITHMS else 1 for i, p in parts.items()}
    while True:
        names = {i: safe_name("_".join(p[-depth[i]:])) for i, p in parts.items()}
        seen: dict[str, list[str]] = {}
        for i, n in names.items():
            seen.setdefault(n, []).append(i)
        grow = [i for group in seen.values() if len(group) > 1 for i in group if depth[i] < len(parts[i])]
        if not grow:
            return [names[i] for i in ids]
        for i in grow:
            depth[i] += 1


# --- one agent, in a worker ----------------------------------------------------------------
def export_agent(job: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    """Load one agent and export it to every target under out/<id>/: one summary row
    per target. Never raises for the agent's own faults (that is a row)."""
    import sbexportd

    from .core import export

    opts = Options(**options)
    start = time.perf_counter()
    folder = Path(opts.out) / job["id"]
    try:
        model = sbexportd.load(job["path"], opts.vecnormalize, algo=opts.algo, activation=opts.activation,
                               frame_stack=opts.frame_stack)
        model.serving_name = job["name"]
    except Exception as exc:  # noqa: BLE001 - the agent's failure is its rows
        return [_row(job, t, None, exc, time.perf_counter() - start) for t in opts.to]
    rows: list[dict[str, Any]] = []
    load_seconds = time.perf_counter() - start
    for target in opts.to:  # one export each: a target that fails leaves the others
        began = time.perf_counter()
        try:
            (result,) = export(model, [target], folder, force=opts.force or target not in job.get("existed", ()),
                               verify=opts.verify)
        except Exception as exc:  # noqa: BLE001
            rows.append(_row(job, target, None, exc, time.perf_counter() - began))
            continue
        rows.append(_row(job, target, result, getattr(result, "error", None), result.seconds))
    rows[0]["load_seconds"] = round(load_seconds, 3)
    if job.get("attempts"):  # its worker died under an earlier attempt
        for row in rows:
            row["attempt"] = job["attempts"] + 1
    return rows


def _row(job: dict[str, Any], target: str, result, error, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"agent": job["id"], "file": job["path"], "name": job["name"], "target": target,
                           "ok": error is None, "seconds": round(seconds, 3)}
    if result is not None and error is None:
        parity = result.parity
        row.update(path=str(result.path), files=len(result.files) + 1, bytes=result.size, parity=parity,
                   max_abs_error=max(parity.get("max_abs_error", {}).values(), default=0.0)
                   if parity.get("verified") else None)
    if error is not None:
        row["error"] = {"code": getattr(error, "code", "internal"),
                        "message": (f"{type(error).__name__}: {error}" if not getattr(error, "code", None)
                                    else str(error))[:1000]}
    return row


# --- the run ---------------------------------------------------------------------------------
def export_many(inputs: list[str | Path], to: str | list[str], out: str | Path, *, workers: int = 1,
                ray_address: str | None = None, force: bool = False, verify: bool = True,
                vecnormalize: str | None = None, frame_stack: str | None = None, algo: str | None = None,
                activation: str | None = None,
                on_agent: Callable[[list[dict[str, Any]], int, int], None] | None = None) -> Summary:
    """Export every agent of `inputs` to `to` under `out` (module docstring)."""
    names = resolve_targets(to)
    out = Path(out).resolve()
    jobs = find_agents(inputs)
    options = asdict(Options(names, str(out), force, verify, vecnormalize, frame_stack, algo, activation))
    out.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.existed = [t for t in names if (out / job.id / t).exists()]
    summary = Summary(targets=names, agents=len(jobs))
    start = time.perf_counter()
    done = 0

    def finished(rows: list[dict[str, Any]]) -> None:
        nonlocal done
        done += 1
        sweep(out / rows[0]["agent"])  # what a worker that died there left (its .txn staging)
        rows = _gather(rows, out, force)
        summary.rows.extend(rows)
        if on_agent:
            on_agent(rows, done, len(jobs))

    if ray_address:
        summary.executor = f"ray {ray_address}"
        _run_ray(jobs, options, ray_address, finished)
    else:
        summary.executor = f"{workers} worker process{'es' if workers > 1 else ''}"
        _run_pool(jobs, options, workers, finished)
    for job in jobs:  # agents whose only targets went into the repositories
        _prune(out / job.id, out)
    for target in REPOSITORY_TARGETS:
        repo = out / target
        if target in names and repo.is_dir():
            if target == "tfserving":
                from .targets.tfserving import CONFIG, write_models_config
                write_models_config(repo)
                summary.repositories[target] = str(repo / CONFIG)
            else:
                summary.repositories[target] = str(repo)
    order = {j.id: i for i, j in enumerate(jobs)}
    summary.rows.sort(key=lambda r: (order[r["agent"]], names.index(r["target"])))
    summary.seconds = time.perf_counter() - start
    (out / SUMMARY).write_text(json.dumps(summary.as_dict(), indent=1, default=str) + "\n")
    return summary


def _gather(rows: list[dict[str, Any]], out: Path, force: bool) -> list[dict[str, Any]]:
    """Move each agent's serving exports into the shared repositories: the NAME/
    folder renamed into out/<target>/, its manifest.json inside it."""
    for row in rows:
        if row["target"] not in REPOSITORY_TARGETS or not row["ok"]:
            continue
        single = Path(row["path"])          # out/<id>/<target>/, a one-agent repository
        repo = out / row["target"]
        repo.mkdir(exist_ok=True)
        source, final = single / row["name"], repo / row["name"]
        try:
            (single / "manifest.json").rename(source / "manifest.json")
            _replace(source, final, force)
        except (OSError, OutputExists) as exc:
            row.update(ok=False, error={"code": getattr(exc, "code", "os_error"), "message": str(exc)})
            continue
        finally:
            shutil.rmtree(single, ignore_errors=True)
        row["path"] = str(final)
    return rows


def _replace(source: Path, final: Path, force: bool) -> None:
    if not final.exists():
        source.rename(final)
        return
    if not force:
        raise OutputExists(f"{final} already exists; pass --force to replace", final)
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    old.rmdir()
    final.rename(old)
    source.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _prune(folder: Path, out: Path) -> None:
    """Remove folders left empty between out/ and folder (once every worker is done:
    a worker may be making a sibling's folders meanwhile)."""
    while folder != out and folder.is_dir() and not any(folder.iterdir()):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


_STARTED: Any = None  # in a pool's worker: one flag per job of its pool, set as the job begins


def _worker_init(started) -> None:
    global _STARTED
    _STARTED = started


def _tracked(work, slot: int, job: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    """In a pool's worker: mark the job begun, then do it. The mark is a write to shared
    memory, so it outlives a worker that dies a moment later (a Queue's put would sit
    in its feeder thread's buffer and die with it)."""
    _STARTED[slot] = 1
    return work(job, options)


def _run_pool(jobs: list[Job], options: dict[str, Any], workers: int, finished, work=None) -> None:
    """A pool of `workers` processes (spawned: each imports TensorFlow once and keeps it
    warm for the agents it is given).

    A worker that dies breaks the whole pool, and concurrent.futures cannot say which
    job killed it: every unfinished job fails alike. So the agents that had not begun
    go on in a fresh pool, and each that had begun (the one that killed its worker and
    any that were running beside it) is tried again alone, in a pool of its own: only
    an agent whose worker dies every time it is tried (ATTEMPTS) is lost. A rerun
    replaces what its earlier attempt installed (`Job.existed`)."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    work = work or export_agent

    def run(batch: list[Job], width: int) -> tuple[list[Job], list[Job]]:
        """Do `batch`; when the pool breaks, its unfinished jobs: (not begun, begun)."""
        started = context.Array("b", len(batch), lock=False)
        broken: list[tuple[int, Job]] = []
        with ProcessPoolExecutor(max_workers=min(width, len(batch)), mp_context=context,
                                 initializer=_worker_init, initargs=(started,)) as pool:
            futures = {pool.submit(_tracked, work, slot, asdict(job), options): (slot, job)
                       for slot, job in enumerate(batch)}
            for future in as_completed(futures):
                slot, job = futures[future]
                try:
                    rows = future.result()
                except BrokenProcessPool:
                    broken.append((slot, job))
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. its answer could not be sent back
                    rows = [_row(asdict(job), t, None, exc, 0.0) for t in options["to"]]
                finished(rows)
        return [j for s, j in broken if not started[s]], [j for s, j in broken if started[s]]

    def give_up(job: Job, why: str) -> None:
        finished(_lost(job, options, ExportError(why)))

    pending, begun = list(jobs), []
    while pending:
        not_begun, hit = run(pending, max(1, workers))
        if not_begun and len(not_begun) == len(pending):  # the pool broke before any job began
            for job in not_begun:
                job.attempts += 1
                if job.attempts >= ATTEMPTS:
                    give_up(job, f"the worker processes died before exporting this agent ({job.attempts} pools)")
            not_begun = [j for j in not_begun if j.attempts < ATTEMPTS]
        begun += hit
        pending = not_begun
    for job in begun:  # each alone: a death now is this agent's own
        while True:
            job.attempts += 1
            if job.attempts >= ATTEMPTS:
                give_up(job, f"the worker process exporting this agent died ({job.attempts} times, "
                        "the last time exporting it alone)")
                break
            not_begun, hit = run([job], 1)
            if not (not_begun or hit):
                break


def _lost(job: Job, options: dict[str, Any], error: ExportError) -> list[dict[str, Any]]:
    """An agent whose every attempt died: a failed row per target, and nothing of it
    left under out/ (an attempt may have installed a target before dying; outputs that
    were there before the run are not touched)."""
    folder = Path(options["out"]) / job.id
    for target in options["to"]:
        if target not in job.existed and (folder / target).is_dir():
            shutil.rmtree(folder / target, ignore_errors=True)
    return [_row(asdict(job), t, None, error, 0.0) for t in options["to"]]


def _run_ray(jobs: list[Job], options: dict[str, Any], address: str, finished) -> None:
    """One Ray task per agent (1 CPU each) on the cluster at `address`. Agents and the
    out folder are paths every node must see alike (shared storage)."""
    import ray

    from ..deploy.ray import runtime_env
    ray.init(address=address, runtime_env=runtime_env(), logging_level="ERROR", log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=ATTEMPTS - 1)(export_agent)
        refs = {task.remote(asdict(j), options): j for j in jobs}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(ready[0])
            try:
                finished(ray.get(ready[0]))
            except Exception as exc:  # noqa: BLE001 - the task or its worker failed
                finished(_lost(job, options, ExportError(f"the Ray task failed: {exc}"[:1000])))
    finally:
        ray.shutdown()


def table(summary: Summary) -> str:
    """The summary as a table: one line per agent and target."""
    rows = [("agent", "target", "parity (max abs error)", "seconds", "")]
    for r in summary.rows:
        if r["ok"]:
            parity = "not verified" if r.get("max_abs_error") is None else f"ok {r['max_abs_error']:.1e}"
            rows.append((r["agent"], r["target"], parity, f"{r['seconds']:.2f}", ""))
        else:
            rows.append((r["agent"], r["target"], "FAILED", f"{r['seconds']:.2f}",
                         r["error"]["message"].splitlines()[0][:160]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + ("  " + row[4] if row[4] else "")
             for row in rows]
    lines = [ln.rstrip() for ln in lines]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ok = len(summary.rows) - len(summary.failed)
    lines.append(f"{summary.agents} agents x {len(summary.targets)} targets: {ok} exported, "
                 f"{len(summary.failed)} failed, {summary.seconds:.1f} s ({summary.executor})")
    return "\n".join(lines)
