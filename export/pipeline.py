"""`python main.py --mode=export --workdir=DIR`: derive, convert, verify, then publish.

    DIR/export/saved_model/<version>/   TF Serving layout, signatures serving_default
                                        (uint8 pixels) and serving_bytes (encoded images)
    DIR/export/model_float32.tflite     uint8 pixels in, float32 probabilities out
    DIR/export/model_float16.tflite     same, float16 weights
    DIR/export/model_int8.tflite        full integer, uint8 pixels in, float32 probabilities out
    DIR/export/model.onnx               from the SavedModel's serving_default
    DIR/export/labels.txt               one class name per line, in label order
    DIR/export/export_report.json       per artefact: size, top-1, parity, latency

Nothing is written unless everything worked: the workdir is checked before any model is
built, the artefacts are built in a hidden directory next to DIR/export, each is verified
against the Keras child as soon as it exists, and the directory becomes DIR/export only
after every parity target was met. A miss raises ParityError naming the artefact and the
measured difference, and the hidden directory is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable

from dsnas_tf import data as data_lib
from dsnas_tf import workdir as workdir_lib
from dsnas_tf.latency import platform_string
from export import child as child_lib
from export import onnx as onnx_lib
from export import saved_model as saved_model_lib
from export import tflite as tflite_lib
from export import verify

EXPORT_DIR = "export"
REPORT_FILE = "export_report.json"
LABELS_FILE = "labels.txt"
SAVED_MODEL_DIR = "saved_model"
DEFAULT_CALIBRATION_IMAGES = 300
DEFAULT_LATENCY_RUNS = 50


def export_workdir(workdir: str, *, max_eval_images: int = 0,
                   calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                   latency_runs: int = DEFAULT_LATENCY_RUNS, threads: int | None = None,
                   source: data_lib.DataSource | None = None,
                   log: Callable[[str], None] = print) -> dict:
  """Exports the searched child of `workdir` to DIR/export/ and returns the report.

  Args:
    workdir: a workdir whose search finished.
    max_eval_images: test images to measure every artefact on (0: the whole test split).
    calibration_images: training images that calibrate the int8 model.
    latency_runs: timed single-image runs per artefact (the median is reported).
    threads: CPU threads for LiteRT and onnxruntime (default: all, as TensorFlow uses).
    source: the dataset, instead of the workdir config's (tests, benchmarks).
    log: progress lines and the final table.

  Raises:
    WorkdirError: no finished search, no readable checkpoint.
    ExportError: a converter failed; ParityError: a parity target was missed.
  """
  if calibration_images < 1:
    raise ValueError(f"calibration_images must be positive, got {calibration_images}")
  child_lib.check_workdir(workdir)  # Fails on files alone, before any model is built.
  log(f"export: restoring the searched supernet of {workdir}")
  child = child_lib.derive_child(workdir, source=source, log=lambda m: log(f"export: {m}"))
  log(f"export: child {list(child.choice_names)} ({child.space} space, "
      f"{child.image_size}x{child.image_size}, {child.num_classes} classes)")
  final = os.path.join(workdir, EXPORT_DIR)
  version = saved_model_lib.next_version(os.path.join(final, SAVED_MODEL_DIR))
  staging = tempfile.mkdtemp(dir=workdir, prefix=f".{EXPORT_DIR}-tmp-")
  try:
    report = build_and_verify(
        child, staging, version=version, max_eval_images=max_eval_images,
        calibration_images=calibration_images, latency_runs=latency_runs,
        threads=threads or os.cpu_count(), log=log)
    report["workdir"] = os.path.abspath(workdir)
    workdir_lib.atomic_write_json(os.path.join(staging, REPORT_FILE), report)
    _publish(staging, final)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  log(verify.format_table(list(report["artefacts"].values())))
  log(f"export: wrote {final}/ (measured on {report['eval_images']} test images; "
      f"latency: median of {latency_runs} single-image runs)")
  return report


def build_and_verify(child: child_lib.DerivedChild, out_dir: str, *, version: int,
                     max_eval_images: int, calibration_images: int, latency_runs: int,
                     threads: int | None, log: Callable[[str], None]) -> dict:
  """Writes every artefact into `out_dir`, verifying each as soon as it is written.

  Returns the report (without the workdir); raises ParityError at the first miss.
  """
  images = verify.EvalImages(child, max_eval_images)
  log(f"export: evaluating on {images.count} images of the test split")
  results: dict[str, verify.Measurement] = {}

  def measured(artefact: str, path: str | None, size: int, runner: verify.Runner,
               reference=None, float32_top1=None):
    result, probabilities = verify.measure(artefact, path, size, runner, images, reference,
                                           latency_runs)
    if reference is not None:
      verify.check(result, float32_top1)
    results[artefact] = result
    log(f"export: {artefact:<15} {path or '(Keras)':<22} top-1 {result.top1:6.2f}%  max abs "
        f"diff {result.max_abs_diff:.2e}  {result.latency_ms:.2f} ms/image")
    return probabilities

  reference = measured("keras_child", None, verify.keras_size_bytes(child.model),
                       verify.keras_runner(child.model))

  saved_model_path = f"{SAVED_MODEL_DIR}/{version}"
  saved_model_dir = os.path.join(out_dir, saved_model_path)
  saved_model_lib.export_saved_model(child, saved_model_dir)
  measured("saved_model", saved_model_path, verify.file_size(saved_model_dir),
           verify.saved_model_runner(saved_model_dir), reference)

  calibration = tflite_lib.calibration_data(child.source, child.cfg, calibration_images)
  for kind in tflite_lib.KINDS:
    name = tflite_lib.FILE_NAMES[kind]
    path = os.path.join(out_dir, name)
    with open(path, "wb") as f:
      f.write(tflite_lib.convert(child.model, child.image_size, kind,
                                 calibration if kind == "int8" else None))
    float32_top1 = results["tflite_float32"].top1 if kind == "int8" else None
    measured(f"tflite_{kind}", name, os.path.getsize(path),
             verify.tflite_runner(path, threads), reference, float32_top1)

  latency_check = check_predicted_latency(child, out_dir, log)

  onnx_path = os.path.join(out_dir, onnx_lib.FILE_NAME)
  onnx_lib.convert_saved_model(saved_model_dir, onnx_path)
  measured("onnx", onnx_lib.FILE_NAME, os.path.getsize(onnx_path),
           verify.onnx_runner(onnx_path, threads), reference)

  with open(os.path.join(out_dir, LABELS_FILE), "w") as f:
    f.write("".join(f"{name}\n" for name in child.class_names))
  report = {
      "model": child.metadata(),
      "saved_model_version": version,
      "signatures": {saved_model_lib.PIXELS_SIGNATURE: saved_model_lib.PIXELS_INPUT,
                     saved_model_lib.BYTES_SIGNATURE: saved_model_lib.BYTES_INPUT},
      "eval_split": child.cfg.data.eval_split,
      "eval_images": images.count,
      "calibration_images": calibration_images,
      "latency": (f"median of {latency_runs} single-image runs on the CPU after 3 warm-up "
                  f"runs; LiteRT and onnxruntime with {threads} threads"),
      "targets": {**{k: f"max abs diff <= {v:g}" for k, v in verify.PROBABILITY_TARGETS.items()},
                  **{k: f"max abs diff <= {v:g} on {100 * verify.TAIL_QUANTILE:g}% of images"
                     for k, v in verify.TAIL_TARGETS.items()},
                  "tflite_int8": f"top-1 within {verify.INT8_TOP1_POINTS} points of float32"},
      "artefacts": {name: result.as_dict() for name, result in results.items()},
  }
  if latency_check:
    report["latency_check"] = latency_check
  return report


def check_predicted_latency(child: child_lib.DerivedChild, out_dir: str,
                            log: Callable[[str], None]) -> dict | None:
  """The exported TFLite file's latency, timed as the search's latency table was (same
  format, threads and runs), next to the table's prediction; None for a search without
  a latency table."""
  table = child.architecture.get("latency_table")
  if not table:
    return None
  from export import latency as latency_lib  # Times with the LiteRT interpreter.
  with open(os.path.join(out_dir, tflite_lib.FILE_NAMES[table["format"]]), "rb") as f:
    measured = latency_lib.time_flatbuffer(f.read(), table["threads"],
                                           table.get("runs") or latency_lib.DEFAULT_RUNS)
  predicted = child.architecture["latency_ms_predicted"]
  log(f"export: tflite_{table['format']} latency {measured:.3f} ms measured ({table['threads']} "
      f"thread(s)), {predicted:.3f} ms predicted by the search's latency table "
      f"({100 * (predicted - measured) / measured:+.1f}%)")
  return {"format": table["format"], "threads": table["threads"], "predicted_ms": predicted,
          "measured_ms": round(measured, 4), "table_device": table["device"],
          "device": platform_string()}


def _publish(staging: str, final: str) -> None:
  """Moves the finished `staging` directory to `final`, replacing an earlier export."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the model from a server.
  if not os.path.exists(final):
    os.rename(staging, final)
    return
  graveyard = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=f".{EXPORT_DIR}-old-")
  old = os.path.join(graveyard, EXPORT_DIR)
  os.rename(final, old)
  try:
    os.rename(staging, final)
  except BaseException:
    os.rename(old, final)
    raise
  finally:
    shutil.rmtree(graveyard, ignore_errors=True)
