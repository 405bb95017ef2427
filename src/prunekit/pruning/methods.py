"""Named methods: granularity + criterion + objective + schedule, with defaults.

A method is data, not a class: the comparison harness can then ask fair
questions ("same criterion, different objective") and a user builds a new method
with one ``METHODS.add(...)`` call.

How a method spends the sparsify phase (the fine-tune budget after dense training):

- no objective: pruning events from the schedule over the phase, then fine-tuning;
- with an objective and ``objective_phase="before-prune"``: the objective shapes the
  weights over the first ``regularize_fraction`` of the phase, the schedule's events
  start there, and the rest fine-tunes without the objective (L1, L0, entropy);
- ``objective_phase="all"``: the objective stays on for the whole phase, pruning
  events included (noise models: the noise is part of fine-tuning too).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..registry import PrunekitError, Registry
from .method_docs import MethodDoc, describe


@dataclass(frozen=True)
class Method:
    name: str
    criterion: str
    granularity: str = "weight"
    scope: str = "global"
    schedule: str = "oneshot"
    schedule_args: dict[str, Any] = field(default_factory=dict)
    objective: str | None = None
    objective_args: dict[str, Any] = field(default_factory=dict)
    objective_phase: str = "before-prune"
    regularize_fraction: float = 0.5
    criterion_args: dict[str, Any] = field(default_factory=dict)
    granularity_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.objective_phase not in ("before-prune", "all"):
            raise ValueError(f"objective_phase must be 'before-prune' or 'all' ({self.name})")
        if not 0.0 <= self.regularize_fraction < 1.0:
            raise ValueError(f"regularize_fraction must be in [0, 1) ({self.name})")

    def with_options(self, **overrides: Any) -> Method:
        """A copy with fields overridden (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    METHODS.add(method.name, method)
    return method


def get_method(name: str) -> Method:
    return METHODS.get(name)


register(
    Method(
        "dense",
        criterion="magnitude",
        description="No pruning (sparsity 0): the baseline every row is compared to.",
    )
)
register(
    Method(
        "magnitude",
        criterion="magnitude",
        description="Smallest |w| pruned (Han et al. 2015); global or per layer.",
    )
)
register(
    Method(
        "random",
        criterion="random",
        description="Uniformly random weights pruned: the floor every criterion must beat.",
    )
)
register(
    Method(
        "l1-filter",
        criterion="magnitude",
        granularity="neuron",
        scope="layer",
        description="Conv filters / Linear units with the smallest L1 norm zeroed "
        "(Li et al. 2017), the spec's conv1 example.",
    )
)
register(
    Method(
        "gmp",
        criterion="magnitude",
        schedule="cubic",
        description="Gradual magnitude pruning (Zhu & Gupta 2017): cubic schedule "
        "s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, ~10 events over the first "
        "75 % of the phase, then fine-tuning.",
    )
)

# What the docs site says about the baselines (see method_docs.py).
describe(
    "dense",
    MethodDoc(
        "Dense baseline (no pruning)",
        r"\theta^\ast = \arg\min_\theta L_{task}(\theta)",
        {r"L_{task}": "the task loss (cross-entropy)", r"\theta": "every weight, none removed"},
        when="Always in a comparison: it is trained for the same total epochs as every "
        "pruned model, so each accuracy drop is measured against it.",
    ),
)
describe(
    "magnitude",
    MethodDoc(
        "Magnitude pruning",
        r"m_i = \big[\,|w_i| > \tau\,\big],\quad \tau = \text{the } k\text{-th smallest } |w|,"
        r"\ k = \operatorname{round}(s\,n)",
        {
            "w_i": "one weight of a Linear/Conv layer",
            "m_i": "its mask entry (1 kept, 0 pruned)",
            "s": "the target sparsity",
            "n": "number of weights ranked together (all layers with scope=global, "
            "one layer with scope=layer)",
        },
        "Han, Pool, Tran & Dally 2015, Learning both Weights and Connections for "
        "Efficient Neural Networks",
        "https://arxiv.org/abs/1506.02626",
        "The first method to try and the one to beat: no extra training term, no data, "
        "and in our measurements among the most accurate up to 98 % weight sparsity. "
        "It makes the model smaller on disk, not faster: zeros keep the dense shapes.",
    ),
)
describe(
    "random",
    MethodDoc(
        "Random pruning",
        r"m_i = \big[\,u_i > \tau\,\big],\quad u_i \sim U(0, 1)",
        {"u_i": "a uniform random score per weight (the run's seeded generator)"},
        "Blalock, Gonzalez Ortiz, Frankle & Guttag 2020, What is the State of Neural "
        "Network Pruning? (random as the baseline every criterion must beat)",
        "https://arxiv.org/abs/2003.03033",
        "Never for a real model: it is the floor. A criterion that does not beat it "
        "clearly is not ranking weights by importance.",
    ),
)
describe(
    "l1-filter",
    MethodDoc(
        "L1-norm filter pruning",
        r"S_j = \frac{1}{n_j}\sum_{i} |W_{j,i}|,\quad \text{remove the } "
        r"\operatorname{round}(s\,N_\ell) \text{ units of layer } \ell \text{ with the smallest } S_j",
        {
            "W_{j,i}": "weight i of output unit j (a Linear row or a conv filter)",
            "n_j": "the unit's fan-in (number of weights)",
            "S_j": "the unit's score: its L1 norm divided by its fan-in",
            "N_\\ell": "units in layer l (scope=layer: every layer loses the same fraction)",
        },
        "Li, Kadav, Durdanovic, Samet & Graf 2017, Pruning Filters for Efficient ConvNets",
        "https://arxiv.org/abs/1608.08710",
        "When you need real speed without sparse kernels: whole units are removed and the "
        "saved model is physically smaller. Expect to lose more accuracy than weight "
        "pruning at the same sparsity, since the unit of removal is much coarser.",
    ),
)
describe(
    "gmp",
    MethodDoc(
        "Gradual magnitude pruning (GMP)",
        r"s_t = s_f + (s_i - s_f)\Big(1 - \frac{t - t_0}{n\,\Delta t}\Big)^3,"
        r"\quad t \in [t_0,\ t_0 + n\Delta t]",
        {
            "s_t": "sparsity reached at step t",
            "s_i, s_f": "initial (0) and final (the target) sparsity",
            "t_0": "first pruning step",
            "n": "number of pruning events (about 10)",
            r"\Delta t": "steps between events; the events span the first 75 % of the phase",
        },
        "Zhu & Gupta 2017, To prune, or not to prune: exploring the efficacy of pruning "
        "for model compression",
        "https://arxiv.org/abs/1710.01878",
        "When the network should adapt between cuts: it prunes fast at first and slowly "
        "towards the end, with fine-tuning in between, in the same budget as one-shot "
        "magnitude pruning. Whether that pays depends on the budget: compare both in the "
        "measured results below.",
    ),
)
register(
    Method(
        "wanda",
        criterion="wanda",
        description="Wanda (Sun et al. 2023): |w_ij| * ||X_j||_2 on calibration inputs, "
        "compared within each output row, layers calibrated in sequence; no weight "
        "update. Granularity weight or nm; global scope = global-magnitude layer allocation.",
    )
)
register(
    Method(
        "sparsegpt",
        criterion="sparsegpt",
        description="SparseGPT (Frantar & Alistarh 2023): layer-wise OBS pruning with weight "
        "updates from H = 2XX^T, column blocks with adaptive masks, layers calibrated in "
        "sequence. Granularity weight or nm; global scope = global-magnitude layer allocation.",
    )
)
describe(
    "wanda",
    MethodDoc(
        "Wanda (pruning by weights and activations)",
        r"S_{ij} = |W_{ij}|\,\lVert X_j \rVert_2,\quad \text{prune the smallest } S_{ij}"
        r"\text{ within each output row } i",
        {
            "W_{ij}": "weight from input j to output i of a Linear layer (a conv filter "
            "unfolded to a row)",
            r"\lVert X_j \rVert_2": "the L2 norm of input feature j over the calibration "
            "examples, as the layer sees them after the layers before it were pruned",
            "S_{ij}": "the weight's score; no weight is updated",
        },
        "Sun, Liu, Bair & Kolter 2023, A Simple and Effective Pruning Approach for Large "
        "Language Models",
        "https://arxiv.org/abs/2306.11695",
        "One-shot pruning with a little calibration data and no retraining, above all for "
        "language models with outlier features; also N:M (2:4). On small vision MLPs it "
        "is weaker than magnitude pruning in our measurements (see below).",
    ),
)
describe(
    "sparsegpt",
    MethodDoc(
        "SparseGPT (one-shot pruning with reconstruction)",
        r"H = 2XX^\top + \lambda I,\quad \varepsilon_j = \frac{w_j^2}{[H^{-1}]_{jj}},"
        r"\quad \delta = -\frac{w_j}{[H^{-1}]_{jj}}\,H^{-1}_{:,j}",
        {
            "X": "the layer's calibration inputs (features x examples)",
            r"\lambda": "dampening: a small fraction of the mean diagonal of XX^T",
            r"\varepsilon_j": "the error of removing weight w_j (the mask is chosen per "
            "column block by the smallest errors)",
            r"\delta": "the update of the row's remaining weights that compensates for "
            "the removal (optimal brain surgeon)",
        },
        "Frantar & Alistarh 2023, SparseGPT: Massive Language Models Can Be Accurately "
        "Pruned in One-Shot",
        "https://arxiv.org/abs/2301.00774",
        "When you cannot retrain, or retrain little: the remaining weights are updated to "
        "reproduce each layer's outputs on calibration data, so one-shot accuracy is far "
        "above magnitude pruning's (see below). Costs one Hessian per layer.",
    ),
)


def part_options(method: Method) -> dict[str, Any]:
    """The options dataclass of each part of ``method``, keyed by the ``Method`` field
    that holds its values (objective first: a name shared with another part goes there)."""
    from .criteria import CRITERIA
    from .granularity import get as get_granularity
    from .objectives import OBJECTIVES
    from .options import Options, options_of
    from .schedules import SCHEDULES

    return {
        "objective_args": options_of(OBJECTIVES.get(method.objective))
        if method.objective
        else Options,
        "schedule_args": options_of(SCHEDULES.get(method.schedule)),
        "criterion_args": options_of(CRITERIA.get(method.criterion)),
        "granularity_args": get_granularity(method.granularity).Options,
    }


def with_method_args(method: Method, args: dict[str, Any]) -> Method:
    """Route free-form options (``--lambda``, ``--cycles``, ``--nm`` ...) to the method's
    objective, schedule, criterion or granularity, by the fields of each one's options
    dataclass; a value is checked against the field's type, and an unknown option is an
    error that lists what the method takes."""
    if not args:
        return method
    targets = part_options(method)
    routed = {field_name: dict(getattr(method, field_name)) for field_name in targets}
    unknown = []
    for key, value in args.items():
        for field_name, options in targets.items():
            if key in options.names():
                # Typed by the part's own dataclass: -o lam=abc fails here, one line.
                routed[field_name][key] = options.check(key, value)
                break
        else:
            unknown.append(key)
    if unknown:
        accepted_all = sorted({n for options in targets.values() for n in options.names()})
        raise PrunekitError(
            f"method {method.name!r} does not take option(s) {', '.join(sorted(unknown))}; "
            f"it takes: {', '.join(accepted_all) or 'none'}"
        )
    return replace(method, **routed)
