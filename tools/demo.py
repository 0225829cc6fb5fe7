"""Offline demo: synthetic scans written in a real format, a small sparse UNet trained on CPU,
evaluated on held-out scans, predictions exported in the dataset's own format, and pictures:
a render of the first held-out scan (ground truth | prediction | errors) and plots of the run.

    python tools/demo.py [--out work_dirs/demo] [--dataset outdoor|sequences|s3dis|scannet]
                         [--frames N] [--set key.path=value ...] [--data-only]

``outdoor`` (default) writes five LiDAR streets in SemanticKITTI format (sequences 00-03
train, 04 validates); ``sequences`` the same streets as longer, sparser drives with
stop-and-go motion (40 frames each, standing still for 40 % of them: what frame selection is
for); ``s3dis`` and ``scannet`` write indoor rooms in those formats. Each uses
its config in ``configs/demo/``. ``--data-only`` writes the data and stops (the other configs in
``configs/demo/`` read it from there).

Data are regenerated only when missing or written with other settings; a finished training run
is reused, an interrupted one resumed. The demo only ever writes inside ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from pcseg.config import Config, load_config
from pcseg.data.synthetic import write_indoor_s3dis, write_indoor_scannet, write_outdoor_sequences
from pcseg.engine import build
from pcseg.engine.checkpoint import CheckpointManager
from pcseg.engine.inference import test_checkpoint
from pcseg.engine.trainer import fit
from pcseg.vis import scenes
from pcseg.vis.render import render_image, save_png
from pcseg.vis.result_plots import plot_results

STAMP = ".pcseg-demo.json"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "demo"


def ensure_dataset(root: Path, settings: dict, write: Callable[[Path], object]) -> None:
    """(Re)write a synthetic dataset unless ``root`` already holds one made with ``settings``.

    The dataset is written to ``<root>.partial`` and renamed when complete, so an interrupted
    run leaves nothing half-written under ``root``; only folders the demo made are replaced.
    """
    stamp = root / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        print(f"{root}: up to date")
        return
    if root.exists() and not stamp.is_file():
        raise SystemExit(f"{root} exists but was not written by the demo; refusing to replace it")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    (partial / STAMP).write_text(json.dumps(settings))
    if root.exists():
        shutil.rmtree(root)
    partial.rename(root)


def write_data(data: Path, dataset: str, frames: int | None, seed: int) -> Path:
    """The demo dataset's root: (re)written when missing or made with other settings."""
    sequences = ["00", "01", "02", "03", "04"]
    if dataset == "outdoor":
        root = data / "semantickitti"
        settings = {"sequences": sequences, "frames": frames or 4, "azimuth_steps": 1024}
        write = write_outdoor_sequences
    elif dataset == "sequences":
        root = data / "semantickitti_sequences"
        settings = {
            "sequences": sequences,
            "frames": frames or 40,
            "azimuth_steps": 512,
            "stop_fraction": 0.4,
            "image_size": None,
        }
        write = write_outdoor_sequences
    elif dataset == "s3dis":
        root = data / "s3dis"
        settings = {"num_areas": 6, "rooms_per_area": 2, "points_per_room": 40_000}
        write = write_indoor_s3dis
    else:
        root = data / "scannet"
        settings = {"num_scenes": 8, "points_per_scene": 40_000}
        write = write_indoor_scannet
    settings["seed"] = seed
    ensure_dataset(root, settings, lambda target: write(target, **settings))
    return root


def train(config: Config, run_dir: Path) -> Path:
    """Train, resume an interrupted run, or reuse a finished one; returns the last checkpoint.

    A run dir trained with another config (other data seed, other ``--set``) is not touched.
    """
    saved = run_dir / "config.yaml"
    checkpoints = CheckpointManager(run_dir / "checkpoints").paths()
    if checkpoints and load_config(saved) != config:
        raise SystemExit(
            f"{run_dir} holds a run made with another config; remove it or pass another --out"
        )
    summary_path = run_dir / "train_summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary["steps"] == config.train.max_steps and Path(summary["checkpoint"]).is_file():
            print(f"{run_dir}: training finished earlier, reusing it")
            return Path(summary["checkpoint"])
    return Path(fit(config, run_dir, resume=bool(checkpoints))["checkpoint"])


def write_figures(config: Config, run_dir: Path, predictions: Path, results: Path) -> list[Path]:
    """Render the first held-out scan's predictions and plot the run (the demo's own files,
    replaced on every run); the ceiling of a room is left out so the camera sees inside."""
    figures = run_dir / "figures"
    dataset = build.build_dataset(config, config.eval.split, augment=False)
    scan = scenes.load_scan(dataset, 0)
    pred = scenes.read_predictions(dataset, 0, predictions, num_points=scan.num_points)
    keep = scenes.visible_points(scan, [c for c in ("ceiling",) if c in scan.class_names])
    panels = scenes.label_panels(scan.subset(keep), pred[keep], scenes.LABEL_MODES)
    image, backend = render_image(panels, width=1500, height=600, point_size=3)
    render = figures / f"{scan.scene_id.replace('/', '_')}.png"
    print(f"rendered {scan.scene_id} with backend {backend}")
    return [
        save_png(image, render, overwrite=True),
        *plot_results(run_dir / "metrics.jsonl", figures, overwrite=True),
        *plot_results(results / "metrics.json", figures, overwrite=True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("work_dirs/demo"))
    parser.add_argument(
        "--dataset", choices=("outdoor", "sequences", "s3dis", "scannet"), default="outdoor"
    )
    parser.add_argument("--frames", type=int, help="scans per street (outdoor: 4; sequences: 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--data-only", action="store_true", help="write the data, do not train")
    args = parser.parse_args()
    root = write_data(args.out / "data", args.dataset, args.frames, args.seed)
    if args.data_only:
        print(f"data: {root.resolve()}")
        return
    overrides = [f"data.root={root}", f"seed={args.seed}", *args.overrides]
    config = load_config(CONFIGS / f"spunet_small_{args.dataset}.yaml", overrides)
    run_dir = args.out / f"run_{args.dataset}"
    checkpoint = train(config, run_dir)
    results, predictions = run_dir / "eval_val", run_dir / "predictions"
    shutil.rmtree(predictions, ignore_errors=True)  # the demo's own output of an earlier run
    scores = test_checkpoint(
        config, checkpoint, out_dir=results, export_dir=predictions, overwrite=True
    )
    print(f"\nValidation ({args.dataset}, every point of {scores['scans']} held-out scans):")
    print(scores["table"])
    figures = write_figures(config, run_dir, predictions, results)
    print("\nFigures:\n" + "\n".join(f"  {path.resolve()}" for path in figures))
    print(
        f"\nResults: {results.resolve()}/metrics.json; predictions (native format): "
        f"{predictions.resolve()}; TensorBoard logs: tensorboard --logdir "
        f"{(run_dir / 'tensorboard').resolve()}"
    )


if __name__ == "__main__":
    main()
