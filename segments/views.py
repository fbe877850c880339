"""Segment pages: list, builder (create/edit, live count and funnel), detail (why in/out,
refresh now, manual members) and the "Segments and why" partial of the customer page.

Thin: reads come from `segments.selectors`, rule evaluation from `segments.engine`, writes
from `segments.services`. Tenancy: every object is looked up inside the current merchant's
rows (`selectors.segment_queryset(merchant=...)`), so another merchant's ids answer 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django_tables2 import RequestConfig

from customers.models import Customer, Merchant
from customers.portal.formatting import format_count, format_money, format_percent
from customers.portal.lists import MerchantTableListView
from customers.portal.permissions import Action, denied_message, may
from customers.portal.tenancy import MerchantRequiredMixin, current_merchant
from segments import builder, engine, exports, ready_made, selectors, services
from segments.filters import SegmentFilter
from segments.forms import (
    ManualSettingsForm,
    MemberUploadForm,
    SegmentSettingsForm,
)
from segments.models import Segment, SegmentKind, SegmentVersion
from segments.tables import MemberTable, SegmentTable
from segments.templates_catalog import TEMPLATES, find_template, template_key

logger = logging.getLogger(__name__)
T = TypeVar("T")

MEMBERS_PER_PAGE = 50
EVENTS_PER_PAGE = 25
SAVED_MESSAGE = 'Segment "{name}" saved.'
REFRESH_QUEUED_MESSAGE = "Refresh queued."
NOT_REFRESHED_MESSAGE = "Manual and inactive segments are not refreshed from rules."
ENTER_A_CUSTOMER = "Enter a name, email, phone number or external id to add."
ALREADY_MEMBER = '{who} is already in "{segment}": nothing changed.'
ADDED_TO = 'Added {who} to "{segment}".'
NO_MATCHING_CUSTOMER = 'No customer\'s id, name, email or phone matches "{query}".'
NOT_EVALUATED_ERROR = "These rules cannot be evaluated: {error}"
LIVE_COUNT_TIMEOUT_ERROR = (
    "The live count took more than {seconds:g} seconds and was stopped, to keep the portal "
    "quick for everyone. The segment can still be saved: its refresh counts the members "
    "without this limit."
)
NOT_DESCRIBED = "(these rules no longer validate: {error})"


def _segment(request: HttpRequest, pk: int) -> Segment:
    return get_object_or_404(selectors.segment_queryset(merchant=current_merchant(request)), pk=pk)


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _error_text(exc: Exception) -> str:
    if isinstance(exc, engine.RuleValidationError):
        return "; ".join(exc.errors)
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "…"


def _attempt(call: Callable[[], T], what: str) -> tuple[T | None, str]:
    """`call()`, or (None, why) when it fails. Pages that evaluate or describe several
    segments' stored rules use it, so one segment that cannot be evaluated (rules saved
    before a limit existed, a database that refuses a value) shows its error in place
    instead of breaking the page for the whole merchant. A time limit running out is the
    caller's to say (`engine.EvaluationTimeout` passes through)."""
    try:
        return call(), ""
    except engine.EvaluationTimeout:
        raise
    except Exception as exc:
        logger.warning("%s failed", what, exc_info=True)
        return None, _error_text(exc)


def _sentence(rules: Any) -> str:
    """The rules read out, or why they cannot be (see `_attempt`)."""
    sentence, error = _attempt(lambda: engine.describe(rules), "describing rules")
    return sentence if sentence is not None else NOT_DESCRIBED.format(error=error)


# -- list -----------------------------------------------------------------------------------

BULK_ACTIONS = {
    "activate": "Activate",
    "deactivate": "Deactivate",
    "refresh": "Refresh now",
    "remove": "Remove",
}
ROW_ACTIONS = ("duplicate", "activate", "deactivate", "refresh")
#: The permission each list action needs (`customers.portal.permissions`).
ACTION_PERMISSION = {
    "duplicate": Action.SAVE_SEGMENTS,
    "activate": Action.OPERATE_SEGMENTS,
    "deactivate": Action.OPERATE_SEGMENTS,
    "refresh": Action.OPERATE_SEGMENTS,
    "remove": Action.REMOVE_SEGMENTS,
}
#: The permission each entry of a row's actions menu needs.
ROW_MENU_PERMISSION = {
    **ACTION_PERMISSION,
    "edit": Action.SAVE_SEGMENTS,
    "download": Action.EXPORT_DATA,
}
NOTHING_SELECTED = "Select at least one segment, or apply the action to every match."
CHOOSE_AN_ACTION = "Choose an action first, then apply it."


def _action_permission(request: HttpRequest) -> Action:
    """The permission the posted list action needs (an unknown one is refused later)."""
    return ACTION_PERMISSION.get(request.POST.get("action", ""), Action.VIEW)


class SegmentListView(MerchantTableListView):
    """The merchant's segments: search as you type, filters, sorting, paging, row and bulk
    actions, CSV/XLSX export of the list. An htmx request gets only the table partial."""

    template_name = "segments/segment_list.html"
    partial_template_name = "segments/partials/segment_table.html"
    filterset_class = SegmentFilter
    table_class = SegmentTable
    export_name = "segments"
    optional_columns = {
        "members": True,
        "avg_transaction_value": True,
        "avg_transactions": False,
        "avg_spending": True,
        "avg_clv": False,
        "active": True,
        "kind": True,
        "last_refreshed": True,
        "created": False,
    }
    dataset_kwargs = {"title": "Segments"}

    def get_queryset(self) -> QuerySet[Segment]:
        return selectors.segment_list(merchant=current_merchant(self.request))

    def _bulk_actions(self) -> list[tuple[str, str]]:
        return [
            (key, label)
            for key, label in BULK_ACTIONS.items()
            if may(self.request, ACTION_PERMISSION[key])
        ]

    def get_table_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "merchant": current_merchant(self.request),
            "allowed": {
                entry for entry, needed in ROW_MENU_PERMISSION.items() if may(self.request, needed)
            },
        }
        if not self._bulk_actions():
            kwargs["exclude"] = ("select",)  # nothing to apply to a selection
        return kwargs

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["bulk_actions"] = self._bulk_actions()
        context["templates"] = [(template_key(t), t) for t in TEMPLATES]
        if may(self.request, Action.SAVE_SEGMENTS) and not getattr(self.request, "htmx", False):
            context["ready_made"] = ready_made.ready_made_missing(
                merchant=current_merchant(self.request)
            )
        return context


class ReadyMadeView(MerchantRequiredMixin, View):
    """POST `family` (lifecycle, rfm, tiers or smart): add that family's ready-made segments
    the merchant does not have yet."""

    permission = Action.SAVE_SEGMENTS

    def post(self, request: HttpRequest) -> HttpResponse:
        family = request.POST.get("family", "")
        if family not in ready_made.FAMILIES:
            messages.error(request, "Pick lifecycle stages, RFM groups, tiers or smart segments.")
            return redirect("segments:list")
        created = services.segments_add_ready_made(
            merchant=current_merchant(request), family=family, user=request.user
        )
        label = ready_made.FAMILIES[family]
        if created:
            messages.success(
                request,
                f"Added {_segments_text(len(created))} for {label}; they fill in moments "
                "and refresh after each score computation.",
            )
        else:
            messages.info(request, f"You have every segment for {label} already.")
        return redirect("segments:list")


def _list_url(query: str) -> str:
    """The list with the filters and sort the user came from."""
    url = reverse("segments:list")
    return f"{url}?{query}" if query else url


def _segments_text(count: int) -> str:
    return f"{count} segment" if count == 1 else f"{format_count(count)} segments"


def _run_action(request: HttpRequest, action: str, segments: list[Segment]) -> None:
    """Apply a list action to segments of the current merchant and say what happened."""
    user = request.user
    if action == "activate":
        changed = services.segments_set_active(segments=segments, active=True, user=user)
        messages.success(request, f"{_segments_text(len(changed))} activated.")
    elif action == "deactivate":
        changed = services.segments_set_active(segments=segments, active=False, user=user)
        messages.success(request, f"{_segments_text(len(changed))} deactivated.")
    elif action == "refresh":
        queued = services.segments_queue_refresh(segments=segments)
        skipped = len(segments) - len(queued)
        note = f" ({format_count(skipped)} manual or inactive, not refreshed)" if skipped else ""
        refreshes = "refresh" if len(queued) == 1 else "refreshes"
        messages.info(request, f"{format_count(len(queued))} {refreshes} queued{note}.")
    elif action == "duplicate":
        for segment in segments:
            copy = services.segment_duplicate(segment=segment, user=user)
            messages.success(request, f'Created "{copy.name}".')
    elif action == "remove":
        try:
            removed = services.segments_remove(segments=segments, user=user)
        except services.SegmentInUseError as exc:
            for message in exc.messages:
                messages.error(request, message)
        else:
            messages.success(request, f"{_segments_text(removed)} removed.")


class SegmentActionView(MerchantRequiredMixin, View):
    """POST `action` (duplicate, activate, deactivate, refresh) on one segment."""

    def get_permission(self, request: HttpRequest) -> Action:
        return _action_permission(request)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = _segment(request, pk)
        action = request.POST.get("action", "")
        if action not in ROW_ACTIONS:
            messages.error(request, f'"{action}" is not an action.')
        else:
            _run_action(request, action, [segment])
        return redirect(_list_url(request.POST.get("next_query", "")))


class SegmentDownloadView(MerchantRequiredMixin, View):
    """GET: the segment's members as a streamed CSV or XLSX file (`?columns=a,b,c` picks
    the customer fields, default `exports.DEFAULT_COLUMNS`; `?reachable=email|sms|push`
    keeps only the members that channel can reach)."""

    permission = Action.EXPORT_DATA

    def get(self, request: HttpRequest, pk: int, fmt: str) -> HttpResponseBase:
        segment = _segment(request, pk)
        if fmt not in exports.FORMATS:
            raise Http404("Downloads are CSV or XLSX.")
        # `?columns=a,b` or the download form's `?columns=a&columns=b`.
        requested = [
            key.strip()
            for value in request.GET.getlist("columns")
            for key in value.split(",")
            if key.strip()
        ]
        try:
            return exports.members_download_response(
                segment=segment,
                fmt=fmt,
                columns=requested or None,
                reachable=request.GET.get("reachable") or None,
            )
        except ValueError as exc:
            return HttpResponse(str(exc), status=400, content_type="text/plain")


class SegmentRemoveView(MerchantRequiredMixin, View):
    """GET: confirm removing one segment (or say who uses it); POST: remove it."""

    permission = Action.REMOVE_SEGMENTS

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = _segment(request, pk)
        return _confirm(
            request,
            "remove",
            [segment],
            query=request.GET.get("next_query", ""),
            single=reverse("segments:remove", args=[segment.pk]),
        )

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        _run_action(request, "remove", [_segment(request, pk)])
        return redirect(_list_url(request.POST.get("next_query", "")))


def _confirm(
    request: HttpRequest,
    action: str,
    segments: list[Segment],
    *,
    query: str,
    everything: bool = False,
    single: str = "",
) -> HttpResponse:
    """The confirmation step of an action on several segments, like the admin's
    "delete selected": what will happen to which segments, and what will be refused."""
    plan = selectors.segment_removal_plan(segments=segments) if action == "remove" else None
    return render(
        request,
        "segments/confirm_action.html",
        {
            "action": action,
            "label": BULK_ACTIONS.get(action, action),
            "segments": segments,
            "blocked_segments": plan.blocked if plan else (),
            "used_elsewhere": plan.used_elsewhere if plan else (),
            "plan": plan,
            "query": query,
            "everything": everything,
            "single": single,
        },
    )


class SegmentBulkView(MerchantRequiredMixin, View):
    """POST: an action on the selected segments (`ids`) or on every segment the list's
    filters match (`everything` with the list's query string); answered first by a
    confirmation page, then, with `confirmed`, carried out."""

    def get_permission(self, request: HttpRequest) -> Action:
        return _action_permission(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        merchant = current_merchant(request)
        action = request.POST.get("action", "")
        query = request.POST.get("next_query", "")
        if not action:
            messages.error(request, CHOOSE_AN_ACTION)
            return redirect(_list_url(query))
        if action not in BULK_ACTIONS:
            messages.error(request, f'"{action}" is not an action.')
            return redirect(_list_url(query))
        everything = request.POST.get("everything") == "1"
        segments = self._segments(merchant, request, query, everything)
        if not segments:
            messages.error(request, NOTHING_SELECTED)
            return redirect(_list_url(query))
        if request.POST.get("confirmed") != "1":
            return _confirm(request, action, segments, query=query, everything=everything)
        _run_action(request, action, segments)
        return redirect(_list_url(query))

    def _segments(
        self, merchant: Merchant, request: HttpRequest, query: str, everything: bool
    ) -> list[Segment]:
        segments = selectors.segment_list(merchant=merchant)
        if everything:
            # The same filters as the list the user saw (its query string).
            return list(SegmentFilter(QueryDict(query), queryset=segments, request=request).qs)
        ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()]
        # Scoped to the merchant: another merchant's ids are simply not found.
        return list(segments.filter(pk__in=ids))


# -- builder --------------------------------------------------------------------------------


@dataclass
class BuilderState:
    """The rule tree after a post's widgets and edit, and what validation says of it."""

    tree: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    paste_error: str = ""
    paste_errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def _validate(tree: dict[str, Any], merchant: Merchant, segment: Segment | None) -> list[str]:
    try:
        engine.validate_rules(builder.clean_for_save(tree), merchant=merchant, segment=segment)
    except engine.RuleValidationError as exc:
        return exc.errors
    return []


def _state_from_post(data: QueryDict, merchant: Merchant, segment: Segment | None) -> BuilderState:
    loaded, load_errors = builder.load_tree(data.get("rules_json"))
    tree = builder.apply_widgets(loaded, data)
    action = data.get("action", "")
    paste_error, paste_errors = "", []
    if action == "paste":
        pasted, paste_error = builder.parse_pasted(data.get("paste_json", ""))
        if pasted is not None:
            paste_errors = _validate(pasted, merchant, segment)
            if not paste_errors:
                tree = pasted
    elif action:
        tree = builder.apply_action(tree, action)
    return BuilderState(
        tree=tree,
        errors=load_errors + _validate(tree, merchant, segment),
        paste_error=paste_error,
        paste_errors=paste_errors,
    )


def _editor_context(
    state: BuilderState, merchant: Merchant, segment: Segment | None
) -> dict[str, Any]:
    feedback, general = builder.node_feedback(state.tree, state.errors)
    return {
        "root": builder.editor_nodes(
            state.tree,
            options=selectors.builder_options(merchant=merchant, segment=segment),
            feedback=feedback,
            currency=merchant.currency,
        ),
        "fields": builder.field_catalogue(),
        "rules_json": builder.pretty(state.tree),
        "general_errors": general,
        "state": state,
        **_json_context(state),
        "editor_url": _builder_url("segments:builder_editor", segment),
        "preview_url": _builder_url("segments:builder_preview", segment),
    }


def _json_context(state: BuilderState) -> dict[str, Any]:
    """The Advanced section's JSON view: the rules as they will be saved, and validation in
    the contract's own words (paths included)."""
    return {
        "saved_json": builder.pretty(builder.clean_for_save(state.tree)),
        "contract_errors": state.errors,
    }


def _builder_url(name: str, segment: Segment | None) -> str:
    if segment is None:
        return reverse(name)
    return reverse(name + "_segment", args=[segment.pk])


def _preview_context(state: BuilderState, merchant: Merchant) -> dict[str, Any]:
    if not state.valid:
        lines, incomplete = builder.problems(state.tree, state.errors)
        return {"errors": lines, "incomplete": incomplete}
    rules = builder.clean_for_save(state.tree)
    limit_ms = settings.SEGMENT_LIVE_COUNT_TIMEOUT_MS

    def live_count() -> tuple[int, list[engine.FunnelStep]]:
        with engine.time_limit(limit_ms):
            return engine.count_with_funnel(merchant=merchant, rules=rules)

    try:
        counted, error = _attempt(live_count, "live count")
    except engine.EvaluationTimeout:
        return {
            "errors": [LIVE_COUNT_TIMEOUT_ERROR.format(seconds=limit_ms / 1000)],
            "failed": True,
        }
    if counted is None:
        return {"errors": [NOT_EVALUATED_ERROR.format(error=error)], "failed": True}
    count, steps = counted
    return {
        "count": count,
        "steps": steps,
        "total": selectors.customer_queryset(merchant=merchant).count(),
    }


class SegmentBuilderView(MerchantRequiredMixin, View):
    """Create (/segments/new/) or edit (/segments/<pk>/edit/) a dynamic segment. Every
    role may build rules and see their count (GET); saving (POST) needs `SAVE_SEGMENTS`.
    A manual segment's edit page is its name, description and state (`ManualSettingsForm`),
    for those who may save."""

    template_name = "segments/builder.html"

    def get_permission(self, request: HttpRequest) -> Action:
        if request.method == "POST" or self._is_manual(request):
            return Action.SAVE_SEGMENTS
        return Action.BUILD_SEGMENTS

    def _is_manual(self, request: HttpRequest) -> bool:
        pk = self.kwargs.get("pk") if hasattr(self, "kwargs") else None
        merchant = getattr(request, "merchant", None)
        if pk is None or merchant is None:
            return False
        return (
            selectors.segment_queryset(merchant=merchant)
            .filter(pk=pk, kind=SegmentKind.MANUAL)
            .exists()
        )

    def _segment(self, request: HttpRequest, pk: int | None) -> Segment | None:
        if pk is None:
            return None
        return get_object_or_404(
            selectors.segment_queryset(merchant=current_merchant(request)), pk=pk
        )

    def _manual(self, request: HttpRequest, segment: Segment) -> HttpResponse:
        """The settings of a manual segment (it has no rules to build)."""
        form = ManualSettingsForm(
            request.POST if request.method == "POST" else None,
            initial={
                "name": segment.name,
                "description": segment.description,
                "is_active": segment.is_active,
            },
        )
        if request.method == "POST" and form.is_valid():
            try:
                services.segment_update(segment=segment, user=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                messages.success(request, SAVED_MESSAGE.format(name=form.cleaned_data["name"]))
                return redirect("segments:detail", pk=segment.pk)
        status = 400 if request.method == "POST" else 200
        return render(
            request, "segments/manual_edit.html", {"segment": segment, "form": form}, status=status
        )

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = self._segment(request, pk)
        if segment is not None and not segment.is_dynamic:
            return self._manual(request, segment)
        if segment is not None:
            form = SegmentSettingsForm(initial=SegmentSettingsForm.initial_for(segment))
            tree = segment.rules or builder.empty_tree()
        else:
            template = find_template(request.GET.get("template", ""))
            initial: dict[str, Any] = {}
            tree = builder.empty_tree()
            if template is not None:
                initial = {"name": template["name"], "description": template["description"]}
                tree = template["rules"]
            form = SegmentSettingsForm(initial=initial)
        state = BuilderState(tree=tree, errors=_validate(tree, merchant, segment))
        return self._render(request, form, state, segment)

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = self._segment(request, pk)
        if segment is not None and not segment.is_dynamic:
            return self._manual(request, segment)
        form = SegmentSettingsForm(request.POST)
        if segment is not None:
            form.fields["slug"].disabled = True
            form.fields["slug"].initial = segment.slug
        state = _state_from_post(request.POST, merchant, segment)
        if form.is_valid() and state.valid:
            rules = builder.clean_for_save(state.tree)
            data = dict(form.cleaned_data)
            slug = data.pop("slug")
            try:
                if segment is None:
                    segment = services.segment_create(
                        merchant=merchant,
                        kind=SegmentKind.DYNAMIC,
                        slug=slug or None,
                        rules=rules,
                        created_by=request.user,
                        **data,
                    )
                else:
                    segment = services.segment_update(
                        segment=segment, user=request.user, rules=rules, **data
                    )
            except engine.RuleValidationError as exc:
                state.errors = exc.errors
            except ValidationError as exc:
                for name, errors in exc.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                messages.success(request, SAVED_MESSAGE.format(name=segment.name))
                return redirect("segments:detail", pk=segment.pk)
        return self._render(request, form, state, segment, status=400)

    def _render(
        self,
        request: HttpRequest,
        form: SegmentSettingsForm,
        state: BuilderState,
        segment: Segment | None,
        status: int = 200,
    ) -> HttpResponse:
        merchant = current_merchant(request)
        if segment is not None:
            form.fields["slug"].disabled = True
            form.fields["slug"].help_text = "The slug stays as it is."
        context = {
            "form": form,
            "segment": segment,
            "save_note": ""
            if may(request, Action.SAVE_SEGMENTS)
            else denied_message(Action.SAVE_SEGMENTS),
            "posted": request.method == "POST",
            "templates": [(template_key(t), t) for t in TEMPLATES],
            **_editor_context(state, merchant, segment),
            **_preview_context(state, merchant),
            "save_problems": builder.problems(state.tree, state.errors)[0] if state.errors else [],
        }
        return render(request, self.template_name, context, status=status)


class BuilderEditorView(MerchantRequiredMixin, View):
    """htmx: apply the posted widgets and edit to the tree, answer the editor partial."""

    permission = Action.BUILD_SEGMENTS

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk) if pk is not None else None
        state = _state_from_post(request.POST, merchant, segment)
        response = render(
            request,
            "segments/partials/editor.html",
            {**_editor_context(state, merchant, segment), "oob": True},
        )
        # The live count reloads once the new editor is in the page (after the swap), so it
        # posts exactly the rules on screen; sent before the swap, it counted the old ones.
        response["HX-Trigger-After-Settle"] = "rules-changed"
        return response


class BuilderPreviewView(MerchantRequiredMixin, View):
    """htmx: the live count and funnel of the posted tree (or its errors)."""

    permission = Action.BUILD_SEGMENTS

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk) if pk is not None else None
        data = request.POST.copy()
        data.pop("action", None)  # the editor applies edits; the count reads the widgets
        state = _state_from_post(data, merchant, segment)
        return render(
            request,
            "segments/partials/preview.html",
            {
                **_preview_context(state, merchant),
                **_json_context(state),
                # Values typed since the editor was drawn: each node's prompt and problems
                # follow, without redrawing the editor.
                "feedback_nodes": builder.feedback_nodes(state.tree, state.errors),
                "oob": True,
            },
        )


# -- detail ---------------------------------------------------------------------------------


class SegmentDetailView(MerchantRequiredMixin, View):
    """Definition, statistics, freshness, size over time, members (search, sort, pages),
    entries and exits, definition history, downloads, and "why in, why out"
    (?customer=<external id>)."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk)
        member_query = request.GET.get("mq", "").strip()
        members = MemberTable(
            selectors.segment_members(segment=segment, query=member_query),
            merchant=merchant,
            manual=not segment.is_dynamic and may(request, Action.EDIT_MEMBERS),
            prefix="m-",
        )
        RequestConfig(request, paginate={"per_page": MEMBERS_PER_PAGE}).configure(members)
        versions = list(selectors.segment_versions(segment=segment))
        # "Add a member" matched several customers: the list to pick one from.
        add_query = request.GET.get("add", "").strip()
        add_choices = (
            selectors.find_customers(merchant=merchant, query=add_query)
            if add_query and not segment.is_dynamic and may(request, Action.EDIT_MEMBERS)
            else []
        )
        context: dict[str, Any] = {
            "segment": segment,
            "members": members,
            "member_query": member_query,
            "events": Paginator(
                selectors.segment_events(segment=segment), EVENTS_PER_PAGE
            ).get_page(request.GET.get("epage")),
            "size_history": selectors.segment_size_history(segment=segment),
            "download_reachable": [
                (key, label) for key, (label, _, _) in exports.REACHABLE.items()
            ],
            "versions": versions,
            "download_columns": exports_columns(),
            "predictions": prediction_figures(segment, merchant.currency),
            "reachability": reachability_figures(segment),
            "add_query": add_query,
            "add_choices": add_choices,
            "find_limit": selectors.FIND_CUSTOMERS_LIMIT,
            "upload_form": MemberUploadForm(),
        }
        if segment.is_dynamic and segment.rules:
            context["sentence"] = _sentence(segment.rules)
            context["rules_json"] = builder.pretty(segment.rules)
        query = request.GET.get("customer", "").strip()
        if query and segment.is_dynamic and segment.rules:
            context["explain_query"] = query
            found = selectors.find_customers(merchant=merchant, query=query)
            if not found:
                context["explain_error"] = NO_MATCHING_CUSTOMER.format(query=query)
            elif len(found) > 1:
                context["explain_choices"] = found
            else:
                customer = found[0]
                context["explained"] = customer
                explained, error = _attempt(
                    lambda: engine.explain(
                        merchant=merchant, rules=segment.rules, customer=customer
                    ),
                    f"explaining segment {segment.pk}",
                )
                context["explain"] = explained
                if explained is None:
                    context["explain_error"] = NOT_EVALUATED_ERROR.format(error=error)
        template = (
            "segments/partials/explain.html"
            if _is_htmx(request) and "customer" in request.GET
            else "segments/segment_detail.html"
        )
        return render(request, template, context)


#: Why a figure of the predictions card is empty (the card waits for a first computation).
NO_MEMBERS_REASON = "no members"
NO_PREDICTIONS_REASON = "no predictions yet"


@dataclass(frozen=True)
class Figure:
    """One figure of the segment page's predictions card: `text` as people read it ("—"
    when empty, `reason` then says why), `note` what it means in a line, and `share` its
    part of the members (reachability)."""

    key: str
    label: str
    text: str
    note: str
    reason: str = ""
    share: Decimal | None = None


def prediction_figures(segment: Segment, currency: str) -> list[Figure]:
    """Segmentify's metrics of the members (LTV, risk rate, activity ratio, next order),
    from the statistics stored at the last refresh (`services.segment_stats_refresh`)."""
    members = segment.stats_member_count
    no_prediction = NO_PREDICTIONS_REASON if members else NO_MEMBERS_REASON
    figures = [
        (
            "ltv",
            "LTV (avg. CLV)",
            segment.avg_clv,
            format_money(segment.avg_clv, currency),
            "Mean predicted lifetime value: what a member is expected to spend in the "
            "next 12 months.",
            no_prediction,
        ),
        (
            "risk-rate",
            "Risk rate",
            segment.avg_churn_risk,
            format_percent(segment.avg_churn_risk),
            "Mean churn risk: the chance a member has already stopped buying.",
            no_prediction,
        ),
        (
            "activity-ratio",
            "Activity ratio",
            segment.activity_ratio,
            format_percent(segment.activity_ratio),
            "Share of members with an order in the last 30 days.",
            NO_MEMBERS_REASON,
        ),
        (
            "next-order",
            "Next order in 30 days",
            segment.avg_p_order_30d,
            format_percent(segment.avg_p_order_30d),
            "Mean probability that a member orders at least once in the next 30 days.",
            no_prediction,
        ),
    ]
    return [
        Figure(key, label, text, note, reason="" if value is not None else why)
        for key, label, value, text, note, why in figures
    ]


#: The reachability rows: (key, label, stored count, what it counts).
REACHABILITY = (
    ("registered", "Registered", "registered_count", "joined the loyalty program"),
    ("purchasers", "With purchases", "purchasers_count", "at least one order"),
    ("email", "Reachable by email", "email_reachable_count", "opted in, with an email address"),
    ("sms", "Reachable by SMS", "sms_reachable_count", "opted in, with a phone number"),
    ("push", "Reachable by push", "push_reachable_count", "opted in to push"),
)


def reachability_figures(segment: Segment) -> list[Figure]:
    """How many members each channel reaches and their share of the members, as stored at
    the last refresh (shares of the members counted then, "—" without members)."""
    members = segment.stats_member_count
    rows = []
    for key, label, field_name, note in REACHABILITY:
        count = getattr(segment, field_name)
        share = Decimal(count) / Decimal(members) if members and count is not None else None
        rows.append(Figure(key, label, format_count(count), note, share=share))
    return rows


def exports_columns() -> list[tuple[str, str, bool]]:
    """(key, label, chosen by default) of the columns a member download offers."""
    return [
        (key, column.label, key in exports.DEFAULT_COLUMNS)
        for key, column in exports.MEMBER_COLUMNS.items()
    ]


class SegmentHistoryView(MerchantRequiredMixin, View):
    """Every saved version of the definition, and the diff between two of them
    (`?old=<n>&new=<m>`, default: the previous version and the current one)."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = _segment(request, pk)
        versions = list(selectors.segment_versions(segment=segment))
        by_number = {v.version: v for v in versions}
        # Default: what the latest save changed (the previous version against the current).
        latest = versions[0] if versions else None
        new = by_number.get(_int(request.GET.get("new")) or 0, latest)
        old = by_number.get(
            _int(request.GET.get("old")) or 0, versions[1] if len(versions) > 1 else latest
        )
        diff = selectors.version_diff(old=old, new=new) if old and new else []
        sentences = {v.version: _sentence(v.rules) if v.rules else "" for v in versions}
        return render(
            request,
            "segments/segment_history.html",
            {
                "segment": segment,
                "versions": [(v, sentences[v.version]) for v in versions],
                "old": old,
                "new": new,
                "old_sentence": sentences.get(old.version, "") if old else "",
                "new_sentence": sentences.get(new.version, "") if new else "",
                "diff": diff,
            },
        )


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


class SegmentRestoreView(MerchantRequiredMixin, View):
    """POST: make a saved version the definition again (saved as a new version)."""

    permission = Action.SAVE_SEGMENTS

    def post(self, request: HttpRequest, pk: int, version: int) -> HttpResponse:
        segment = _segment(request, pk)
        try:
            restored = services.segment_restore_version(
                segment=segment, version=version, user=request.user
            )
        except SegmentVersion.DoesNotExist:
            raise Http404("No such version of this segment.") from None
        except (engine.RuleValidationError, ValidationError) as exc:
            detail = exc.errors if isinstance(exc, engine.RuleValidationError) else exc.messages
            messages.error(request, f"Version {version} cannot be restored: {'; '.join(detail)}")
            return redirect("segments:history", pk=segment.pk)
        messages.success(
            request,
            f"Version {version} restored as version {restored.definition_version}.",
        )
        return redirect("segments:detail", pk=segment.pk)


class SegmentRefreshView(MerchantRequiredMixin, View):
    """POST: queue a full refresh, run on commit (in-process without a broker)."""

    permission = Action.OPERATE_SEGMENTS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = _segment(request, pk)
        if services.segments_queue_refresh(segments=[segment]):
            messages.info(request, REFRESH_QUEUED_MESSAGE)
        else:
            messages.info(request, NOT_REFRESHED_MESSAGE)
        return redirect("segments:detail", pk=segment.pk)


class MemberAddView(MerchantRequiredMixin, View):
    """POST `customer` (an external id, or part of a name, email or phone; `external_id`
    is read too): add that customer to a manual segment. When several customers match, the
    segment's page lists them to pick one (`?add=<query>`)."""

    permission = Action.EDIT_MEMBERS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk)
        query = (request.POST.get("customer") or request.POST.get("external_id") or "").strip()
        detail = reverse("segments:detail", args=[segment.pk])
        found = selectors.find_customers(merchant=merchant, query=query) if query else []
        if not query:
            messages.error(request, ENTER_A_CUSTOMER)
        elif not found:
            messages.error(request, NO_MATCHING_CUSTOMER.format(query=query))
        elif len(found) > 1:
            return redirect(f"{detail}?{urlencode({'add': query})}#add-member")
        elif change := _add_member(request, segment, found[0]):
            messages.success(request, _change_text(change))
        return redirect(detail)


def _add_member(
    request: HttpRequest, segment: Segment, customer: Customer
) -> services.MembershipChange | None:
    """Add one customer to a manual segment; None, with a message saying why, when the
    customer was a member already or the segment refused."""
    try:
        change = services.segment_members_add(
            segment=segment, customers=[customer.pk], user=request.user
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return None
    if not change.entered:
        messages.info(request, ALREADY_MEMBER.format(who=customer, segment=segment.name))
        return None
    return change


class CustomerAddToSegmentView(MerchantRequiredMixin, View):
    """POST `segment`: add the customer to that manual segment, from the customer's page."""

    permission = Action.EDIT_MEMBERS

    def post(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        customer = get_object_or_404(selectors.customer_queryset(merchant=merchant), pk=customer_pk)
        pk = request.POST.get("segment", "")
        segment = get_object_or_404(
            selectors.segment_queryset(merchant=merchant).filter(kind=SegmentKind.MANUAL),
            pk=int(pk) if pk.isdigit() else 0,
        )
        if _add_member(request, segment, customer):
            messages.success(request, ADDED_TO.format(who=customer, segment=segment.name))
        return redirect("customers:detail", pk=customer.pk)


class MemberRemoveView(MerchantRequiredMixin, View):
    permission = Action.EDIT_MEMBERS

    def post(self, request: HttpRequest, pk: int, customer_pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        segment = _segment(request, pk)
        customer = get_object_or_404(selectors.customer_queryset(merchant=merchant), pk=customer_pk)
        _member_write(request, services.segment_members_remove, segment, [customer.pk])
        return redirect("segments:detail", pk=segment.pk)


def _member_write(request: HttpRequest, service: Any, segment: Segment, ids: list[int]) -> None:
    try:
        change = service(segment=segment, customers=ids, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return
    messages.success(request, _change_text(change))


def _change_text(change: Any) -> str:
    """ "1,204 added, 3 removed." """
    return f"{format_count(len(change.entered))} added, {format_count(len(change.exited))} removed."


class MemberUploadView(MerchantRequiredMixin, View):
    permission = Action.EDIT_MEMBERS

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = _segment(request, pk)
        form = MemberUploadForm(request.POST, request.FILES)
        if not form.is_valid():
            messages.error(request, "Choose a CSV file to upload.")
            return redirect("segments:detail", pk=segment.pk)
        try:
            change = services.segment_members_upload(
                segment=segment, file=form.cleaned_data["file"], user=request.user
            )
        except services.MembershipUploadError as exc:
            for error in exc.errors:
                messages.error(request, error)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Uploaded: {_change_text(change)}")
        return redirect("segments:detail", pk=segment.pk)


# -- the customer page's "Segments and why" -------------------------------------------------


class CustomerSegmentsView(MerchantRequiredMixin, View):
    """Partial: the customer's current segments, and for each active dynamic segment whether
    the customer matches now, with the per-condition explanation."""

    def get(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        merchant = current_merchant(request)
        customer = get_object_or_404(selectors.customer_queryset(merchant=merchant), pk=customer_pk)
        evaluations = []
        for segment in selectors.active_dynamic_segments(merchant=merchant):
            if not segment.rules:
                continue
            results, error = _attempt(
                lambda segment=segment: engine.explain(  # type: ignore[misc]
                    merchant=merchant, rules=segment.rules, customer=customer
                ),
                f"explaining segment {segment.pk}",
            )
            matched = results[0].matched if results else None
            evaluations.append((segment, matched, results or [], error))
        memberships = list(selectors.customer_segments(customer=customer))
        manual_choices = (
            selectors.segment_queryset(merchant=merchant)
            .filter(kind=SegmentKind.MANUAL)
            .exclude(pk__in=[s.pk for s in memberships])
            .order_by("name")
            if may(request, Action.EDIT_MEMBERS)
            else Segment.objects.none()
        )
        return render(
            request,
            "segments/partials/customer_segments.html",
            {
                "customer": customer,
                "memberships": memberships,
                "evaluations": evaluations,
                "manual_choices": list(manual_choices),
            },
        )
