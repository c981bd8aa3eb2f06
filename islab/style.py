"""One vocabulary for every figure: method id -> display name, colour, marker, line style.

The scripts name one method in several ways (DR-IS is `dris` in static/online, `dr-is` in the
convex and synthetic studies, `ambiguous` in DL-noise; uniform sampling is `uniform`, `baseline`,
`sgd`).  ALIASES maps every id a script uses to its method, and METHODS gives each method one
display name and one colour, so a method looks the same in every figure and no colour ever
means two methods (tests/unit/test_plots.py checks both).  No matplotlib here: claims.py and the
reports read the names without drawing.
"""
from __future__ import annotations

# Okabe & Ito (2008) "Color Universal Design" (eight colours told apart under the common
# colour-vision deficiencies), then Paul Tol's "muted" scheme for the methods beyond eight.
BLACK, ORANGE, SKY, GREEN = "#000000", "#E69F00", "#56B4E9", "#009E73"
YELLOW, BLUE, VERMILLION, PURPLE = "#F0E442", "#0072B2", "#D55E00", "#CC79A7"
GREY = "#8C8C8C"
OLIVE, INDIGO, ROSE, WINE = "#999933", "#332288", "#CC6677", "#882255"
TEAL, CYAN, SAND, TOLPURPLE, BROWN = "#44AA99", "#88CCEE", "#DDCC77", "#AA4499", "#8C510A"
DARKRED = "#661100"
DARKGREY = "#555555"


def _m(name, color, marker="o", linestyle="-", width=1.5, size=4.5):
    return {"name": name, "color": color, "marker": marker, "linestyle": linestyle, "linewidth": width,
            "markersize": size}


# method -> display name and look.  Colours close to each other (green / teal, sky / cyan) go to
# methods of different families, which never share a figure.
METHODS = {
    # no preference: uniform sampling (SGD) and a random subset; all the data
    "uniform": _m("Uniform SGD", BLACK, "o"),
    "random": _m("Random subset", DARKGREY, "o", "--"),
    "full": _m("Full data", GREY, "D", "--"),
    # rank disagreement across proxies
    "dris": _m("DR-IS", BLUE, "s", "-", 2.0, 5.0),
    # importance samplers (Convex-Noise, synthetic, online, diagnostics)
    "standard_is": _m("Standard IS", VERMILLION, "v", "-"),
    "loss_is": _m("Loss IS", ORANGE, "X", "--"),
    "is_norm": _m("Lipschitz IS", TEAL, "P", "-."),
    "partial_is": _m("Partial IS", CYAN, "^", ":"),
    "rho_approx": _m("RHO-LOSS (approx.)", INDIGO, "^", "--"),
    "rho_faithful": _m("RHO-LOSS (faithful)", WINE, "P", "-."),
    # static pruning scores: several coincide exactly (consensus and EL2N keep the same subsets
    # under targeted noise): EL2N is a wide solid line with large markers, consensus a thin
    # dashed one drawn on top of it
    "el2n": _m("EL2N", ROSE, "v", "-", 3.0, 7.5),
    "consensus": _m("Consensus loss", PURPLE, "^", "--", 1.4, 4.0),
    "forgetting": _m("Forgetting", GREEN, "P", "-."),
    "aum": _m("AUM", SAND, "X", ":"),
    "aum_tsr": _m("AUM threshold", SKY, "*", "-"),
    "hybrid": _m("Hybrid", OLIVE, "h", "-"),
    "cleanlab": _m("Cleanlab", BROWN, "d", "-"),
    # non-convex resampling-reweighting (Convex-Noise/nonconvex_rr.py)
    "rr": _m("RR", TOLPURPLE, "s", "-"),
    "rr_local": _m("RR (local)", DARKRED, "s", "-"),
}

# every id a script writes -> its method (an id equal to a method's key needs no entry)
ALIASES = {
    "baseline": "uniform", "sgd": "uniform", "Uniform SGD": "uniform",
    "dr-is": "dris", "ambiguous": "dris", "DR-IS": "dris",
    "grad-is": "standard_is", "Standard IS": "standard_is",
    "loss-is": "loss_is", "Loss IS": "loss_is",
    "is-norm": "is_norm", "partial-is": "partial_is",
    "consensus-high": "consensus", "rr-local": "rr_local",
}


def method_of(name) -> str | None:
    """The method an id names (hybrid0.5 is the hybrid), or None for names outside the vocabulary
    (DL-correlation's models, quantities)."""
    name = str(name)
    key = ALIASES.get(name, name)
    if key in METHODS:
        return key
    if name.startswith("hybrid"):
        return "hybrid"
    return None


def display(name) -> str:
    """The legend name of an id: the method's display name (a hybrid keeps its lambda), or the
    id itself outside the vocabulary."""
    key = method_of(name)
    if key is None:
        return str(name)
    if key == "hybrid" and str(name) != "hybrid":
        return f"Hybrid lambda={str(name)[len('hybrid'):]}"
    return METHODS[key]["name"]


def look(name) -> dict | None:
    """color / marker / linestyle / linewidth / markersize of an id's method (None outside)."""
    key = method_of(name)
    return None if key is None else {k: v for k, v in METHODS[key].items() if k != "name"}
