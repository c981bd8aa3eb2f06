#!/usr/bin/env python
"""The DR-IS paper's claims tested on a real data set, in one resumable command.

Runs the study of the paper's tables on one preset (Fashion-MNIST by default: all 60,000
training images, CPU-sized models; cifar10 / cifar100: the paper's own protocol, for GPU nodes),
each stage an ordinary run folder of DR-IS/static.py, online.py, ablations.py or diagnostics.py,
then writes the reproduction report (DR-IS/claims.py) from the result files of the
Fashion-MNIST and digits studies it finds.

    python DR-IS/reproduce.py                          # Fashion-MNIST study + report (`make reproduce`)
    python DR-IS/reproduce.py --preset digits          # the same study on digits (about 5 min)
    python DR-IS/reproduce.py --report-only            # only rewrite REPRODUCTION.md from the results
    python DR-IS/reproduce.py --dry-run                # list the stages and their commands
    python DR-IS/reproduce.py --preset cifar10 -- --data-dir data --launcher slurm --slurm-partition gpu
                                                       # the CIFAR-10 grid as Slurm job arrays

Stages (paper table -> run folder results/DR-IS/<script>/repro-<preset>-<stage>):
  table1      static, alpha 0.3, clean + targeted 25 %, 5 seeds: accuracy, corruption in subset,
              AUROC/AP, paired t-test against Random (Tables 1, 2, 5)
  table1b     static, uniform 10 % + targeted 10 %, 3 seeds (the other Table 1 columns)
  balanced    table1's score methods with --class-balanced selection, 3 seeds (our extension)
  alpha       static, alpha 0.1 and 0.5 at targeted 25 %, 3 seeds (Table 6; alpha 0.3 is table1)
  rate        static, targeted 40 % and 50 %, 3 seeds (Figure 2; 10 % and 25 % are table1/1b)
  online      online IS, clean + targeted 10 % + targeted 25 %, every sampler, 3 seeds (Table 3)
  k           ablation: DR-IS with K = 2, 3, 5 proxies at targeted 25 %, 3 seeds
  proxysets   ablation: the proxy-diversity sets K1, K2, K3 at targeted 25 %, 3 seeds (Table 7)
  diagnostics Appendix H: rank-variance histograms, empirical gap vs 2r, K = 2, 3, 4, 6
  sensitivity which choice drives the Standard IS and RHO-LOSS verdicts of `online`: one factor at
              a time around its defaults (floor 0.1, refreshed target, weights 1/(N p)), 3 seeds,
              targeted 25 % (and clean on digits), four run folders sensitivity-<variant>:
              floor0 / floor0.01 (--is-floor and --rho-floor 0 / 0.01), frozen (Standard IS
              scored once from the proxy snapshot, --is-source proxy; RHO's frozen variant is
              rho_approx of `online`), unweighted (drawn from p, weight 1); the defaults and the
              uniform reference are read from `online` (`--stages sensitivity` runs all four)
Every stage runs with --resume, so a second call finishes only what is missing; a stage that
fails stops the study with its exit status (rerun to continue).  Flags after `--` go to
every stage (e.g. `-- --device cuda`), the launcher's included (islab/launch.py): with
`-- --launcher local --workers 4` each stage runs on 4 worker processes (one GPU each on a GPU
node), with `-- --launcher slurm ...` every stage is submitted as Slurm job arrays and the
command returns; rerun it (or `--report-only`) once the jobs are done.  The report covers
Fashion-MNIST and digits; a CIFAR study's numbers are in its run folders' res.txt.
"""
from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # standalone: find islab

from islab import cli, experiment, runs  # noqa: E402

PRESETS = ("fashion-mnist", "digits", "cifar10", "cifar100")
REPORT_PRESETS = ("fashion-mnist", "digits")   # the presets REPRODUCTION.md reads (main one first)
MAIN_SEEDS = "0,1,2,3,4"   # the paired t-test cells (paper D.1 used >= 5 seeds)
SEEDS = "0,1,2"
SCORE_METHODS = "el2n,forgetting,consensus,aum,dris"
ALL_STATIC = "random," + SCORE_METHODS + ",full"
FIG2_METHODS = "random,el2n,consensus,aum,dris"
SENS_METHODS = "standard_is,rho_faithful,rho_approx"
# one factor at a time around online.py's defaults: (variant, methods, flags); the default itself
# and the uniform reference are the `online` stage's runs (same noise draw, seeds and settings)
SENS_VARIANTS = (("floor0", SENS_METHODS, ["--is-floor", "0", "--rho-floor", "0"]),
                 ("floor0.01", SENS_METHODS, ["--is-floor", "0.01", "--rho-floor", "0.01"]),
                 ("frozen", "standard_is", ["--is-source", "proxy"]),
                 ("unweighted", SENS_METHODS, ["--unweighted"]))
SENS_NOISE = {"digits": "clean,targeted:0.25"}   # other presets: targeted:0.25 (about 5 min on 2 workers)


def stages(preset: str) -> list[tuple[str, str, list[str]]]:
    """(stage, script, argv) in run order; the run folder name is repro-<preset>-<stage>."""
    common = ["--preset", preset]
    return [
        ("table1", "static", common + ["--noise", "clean,targeted:0.25", "--seeds", MAIN_SEEDS,
                                       "--methods", ALL_STATIC]),
        ("table1b", "static", common + ["--noise", "uniform:0.1,targeted:0.1", "--seeds", SEEDS,
                                        "--methods", ALL_STATIC]),
        ("balanced", "static", common + ["--noise", "clean,targeted:0.25", "--seeds", SEEDS,
                                         "--methods", SCORE_METHODS, "--class-balanced"]),
        ("alpha", "static", common + ["--noise", "targeted:0.25", "--alpha", "0.1,0.5", "--seeds", SEEDS,
                                      "--methods", FIG2_METHODS]),
        ("rate", "static", common + ["--noise", "targeted:0.4,targeted:0.5", "--seeds", SEEDS,
                                     "--methods", FIG2_METHODS]),
        ("online", "online", common + ["--noise", "clean,targeted:0.1,targeted:0.25", "--seeds", SEEDS]),
        ("k", "ablations", ["--sweep", "K", "--values", "2,3,5"] + common
         + ["--noise", "targeted:0.25", "--methods", "dris", "--seeds", SEEDS]),
        ("proxysets", "ablations", ["--sweep", "proxies", "--values", "K1,K2,K3"] + common
         + ["--noise", "targeted:0.25", "--methods", "dris", "--seeds", SEEDS]),
        # the preset's own proxies, cycled: K = 3 is exactly the ensemble of the other stages
        ("diagnostics", "diagnostics", common + ["--noise", "clean,targeted:0.25", "--k-values", "2,3,4,6",
                                                 "--proxies", experiment.PRESETS[preset]["proxies"]]),
    ] + [(f"sensitivity-{v}", "online", common + ["--noise", SENS_NOISE.get(preset, "targeted:0.25"),
                                                   "--seeds", SEEDS, "--methods", methods] + flags)
         for v, methods, flags in SENS_VARIANTS]


def select(names: list[str], wanted: list[str]) -> list[str]:
    """The stages of `wanted` (a name, or a group such as 'sensitivity' for every
    sensitivity-<variant>), in run order; exit 2 on an unknown name."""
    groups = sorted({n.split("-", 1)[0] for n in names if "-" in n})
    cli.check_choices(wanted, names + groups, "stage")
    return [n for n in names if n in wanted or n.split("-", 1)[0] in wanted and "-" in n]


def run_folder(results_root: Path, preset: str, stage: str, script: str) -> Path:
    sub = {"static": "static", "online": "online", "ablations": "ablations", "diagnostics": "diagnostics"}[script]
    return results_root / "DR-IS" / sub / f"repro-{preset}-{stage}"


def command(preset: str, stage: str, script: str, argv: list[str], results_root: Path, extra: list[str]):
    folder = run_folder(results_root, preset, stage, script)
    return [sys.executable, str(HERE / f"{script}.py"), *argv, "--name", folder.name,
            "--results-root", str(results_root), "--resume", "--quiet", *extra]


def load_claims():
    spec = importlib.util.spec_from_file_location("dris_claims", HERE / "claims.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def build_parser():
    p = cli.make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fashion-mnist", choices=PRESETS,
                   help="the data set and models the study runs on")
    p.add_argument("--stages", default=None,
                   help="comma list of stages to run (default: all, in order); see the list above "
                        "('sensitivity' = its four run folders)")
    p.add_argument("--results-root", type=cli.folder, default=str(HERE.parent / "results"),
                   help="root of the run folders (<root>/DR-IS/<script>/repro-<preset>-<stage>)")
    p.add_argument("--report", type=cli.path, default=str(HERE.parent / "REPRODUCTION.md"),
                   help="where the generated report goes")
    p.add_argument("--report-only", action="store_true", help="run nothing; rewrite the report")
    p.add_argument("--no-report", action="store_true", help="run the stages; do not write the report")
    p.add_argument("--dry-run", action="store_true", help="print each stage's command and exit")
    return p


def submits(extra: list[str]) -> bool:
    """Do the forwarded flags submit to Slurm (the stages then return before their jobs run)?"""
    value = None
    for i, a in enumerate(extra):
        if a == "--launcher" and i + 1 < len(extra):
            value = extra[i + 1]
        elif a.startswith("--launcher="):
            value = a.split("=", 1)[1]
    return value == "slurm" and "--dry-run" not in extra


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.report_only and args.no_report:
        cli.fail("--report-only and --no-report together do nothing; give one of them")
    submitted = submits(extra)
    planned = "--dry-run" in extra   # each stage prints its plan; nothing is run, nothing written
    plan = stages(args.preset)
    names = [s for s, _, _ in plan]
    if args.stages is not None:
        chosen = select(names, cli.parse_list(args.stages, "--stages"))
        plan = [p for p in plan if p[0] in chosen]
    root = Path(args.results_root)
    if args.dry_run:
        for stage, script, a in plan:
            print(f"{stage}: " + " ".join(shlex.quote(c) for c in command(args.preset, stage, script, a, root, extra)))
        return 0
    t_all = time.time()
    if not args.report_only:
        for stage, script, a in plan:
            cmd = command(args.preset, stage, script, a, root, extra)
            t0 = time.time()
            print(f"[{args.preset}] {stage}: {' '.join(shlex.quote(c) for c in cmd[1:])}", flush=True)
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                print(f"[{args.preset}] stage {stage} failed (exit {rc}); rerun the same command to continue",
                      file=sys.stderr)
                return rc
            if not planned:
                print(f"[{args.preset}] {stage}: " + ("submitted" if submitted else
                                                      f"done in {time.time() - t0:.0f} s"), flush=True)
        print(f"[{args.preset}] all stages " + ("planned (--dry-run: nothing run, no report written)" if planned else
                                                "submitted to Slurm; when their jobs are done, write the "
                                                f"report with: python {Path(__file__).name} --report-only"
                                                if submitted else f"done in {time.time() - t_all:.0f} s"),
              flush=True)
    if (submitted or planned) and not args.report_only:
        return 0
    if not args.no_report and args.preset not in REPORT_PRESETS and not args.report_only:
        print(f"[{args.preset}] REPRODUCTION.md covers {', '.join(REPORT_PRESETS)}; the {args.preset} tables are "
              f"in each stage's res.txt under {root}/DR-IS/")
        return 0
    if not args.no_report:
        claims = load_claims()
        text = claims.report(root, REPORT_PRESETS,
                             lambda preset, stage, script: run_folder(root, preset, stage, script),
                             figures_dir=claims.FIGURES_DIR)
        runs.publish_text(args.report, text)   # atomic: a failed write keeps the previous report whole
        print(f"report -> {args.report}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)
