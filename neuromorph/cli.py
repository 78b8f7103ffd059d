"""The ``neuromorph`` command.

Every command that reports something takes ``--json`` and then prints exactly one JSON
object on stdout. Bad input is one line on stderr and exit code 2; ``--debug`` shows the
traceback instead. Counts (``--limit``, ``--steps``) and every output path are checked
before any work starts (:func:`check_arguments`, :func:`check_output`), so a refusal
never comes after a long run, and never leaves an output file written or replaced.
"""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__, model_file
from .errors import NeuromorphError
from .ir import Graph, Neuron
from .documents import display_path, file_kind
from .streams import check_memory

EXIT_BAD_INPUT = 2
EXIT_MISMATCH = 1  # verify: the deployment disagrees with its reference
CALIBRATION_SAMPLES = 256
VERIFY_STEPS = 50  # verify without --task or --input: random spikes of this many steps


# ------------------------------------------------------------------ helpers


def load_model(spec: str) -> Graph:
    from .models import resolve

    return resolve(spec)


# ------------------------------------------------------------------ checks before the work


def _system_limit(path: str | Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError):
        return default


def check_output(path: str, flag: str) -> None:
    """Refuse, before any work, an output path that the final atomic write
    (documents.write_atomic: a temporary file in the same folder, then a rename) could not
    complete: a name the system refuses (too long: PC_NAME_MAX, PC_PATH_MAX), a folder that
    does not exist or is not writable (tried by creating and removing a temporary file
    there), a target that is a directory or not a regular file (a FIFO, /dev/null: a
    rename would replace it). A full disk can still fail the write itself: that is one
    line too, and the old file stays."""
    shown = f"{flag} {display_path(path)}"
    if not path:
        raise NeuromorphError(f"{flag}: the file name is empty")
    if "\0" in path:
        raise NeuromorphError(f"{flag} {display_path(path)!r}: not a valid file name (a NUL character)")
    path_max = _system_limit("/", "PC_PATH_MAX", 4096)
    if len(os.fsencode(path)) >= path_max:
        raise NeuromorphError(f"{shown}: the path is too long ({len(os.fsencode(path))} bytes; "
                              f"the system takes fewer than {path_max})")
    target = Path(path)
    folder = target.parent
    try:
        folder_mode = os.stat(folder).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise NeuromorphError(f"{shown}: folder {display_path(folder)} does not exist") from None
    except OSError as exc:
        raise NeuromorphError(f"{shown}: cannot use folder {display_path(folder)} "
                              f"({exc.strerror or exc})") from None
    if not stat.S_ISDIR(folder_mode):
        raise NeuromorphError(f"{shown}: {display_path(folder)} is not a folder")
    name_max = _system_limit(folder, "PC_NAME_MAX", 255)
    if len(os.fsencode(target.name)) > name_max:
        raise NeuromorphError(f"{shown}: the file name is too long ({len(os.fsencode(target.name))} "
                              f"bytes; the folder takes at most {name_max})")
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise NeuromorphError(f"{shown}: cannot write ({exc.strerror or exc})") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise NeuromorphError(f"{shown}: is a directory")
    if mode is not None and not stat.S_ISREG(mode):
        raise NeuromorphError(f"{shown}: is not a regular file (a FIFO or a device); neuromorph "
                              "writes a new file and renames it over the old one")
    try:
        fd, probe = tempfile.mkstemp(prefix=".neuromorph-check-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NeuromorphError(f"{shown}: cannot write in folder {display_path(folder)} "
                              f"({exc.strerror or exc})") from None


def _outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, path) of every file this command will write."""
    command = getattr(args, "command", None)
    out: list[tuple[str, str | None]] = []
    if command == "models":
        out.append(("-o", args.output if args.name is not None else None))
    elif command == "run":
        out += [("--output", args.output if args.input is not None else None), ("--raster", args.raster),
                ("--plot", args.plot), ("--save-learned", args.save_learned)]
    else:
        out += [("-o", getattr(args, "output", None)), ("--plot", getattr(args, "plot", None)),
                ("--raster", getattr(args, "raster", None))]
    return [(flag, path) for flag, path in out if path is not None]


def check_arguments(args: argparse.Namespace) -> None:
    """The one place where counts and output paths are checked, before any command runs:
    ``--limit`` and ``--steps`` >= 1 where given; every output path writable
    (:func:`check_output`), and no two outputs the same file."""
    for dest, flag in (("limit", "--limit"), ("steps", "--steps")):
        value = getattr(args, dest, None)
        if value is not None and value < 1:
            raise NeuromorphError(f"{flag} must be >= 1, got {value}")
    seen: dict[str, str] = {}
    for flag, path in _outputs(args):
        check_output(path, flag)
        key = os.path.realpath(path)
        if key in seen:
            raise NeuromorphError(f"{seen[key]} and {flag} name the same file {display_path(path)}")
        seen[key] = flag


def emit(args: argparse.Namespace, data: dict[str, Any], text: Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        print(text())


def summarize(graph: Graph) -> dict[str, Any]:
    nodes = []
    for name, node in graph.nodes.items():
        nodes.append({
            "name": name,
            "type": node.type_name,
            "input_shape": list(s) if (s := graph.input_shape(name)) is not None else None,
            "output_shape": list(graph.shape(name)),
            "parameters": node.parameter_count(),
            "neurons": int(np.prod(graph.shape(name))) if isinstance(node, Neuron) else 0,
            "plasticity": getattr(node, "plasticity", None) and node.plasticity.rule,  # type: ignore[attr-defined]
        })
    synapses = sum(int(node.weight.size) for node in graph.nodes.values() if hasattr(node, "weight"))
    return {
        "dt": graph.dt,
        "inputs": {n: list(graph.shape(n)) for n in graph.inputs},
        "outputs": {n: list(graph.shape(n)) for n in graph.outputs},
        "nodes": nodes,
        "edges": [{"source": e.source, "target": e.target, "delay": e.delay} for e in graph.edges],
        "cycles": graph.cycles(),
        "totals": {
            "nodes": len(graph.nodes),
            "edges": len(graph.edges),
            "neurons": sum(n["neurons"] for n in nodes),
            "synapses": synapses,
            "parameters": graph.parameter_count(),
        },
        "metadata": dict(graph.metadata),
    }


def _summary_text(s: dict[str, Any]) -> str:
    rows = [("node", "type", "input", "output", "params")]
    for n in s["nodes"]:
        shape_in = "x".join(map(str, n["input_shape"])) if n["input_shape"] else "-"
        extra = f" [{n['plasticity']}]" if n["plasticity"] else ""
        rows.append((n["name"], n["type"] + extra, shape_in,
                     "x".join(map(str, n["output_shape"])), str(n["parameters"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    t = s["totals"]
    lines.append("")
    lines.append("edges: " + ", ".join(
        f"{e['source']}->{e['target']}" + (f" (delay {e['delay']})" if e["delay"] else "")
        for e in s["edges"]))
    lines.append("cycles: " + ("; ".join(" -> ".join(c + [c[0]]) for c in s["cycles"]) or "none"))
    dt = f"{s['dt']:g} s" if s["dt"] is not None else "backend default"
    lines.append(f"totals: {t['nodes']} nodes, {t['edges']} edges, {t['neurons']} neurons, "
                 f"{t['synapses']} synapses, {t['parameters']} parameters; dt {dt}")
    return "\n".join(lines)


# ------------------------------------------------------------------ commands


def cmd_models(args: argparse.Namespace) -> int:
    from .models import ZOO, get

    if args.name is not None:
        if args.output is None:
            raise NeuromorphError("give -o FILE to write the zoo model to a file")
        graph = get(args.name, seed=args.seed)
        path = model_file.save(graph, args.output)
        emit(args, {"model": args.name, "output": str(path), "task": ZOO[args.name].task},
             lambda: f"wrote zoo model {args.name} to {path}")
        return 0
    entries = []
    for e in ZOO.values():
        g = e.build(0)
        entries.append({
            "name": e.name, "task": e.task, "description": e.description,
            "inputs": {n: list(g.shape(n)) for n in g.inputs},
            "outputs": {n: list(g.shape(n)) for n in g.outputs},
            "parameters": g.parameter_count(),
        })

    def text() -> str:
        w = max(len(e["name"]) for e in entries)
        t = max(len(e["task"]) for e in entries)
        return "\n".join(f"{e['name']:<{w}}  {e['task']:<{t}}  {e['description']}" for e in entries)

    emit(args, {"models": entries}, text)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    graph = load_model(args.model)
    s = summarize(graph)
    emit(args, s, lambda: _summary_text(s))
    return 0


def cmd_import_nir(args: argparse.Namespace) -> int:
    from .backends.nir import read_nir_report

    file_kind(args.file)  # a FIFO or a device is refused unopened
    got = read_nir_report(args.file, dt=args.dt, convention=args.convention, reset=args.reset)
    graph = got.graph
    path = model_file.save(graph, args.output)
    for w in got.warnings:  # after the save: a refusal stays one line
        if not args.json:
            print(f"neuromorph: warning: {w}", file=sys.stderr)
    s = summarize(graph)
    data = {"input": args.file, "output": str(path), "dt": graph.dt, "dt_source": got.dt_source,
            "convention": got.convention, "convention_reason": got.reason, "reset": got.resets,
            "warnings": got.warnings, "totals": s["totals"]}
    dt_text = f"dt {graph.dt:g} s ({got.dt_source})" if graph.dt is not None else "no dt"
    reset_text = f", reset {'/'.join(got.resets)}" if got.resets else ""
    emit(args, data, lambda: f"imported {args.file} ({got.convention} convention: {got.reason}; "
         f"{dt_text}{reset_text}): {s['totals']['nodes']} nodes, {s['totals']['neurons']} neurons -> {path}")
    return 0


def cmd_export_nir(args: argparse.Namespace) -> int:
    from .backends.nir import write_nir

    graph = load_model(args.model)
    warnings = write_nir(graph, args.output)
    for w in warnings:
        if not args.json:
            print(f"neuromorph: warning: {w}", file=sys.stderr)
    emit(args, {"input": args.model, "output": args.output, "warnings": warnings},
         lambda: f"exported {args.model} -> {args.output}")
    return 0


def _task_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NeuromorphError(f"--option takes KEY=VALUE, got '{item}'")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    if getattr(args, "steps", None) is not None:
        opts["steps"] = args.steps
    if getattr(args, "encoding", None) is not None:
        opts["encoding"] = args.encoding
    return opts


def _task_for(args: argparse.Namespace, graph: Graph) -> str | None:
    """``--task``, else the task the model was trained on (its metadata), else None."""
    from .tasks import recorded

    if args.task is not None:
        return args.task
    record = recorded(graph)
    return record["task"] if record else None


def _load_task(args: argparse.Namespace, graph: Graph) -> Any:
    """The data set for ``--task`` or, without it, for the task the model was trained on
    (same seed and options). Flags given explicitly win over what the model recorded."""
    from . import tasks

    name = _task_for(args, graph)
    if name is None:
        raise NeuromorphError("give --task TASK (the model does not say what it was trained on)")
    record = tasks.recorded(graph)
    same = record is not None and record["task"] == name
    seed = args.seed if args.seed is not None else (record["seed"] if same else 0)
    options = {**(record["options"] if same else {}), **_task_options(args)}
    inputs = graph.inputs
    shape = graph.shape(inputs[0]) if len(inputs) == 1 else None
    return tasks.load(name, seed=seed, input_shape=shape, **options)


METHOD_OPTIONS = ("learning_signal", "rate_reg", "rate_target", "kp_decay")
"""Training-method options the CLI offers; a method refuses those it does not take."""


def cmd_train(args: argparse.Namespace) -> int:
    from .models import default_for_task
    from .training import TrainConfig, check_options, train

    options = {key: getattr(args, key) for key in METHOD_OPTIONS if getattr(args, key) is not None}
    check_options(args.method, options)
    graph = load_model(args.model if args.model else default_for_task(args.task))
    data = _load_task(args, graph)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                         seed=args.seed, device=args.device, surrogate=args.surrogate,
                         surrogate_alpha=args.surrogate_alpha, dtype=args.dtype, options=options)

    def progress(r: dict[str, Any]) -> None:
        if not args.quiet:
            print(f"epoch {r['epoch']:>3}/{args.epochs}  loss {r['loss']:.4f}  "
                  f"train {r['train_accuracy']:.4f}  test {r['test_accuracy']:.4f}  "
                  f"({r['seconds']:.1f} s)", file=sys.stderr, flush=True)

    result = train(graph, data, config, method_name=args.method, progress=progress)
    if result.rank != 0:
        return 0
    from .tasks import PROVENANCE, prepare, provenance

    trained_on = provenance(args.task, args.seed, _task_options(args), data.steps)
    result.graph = prepare(args.task, replace(result.graph, metadata={**result.graph.metadata, PROVENANCE: trained_on}),
                           _task_options(args))
    if args.plot:  # first: should it fail, the model file is not replaced
        from .plots import training_curves

        training_curves(result.history, args.plot, f"{args.task}: {args.method}")
    path = model_file.save(result.graph, args.output)
    data_out = {
        "accuracy": result.accuracy, "method": result.method, "epochs": args.epochs,
        "seconds": round(result.seconds, 3), "device": result.device, "task": args.task,
        "chance": data.chance(), "output": str(path), "workers": result.workers,
        "history": result.history, **result.extra,
    }
    emit(args, data_out, lambda: f"trained {args.task} with {result.method} on {result.device}: "
         f"test accuracy {result.accuracy:.4f} (chance {data.chance():.3f}) in "
         f"{result.seconds:.1f} s -> {path}")
    return 0


def _progress(args: argparse.Namespace, label: str) -> Callable[[int, int], None] | None:
    if getattr(args, "quiet", False):
        return None
    state = {"last": -1.0}

    def show(done: int, total: int) -> None:
        pct = 100.0 * done / max(1, total)
        if pct - state["last"] >= 10 or done == total:
            state["last"] = pct
            print(f"{label}: {done}/{total} steps ({pct:.0f}%)", file=sys.stderr, flush=True)

    return show


def cmd_run(args: argparse.Namespace) -> int:
    from .run import load_deployment, run_dataset, run_stream

    if args.task is not None and args.input is not None:
        raise NeuromorphError("give either --task TASK or --input X.npy (with --output Y.npz), not both")
    if args.input is not None and args.output is None:
        raise NeuromorphError("--input needs --output Y.npz")
    artifact = load_deployment(args.model, args.backend, args.dt)
    if args.input is None and _task_for(args, artifact.graph) is None:
        raise NeuromorphError("give either --task TASK or --input X.npy (with --output Y.npz): the model "
                              "does not say what it was trained on")
    if args.raster:
        _raster_nodes(artifact)  # refuse before the run, not after it
    progress = _progress(args, artifact.target)
    options = _run_options(args)
    if args.input is not None:
        info = run_stream(artifact, args.input, args.output, membrane=args.membrane, progress=progress,
                          options=options)
        emit(args, info, lambda: f"ran {info['steps']} steps on {artifact.target}: wrote "
             f"{', '.join(info['arrays'])} to {args.output}{_plan_text(info)}")
        if args.raster:
            from .streams import load_stream

            x = next(iter(load_stream(args.input, artifact.graph)[0].values()))
            _write_raster(args, artifact, x, "your input")
        return 0
    data = _load_task(args, artifact.graph)
    if args.learn:
        return _run_learning(args, artifact, data, progress, options)
    if args.save_learned or args.plot:
        raise NeuromorphError(f"{'--save-learned' if args.save_learned else '--plot'} goes with --learn")
    info = run_dataset(artifact, data, split=args.split, limit=args.limit, progress=progress, options=options)
    if args.raster:
        x = data.x_test if args.split == "test" else data.x_train
        _write_raster(args, artifact, x[:1], f"{data.name} sample 0")
    emit(args, info, lambda: f"{artifact.target} ({artifact.precision}): accuracy "
         f"{info['accuracy']:.4f} on {info['samples']} {args.split} samples ({info['steps']} steps "
         f"each, {info['spikes']} spikes, {info['seconds']:.1f} s){_plan_text(info)}")
    return 0


def _run_learning(args: argparse.Namespace, artifact: Any, data: Any, progress: Any,
                  options: dict[str, Any]) -> int:
    """``run --learn``: score, learn on chip over the task's labelled stream, score again."""
    from .learning import check_learnable, learn_on_chip

    check_learnable(artifact)  # before any run
    if args.split != "test":
        raise NeuromorphError("--learn plays the task's learning stream and scores the test split: drop --split")
    def say(line: str) -> None:
        if not args.quiet:
            print(f"neuromorph: {line}", file=sys.stderr, flush=True)

    result, learned = learn_on_chip(artifact, data, limit=args.limit, progress=progress, options=options,
                                    report=say)
    if args.plot:
        from .plots import learning_curve

        learning_curve(result, args.plot)
    if args.save_learned:
        result["saved"] = str(model_file.save(learned.graph, args.save_learned))

    def score(key: str) -> str:
        value = result[key]
        return "n/a" if value is None else f"{value:.4f}"  # a group the test split lacks

    def text() -> str:
        split = ""
        if "new_classes_accuracy" in result:
            split = (f" (new classes {score('new_classes_accuracy_before')} -> {score('new_classes_accuracy')}, "
                     f"old classes {score('old_classes_accuracy_before')} -> {score('old_classes_accuracy')})")
        saved = f"; learned weights -> {result['saved']}" if "saved" in result else ""
        return (f"{artifact.target} ({artifact.precision}) learned on chip from {result['learning_samples']} "
                f"samples in {result['learning_seconds']:.1f} s ({result['learning_steps_per_second']:.0f} chip "
                f"steps/s): test accuracy {result['accuracy_before']:.4f} -> {result['accuracy_after']:.4f}"
                f"{split}{saved}")

    emit(args, result, text)
    return 0


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The targets' run options given as flags (Target ``run_options``; None: not given)."""
    return {k[len("run_option_"):]: v for k, v in vars(args).items() if k.startswith("run_option_")}


def _plan_text(info: dict[str, Any]) -> str:
    """How the target laid the run out, when it says (e.g. the Loihi 2 target's lanes)."""
    if "plan" not in info:
        return ""
    cores = f", {info['cores']} of {info['cores_available']} cores" if "cores" in info else ""
    return f"\n{info['plan']}{cores}"


def _raster_nodes(artifact: Any) -> list[str]:
    from .streams import spiking_nodes

    spiking = spiking_nodes(artifact.graph)
    if not spiking:
        raise NeuromorphError("--raster: the model has no spiking population to plot")
    return spiking


def _write_raster(args: argparse.Namespace, artifact: Any, x: np.ndarray, what: str) -> None:
    """Spike raster of the first sample, from the deployment itself."""
    from .plots import raster
    from .run import record

    spiking = _raster_nodes(artifact)
    x = np.asarray(x)
    shape = artifact.graph.shape(artifact.graph.inputs[0])
    if x.ndim == len(shape) + 1:  # one stream without a batch axis
        x = x[None]
    rec = record(artifact, x[:1], spiking)
    raster({k: v[0] for k, v in rec.probes.items()}, args.raster, artifact.dt,
           f"{what} on {artifact.target} ({artifact.precision})")


def cmd_compile(args: argparse.Namespace) -> int:
    from .compile import compile_graph, save_artifact
    from .registry import target

    graph = load_model(args.model)
    calibration = None
    if args.calibrate is not None:
        if args.task is not None:
            raise NeuromorphError("give either --task TASK or --calibrate X.npy, not both")
        from .streams import load_stream

        calibration = load_stream(args.calibrate, graph)[0]
    elif _task_for(args, graph) is not None:
        data = _load_task(args, graph)
        if args.task is None and not args.json:
            print(f"calibrating on {data.name}, the task the model was trained on (--task overrides)",
                  file=sys.stderr)
        # The scales need the input grid and the state's peaks; a few hundred samples
        # show both, and a float run over a long task's whole training set is slow.
        calibration = {graph.inputs[0]: data.x_train[:CALIBRATION_SAMPLES]}
        from .ir.plasticity import learning_ports

        if learning_ports(graph)[0]:  # a plastic model: its label stream too (the error's range)
            from .learning import task_inputs

            calibration = task_inputs(graph, data.x_train[:CALIBRATION_SAMPLES], data.y_train[:CALIBRATION_SAMPLES])
    options = {k[len("option_"):]: v for k, v in vars(args).items()
               if k.startswith("option_") and v is not None}
    artifact = compile_graph(graph, backend=args.backend, precision=args.precision, dt=args.dt,
                             calibration=calibration, **options)
    path = save_artifact(artifact, args.output)
    report = artifact.report
    totals = report.get("resources", {}).get("totals", {})
    data_out = {
        "backend": artifact.target, "precision": artifact.precision, "dt": artifact.dt,
        "cores": totals.get("cores"), "neurons": totals.get("neurons"),
        "synapses": totals.get("synapses"), "output": str(path), **report,
    }

    def text() -> str:
        summary = target(artifact.target).summary(artifact)
        head = (f"compiled {args.model} for {artifact.target} ({artifact.precision}, "
                f"dt {artifact.dt:g} s) -> {path}")
        return head + ("\n\n" + summary if summary else "")

    emit(args, data_out, text)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .artifact import load_artifact
    from .run import verify

    file_kind(args.artifact)  # a FIFO or a device is refused unopened
    artifact = load_artifact(args.artifact)  # --limit, --steps: checked in check_arguments
    if args.input is None and _task_for(args, artifact.graph) is not None:
        data = _load_task(args, artifact.graph)
        data.check_model(artifact.graph)
        from .learning import task_inputs  # a plastic model's label input: no label (frozen run)

        x, decision = task_inputs(artifact.graph, data.x_test[: args.limit]), data.decision_steps
    elif args.input is not None:
        from .streams import load_stream

        x = load_stream(args.input, artifact.graph)[0]
        x = {k: v[: args.limit] for k, v in x.items()}
        decision = slice(None)
    else:
        steps = args.steps if args.steps is not None else VERIFY_STEPS
        values = sum(int(np.prod(artifact.graph.shape(n), dtype=object)) for n in artifact.graph.inputs)
        check_memory(17 * args.limit * steps * values,  # float64 draws, their bool, float64 spikes
                     f"random input of {args.limit} sample(s) x {steps} steps x {values} values")
        rng = np.random.default_rng(args.seed or 0)
        x = {name: (rng.random((args.limit, steps, *artifact.graph.shape(name))) < 0.2)
             .astype(np.float64) for name in artifact.graph.inputs}
        decision = slice(None)
    info = verify(artifact, x, decision, progress=_progress(args, artifact.target), options=_run_options(args))
    verdict = "ok" if info["passed"] else f"FAILED (expected >= {info['expected_agreement']})"
    emit(args, info, lambda: f"{artifact.target} {artifact.precision} deployment vs {info['reference']}: "
         f"spike agreement {info['spike_agreement']:.6f} over {info['spikes_compared']} neuron-steps "
         f"({verdict}), prediction agreement {info['prediction_agreement']:.4f} on "
         f"{info['samples']} samples{_plan_text(info)}")
    return 0 if info["passed"] else EXIT_MISMATCH


def cmd_backends(args: argparse.Namespace) -> int:
    from .registry import DEFAULT_TARGET, METHODS, MODEL_TARGET, methods, targets, unavailable
    from .rules import supported

    def node_types(t: Any) -> list[str] | None:
        try:
            return supported(t.rules)
        except NeuromorphError:  # its rules live with a package that is not installed
            return None

    listing = {
        name: {"description": t.description, "precisions": list(t.precisions),
               "options": {k: help_ for k, (_, help_) in t.options.items()},
               "node_types": node_types(t),
               "default_for": [role for role, who in (("compile", DEFAULT_TARGET), ("run MODEL", MODEL_TARGET))
                               if who == name]}
        for name, t in targets().items()
    }
    data = {"targets": listing, "methods": sorted(methods()),
            "unavailable": {**unavailable(), **{f"method {k}": v for k, v in unavailable(METHODS).items()}}}

    def text() -> str:
        lines = []
        for name, t in listing.items():
            default = f" (default for {', '.join(t['default_for'])})" if t["default_for"] else ""
            nodes = ", ".join(t["node_types"]) if t["node_types"] is not None else "(needs a package not installed)"
            lines.append(f"{name}{default}: {t['description']}")
            lines.append(f"  precisions: {', '.join(t['precisions'])}; nodes: {nodes}")
            for opt, help_ in t["options"].items():
                lines.append(f"  --{opt}: {help_}")
        lines.append(f"training methods: {', '.join(data['methods']) or 'none'}")
        for name, why in data["unavailable"].items():
            lines.append(f"unavailable: {name}: {why}")
        return "\n".join(lines)

    emit(args, data, text)
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    from .registry import DEFAULT_METHOD, DEFAULT_TARGET, MODEL_TARGET, targets

    # Each registered target's own compile options become flags, its name in the help;
    # so do its run options (``run_options``) for run and verify.
    target_options: dict[str, tuple[type, str]] = {}
    target_run_options: dict[str, tuple[type, str]] = {}
    for name, tgt in targets().items():
        for flag, (kind, help_) in tgt.options.items():
            target_options.setdefault(flag, (kind, f"{name}: {help_}"))
        for flag, (kind, help_) in tgt.run_options.items():
            target_run_options.setdefault(flag, (kind, f"{name}: {help_}"))

    def run_flags(p: argparse.ArgumentParser) -> None:
        for flag, (kind, help_) in target_run_options.items():
            p.add_argument(f"--{flag.replace('_', '-')}", dest=f"run_option_{flag}", metavar=flag.upper(),
                           type=kind, default=None, help=help_)

    parser = argparse.ArgumentParser(
        prog="neuromorph",
        description="Define spiking networks once, train them, deploy them to Loihi-class hardware.",
    )
    parser.add_argument("--version", action="version", version=f"neuromorph {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        # SUPPRESS keeps a --debug given before the command from being reset here.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        return p

    p = add("models", cmd_models, "list the model zoo, or write one zoo model to a file")
    p.add_argument("name", nargs="?", help="zoo model to write (with -o)")
    p.add_argument("-o", "--output", help="model file to write")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")

    p = add("inspect", cmd_inspect, "summarise a model: nodes, shapes, parameters, cycles")
    p.add_argument("model", help="model file (or zoo model name)")

    def task_args(p: argparse.ArgumentParser, steps_help: str = "time steps per sample (task default if omitted)") -> None:
        p.add_argument("--steps", type=int, default=None, help=steps_help)
        p.add_argument("--encoding", default=None, help="input encoding (digits: current, rate, latency)")
        p.add_argument("--option", action="append", metavar="KEY=VALUE",
                       help="any other task option (repeatable), e.g. --option delay_steps=500")

    p = add("backends", cmd_backends, "list the registered targets and training methods")

    p = add("train", cmd_train, "train a model on a task (surrogate-gradient BPTT or online e-prop, PyTorch)")
    p.add_argument("model", nargs="?", help="model file or zoo name (default: the task's zoo model)")
    p.add_argument("--task", required=True, help="digits, randman, cue-accumulation or digits-incremental")
    p.add_argument("--method", default=DEFAULT_METHOD,
                   help=f"a registered training method (default {DEFAULT_METHOD}; see `neuromorph backends`)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="constant, or cosine: annealed to 0 over the run")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="seed for data, shuffling and sampling")
    p.add_argument("--surrogate", default=None, help="fast_sigmoid (SuperSpike) or triangle (default: "
                   "fast_sigmoid for bptt, triangle for eprop)")
    p.add_argument("--surrogate-alpha", type=float, default=None,
                   help="surrogate sharpness; the triangle's height gamma (default: 10 for fast_sigmoid, "
                        "0.3 for triangle)")
    e = p.add_argument_group("e-prop options (--method eprop; docs/eprop.md)")
    e.add_argument("--learning-signal", default=None, choices=("symmetric", "random", "broadcast", "adaptive"),
                   help="how the readout error reaches the hidden neurons: readout weights transposed "
                   "(symmetric, default), fixed random feedback, a sign-matched broadcast, or Kolen-Pollack "
                   "feedback that learns (adaptive)")
    e.add_argument("--rate-reg", type=float, default=None,
                   help="firing-rate regularisation strength (default 0: off)")
    e.add_argument("--rate-target", type=float, default=None, help="target firing rate in Hz (default 10)")
    e.add_argument("--kp-decay", type=float, default=None,
                   help="adaptive: weight decay of readout and feedback weights per update (default 1e-3)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="training precision (float64: slower, for exact comparisons)")
    p.add_argument("--plot", help="save training curves to this PNG")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    p.add_argument("-o", "--output", required=True, help="model file to write (the trained model)")
    task_args(p)

    p = add("compile", cmd_compile, "compile a model for a registered target")
    p.add_argument("model", help="model file or zoo name")
    p.add_argument("--backend", default=DEFAULT_TARGET,
                   help=f"a registered target (default {DEFAULT_TARGET}; see `neuromorph backends`)")
    p.add_argument("--precision", default="float",
                   help="one of the target's precisions (default float; see `neuromorph backends`)")
    p.add_argument("--dt", type=float, default=None, help="time step in seconds (default: the model's)")
    p.add_argument("--task", help="calibrate fixed-point scales on the first 256 samples of this task's "
                   "training data (default: the task the model was trained on, if it says)")
    p.add_argument("--calibrate", metavar="X.npy",
                   help="calibrate fixed-point scales on your input stream instead of a task's: .npy of "
                        "[T, *input] or [batch, T, *input] (e.g. event counts that exceed 1)")
    p.add_argument("--seed", type=int, default=None,
                   help="task seed (default: the one the model was trained with, else 0)")
    p.add_argument("-o", "--output", required=True, help="artifact file to write")
    for flag, (kind, help_) in target_options.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=f"option_{flag}", metavar=flag.upper(), type=kind,
                       default=None, help=help_)
    task_args(p)

    p = add("run", cmd_run, "run a model or a compiled artifact on a task or on your own input")
    p.add_argument("model", help="model file, zoo name or compiled artifact")
    p.add_argument("--backend", default=None,
                   help=f"a model file is compiled in memory (float) for this target (default "
                        f"{MODEL_TARGET}); an artifact runs on the target it was compiled for")
    p.add_argument("--raster", help="save a spike raster of the first sample to this PNG")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--task", help="evaluate on this task's data (default: the task the model was "
                   "trained on, if it says)")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--seed", type=int, default=None,
                   help="task seed (default: the one the model was trained with, else 0)")
    p.add_argument("--input", help="your input stream: .npy of shape [T, *input] or [batch, T, *input]")
    p.add_argument("--output", help=".npz to write the output nodes' streams to (with --input)")
    p.add_argument("--membrane", action="store_true", help="also write membrane potentials (NAME.v)")
    p.add_argument("--dt", type=float, default=None, help="time step in seconds (default: the model's)")
    p.add_argument("--learn", action="store_true",
                   help="learn on chip: score the test split, play the task's labelled learning stream with "
                        "the model's plasticity on (one sample at a time, weights kept from sample to sample), "
                        "score again; --json adds accuracy_before/accuracy_after (and new/old classes)")
    p.add_argument("--plot", help="with --learn: save the learning curve to this PNG")
    p.add_argument("--save-learned", metavar="MODEL",
                   help="with --learn: write the model with the weights learned on chip to this file")
    run_flags(p)
    task_args(p)

    p = add("verify", cmd_verify, "run a deployment beside its reference and compare spike for spike "
            "(exit 1 when the agreement is below what the target promises)")
    p.add_argument("artifact", help="compiled artifact")
    p.add_argument("--task", help="compare on this task's test data (default: the task the model was "
                   "trained on, else random spike input)")
    p.add_argument("--input", help="compare on your input stream: .npy of [T, *input] or [batch, T, *input]")
    p.add_argument("--limit", type=int, default=20, help="number of samples (default 20)")
    p.add_argument("--seed", type=int, default=None,
                   help="task seed (default: the one the model was trained with), or random input's (0)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run_flags(p)
    task_args(p, f"time steps per sample (the task's default; {VERIFY_STEPS} for random input)")

    p = add("import-nir", cmd_import_nir, "convert a NIR file into a neuromorph model file")
    p.add_argument("file", help="NIR file (.nir, HDF5)")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--dt", type=float, default=None,
                   help="time step in seconds the NIR model was made for (NIR does not store it; "
                        "default: the dt neuromorph stored on export, else the convention's default)")
    p.add_argument("--convention", default="nir",
                   help="how the file's parameters are to be read, by the framework that wrote it: "
                        "nir, snntorch, norse, sinabs, rockpool, spyx, lava-dl, or auto (the "
                        "producer recognised from the file); default nir (docs/nir-conventions.md)")
    p.add_argument("--reset", default=None,
                   help="how spiking neurons reset, which NIR cannot say: value (to v_reset) or "
                        "subtract (v - threshold, snnTorch's reset_mechanism='subtract'); default: "
                        "what neuromorph wrote into the file's metadata, else the convention's")

    p = add("export-nir", cmd_export_nir, "write a model as a NIR file")
    p.add_argument("model", help="model file (or zoo model name)")
    p.add_argument("-o", "--output", required=True, help="NIR file to write")
    return parser


def _system_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{display_path(exc.filename)}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    text = " ".join(str(exc).split())
    return text or ("out of memory" if isinstance(exc, MemoryError) else type(exc).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except NeuromorphError as exc:  # a broken plugin: say which, once
        print(f"neuromorph: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
        return int(args.func(args))
    except NeuromorphError as exc:
        if args.debug:
            raise
        print(f"neuromorph: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, MemoryError) as exc:  # the system refused: still one line
        if args.debug:
            raise
        print(f"neuromorph: error: {_system_error(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("neuromorph: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
