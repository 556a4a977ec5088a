"""The live views, one file each. Each draws only from `Snapshot`s (see views/base.py for the API).

`VIEW_CLASSES` lists them in the order the product describes them (and a default layout shows them):
what the weights do (ΔW, spectrum), what the prefix does (attention, gates), then how training goes
(loss), what it costs (budget), what the model says (samples) and which tokens it finds more or less
likely than the base (tokens); then comparisons of several runs and the rank advice drawn from the
spectra.
"""

from explorer.gui.views.attention_view import AttentionView
from explorer.gui.views.base import View
from explorer.gui.views.budget_view import BudgetView
from explorer.gui.views.compare_view import CompareView
from explorer.gui.views.delta_view import DeltaView
from explorer.gui.views.gates_view import GatesView
from explorer.gui.views.loss_view import LossView
from explorer.gui.views.rank_view import RankView
from explorer.gui.views.samples_view import SamplesView
from explorer.gui.views.spectrum_view import SpectrumView
from explorer.gui.views.token_view import TokenView

VIEW_CLASSES: dict[str, type[View]] = {
    cls.view_id: cls
    for cls in (
        DeltaView,
        SpectrumView,
        AttentionView,
        GatesView,
        LossView,
        BudgetView,
        SamplesView,
        TokenView,
        CompareView,
        RankView,
    )
}

__all__ = [
    "VIEW_CLASSES",
    "View",
    "DeltaView",
    "SpectrumView",
    "AttentionView",
    "GatesView",
    "LossView",
    "BudgetView",
    "SamplesView",
    "TokenView",
    "CompareView",
    "RankView",
]
