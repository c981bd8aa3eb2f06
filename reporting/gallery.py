"""The demo figures the READMEs show: copies of `make demo` figures in docs/figures/ (`make report`).

    python -m reporting.gallery                   # copy from results/ (make report)
    python -m reporting.gallery --results-root R  # from the run folders under R

The repository tracks these copies (GitHub shows the READMEs with them); the list below is the
one place that says which figures they are.  Each copy is scaled to 100 dpi (the figures are
drawn at 150) and stored with a 96-colour palette, a few tens of KB each.  The demo is
deterministic, so a copy changes only when the code that draws it does.  A figure whose run
folder is missing, unfinished or not made by the demo command is skipped with a warning line.
"""
from __future__ import annotations

import sys
from pathlib import Path

from islab import cli

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "figures"
SCALE = 100 / 150   # the figures' 150 dpi -> 100 dpi
COLOURS = 96        # palette size: enough for the line colours and their antialiased edges

# (figure under the results root, name in docs/figures/)
FIGURES = (
    ("DR-IS/static/demo/accuracy.png", "demo-dris-static-accuracy.png"),
    ("DR-IS/online/demo/acc_vs_epoch.png", "demo-dris-online-accuracy.png"),
    ("DR-IS/synthetic/demo/synthetic.png", "demo-dris-synthetic.png"),
    ("DR-IS/diagnostics/demo/hist-targeted0.25-K3.png", "demo-dris-diagnostics-hist.png"),
    ("DL-noise/r-b64/corrupted_vs_noise.png", "demo-dl-noise-corrupted.png"),
    ("Convex-Noise/demo/summary.png", "demo-convex-summary.png"),
)


def shrink(src: Path, dst: Path) -> None:
    """dst: src scaled by SCALE, as a palette PNG (written atomically)."""
    import io

    from PIL import Image

    from islab.runs import atomic_write_bytes

    with Image.open(src) as img:
        img = img.convert("RGB")
        img = img.resize((max(1, round(img.width * SCALE)), max(1, round(img.height * SCALE))), Image.LANCZOS)
        img = img.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True, dpi=(100, 100))
    atomic_write_bytes(dst, buf.getvalue())
    dst.chmod(0o644)   # a tracked file, readable like the others


def copy(root, out=OUT) -> list[Path]:
    """Copy every FIGURES entry found under `root` into `out`; returns the written paths."""
    root, out = Path(root), Path(out)
    made = []
    for rel, name in FIGURES:
        src = root / rel
        if not src.is_file():
            print(f"gallery: {src} missing (make demo first); {name} left as it is", file=sys.stderr)
            continue
        why = unusable(root, src.parent)
        if why:
            print(f"gallery: {name} left as it is: {why}", file=sys.stderr)
            continue
        out.mkdir(parents=True, exist_ok=True)
        shrink(src, out / name)
        made.append(out / name)
    return made


def unusable(root: Path, folder: Path) -> str | None:
    """Why a demo figure's run folder may not be shown (as for the README blocks, reporting.report):
    unfinished jobs, or a config.json other than the demo command's; None when it may."""
    from reporting import report

    sources = [s for b in report.registry().values() for s in b.sources if root / s.folder == folder]
    return report.unfinished(folder) or (report.foreign(folder, sources[0].command, root) if sources else None)


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--results-root", type=cli.read_folder, default=str(REPO / "results"),
                   help="root of the run folders the figures are copied from")
    p.add_argument("--out", type=cli.folder, default=str(OUT), help="folder of the copies")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    for path in copy(args.results_root, args.out):
        print(path.relative_to(REPO) if path.resolve().is_relative_to(REPO) else path)


if __name__ == "__main__":
    cli.run_main(main)
