"""Look at results: a scan's ground truth, predictions and errors; an active-learning round's
queries; segments; and plots of runs and sweeps.

    python tools/visualize.py scan CONFIG [--split val] [--scene ID]
        [--predictions DIR_OR_FILE | --checkpoint CKPT [--tta]] [--modes gt pred error]
    python tools/visualize.py queries DIR/<strategy>_s<seed>/round_XX [--scene ID]
    python tools/visualize.py segments CONFIG --segments FILE.npy|FILE.npz [--key NAME]
    python tools/visualize.py plots PATH [PATH ...] --out DIR

Every view opens an Open3D window (G/P/E/Q/S or 1-9 switch panels, +/- point size) or, with
``--out FILE.png``, renders headless: panels side by side under one legend, ``--size WxH``
pixels, through ``--backend auto|open3d|legacy|software`` (auto: the first that works here),
seen from ``--view oblique|top`` or from ``--eye X Y Z --target X Y Z``. An existing PNG is
replaced only with ``--overwrite``. ``--predictions`` takes the folder ``tools/test.py
--export`` wrote, or one file (native format or an ``.npy`` of class ids).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcseg.config import load_config
from pcseg.data.formats.validation import DataFormatError
from pcseg.engine import build
from pcseg.engine.checkpoint import CheckpointError
from pcseg.registry import ConfigError
from pcseg.vis import scenes
from pcseg.vis.camera import VIEWS, Camera, default_camera
from pcseg.vis.render import BACKENDS, Panel, RenderError, choose_backend, render_image, save_png
from pcseg.vis.result_plots import plot_results

RESULT_FILES = ("metrics.jsonl", "metrics.json", "*/metrics.json")
SWEEP_FILES = ("label_efficiency.json", "active_learning.json")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def _view_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("view")
    group.add_argument("--out", type=Path, help="render headless to this PNG (else a window)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    group.add_argument("--backend", choices=("auto", *BACKENDS), default="auto")
    group.add_argument("--size", type=_size, default=(1500, 600), help="WxH of the PNG")
    group.add_argument("--point-size", type=float, default=2.0, help="pixels")
    group.add_argument("--view", choices=VIEWS, default="oblique", help="default viewpoint")
    group.add_argument("--eye", type=float, nargs=3, metavar=("X", "Y", "Z"))
    group.add_argument("--target", type=float, nargs=3, metavar=("X", "Y", "Z"))
    group.add_argument("--fov", type=float, default=50.0, help="vertical field of view, degrees")
    group.add_argument(
        "--hide", nargs="+", default=[], metavar="CLASS", help="leave out these GT classes"
    )


def _scan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path)
    parser.add_argument("--split", help="train, val or test (default: eval.split)")
    parser.add_argument("--scene", help="scene id, e.g. 00/000000 (default: the split's first)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="command", required=True)
    scan = modes.add_parser("scan", help="ground truth, predictions, errors of one scan")
    _scan_options(scan)
    source = scan.add_mutually_exclusive_group()
    source.add_argument("--predictions", type=Path, help="export folder or prediction file")
    source.add_argument("--checkpoint", type=Path, help="predict with this checkpoint")
    scan.add_argument("--tta", action="store_true", help="test-time augmentation (eval.tta)")
    scan.add_argument("--modes", nargs="+", choices=scenes.LABEL_MODES, help="panels to show")
    queries = modes.add_parser("queries", help="an active-learning round's queries")
    queries.add_argument("round_dir", type=Path, help="DIR/<strategy>_s<seed>/round_XX")
    queries.add_argument("--scene", help="scene id (default: the one with the most queries)")
    segments = modes.add_parser("segments", help="points coloured by integer segment ids")
    _scan_options(segments)
    segments.add_argument("--segments", type=Path, required=True, help=".npy or .npz of ids")
    segments.add_argument("--key", help=".npz member (default: the scene id, or the only one)")
    segments.add_argument("--no-labels", action="store_true", help="no ground-truth panel")
    for sub in (scan, queries, segments):
        _view_options(sub)
    plots = modes.add_parser("plots", help="training curves, class IoU, confusion, sweeps")
    plots.add_argument("paths", type=Path, nargs="+", help="results files or run folders")
    plots.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    plots.add_argument("--overwrite", action="store_true", help="replace existing PNGs")
    return parser


def _load(args: argparse.Namespace) -> tuple:
    """The config, the split's dataset, the scan's index and the scan."""
    config = load_config(args.config, args.overrides)
    split = args.split or config.eval.split
    dataset = build.build_dataset(config, split, augment=False)
    index = scenes.find_scene(dataset, args.scene)
    return config, dataset, index, scenes.load_scan(dataset, index)


def scan_panels(args: argparse.Namespace) -> list[Panel]:
    config, dataset, index, scan = _load(args)
    pred = None
    if args.predictions:
        pred = scenes.read_predictions(dataset, index, args.predictions, num_points=scan.num_points)
    elif args.checkpoint:
        from pcseg.engine.inference import predict_scene  # imports the model code: slow

        pred = predict_scene(config, args.checkpoint, dataset, index, tta=args.tta)
    modes = args.modes or (["gt", "pred", "error"] if pred is not None else ["gt"])
    if "error" in modes and not (scan.label >= 0).any():
        raise ValueError(f"{scan.scene_id} has no labels: an error view needs them")
    keep = scenes.visible_points(scan, args.hide)
    pred = None if pred is None else pred[keep]
    return scenes.label_panels(scan.subset(keep), pred, modes)


def query_panels(args: argparse.Namespace) -> list[Panel]:
    config = scenes.round_config(args.round_dir)
    dataset = build.build_dataset(config, "train", augment=False)
    scene = args.scene or scenes.busiest_scene(args.round_dir)
    scan = scenes.load_scan(dataset, scenes.find_scene(dataset, scene))
    queries, earlier = scenes.read_round(args.round_dir, scene, scan.num_points)
    keep = scenes.visible_points(scan, args.hide)
    queries, earlier = (scenes.keep_indices(i, keep) for i in (queries, earlier))
    scan = scan.subset(keep)
    loop = args.round_dir.resolve().parent.name
    title = f"{loop} {args.round_dir.name}: {len(queries)} queries in {scene}"
    return scenes.query_panels(scan, queries, earlier, title)


def segment_panels(args: argparse.Namespace) -> list[Panel]:
    _, _, _, scan = _load(args)
    ids = scenes.read_segments(args.segments, scan.scene_id, scan.num_points, key=args.key)
    keep = scenes.visible_points(scan, args.hide)
    return scenes.segment_panels(scan.subset(keep), ids[keep], with_labels=not args.no_labels)


def _camera(args: argparse.Namespace, panels: list[Panel]) -> Camera:
    if (args.eye is None) != (args.target is None):
        raise ValueError("--eye and --target go together")
    if args.eye is not None:
        return Camera(eye=tuple(args.eye), target=tuple(args.target), fov_deg=args.fov)
    return default_camera(panels[0].layers[0].coord, view=args.view, fov_deg=args.fov)


def show(args: argparse.Namespace, panels: list[Panel]) -> None:
    """Render ``panels`` to ``--out`` or open the interactive window."""
    camera = _camera(args, panels)
    if args.out is None:
        from pcseg.vis.viewer import show as open_window

        open_window(panels, point_size=args.point_size, camera=camera)
        return
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out}: already exists; pass --overwrite to replace it")
    backend, skipped = choose_backend(args.backend)
    width, height = args.size
    image, backend = render_image(
        panels, width=width, height=height, point_size=args.point_size, camera=camera,
        backend=backend,
    )  # fmt: skip
    save_png(image, args.out, overwrite=args.overwrite)
    for reason in skipped:
        print(f"skipped backend {reason}")
    print(f"rendered with backend {backend}: {args.out}")


def plots(args: argparse.Namespace) -> None:
    files = []
    for path in args.paths:
        if path.is_dir():
            found = [f for p in (*RESULT_FILES, *SWEEP_FILES) for f in sorted(path.glob(p))]
            if not found:
                raise FileNotFoundError(
                    f"{path}: holds no results file ({', '.join(RESULT_FILES)})"
                )
            files += found
        else:
            files.append(path)
    for path in files:
        for written in plot_results(path, args.out, overwrite=args.overwrite):
            print(f"{path} -> {written}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    views = {"scan": scan_panels, "queries": query_panels, "segments": segment_panels}
    try:
        if args.command == "plots":
            plots(args)
        else:
            show(args, views[args.command](args))
    except (
        ConfigError,
        CheckpointError,
        DataFormatError,
        RenderError,
        OSError,
        ValueError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
