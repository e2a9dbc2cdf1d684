"""The `sbexportd` command line. Errors print one line and exit non-zero."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import SbExportError


def _load_archive(args):
    from .read import read_model
    return read_model(args.file)


def cmd_inspect(args) -> int:
    from .describe import describe, render
    from .model import load
    model = load(args.file, args.vecnormalize, algo=args.algo, activation=args.activation,
                 frame_stack=args.frame_stack)
    info = describe(model)
    print(json.dumps(info, indent=2) if args.json else render(info))
    return 0


def cmd_params(args) -> int:
    from .params import dump, stats
    archive = _load_archive(args)
    if args.out:
        dump(archive.params, Path(args.out))
        print(f"wrote {len(archive.params)} parameters to {args.out}")
        return 0
    rows = stats(archive.params)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        rng = f"[{r['min']:+.4g}, {r['max']:+.4g}]" if r["min"] is not None else ""
        print(f"{r['name']:<{width}}  {r['shape']!s:<14} {r['dtype']:<8} {rng}")
    print(f"{len(rows)} parameters, {sum(r['size'] for r in rows)} values")
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    from .model import load
    from .observations import read_observations
    model = load(args.file, args.vecnormalize, algo=args.algo, activation=args.activation,
                 frame_stack=args.frame_stack)
    obs = read_observations(args.obs, model.spec.observation_space.shape)
    kw = {}
    if args.state:
        kw["state"] = read_observations(args.state)
    if args.mask:
        kw["mask"] = read_observations(args.mask)
    out = model.predict(obs, deterministic=not args.stochastic, seed=args.seed, backend=args.backend, **kw)
    if args.out:
        np.savez(args.out, **out)
        print(f"wrote {', '.join(sorted(out))} to {args.out}")
    elif args.json:
        print(json.dumps({k: np.asarray(v).tolist() for k, v in sorted(out.items())}))
    else:
        np.set_printoptions(precision=6, suppress=True, threshold=50)
        for name in sorted(out):
            print(f"{name}:\n{out[name]}")
    return 0


def cmd_export(args) -> int:
    from .export import export
    from .model import load
    if len(args.file) > 1 or Path(args.file[0]).is_dir() or args.ray or args.workers:
        return cmd_export_many(args)
    model = load(args.file[0], args.vecnormalize, algo=args.algo, activation=args.activation,
                 frame_stack=args.frame_stack)
    with quiet_native_stderr(enabled=not args.verbose) as stderr:
        bar = ProgressBar(stderr)
        try:
            results = export(model, args.to, args.out, force=args.force, verify=not args.no_verify,
                             all_or_nothing=args.all_or_nothing, progress=bar)
        finally:
            bar.close()
    print(summary_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"sbexportd: error: {len(failed)} of {len(results)} targets failed: "
              f"{', '.join(r.target for r in failed)}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_export_many(args) -> int:
    """Several agents (files, folders): a worker pool or Ray tasks, one summary."""
    from .export.many import SUMMARY, export_many, table
    workers = args.workers or min(4, os.cpu_count() or 1)
    with quiet_native_stderr(enabled=not args.verbose) as stderr:
        def on_agent(rows, done, total):
            failed = [r for r in rows if not r["ok"]]
            stderr.write(f"[{done}/{total}] {rows[0]['agent']}: "
                         + (f"{len(failed)} of {len(rows)} targets failed\n" if failed else "ok\n"))
        summary = export_many(args.file, args.to, args.out, workers=workers, ray_address=args.ray,
                              force=args.force, verify=not args.no_verify, vecnormalize=args.vecnormalize,
                              frame_stack=args.frame_stack, algo=args.algo, activation=args.activation,
                              on_agent=on_agent)
    print(table(summary))
    print(f"summary: {Path(args.out) / SUMMARY}" + "".join(f"; {t}: {p}" for t, p in summary.repositories.items()))
    return EXIT_FAILED if summary.failed else EXIT_OK


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True):
    """TensorFlow's converters log from C++ (absl) straight to fd 2, ignoring
    TF_CPP_MIN_LOG_LEVEL: point fd 2 at /dev/null while they run, and give our own
    messages a stream on the real stderr."""
    if not enabled:
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    old_stderr, sys.stderr = sys.stderr, real
    try:
        yield real
    finally:
        real.flush()
        sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)
        real.close()


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate
    with quiet_native_stderr(enabled=not args.verbose):
        result = evaluate(args.file, args.env, args.episodes, seed=args.seed, backend=args.backend,
                          vecnormalize=args.vecnormalize or "auto", frame_stack=args.frame_stack or "auto",
                          algo=args.algo, benchmark=args.benchmark)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.render())
    return 0


def cmd_serve(args) -> int:
    from .serve import main as serve_main
    return serve_main(args)


class ProgressBar:
    """One line on a terminal, nothing on a pipe."""

    def __init__(self, stream, width: int = 30):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()

    def __call__(self, target: str, stage: str, fraction: float) -> None:
        if self.tty:
            done = int(self.width * fraction)
            self.stream.write(f"\r{target:<11} [{'#' * done}{'.' * (self.width - done)}] {stage:<10}")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * (self.width + 30) + "\r")
            self.stream.flush()


def summary_table(results) -> str:
    rows = [("target", "files", "size", "parity (max abs error)", "seconds")]
    for r in results:
        p = r.parity
        if not r.ok:
            rows.append((r.target, "-", "-", f"FAILED ({r.error.code}), not written", f"{r.seconds:.2f}"))
            continue
        if p.get("verified"):
            parity = f"ok {max(p['max_abs_error'].values(), default=0.0):.1e} ({p['runtime'].split(' (')[0]})"
        else:
            parity = "not verified"
        rows.append((r.target, str(len(r.files) + 1), _size(r.size), parity, f"{r.seconds:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    written = [r for r in results if r.ok]
    if written:
        lines.append(f"written under {written[0].path.parent}/ (each with manifest.json)")
    if len(written) < len(results):
        lines.append(f"{len(results) - len(written)} of {len(results)} targets failed, nothing written for them; "
                     "the others are complete" + (" and verified" if any(r.parity.get("verified") for r in written)
                                                 else "") + ":")
        lines += [f"  {r.target}: {_reason(r)}" for r in results if not r.ok]
    return "\n".join(lines)


def _reason(r) -> str:
    detail = getattr(r.error, "detail", None) or str(r.error)
    return detail[len(r.target) + 2:] if detail.startswith(f"{r.target}: ") else detail


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def build_parser() -> argparse.ArgumentParser:
    from .realize.backends import BACKENDS, FAST_CANDIDATES, REFERENCE
    parser = argparse.ArgumentParser(prog="sbexportd", description="Stable Baselines 2 agents, without TensorFlow 1")
    parser.add_argument("--version", action="version", version=f"sbexportd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p, policy=True, env=True, many=False):
        if many:
            p.add_argument("file", nargs="*", help="SB2 save files (.zip or legacy .pkl), or folders of them; or the "
                                                   "zoo's convention: --algo ALGO --env ENV -f ZOO_DIR")
        else:
            p.add_argument("file", nargs="?", help="an SB2 save file (.zip or legacy .pkl); or the zoo's convention: "
                                                   "--algo ALGO --env ENV -f ZOO_DIR")
        p.add_argument("-f", "--folder", metavar="ZOO_DIR",
                       help="an rl-baselines-zoo folder: the agent is ZOO_DIR/ALGO/ENV.zip|.pkl (or under agents/)")
        if env:
            p.add_argument("--env", help="with -f: the agent's environment id (its file name in the zoo)")
        if not policy:
            p.add_argument("--algo", help="with -f: the zoo folder's algorithm")
        if policy:
            p.add_argument("--vecnormalize", metavar="PATH|auto",
                           help="VecNormalize statistics (vecnormalize.pkl, obs_rms.pkl or their folder; "
                                "'auto' = as the zoo's enjoy.py: its config.yml's normalize, or the "
                                "statistics beside the model when there is no config)")
            p.add_argument("--frame-stack", metavar="N|auto",
                           help="stack the last N observations in front of the policy (SB2's VecFrameStack), "
                                "carried as state; 'auto' = the zoo's config.yml frame_stack")
            p.add_argument("--algo", help="override the detected algorithm")
            p.add_argument("--activation", help="hidden activation of a custom policy class whose code is absent")

    p = sub.add_parser("inspect", help="describe the policy (no TensorFlow, no torch)")
    model_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("params", help="list or dump the parameters")
    model_args(p, policy=False)
    p.add_argument("--out", help="x.npz, x.json or x.msgpack")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("export", help="export to pytorch, onnx, savedmodel, graphdef, tfjs, tflite, portable, params, "
                                      "tfserving, triton, sb3, rl-zoo3",
                       description="One agent: OUT/<target>/. Several (files, "
                       "folders searched recursively): OUT/<agent>/<target>/, the serving targets gathered in one "
                       "repository each (OUT/tfserving/, OUT/triton/), and OUT/summary.json; the exit status is 5 "
                       "when an agent or a target failed (the others are exported all the same).")
    model_args(p, many=True)
    p.add_argument("--to", required=True, metavar="TARGET[,TARGET...]|all")
    p.add_argument("--out", required=True, help="output folder: one subfolder per target (per agent and target)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="several agents: worker processes on this machine (default: cpus, at most 4)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="several agents: one Ray task per agent on the cluster at ADDRESS (host:port, or auto); "
                        "agents and --out must be paths every node sees")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.add_argument("--no-verify", action="store_true", help="keep an export even if its parity check fails")
    p.add_argument("--all-or-nothing", action="store_true",
                   help="write no target unless every target succeeds (default: keep each target that "
                        "verified, report the others, exit 5)")
    p.add_argument("--verbose", action="store_true", help="let TensorFlow's own log lines through")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="run the policy on observations")
    model_args(p)
    p.add_argument("--obs", required=True, help="observations, one or a batch: .npy, .npz, .json or .csv (one per "
                                                "row); a goal dict (observation, achieved_goal, desired_goal) in "
                                                ".npz or .json for HER")
    p.add_argument("--state", help="recurrent / frame-stack state (.npy, .npz, .json, .csv)")
    p.add_argument("--mask", help="episode-start mask (.npy, .npz, .json, .csv)")
    p.add_argument("--json", action="store_true", help="print every output as JSON")
    p.add_argument("--stochastic", action="store_true", help="sample instead of the deterministic action")
    p.add_argument("--seed", type=int)
    p.add_argument("--backend", choices=tuple(BACKENDS),
                   help=f"default: the fastest backend verified on this model ({', '.join(FAST_CANDIDATES)}, "
                        f"else {REFERENCE})")
    p.add_argument("--out", help="write every output to this .npz")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="play episodes of the agent's environment in gymnasium: mean +- std and "
                       "the zoo's published figure")
    p.add_argument("file", nargs="?", help="an SB2 save file, or an export folder (sb3, rl-zoo3, onnx, pytorch, "
                                           "tflite, savedmodel); or --algo ALGO --env ENV -f ZOO_DIR")
    p.add_argument("-f", "--folder", metavar="ZOO_DIR", help="an rl-baselines-zoo folder: ZOO_DIR/ALGO/ENV.zip|.pkl")
    p.add_argument("--env", help="environment id (default: the agent file's name, as the zoo names them); "
                                 "old gym ids run as their gymnasium successors")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=REFERENCE, choices=tuple(BACKENDS),
                   help="for an SB2 file: the backend that runs it")
    p.add_argument("--vecnormalize", metavar="PATH|auto", help="for an SB2 file (default auto)")
    p.add_argument("--frame-stack", metavar="N|auto", help="for an SB2 file (default auto)")
    p.add_argument("--algo", help="override the detected algorithm")
    p.add_argument("--benchmark", help="rl-baselines-zoo benchmark.md (default: one beside the agent's zoo)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", action="store_true", help="let TensorFlow's own log lines through")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="run the daemon: JSON-RPC over the LSP base protocol (see protocol.md)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", action="store_true", help="one client on stdin/stdout")
    where.add_argument("--tcp", metavar="HOST:PORT", help="many clients; HOST defaults to 127.0.0.1, port 0 = any")
    where.add_argument("--ws", metavar="HOST:PORT", help="many WebSocket clients; same defaults")
    p.add_argument("--token", help=argparse.SUPPRESS)  # refused: it would show in ps
    p.add_argument("--token-file", metavar="PATH",
                   help="read the token clients must present from this file (default: $SBEXPORTD_TOKEN, "
                        "$SBEXPORTD_TOKEN_FILE, else a generated one); never on the command line")
    p.add_argument("--no-auth", action="store_true",
                   help="TCP/WebSocket clients need no token (any local process can then use the daemon)")
    p.add_argument("--connection-file", metavar="PATH",
                   help="where to write the connection file (host, port, token; mode 0600) clients read; "
                        "default $XDG_RUNTIME_DIR/sbexportd/sbexportd-<pid>.json")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="--ws: let WebSocket handshakes from this browser origin in (e.g. "
                        "http://localhost:3000; repeatable); others are refused")
    p.add_argument("--root", action="append", metavar="DIR",
                   help="clients may open files and write exports only inside DIR (repeatable)")
    p.add_argument("--max-models", type=int, default=16, help="models kept loaded, least recently used evicted")
    p.add_argument("--max-message-bytes", type=int, default=256 << 20, help="larger messages are refused")
    p.add_argument("--workers", type=int, help="threads for loads and large predicts (default: cpus + 2, max 8)")
    p.add_argument("--export-workers", type=int, default=1,
                   help="exports run at once (default 1: TensorFlow's converters are not known to be thread-safe)")
    p.add_argument("--export-cache", type=int, default=32, metavar="N",
                   help="finished exports kept so a repeat is a copy (0: keep none)")
    p.add_argument("--max-predict-values", type=int, default=1 << 24, metavar="N",
                   help="observation values one predict may carry (default 16777216; bounds its memory)")
    p.add_argument("--max-in-flight", type=int, default=32, metavar="N",
                   help="requests one connection may have unanswered; beyond, its socket is not read (default 32)")
    p.add_argument("--max-connections", type=int, default=256, metavar="N",
                   help="TCP/WebSocket connections at once; more are refused with an answer (default 256)")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="a frame's header must arrive within it, a body must not stall longer, and a new "
                        "connection must initialize within it (default 10; 0: none)")
    p.add_argument("--idle-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="connections with nothing in flight and silent this long are closed, as are clients "
                        "that do not read their answers this long (default 3600; 0: never)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)
    return parser


# Exit statuses: scripts can tell a bad input file from a bad observation from a bug.
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_BAD_FILE, EXIT_BAD_OBSERVATION, EXIT_FAILED = 0, 1, 2, 3, 4, 5


def exit_status(exc: BaseException) -> int:
    from .errors import BadObservation, InvalidArgument, ModelFileError, ObservationFileError
    if isinstance(exc, (ModelFileError, ObservationFileError, FileNotFoundError, IsADirectoryError,
                        PermissionError)):
        return EXIT_BAD_FILE
    if isinstance(exc, InvalidArgument):
        return EXIT_USAGE
    if isinstance(exc, BadObservation):
        return EXIT_BAD_OBSERVATION
    if isinstance(exc, SbExportError):
        return EXIT_FAILED
    return EXIT_INTERNAL


def resolve_zoo_path(args) -> None:
    """The zoo's convention, `--algo ALGO --env ENV -f ZOO_DIR`: args.file from the folder."""
    from .errors import InvalidArgument, ModelFileNotFound
    folder = getattr(args, "folder", None)
    many = isinstance(getattr(args, "file", None), list)  # export: several files or folders
    if folder is None:
        if not getattr(args, "file", None) and args.command != "serve":
            raise InvalidArgument("a model file is needed (or the zoo's convention: --algo ALGO --env ENV -f "
                                  "ZOO_DIR)")
        return
    if args.file:
        raise InvalidArgument("give either a model file or -f ZOO_DIR with --algo and --env, not both")
    if not getattr(args, "algo", None) or not getattr(args, "env", None):
        raise InvalidArgument("-f ZOO_DIR needs --algo and --env (the zoo keeps agents as ZOO_DIR/ALGO/ENV.zip)")
    root = Path(folder)
    for base in (root / args.algo, root / "agents" / args.algo):
        for ext in (".zip", ".pkl"):
            if (base / f"{args.env}{ext}").is_file():
                args.file = [str(base / f"{args.env}{ext}")] if many else str(base / f"{args.env}{ext}")
                return
    raise ModelFileNotFound(f"no {args.algo} agent for {args.env} in this zoo folder (looked for "
                            f"{args.algo}/{args.env}.zip and .pkl, also under agents/)", root)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 on an internal error (a bug), 2 on a usage error, 3 when an
    input file (the model, its statistics, the observations) cannot be read, 4 when an
    observation does not fit the policy, 5 when the operation failed (an export that does
    not verify or cannot be represented, an unknown environment, ...)."""
    # TensorFlow's C++ logging, read once at its import: a CLI shows only our lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    args = build_parser().parse_args(argv)
    try:
        resolve_zoo_path(args)
        return args.func(args)
    except SbExportError as exc:
        print(f"sbexportd: error: {exc}", file=sys.stderr)
        return exit_status(exc)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"sbexportd: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_FILE
    except ValueError as exc:
        print(f"sbexportd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `sbexportd ... | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug: one line, its own status
        print(f"sbexportd: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
