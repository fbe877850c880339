"""Portal pages of the customer scores: the overview (stages, RFM grid, tiers, freshness,
"recompute now"), the settings page, the transitions between stages, and the prediction
model's page (the fit, the smart segments' cut-offs and the holdout check).

Tenancy: every read goes through `customers.scores.selectors` with the current merchant;
the settings and the recomputation are that merchant's own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from customers.forms import ScoreSettingsForm, TierRuleFormSet
from customers.models import (
    Customer,
    Merchant,
    ScoreChangeKind,
    ScoreSettingsChange,
    TierRule,
)
from customers.portal.permissions import Action
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant
from customers.scores import selectors
from customers.scores.definitions import (
    RFM_GROUP_HELP,
    RFM_GROUPS,
    STAGE_DISPLAY_ORDER,
    STAGE_LABELS,
)
from customers.scores.service import score_rules, score_settings_for
from customers.scores.settings import (
    describe_change,
    next_scheduled_run,
    score_settings_update,
    scores_recompute_request,
)
from customers.scores.smart import SMART_SEGMENTS, segment_rules
from customers.views.predictions import ModelReport, merchant_model

RECOMPUTE_QUEUED = "The scores are being recomputed; this page shows when they are done."
SETTINGS_SAVED = "Score settings saved. The scores are being recomputed with them."
SETTINGS_UNCHANGED = "Nothing changed."
TRANSITION_CUSTOMERS_PER_PAGE = 50


class ScoresView(MerchantRequiredMixin, View):
    """GET: the merchant's scores at a glance."""

    def get(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        settings_row = score_settings_for(merchant)
        rules = score_rules(settings_row)
        definitions = rules.lifecycle.definitions()
        stages = selectors.stage_counts(merchant=merchant)
        total = sum(stages.values())
        groups = selectors.group_counts(merchant=merchant)
        tier_counts = dict(
            Customer.objects.filter(merchant=merchant, tier__isnull=False)
            .values_list("tier_id")
            .annotate(n=Count("pk"))
            .order_by()
        )
        tiers = [
            (tier, tier_counts.get(tier.pk, 0), getattr(tier, "rule", None))
            for tier in merchant.tiers.select_related("rule").order_by("-rank", "name")
        ]
        context = {
            "merchant": merchant,
            "settings": settings_row,
            "next_run": next_scheduled_run(merchant=merchant, settings_row=settings_row),
            "stages": [
                (name, STAGE_LABELS[name], stages[name], definitions[name])
                for name in STAGE_DISPLAY_ORDER
            ],
            "no_stage": stages[selectors.NO_STAGE],
            "total": total,
            "grid": selectors.rfm_grid_counts(merchant=merchant, grid=settings_row.rfm_grid),
            "groups": [
                (name, label, groups.get(name, 0), RFM_GROUP_HELP[name])
                for name, label in RFM_GROUPS
            ],
            "tiers": tiers,
            "has_tier_rules": any(rule for _, _, rule in tiers),
            "smart": _smart_rows(merchant, settings_row.model),
            "model": ModelReport.from_json(
                settings_row.model if isinstance(settings_row.model, dict) else {}
            ),
        }
        return render(request, "customers/scores.html", context)


def _smart_rows(merchant: Merchant, model: Any) -> list[tuple[str, str, int, str]]:
    """(name, label, customers, the rule's steps that give it) per smart segment, with the
    merchant's stored cut-offs."""
    counts = selectors.smart_segment_counts(merchant=merchant)
    rules = segment_rules(model)
    return [(name, label, counts.get(name, 0), rules[name]) for name, label in SMART_SEGMENTS]


class ScoreRecomputeView(MerchantRequiredMixin, View):
    """POST: queue a computation of the merchant's scores now."""

    permission = Action.MANAGE_SCORES

    def post(self, request: HttpRequest) -> HttpResponse:
        scores_recompute_request(merchant=current_merchant(request))
        messages.info(request, RECOMPUTE_QUEUED)
        return redirect("customers:scores")


class ScoreSettingsView(MerchantRequiredMixin, View):
    """GET/POST: the thresholds, the RFM grid, the tier rules and the cadence."""

    permission = Action.MANAGE_SCORES

    def get(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        settings_row = score_settings_for(merchant)
        form = ScoreSettingsForm(initial=ScoreSettingsForm.initial_for(settings_row))
        tiers = TierRuleFormSet(
            prefix="tiers",
            initial=[
                {
                    "name": rule.tier.name,
                    "rank": rule.tier.rank,
                    "metric": rule.metric,
                    "period": rule.period,
                    "threshold": rule.threshold,
                }
                for rule in TierRule.objects.filter(merchant=merchant)
                .select_related("tier")
                .order_by("-tier__rank", "tier__name")
            ],
        )
        return self.page(request, form, tiers, [])

    def post(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        form = ScoreSettingsForm(request.POST)
        tiers = TierRuleFormSet(request.POST, prefix="tiers")
        if not (form.is_valid() and tiers.is_valid()):
            return self.page(request, form, tiers, [], status=400)
        rules = [rule for rule in (f.rule() for f in tiers.forms) if rule is not None]
        try:
            change = score_settings_update(
                merchant=merchant,
                user=request.user,
                values=form.values(),
                grid=form.grid(),
                tier_rules=rules,
            )
        except ValidationError as exc:
            other: list[str] = []
            for field, errors in exc.message_dict.items():
                if field in form.fields:
                    for error in errors:
                        form.add_error(field, error)
                else:
                    other.extend(errors)
            return self.page(request, form, tiers, other, status=400)
        messages.success(request, SETTINGS_SAVED if change else SETTINGS_UNCHANGED)
        return redirect("customers:score_settings")

    def page(
        self,
        request: HttpRequest,
        form: ScoreSettingsForm,
        tiers: Any,
        errors: list[str],
        status: int = 200,
    ) -> HttpResponse:
        merchant = current_merchant(request)
        changes = [
            (change, describe_change(change))
            for change in ScoreSettingsChange.objects.filter(merchant=merchant).select_related(
                "changed_by"
            )[:20]
        ]
        context = {
            "merchant": merchant,
            "form": form,
            "tiers": tiers,
            "errors": errors,
            "changes": changes,
            "group_help": [(label, RFM_GROUP_HELP[name]) for name, label in RFM_GROUPS],
        }
        return render(request, "customers/score_settings.html", context, status=status)


def _period(request: HttpRequest, merchant: Any) -> selectors.Period:
    kind = "month" if request.GET.get("period") == "month" else "week"
    try:
        day = dt.date.fromisoformat(request.GET.get("start", ""))
    except ValueError:
        day = merchant.today()
    if not dt.date(1900, 1, 1) <= day <= dt.date(9998, 12, 1):
        day = merchant.today()
    return selectors.Period.containing(kind, day)


def _kind(request: HttpRequest) -> str:
    return "tier" if request.GET.get("kind") == "tier" else "lifecycle"


class TransitionsView(MerchantRequiredMixin, View):
    """GET: how many customers moved from each stage (or tier) to each other over a week or
    a month; each count links to those customers."""

    def get(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        period, kind = _period(request, merchant), _kind(request)
        counts = selectors.transition_matrix(merchant=merchant, period=period, kind=kind)
        if kind == "lifecycle":
            values = [(name, STAGE_LABELS[name]) for name in STAGE_DISPLAY_ORDER]
            values.insert(0, (selectors.NO_STAGE, "No order yet"))
        else:
            names = [t.name for t in merchant.tiers.order_by("rank", "name")]
            seen = {v for pair in counts for v in pair} - set(names) - {""}
            values = [("", "No tier"), *((n, n) for n in [*names, *sorted(seen)])]
        rows = [
            (
                from_value,
                from_label,
                [(to_value, counts.get((from_value, to_value), 0)) for to_value, _ in values],
                sum(n for (f, _), n in counts.items() if f == from_value),
            )
            for from_value, from_label in values
        ]
        moved_in = [
            sum(n for (_, t), n in counts.items() if t == to_value) for to_value, _ in values
        ]
        context = {
            "merchant": merchant,
            "period": period,
            "kind": kind,
            "kinds": ScoreChangeKind.choices,
            "moved_in": moved_in,
            "columns": values,
            "rows": rows,
            "moved": sum(counts.values()),
        }
        return render(request, "customers/score_transitions.html", context)


class TransitionCustomersView(MerchantRequiredMixin, View):
    """GET: the customers of one cell of the transitions matrix."""

    def get(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        period, kind = _period(request, merchant), _kind(request)
        from_value = request.GET.get("from", "")[:100]
        to_value = request.GET.get("to", "")[:100]
        customers = selectors.transition_customers(
            merchant=merchant, period=period, from_value=from_value, to_value=to_value, kind=kind
        )
        page = Paginator(customers, TRANSITION_CUSTOMERS_PER_PAGE).get_page(request.GET.get("page"))
        label = selectors.stage_label if kind == "lifecycle" else (lambda v: v or "No tier")
        context = {
            "merchant": merchant,
            "period": period,
            "kind": kind,
            "from_value": from_value,
            "to_value": to_value,
            "from_label": label(from_value),
            "to_label": label(to_value),
            "page_obj": page,
        }
        return render(request, "customers/score_transition_customers.html", context)


class ScoreModelView(MerchantRequiredMixin, View):
    """GET: the merchant's prediction model as the last computation fitted it: BG/NBD and
    Gamma-Gamma parameters, the smart segments' cut-offs, the calibration/holdout check."""

    def get(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        report = ModelReport.from_json(merchant_model(merchant))
        holdout = report.holdout
        context = {
            "merchant": merchant,
            "report": report,
            "steps": report.steps(),
            "holdout": holdout,
            "chart": holdout.chart() if holdout and len(holdout.rows) > 1 else None,
        }
        return render(request, "customers/score_model.html", context)
