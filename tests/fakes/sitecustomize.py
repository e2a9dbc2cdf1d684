"""Faults for daemons under test, chosen by SBEXPORTD_TEST_FAULTS (comma-separated),
loaded only when a test puts tests/fakes on the daemon's PYTHONPATH:

    portable-parity   the portable export's runtime gives wrong answers (parity fails)
    portable-crash    the portable writer raises
    slow-write=S      the portable and params writers sleep S seconds first (time to kill -9)

The product code has no test hooks: these replace functions from outside, as
monkeypatch does in-process."""
import os
import time

_faults = [f for f in os.environ.get("SBEXPORTD_TEST_FAULTS", "").split(",") if f]
if _faults:
    from sbexportd.export import targets as _targets
    from sbexportd.export.targets import portable as _portable

    if "portable-parity" in _faults:
        _load = _portable.load

        def load(folder, spec):
            run, runtime = _load(folder, spec)
            return (lambda feeds: {k: v + 1.0 for k, v in run(feeds).items()}), runtime
        _portable.load = load

    if "portable-crash" in _faults:
        def write(model, folder):
            raise RuntimeError(f"converter crashed while writing {folder}")
        _portable.write = write

    for fault in _faults:
        if fault.startswith("slow-write="):
            seconds = float(fault.split("=", 1)[1])
            for name in ("portable", "params"):  # (the others would import TensorFlow at start)
                mod = _targets.TARGETS[name].load_module()
                original = mod.write

                def slow(model, folder, _w=original, _s=seconds):
                    time.sleep(_s)
                    return _w(model, folder)
                mod.write = slow
